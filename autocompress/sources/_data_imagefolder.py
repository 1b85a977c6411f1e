"""The ``imagefolder:PATH`` data loader: one folder per class, split into train / val / test.

Scans the class folders (or ``train/``, ``val/`` and optional ``test/`` under ``PATH``), splits them stratified
where needed, and decodes every image once into an image store per split (:mod:`autocompress.sources._store`) with
the default pipeline or a ``preprocess`` callable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autocompress.config import Normalization, default_normalization
from autocompress.errors import WorkloadError
from autocompress.sources._base import DataOptions, DataSource
from autocompress.sources._splits import (
    _GRAY_MODES,
    _describe_preprocess,
    _normalization_info,
    _preprocess_one,
    _resize_crop,
    _size_of,
    _sizes,
    _stratified_cap,
    _stratified_split,
)
from autocompress.sources._store import ImageStore, PixelDecoder, StoreSpec, open_store, store_dir, store_info
from autocompress.sources._text import _one_line
from autocompress.sources._types import DataSplits

__all__ = ["ImageFolderData", "_check_same_classes", "_image_mode", "_load_imagefolder", "_open_image", "_scan_folder"]

_DEFAULT_FOLDER_SIZE = 224  # without --input-size (and without a preprocess that decides)
_Samples = list[tuple[str, int]]  # (image path, label) pairs of one split


def _load_imagefolder(
    spec: str,
    *,
    size: int | None,
    channels: int | None,
    seed: int,
    max_samples: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
    normalization: Normalization | None = None,
    cache_dir: Path | None = None,
) -> DataSplits:
    root = _folder_of(spec)
    classes, (train_s, val_s, test_s), layout = _split_samples(root, spec, seed)
    sources = {"train": len(train_s), "val": len(val_s), "test": len(test_s)}
    train_s, val_s, test_s = (
        [s[i] for i in _stratified_cap(np.array([lab for _, lab in s]), max_samples, seed)]
        for s in (train_s, val_s, test_s)
    )
    if channels is None and preprocess is not None:
        channels = 3
    elif channels is None:
        channels = 1 if _image_mode(train_s[0][0], spec) in _GRAY_MODES else 3
    if preprocess is None and normalization is not None:
        normalization.for_channels(channels)  # wrong per-channel count: fail before decoding anything
    if preprocess is not None:
        first_path = train_s[0][0]
        shape = _preprocess_one(
            _open_image(first_path, channels, spec), preprocess, size=size, spec=spec, where=first_path
        ).shape
        shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    else:
        assert size is not None  # ImageFolderData supplies the default size when there is no preprocess
        shape = (channels, size, size)
    # Decoded once into an image store per split (uint8 pixels after resize and crop, or a preprocess's float32),
    # read back one image at a time: the whole dataset is never in RAM (autocompress.sources._store says why).
    stores = [
        _open_split_store(
            split,
            samples,
            shape=shape,
            spec=spec,
            preprocess=preprocess,
            size=size,
            normalization=normalization,
            cache_dir=cache_dir,
        )
        for split, samples in (("train", train_s), ("val", val_s), ("test", test_s))
    ]
    return DataSplits(
        *stores,
        input_shape=shape,
        num_classes=len(classes),
        info={
            "data": spec,
            "source": "imagefolder",
            "root": str(root),
            "layout": layout,
            "classes": classes,
            "input_size": _size_of(shape),
            "channels": shape[0],
            "seed": seed,
            "max_samples": max_samples,
            "preprocess": _describe_preprocess(preprocess, shape, size=size, normalization=normalization),
            **(_normalization_info(normalization, shape[0]) if preprocess is None else {}),
            "source_sizes": sources,
            **_sizes(*stores),
            "image_store": store_info(stores),
        },
    )


def _folder_of(spec: str) -> Path:
    """The existing folder ``PATH`` of ``imagefolder:PATH``."""
    root = Path(spec.split(":", 1)[1]).expanduser()
    if not str(root) or not root.exists():
        raise WorkloadError(
            f"--data {spec} : no such folder {str(root)!r}; pass imagefolder:PATH with PATH/CLASS/IMAGE.png files"
        )
    if not root.is_dir():
        raise WorkloadError(
            f"--data {spec} : {root} is a file, expected a folder of class subfolders PATH/CLASS/IMAGE.png"
        )
    return root


def _split_samples(root: Path, spec: str, seed: int) -> tuple[list[str], tuple[_Samples, _Samples, _Samples], str]:
    """The class names, the (path, label) samples of train / val / test, and a description of the layout found."""
    has_train, has_val = (root / "train").is_dir(), (root / "val").is_dir()
    if has_train != has_val:
        raise WorkloadError(
            f"--data {spec} : {root} has {'train/ but no val/' if has_train else 'val/ but no train/'}; add the "
            "missing split folder, or put the class folders directly under PATH to have them split 60/20/20"
        )
    if has_train:
        found = {s: _scan_folder(root / s, spec) for s in ("train", "val", "test") if (root / s).is_dir()}
        _check_same_classes(found, spec)
        classes = found["train"][0]
        train_s, val_s = found["train"][1], found["val"][1]
        if "test" in found:
            test_s, layout = found["test"][1], "train/ val/ test/ folders"
        else:
            halves = _stratified_split(np.array([lab for _, lab in val_s]), (0.5, 0.5), seed)
            val_s, test_s = ([val_s[i] for i in idx] for idx in halves)
            layout = "train/ val/ folders, val halved (stratified) into val and test"
    else:
        classes, samples = _scan_folder(root, spec)
        parts = _stratified_split(np.array([lab for _, lab in samples]), (0.6, 0.2, 0.2), seed)
        train_s, val_s, test_s = ([samples[i] for i in idx] for idx in parts)
        layout = "one folder split 60/20/20 (stratified)"
    if len(classes) < 2:
        raise WorkloadError(
            f"--data {spec} : found one class folder ({classes[0]}) in {root}; a classifier needs at least 2 classes: "
            "put each class's images in its own subfolder, PATH/CLASS/IMAGE.png"
        )
    sources = {"train": len(train_s), "val": len(val_s), "test": len(test_s)}
    if not all(sources.values()):
        raise WorkloadError(
            f"--data {spec} : too few images for train/val/test ({sources}); "
            "put at least 3 images per class (5 or more per class to measure accuracy meaningfully)"
        )
    return classes, (train_s, val_s, test_s), layout


def _scan_folder(folder: Path, spec: str) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(folder)
    except FileNotFoundError as exc:
        raise WorkloadError(
            f"--data {spec} : no class subfolders in {folder}; expected {folder}/CLASS_NAME/IMAGE.png"
        ) from exc
    samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    empty = sorted(set(classes) - {classes[lab] for _, lab in samples})
    if empty:
        raise WorkloadError(
            f"--data {spec} : class folder(s) {', '.join(empty[:5])} in {folder} hold no images "
            f"({', '.join(IMG_EXTENSIONS)}); add images or remove the folder(s)"
        )
    return classes, samples


def _check_same_classes(found: Mapping[str, tuple[list[str], list[tuple[str, int]]]], spec: str) -> None:
    train_classes = found["train"][0]
    for split, (classes, _) in found.items():
        if classes != train_classes:
            only_train = sorted(set(train_classes) - set(classes))
            only_here = sorted(set(classes) - set(train_classes))
            raise WorkloadError(
                f"--data {spec} : class folders differ between train/ and {split}/ (only in train/: "
                f"{', '.join(only_train) or '-'}; only in {split}/: {', '.join(only_here) or '-'}); "
                "every split needs the same class subfolders"
            )


def _image_mode(path: str, spec: str) -> str:
    """The PIL mode of the image at ``path`` (read from its header), or a one-line error for a file that is no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return str(img.mode)
    except (OSError, UnidentifiedImageError) as exc:
        raise WorkloadError(
            f"--data {spec} : cannot read image {path} ({_one_line(exc)}); remove or replace the file"
        ) from exc


def _open_image(path: str, channels: int, spec: str) -> Any:
    """The image at ``path`` as a loaded PIL image in mode ``L`` (1 channel) or ``RGB`` (3 channels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("L" if channels == 1 else "RGB")  # convert() loads the pixels: safe after close
    except (OSError, UnidentifiedImageError) as exc:
        raise WorkloadError(
            f"--data {spec} : cannot read image {path} ({_one_line(exc)}); remove or replace the file"
        ) from exc


class _FolderDecoder(PixelDecoder):
    """The images of one split's ``(path, label)`` samples as the store keeps them: uint8 after resize and crop, or
    the float32 a ``preprocess`` returns."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        *,
        shape: tuple[int, int, int],
        spec: str,
        preprocess: Callable[[Any], torch.Tensor] | None,
        size: int | None,
    ) -> None:
        self.samples, self.shape, self.spec, self.preprocess, self.size = samples, shape, spec, preprocess, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        from torchvision.transforms.v2.functional import pil_to_tensor

        path = self.samples[index][0]
        try:
            image = _open_image(path, self.shape[0], self.spec)
            if self.preprocess is not None:
                pixels = _preprocess_one(
                    image, self.preprocess, size=self.size, spec=self.spec, where=path, shape=self.shape
                )
                return pixels.float().contiguous(), ""
            pixels = pil_to_tensor(image).unsqueeze(0)
            return _resize_crop(pixels, size=self.shape[1], channels=self.shape[0])[0].contiguous(), ""
        except WorkloadError as exc:
            return None, str(exc)


def _open_split_store(
    split: str,
    samples: Sequence[tuple[str, int]],
    *,
    shape: tuple[int, int, int],
    spec: str,
    preprocess: Callable[[Any], torch.Tensor] | None,
    size: int | None,
    normalization: Normalization | None,
    cache_dir: Path | None,
) -> ImageStore:
    """The image store of one split, keyed by its files (path, size, modification time, label) and pipeline."""
    files = []
    for path, label in samples:
        stat = os.stat(path)
        files.append((path, stat.st_size, stat.st_mtime_ns, label))
    if preprocess is None:
        mean, std = (normalization or default_normalization(shape[0])).for_channels(shape[0])
        pipeline: dict[str, Any] = {"pipeline": "resize-crop-uint8"}
        store_spec = StoreSpec(f"imagefolder-{split}", {}, shape, "uint8", mean, std)
    else:
        pipeline = {"pipeline": "preprocess", "preprocess": _describe_preprocess(preprocess, shape, size=size)}
        pipeline["first"] = _fingerprint(samples[0][0], preprocess, shape=shape, spec=spec, size=size)
        store_spec = StoreSpec(f"imagefolder-{split}", {}, shape, "float32")
    files_digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    store_spec = dataclasses.replace(store_spec, key={"source": "imagefolder", "files": files_digest, **pipeline})
    decoder = _FolderDecoder(samples, shape=shape, spec=spec, preprocess=preprocess, size=size)
    return open_store(store_dir(cache_dir), store_spec, decoder=decoder, labels=[lab for _, lab in samples], what=spec)


def _fingerprint(
    path: str, preprocess: Callable[[Any], torch.Tensor], *, shape: tuple[int, int, int], spec: str, size: int | None
) -> str:
    """A digest of what ``preprocess`` makes of the image at ``path``: two transforms with the same repr but a
    different behaviour (a lambda, a changed closure) do not share a store."""
    image = _open_image(path, shape[0], spec)
    out = _preprocess_one(image, preprocess, size=size, spec=spec, where=path, shape=shape)
    return hashlib.sha256(out.float().contiguous().numpy().tobytes()).hexdigest()[:16]


class ImageFolderData(DataSource):
    """``imagefolder:PATH``: 224x224 images unless ``--input-size`` (or a ``preprocess``) says otherwise."""

    name = "imagefolder"
    form = "imagefolder:PATH"
    example = "imagefolder:./flowers"
    help = "one folder of images per class (PATH/CLASS/IMAGE.png), optionally under train/ val/ test/"
    settings = ("--input-size", "--channels", "--max-samples", "--normalize")

    def load(self, spec: str, options: DataOptions) -> DataSplits:
        size = options.input_size or (None if options.preprocess else _DEFAULT_FOLDER_SIZE)
        return _load_imagefolder(
            spec,
            size=size,
            channels=options.channels,
            seed=options.seed,
            max_samples=options.max_samples,
            preprocess=options.preprocess,
            normalization=options.normalize,
            cache_dir=options.cache_dir,
        )

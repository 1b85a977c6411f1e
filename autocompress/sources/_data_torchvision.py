"""The ``torchvision:NAME:ROOT`` data loader: a torchvision dataset on disk (or downloaded) as train / val / test.

Finds the dataset class by name, builds its official train and test splits, takes a stratified 10 % of train as
val, and decodes the images once into an image store per split (:mod:`autocompress.sources._store`), from the
dataset's uint8 array where torchvision keeps one, else image by image.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import os
from collections.abc import Callable
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
    _labels_of,
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

__all__ = ["TorchvisionData", "_load_torchvision", "_pil_image", "_pil_pixels", "_uint8_array"]

_SPLIT_NAMES = {"OxfordIIITPet": ("trainval", "test")}  # torchvision datasets whose split= names are not train/test


def _load_torchvision(
    spec: str,
    *,
    size: int | None,
    channels: int | None,
    seed: int,
    download: bool,
    max_samples: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
    normalization: Normalization | None = None,
    cache_dir: Path | None = None,
) -> DataSplits:
    canonical, cls, root = _dataset_class(spec)
    official_train, official_test = _official_splits(spec, canonical, cls, root, download=download)
    arrays = {"train": _uint8_array(official_train), "test": _uint8_array(official_test)}
    train_y, test_y = _labels_of(official_train), _labels_of(official_test)
    native = arrays["train"][0] if arrays["train"] is not None else _pil_pixels(official_train, 0)[0]
    train_idx, val_idx = _stratified_split(train_y, (0.9, 0.1), seed)
    train_idx, val_idx = (idx[_stratified_cap(train_y[idx], max_samples, seed)] for idx in (train_idx, val_idx))
    test_idx = _stratified_cap(test_y, max_samples, seed)
    if preprocess is not None:
        out = _preprocess_one(
            _pil_image(official_train, arrays["train"], 0, channels or 3),
            preprocess,
            size=size,
            spec=spec,
            where=f"{canonical} image 0",
        )
        shape = (int(out.shape[0]), int(out.shape[1]), int(out.shape[2]))
    else:
        shape = _native_shape(native, channels=channels, size=size, normalization=normalization)
        size = shape[1]
    # Decoded once into an image store per split (autocompress.sources._store): never the whole set in RAM.
    prep = {"shape": shape, "preprocess": preprocess, "size": size, "spec": spec, "normalization": normalization}
    pixels = _pixel_digests(arrays)
    splits = [
        _open_split_store(
            ds,
            arrays[key],
            labels[idx],
            idx,
            store_name=f"{canonical}-{split}",
            key={
                "source": "torchvision",
                "dataset": canonical,
                "root": os.path.abspath(root),
                "official": key,
                "pixels": pixels[key],
            },
            cache_dir=cache_dir,
            **prep,
        )
        for ds, key, split, labels, idx in (
            (official_train, "train", "train", train_y, train_idx),
            (official_train, "train", "val", train_y, val_idx),
            (official_test, "test", "test", test_y, test_idx),
        )
    ]
    classes = [str(c) for c in getattr(official_train, "classes", [])]
    num_classes = len(classes) or int(max(train_y.max(), test_y.max())) + 1
    return DataSplits(
        *splits,
        input_shape=shape,
        num_classes=num_classes,
        info={
            "data": spec,
            "source": "torchvision",
            "dataset": canonical,
            "root": root,
            "classes": classes or None,
            "input_size": _size_of(shape),
            "channels": shape[0],
            "seed": seed,
            "max_samples": max_samples,
            **_preprocess_info(preprocess, shape, size=size, normalization=normalization),
            "source_sizes": {"official_train": len(train_y), "official_test": len(test_y)},
            **_sizes(*splits),
            "image_store": store_info(splits),
        },
    )


def _preprocess_info(
    preprocess: Callable[[Any], torch.Tensor] | None,
    shape: tuple[int, int, int],
    *,
    size: int | None,
    normalization: Normalization | None,
) -> dict[str, Any]:
    """The info entries that say how images were preprocessed: the user's preprocess, or resizing + normalisation."""
    described = _describe_preprocess(preprocess, shape, size=size if preprocess else None, normalization=normalization)
    return {"preprocess": described, **(_normalization_info(normalization, shape[0]) if preprocess is None else {})}


def _pixel_digests(arrays: dict[str, torch.Tensor | None]) -> dict[str, str]:
    """Each official split's pixels hashed once (train feeds both train and val), without a copy of the array."""
    return {
        key: hashlib.sha256(np.ascontiguousarray(array.numpy())).hexdigest() if array is not None else ""
        for key, array in arrays.items()
    }


def _native_shape(
    native: torch.Tensor | np.ndarray, *, channels: int | None, size: int | None, normalization: Normalization | None
) -> tuple[int, int, int]:
    """``(channels, size, size)`` of images decoded without a user preprocess: the native channels and shortest side
    unless given; a normalisation with the wrong per-channel count fails here, before anything is converted."""
    channels, size = channels or int(native.shape[0]), size or int(min(native.shape[1:]))
    if normalization is not None:
        normalization.for_channels(channels)
    return (channels, size, size)


def _dataset_class(spec: str) -> tuple[str, Any, str]:
    """The canonical name and class of the dataset of ``torchvision:NAME:ROOT`` (matched case-insensitively), and
    ``ROOT``."""
    import torchvision.datasets as tvd

    parts = spec.split(":", 2)  # the root may itself contain ':'
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise WorkloadError(f"--data {spec} : expected torchvision:NAME:ROOT, e.g. torchvision:CIFAR10:./data")
    _, name, root = parts
    available = sorted(
        n
        for n, v in vars(tvd).items()
        if isinstance(v, type) and issubclass(v, tvd.VisionDataset) and v is not tvd.VisionDataset
    )
    canonical = {n.lower(): n for n in available}.get(name.lower())
    if canonical is None:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        raise WorkloadError(
            f"--data {spec} : no torchvision dataset named {name!r}; "
            f"{'close matches: ' + ', '.join(close) if close else 'e.g. CIFAR10, CIFAR100, MNIST, FashionMNIST, SVHN'}"
        )
    return canonical, getattr(tvd, canonical), root


def _official_splits(spec: str, canonical: str, cls: Any, root: str, *, download: bool) -> tuple[Any, Any]:
    """The dataset's official train and test splits, built from the files under ``root`` (or downloaded there)."""
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"download": download} if "download" in params else {}
    if "train" in params:

        def make(train: bool) -> Any:
            return cls(root, train=train, **kwargs)

    elif "split" in params:
        names = _SPLIT_NAMES.get(canonical, ("train", "test"))

        def make(train: bool) -> Any:
            return cls(root, split=names[0] if train else names[1], **kwargs)

    else:
        raise WorkloadError(
            f"--data {spec} : {canonical} has neither a train= nor a split= argument; "
            "load it with a package.module:fn spec"
        )
    try:
        return make(True), make(False)
    except (TypeError, ValueError) as exc:  # e.g. EMNIST's split= takes "balanced", "digits", ..., not "train"
        raise WorkloadError(
            f"--data {spec} : {canonical} needs constructor arguments besides train/split ({_one_line(exc)}); "
            "load it with a package.module:fn spec"
        ) from exc
    except (RuntimeError, OSError) as exc:
        if download:
            raise WorkloadError(
                f"--data {spec} : downloading {canonical} into {root} failed ({_one_line(exc)}); "
                f"check the network or put the files under {root}"
            ) from exc
        where = f" ({root}/{cls.base_folder}/)" if isinstance(getattr(cls, "base_folder", None), str) else ""
        raise WorkloadError(
            f"--data {spec} : {canonical} files not found under {root}{where}; "
            f"pass --download to fetch them, or put the files under {root}"
        ) from exc


def _uint8_array(dataset: Any) -> torch.Tensor | None:
    """``dataset.data`` as uint8 ``N x C x H x W`` where torchvision keeps it that way, else ``None``."""
    data = getattr(dataset, "data", None)
    tensor = torch.as_tensor(np.asarray(data)) if data is not None else None
    if tensor is None or tensor.dtype != torch.uint8 or tensor.dim() not in (3, 4):
        return None
    if tensor.dim() == 3:  # MNIST family: N x H x W
        return tensor.unsqueeze(1)
    if tensor.shape[1] in (1, 3):  # SVHN, STL10: N x C x H x W
        return tensor
    return tensor.permute(0, 3, 1, 2) if tensor.shape[3] in (1, 3) else None  # CIFAR: N x H x W x C


def _pil_pixels(dataset: Any, index: int) -> torch.Tensor:
    from torchvision.transforms.v2.functional import pil_to_tensor

    image = dataset[index][0]
    return pil_to_tensor(image.convert("L" if image.mode in _GRAY_MODES else "RGB")).unsqueeze(0)


def _pil_image(dataset: Any, array: torch.Tensor | None, index: int, channels: int) -> Any:
    """Image ``index`` of a torchvision dataset as a PIL image in mode ``L`` or ``RGB``."""
    from torchvision.transforms.v2.functional import to_pil_image

    image = to_pil_image(array[index]) if array is not None else dataset[index][0]
    return image.convert("L" if channels == 1 else "RGB")


class _DatasetDecoder(PixelDecoder):
    """Images ``indices`` of a torchvision dataset as the store keeps them: uint8 after resize and crop (from the
    dataset's uint8 array where it keeps one, else its PIL images), or the float32 a ``preprocess`` returns."""

    def __init__(
        self,
        dataset: Any,
        array: torch.Tensor | None,
        indices: np.ndarray,
        *,
        shape: tuple[int, int, int],
        preprocess: Callable[[Any], torch.Tensor] | None,
        size: int | None,
        spec: str,
        name: str,
    ) -> None:
        self.dataset, self.array, self.indices = dataset, array, indices
        self.shape, self.preprocess, self.size, self.spec, self.name = shape, preprocess, size, spec, name

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, str]:
        index = int(self.indices[i])
        try:
            if self.preprocess is not None:  # a user transform takes one PIL image at a time
                image = _pil_image(self.dataset, self.array, index, self.shape[0])
                out = _preprocess_one(
                    image,
                    self.preprocess,
                    size=self.size,
                    spec=self.spec,
                    where=f"{self.name} image {index}",
                    shape=self.shape,
                )
                return out.float().contiguous(), ""
            pixels = self.array[index : index + 1] if self.array is not None else _pil_pixels(self.dataset, index)
            return _resize_crop(pixels, size=self.shape[1], channels=self.shape[0])[0].contiguous(), ""
        except WorkloadError as exc:
            return None, str(exc)


def _open_split_store(
    dataset: Any,
    array: torch.Tensor | None,
    labels: np.ndarray,
    indices: np.ndarray,
    *,
    store_name: str,
    key: dict[str, Any],
    shape: tuple[int, int, int],
    preprocess: Callable[[Any], torch.Tensor] | None,
    size: int | None,
    spec: str,
    normalization: Normalization | None,
    cache_dir: Path | None,
) -> ImageStore:
    """The image store of one split, keyed by the dataset's pixels (``key["pixels"]``; its size where it keeps no
    array), the indices and the pipeline."""
    chosen = hashlib.sha256(np.asarray(indices, dtype=np.int64)).hexdigest()
    key = {**key, "indices": chosen, "count": len(dataset)}
    name = str(key["dataset"])
    decoder = _DatasetDecoder(
        dataset, array, indices, shape=shape, preprocess=preprocess, size=size, spec=spec, name=name
    )
    if preprocess is None:
        mean, std = (normalization or default_normalization(shape[0])).for_channels(shape[0])
        store_spec = StoreSpec(store_name, {**key, "pipeline": "resize-crop-uint8"}, shape, "uint8", mean, std)
    else:
        first = decoder[0][0] if len(decoder) else None
        fingerprint = hashlib.sha256(first.numpy().tobytes()).hexdigest()[:16] if first is not None else ""
        pipeline = {"pipeline": "preprocess", "preprocess": _describe_preprocess(preprocess, shape, size=size)}
        store_spec = StoreSpec(store_name, {**key, **pipeline, "first": fingerprint}, shape, "float32")
    return open_store(store_dir(cache_dir), store_spec, decoder=decoder, labels=labels, what=spec)


class TorchvisionData(DataSource):
    """``torchvision:NAME:ROOT``: the native image size unless ``--input-size``; ``--download`` lets it fetch."""

    name = "torchvision"
    form = "torchvision:NAME:ROOT"
    example = "torchvision:CIFAR10:./data"
    help = "a torchvision dataset on disk under ROOT: official train split 90/10 into train/val, test split as test"
    settings = ("--input-size", "--channels", "--max-samples", "--normalize", "--download")

    def load(self, spec: str, options: DataOptions) -> DataSplits:
        return _load_torchvision(
            spec,
            size=options.input_size,
            channels=options.channels,
            seed=options.seed,
            download=options.download,
            max_samples=options.max_samples,
            preprocess=options.preprocess,
            normalization=options.normalize,
            cache_dir=options.cache_dir,
        )

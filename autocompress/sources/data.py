"""Bring-your-own data: train / val / test splits from a ``--data`` spec.

Spec forms handled here (``digits`` is built by :mod:`autocompress.workload`):

* ``imagefolder:PATH``: one folder per class (``PATH/CLASS/IMAGE.png``). With ``PATH/train`` and ``PATH/val``
  (optional ``PATH/test``) those are the splits, and without ``test/`` val is halved (stratified) into val and test;
  otherwise the images are split 60/20/20, stratified.
* ``torchvision:NAME:ROOT``: a torchvision dataset already on disk under ``ROOT`` (or fetched with ``download``),
  e.g. ``torchvision:CIFAR10:./data``. The official train split gives train (90 %) and val (10 %, stratified); the
  official test split is test.
* ``package.module:fn``: a function returning a :class:`DataSplits`, ``(train, val[, test])`` or
  ``{"train": ..., "val": ...[, "test": ...]}`` of map-style datasets or DataLoaders.

Images become float tensors ``C x H x W`` normalised with the ImageNet mean/std (3 channels) or 0.5/0.5 (1 channel),
unless a ``preprocess`` callable is given (e.g. the transforms of torchvision's pretrained weights, see
:func:`autocompress.sources.weights_transform`): then it maps each PIL image to the tensor. Every split is deterministic for a given ``seed``: keep it fixed so held-out data stays held out across studies.

Example:
    >>> splits = load_data("imagefolder:./flowers", input_size=64, max_samples=2000)
    >>> splits.input_shape, splits.num_classes
    ((3, 64, 64), 5)
    >>> pretrained = weights_transform("torchvision:resnet18", "torchvision:DEFAULT")
    >>> load_data("imagefolder:./flowers", preprocess=pretrained).input_shape
    (3, 224, 224)
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from autocompress.errors import WorkloadError
from autocompress.sources.models import (  # package-private helpers
    _MODULE_SPEC,
    _accepts,
    _one_line,
    _resolve_object,
)

__all__ = ["DATA_SPEC_FORMS", "DataSplits", "load_data"]

logger = logging.getLogger(__name__)

DATA_SPEC_FORMS = "digits, imagefolder:PATH, torchvision:NAME:ROOT, package.module:fn"
_MEAN_STD = {3: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), 1: ((0.5,), (0.5,))}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;L"}
_DEFAULT_FOLDER_SIZE = 224
_SPLIT_NAMES = {"OxfordIIITPet": ("trainval", "test")}  # torchvision datasets whose split= names are not train/test


@dataclass
class DataSplits:
    """Train / val / test data of one workload.

    Attributes:
        train: map-style dataset of ``(float tensor C x H x W, int label)`` for fine-tuning and calibration.
        val: held-out data that drives the search.
        test: held-out data touched only for the final report.
        input_shape: ``(channels, height, width)`` of one image.
        num_classes: number of classes (labels are ``0 .. num_classes - 1``).
        info: where the data came from, class names (``"classes"``), split sizes; written to reports.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)


def load_data(
    spec: str,
    *,
    input_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    download: bool = False,
    max_samples: int | None = None,
    preprocess: Callable[[Any], torch.Tensor] | None = None,
) -> DataSplits:
    """Load the splits named by ``spec`` (see the module docstring for the forms).

    Args:
        spec: ``imagefolder:PATH``, ``torchvision:NAME:ROOT`` or ``package.module:fn``.
        input_size: images are resized (shorter side) and centre-cropped to this square size; ``None`` means 224
            for image folders and the native size for torchvision datasets. Not applied to ``package.module:fn``.
            With ``preprocess``, ``None`` keeps the size ``preprocess`` returns (224 for most torchvision weights),
            and a given size resizes its output to ``input_size x input_size`` (the crop's framing is kept).
        channels: 1 (grayscale) or 3 (RGB); ``None`` keeps the data's own (an image folder's first image decides),
            or 3 with ``preprocess`` (torchvision's pretrained models take RGB).
        seed: seed of every split and subsample.
        download: let torchvision download a missing dataset into ``ROOT``.
        max_samples: cap on the size of each split (stratified subsample), for huge datasets.
        preprocess: maps one PIL image (already converted to ``channels``) to a float tensor ``C x H x W``, used
            instead of the default resize / centre crop / normalise for image folders and torchvision datasets;
            e.g. ``weights_transform(model_spec, weights)``. Every image must come out at the same shape. Passed to a
            ``package.module:fn`` that takes a ``preprocess`` argument, ignored (with a warning) by one that does not.
            ``info["preprocess"]`` records it on one line.

    Raises:
        WorkloadError: unknown spec, missing or empty folders, mismatched classes, missing dataset files.
    """
    if channels not in (None, 1, 3):
        raise WorkloadError(f"--channels {channels} : expected 1 (grayscale) or 3 (RGB)")
    if input_size is not None and input_size < 1:
        raise WorkloadError(f"--input-size {input_size} : expected a positive image size in pixels, e.g. 224")
    if max_samples is not None and max_samples < 1:
        raise WorkloadError(f"--max-samples {max_samples} : expected a positive cap on the images per split")
    if spec == "digits":
        raise WorkloadError("--data digits : the digits data is built by autocompress.workload, not by sources.load_data")
    if preprocess is not None and not callable(preprocess):
        raise WorkloadError(
            f"preprocess={preprocess!r} : expected a callable mapping a PIL image to a float tensor C x H x W, got a "
            f"{type(preprocess).__name__}; pass e.g. weights_transform(model_spec, weights)"
        )
    if spec.startswith("imagefolder:"):
        size = input_size or (None if preprocess else _DEFAULT_FOLDER_SIZE)
        return _load_imagefolder(spec, size=size, channels=channels, seed=seed, max_samples=max_samples,
                                 preprocess=preprocess)
    if spec.startswith("torchvision:"):
        return _load_torchvision(spec, size=input_size, channels=channels, seed=seed, download=download,
                                 max_samples=max_samples, preprocess=preprocess)
    if _MODULE_SPEC.match(spec):
        return _load_from_function(spec, input_size=input_size, channels=channels, seed=seed, max_samples=max_samples,
                                   preprocess=preprocess)
    hint = f"; did you mean imagefolder:{spec}?" if spec and Path(spec).expanduser().is_dir() else ""
    raise WorkloadError(f"--data {spec} : unknown data spec; expected one of {DATA_SPEC_FORMS}{hint}")


# ---------------------------------------------------------------------------------------------------------------
# imagefolder:PATH


def _load_imagefolder(
    spec: str, *, size: int | None, channels: int | None, seed: int, max_samples: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
) -> DataSplits:
    root = Path(spec.split(":", 1)[1]).expanduser()
    if not str(root) or not root.exists():
        raise WorkloadError(
            f"--data {spec} : no such folder {str(root)!r}; "
            "pass imagefolder:PATH with PATH/CLASS/IMAGE.png files"
        )
    if not root.is_dir():
        raise WorkloadError(f"--data {spec} : {root} is a file, expected a folder of class subfolders PATH/CLASS/IMAGE.png")
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
    sources = {"train": len(train_s), "val": len(val_s), "test": len(test_s)}
    if not all(sources.values()):
        raise WorkloadError(
            f"--data {spec} : too few images for train/val/test ({sources}); "
            "put at least 3 images per class (5 or more per class to measure accuracy meaningfully)"
        )
    train_s, val_s, test_s = (
        [s[i] for i in _stratified_cap(np.array([lab for _, lab in s]), max_samples, seed)]
        for s in (train_s, val_s, test_s)
    )
    if channels is None and preprocess is not None:
        channels = 3
    elif channels is None:
        from PIL import Image

        with Image.open(train_s[0][0]) as first:
            channels = 1 if first.mode in _GRAY_MODES else 3
    if preprocess is not None:
        first_path = train_s[0][0]
        shape = _preprocess_one(_open_image(first_path, channels, spec), preprocess, size=size, spec=spec,
                                where=first_path).shape
        shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    else:
        assert size is not None  # load_data supplies the default size when there is no preprocess
        shape = (channels, size, size)
    _check_memory(len(train_s) + len(val_s) + len(test_s), shape, spec)
    # Decode once, keep tensors: the search reads every split many times (each trial fine-tunes on train,
    # calibrates, evaluates val), and decoding + resizing a JPEG costs milliseconds per image while indexing a
    # tensor costs microseconds. The price is memory: 4 * C * H * W bytes per image, 0.6 MB at 3x224x224, i.e.
    # 0.6 GB per 1,000 images; _check_memory refuses what cannot fit and max_samples caps huge folders.
    splits = [_decode_images(s, shape=shape, spec=spec, preprocess=preprocess, size=size)
              for s in (train_s, val_s, test_s)]
    return DataSplits(
        *splits, input_shape=shape, num_classes=len(classes),
        info={"data": spec, "source": "imagefolder", "root": str(root), "layout": layout, "classes": classes,
              "input_size": _size_of(shape), "channels": shape[0], "seed": seed, "max_samples": max_samples,
              "preprocess": _describe_preprocess(preprocess, shape, size=size), "source_sizes": sources, **_sizes(*splits)},
    )


def _scan_folder(folder: Path, spec: str) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(folder)
    except FileNotFoundError as exc:
        raise WorkloadError(
            f"--data {spec} : no class subfolders in {folder}; "
            f"expected {folder}/CLASS_NAME/IMAGE.png"
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


def _open_image(path: str, channels: int, spec: str) -> Any:
    """The image at ``path`` as a loaded PIL image in mode ``L`` (1 channel) or ``RGB`` (3 channels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("L" if channels == 1 else "RGB")  # convert() loads the pixels: safe after close
    except (OSError, UnidentifiedImageError) as exc:
        raise WorkloadError(
            f"--data {spec} : cannot read image {path} ({_one_line(exc)}); "
            "remove or replace the file"
        ) from exc


def _decode_images(
    samples: Sequence[tuple[str, int]], *, shape: tuple[int, int, int], spec: str,
    preprocess: Callable[[Any], torch.Tensor] | None, size: int | None,
) -> TensorDataset:
    from torchvision.transforms.v2.functional import pil_to_tensor

    channels = shape[0]
    images = torch.empty(len(samples), *shape)
    labels = torch.empty(len(samples), dtype=torch.long)
    for i, (path, label) in enumerate(samples):
        image = _open_image(path, channels, spec)
        if preprocess is not None:
            images[i] = _preprocess_one(image, preprocess, size=size, spec=spec, where=path, shape=shape)
        else:
            images[i] = _prepare(pil_to_tensor(image).unsqueeze(0), size=shape[1], channels=channels)[0]
        labels[i] = label
    return TensorDataset(images, labels)


# ---------------------------------------------------------------------------------------------------------------
# torchvision:NAME:ROOT


def _load_torchvision(
    spec: str, *, size: int | None, channels: int | None, seed: int, download: bool, max_samples: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
) -> DataSplits:
    import torchvision.datasets as tvd

    parts = spec.split(":", 2)  # the root may itself contain ':'
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise WorkloadError(f"--data {spec} : expected torchvision:NAME:ROOT, e.g. torchvision:CIFAR10:./data")
    _, name, root = parts
    available = sorted(n for n, v in vars(tvd).items() if isinstance(v, type) and issubclass(v, tvd.VisionDataset)
                       and v is not tvd.VisionDataset)
    canonical = {n.lower(): n for n in available}.get(name.lower())
    if canonical is None:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        raise WorkloadError(
            f"--data {spec} : no torchvision dataset named {name!r}; "
            f"{'close matches: ' + ', '.join(close) if close else 'e.g. CIFAR10, CIFAR100, MNIST, FashionMNIST, SVHN'}"
        )
    cls = getattr(tvd, canonical)
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"download": download} if "download" in params else {}
    if "train" in params:
        make: Callable[[bool], Any] = lambda train: cls(root, train=train, **kwargs)  # noqa: E731
    elif "split" in params:
        names = _SPLIT_NAMES.get(canonical, ("train", "test"))
        make = lambda train: cls(root, split=names[0] if train else names[1], **kwargs)  # noqa: E731
    else:
        raise WorkloadError(
            f"--data {spec} : {canonical} has neither a train= nor a split= argument; "
            "load it with a package.module:fn spec"
        )
    try:
        official_train, official_test = make(True), make(False)
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
    arrays = {"train": _uint8_array(official_train), "test": _uint8_array(official_test)}
    train_y, test_y = _labels_of(official_train), _labels_of(official_test)
    native = arrays["train"][0] if arrays["train"] is not None else _pil_pixels(official_train, 0)[0]
    train_idx, val_idx = _stratified_split(train_y, (0.9, 0.1), seed)
    train_idx, val_idx = (idx[_stratified_cap(train_y[idx], max_samples, seed)] for idx in (train_idx, val_idx))
    test_idx = _stratified_cap(test_y, max_samples, seed)
    if preprocess is not None:
        channels = channels or 3
        out = _preprocess_one(_pil_image(official_train, arrays["train"], 0, channels), preprocess, size=size,
                              spec=spec, where=f"{canonical} image 0")
        shape = (int(out.shape[0]), int(out.shape[1]), int(out.shape[2]))
    else:
        channels, size = channels or int(native.shape[0]), size or int(min(native.shape[1:]))
        shape = (channels, size, size)
    _check_memory(len(train_idx) + len(val_idx) + len(test_idx), shape, spec)
    prep = {"shape": shape, "preprocess": preprocess, "size": size, "spec": spec, "name": canonical}
    splits = [
        TensorDataset(_prepare_split(ds, arrays[key], idx, **prep), torch.as_tensor(labels[idx]))
        for ds, key, labels, idx in ((official_train, "train", train_y, train_idx),
                                     (official_train, "train", train_y, val_idx), (official_test, "test", test_y, test_idx))
    ]
    classes = [str(c) for c in getattr(official_train, "classes", [])]
    num_classes = len(classes) or int(max(train_y.max(), test_y.max())) + 1
    return DataSplits(
        *splits, input_shape=shape, num_classes=num_classes,
        info={"data": spec, "source": "torchvision", "dataset": canonical, "root": root, "classes": classes or None,
              "input_size": _size_of(shape), "channels": shape[0], "seed": seed, "max_samples": max_samples,
              "preprocess": _describe_preprocess(preprocess, shape, size=size if preprocess else None),
              "source_sizes": {"official_train": len(train_y), "official_test": len(test_y)}, **_sizes(*splits)},
    )


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


def _prepare_split(
    dataset: Any, array: torch.Tensor | None, indices: np.ndarray, *, shape: tuple[int, int, int],
    preprocess: Callable[[Any], torch.Tensor] | None, size: int | None, spec: str, name: str,
) -> torch.Tensor:
    out = torch.empty(len(indices), *shape)
    if preprocess is not None:  # a user transform takes one PIL image at a time
        for i, index in enumerate(indices.tolist()):
            image = _pil_image(dataset, array, index, shape[0])
            out[i] = _preprocess_one(image, preprocess, size=size, spec=spec, where=f"{name} image {index}", shape=shape)
        return out
    channels, size = shape[0], shape[1]
    step = 1024 if array is not None else 1  # array: chunks bound the float32 intermediate; PIL: one image at a time
    for start in range(0, len(indices), step):
        chunk = indices[start:start + step]
        pixels = array[torch.as_tensor(chunk)] if array is not None else _pil_pixels(dataset, int(chunk[0]))
        out[start:start + len(chunk)] = _prepare(pixels, size=size, channels=channels)
    return out


# ---------------------------------------------------------------------------------------------------------------
# package.module:fn


def _load_from_function(
    spec: str, *, input_size: int | None, channels: int | None, seed: int, max_samples: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
) -> DataSplits:
    fn, name = _resolve_object(spec, option="--data"), spec.split(":", 1)[1]
    if not callable(fn):
        raise WorkloadError(f"--data {spec} : {name} is a {type(fn).__name__}, expected a function returning the datasets")
    offered = {"seed": seed, "input_size": input_size, "channels": channels, "preprocess": preprocess}
    kwargs = {k: v for k, v in offered.items() if v is not None and _accepts(fn, k)}
    if preprocess is not None and "preprocess" not in kwargs:
        logger.warning("%s takes no preprocess argument: its images are used as it returns them, not with %s",
                       spec, _describe_preprocess(preprocess, None))
    try:
        result = fn(**kwargs)
    except Exception as exc:  # user code: one line here, the chained traceback shows with --debug
        raise WorkloadError(f"--data {spec} : calling {name}() raised {type(exc).__name__}: {_one_line(exc)}") from exc
    if isinstance(result, DataSplits):
        return result
    expected = "a DataSplits, (train, val[, test]) or {'train', 'val'[, 'test']} of Datasets or DataLoaders"
    if isinstance(result, Mapping) and "train" in result and "val" in result:
        parts = [result["train"], result["val"], result.get("test")]
    elif isinstance(result, (tuple, list)) and len(result) in (2, 3):
        parts = [*result, None][:3]
    else:
        raise WorkloadError(f"--data {spec} : the function returned {type(result).__name__}, expected {expected}")
    roles = ("train", "val", "test")
    given = {role: _as_dataset(p, role, spec) for role, p in zip(roles, parts) if p is not None}
    # Check the item format before reading labels: a dataset of PIL images would fail there less clearly.
    shapes = {role: _item_shape(ds, role, spec) for role, ds in given.items()}
    if len(set(shapes.values())) != 1:
        raise WorkloadError(f"--data {spec} : the splits have different image shapes {shapes}; resize them to one shape")
    labels = {role: _labels_of(ds) for role, ds in given.items()}
    layout = "train, val, test from the function"
    if "test" not in given:
        halves = _stratified_split(labels["val"], (0.5, 0.5), seed)
        given["val"], given["test"] = (Subset(given["val"], idx.tolist()) for idx in halves)
        labels["val"], labels["test"] = (labels["val"][idx] for idx in halves)
        layout = "train, val from the function, val halved (stratified) into val and test"
    sources = {role: len(labels[role]) for role in roles}
    for role in roles:
        keep = _stratified_cap(labels[role], max_samples, seed)
        if len(keep) < len(labels[role]):
            given[role], labels[role] = Subset(given[role], keep.tolist()), labels[role][keep]
    base = given["train"].dataset if isinstance(given["train"], Subset) else given["train"]
    classes = [str(c) for c in getattr(base, "classes", None) or []] or None
    top = max(int(lab.max()) for lab in labels.values() if len(lab))
    if min(int(lab.min()) for lab in labels.values() if len(lab)) < 0 or (classes and top >= len(classes)):
        low = min(int(lab.min()) for lab in labels.values() if len(lab))
        raise WorkloadError(f"--data {spec} : labels run from {low} to {top}, expected 0 .. {len(classes or []) or 'N'} - 1")
    return DataSplits(
        given["train"], given["val"], given["test"], input_shape=shapes["train"],
        num_classes=len(classes) if classes else top + 1,
        info={"data": spec, "source": "function", "layout": layout, "classes": classes, "seed": seed,
              "max_samples": max_samples,
              "preprocess": _describe_preprocess(preprocess, None) if "preprocess" in kwargs else f"by {name}()", "source_sizes": sources, **_sizes(*(given[r] for r in roles))},
    )


def _as_dataset(value: Any, role: str, spec: str) -> Dataset:
    dataset = value.dataset if isinstance(value, DataLoader) else value
    if isinstance(dataset, IterableDataset) or not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise WorkloadError(
            f"--data {spec} : the {role} split is a {type(dataset).__name__}, expected a map-style Dataset "
            "(with __len__ and __getitem__) or a DataLoader over one"
        )
    if len(dataset) == 0:
        raise WorkloadError(f"--data {spec} : the {role} split is empty; return at least one (image, label) per split")
    return dataset


def _labels_of(dataset: Any) -> np.ndarray:
    """Integer labels of a dataset, read without decoding images wherever the dataset exposes them."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1].numpy().astype(np.int64)
    if isinstance(dataset, Subset):
        return _labels_of(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    labels = getattr(dataset, "targets", None)
    labels = getattr(dataset, "labels", None) if labels is None else labels  # SVHN, STL10 say "labels"
    if labels is None or len(labels) != len(dataset):
        labels = [int(dataset[i][1]) for i in range(len(dataset))]  # decodes every image: only when unavoidable
    return np.asarray(labels, dtype=np.int64)


def _item_shape(dataset: Dataset, role: str, spec: str) -> tuple[int, int, int]:
    item = dataset[0]
    image = item[0] if isinstance(item, (tuple, list)) and len(item) >= 2 else None
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.is_floating_point():
        if isinstance(image, torch.Tensor):
            got = f"{image.dtype} tensor of shape {list(image.shape)}"
        else:
            got = type(item if image is None else image).__name__
        raise WorkloadError(
            f"--data {spec} : {role} items must be (float tensor C x H x W, int label), got {got}; "
            "add transforms.ToTensor() (or unsqueeze(0) for H x W images) to the dataset"
        )
    return (int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


def _prepare(pixels: torch.Tensor, *, size: int, channels: int) -> torch.Tensor:
    """``uint8 N x C x H x W`` → normalised ``float32 N x channels x size x size`` (resize shorter side, centre crop).

    Resize-to-size then crop-to-size keeps the whole image of a square input; the ImageNet habit (resize 256, crop
    224) would cut the borders that small images cannot spare. Teacher and student see the same preprocessing.
    """
    import torchvision.transforms.v2.functional as F

    if pixels.shape[1] == 3 and channels == 1:
        pixels = F.rgb_to_grayscale(pixels)
    elif pixels.shape[1] == 1 and channels == 3:
        pixels = pixels.expand(-1, 3, -1, -1)
    if tuple(pixels.shape[-2:]) != (size, size):
        pixels = F.center_crop(F.resize(pixels, [size], antialias=True), [size, size])
    mean, std = _MEAN_STD[channels]
    return F.normalize(pixels.float().div_(255.0), list(mean), list(std))


def _preprocess_one(
    image: Any, preprocess: Callable[[Any], torch.Tensor], *, size: int | None, spec: str, where: str,
    shape: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """``preprocess(image)``, checked to be a float ``C x H x W`` tensor (of ``shape`` when given).

    With ``size`` (an explicit ``--input-size``) the result is then resized to ``size x size``. Resizing is linear,
    so it commutes with the normalisation inside ``preprocess``; on a 224 crop of a 256 resize it gives the same
    framing as resizing to ``size * 256 / 224`` and cropping ``size``.
    """
    try:
        out = preprocess(image)
    except Exception as exc:  # user code: one line here, the chained traceback shows with --debug
        raise WorkloadError(
            f"--data {spec} : the preprocessing {_describe_preprocess(preprocess, None)} failed on {where} "
            f"({type(exc).__name__}: {_one_line(exc)}); it must take a PIL image and return a float tensor C x H x W"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or not out.is_floating_point():
        got = (f"a {out.dtype} tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor)
               else type(out).__name__)
        raise WorkloadError(
            f"--data {spec} : the preprocessing returned {got} for {where}, expected a float tensor C x H x W; "
            "end it with ToTensor() (or ToImage() + ToDtype(torch.float32, scale=True)) and Normalize"
        )
    if size is not None and tuple(out.shape[1:]) != (size, size):
        import torchvision.transforms.v2.functional as F

        out = F.resize(out, [size, size], antialias=True)
    if shape is not None and tuple(out.shape) != shape:
        raise WorkloadError(
            f"--data {spec} : the preprocessing returned {'x'.join(map(str, out.shape))} for {where} but "
            f"{'x'.join(map(str, shape))} for the first image; make it crop every image to one size "
            "(e.g. CenterCrop) or pass --input-size"
        )
    return out


def _describe_preprocess(
    preprocess: Callable[[Any], torch.Tensor] | None, shape: tuple[int, ...] | None, *, size: int | None = None
) -> str:
    """One line for reports: the transform's repr with its whitespace collapsed, or the default pipeline."""
    if preprocess is None:
        assert shape is not None
        stats = "ImageNet" if shape[0] == 3 else "0.5/0.5"
        return f"default: resize shorter side to {shape[1]}, centre crop {shape[1]}x{shape[2]}, {stats} mean/std"
    text = re.sub(r"\s+", " ", repr(preprocess)).replace("( ", "(").replace(" )", ")").strip()
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{text}, then resize to {size}x{size}" if size is not None else text


def _size_of(shape: tuple[int, int, int]) -> int | list[int]:
    return shape[1] if shape[1] == shape[2] else [shape[1], shape[2]]


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder), none empty where possible.

    Example: 3 images split 60/20/20 → exact 1.8/0.6/0.6 → floors 1/0/0, the 2 left go to the largest remainders
    → 2/1/0; test then borrows one from the largest part → 1/1/1, so every split sees every class.
    """
    share = np.asarray(weights, dtype=float) / float(np.sum(weights))
    exact = total * share
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]] += 1
    for i in np.flatnonzero((counts == 0) & (share > 0)):
        donor = int(np.argmax(counts))
        if counts[donor] <= 1:
            break
        counts[donor] -= 1
        counts[i] += 1
    return counts.tolist()


def _by_class(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of each class (sorted by label), shuffled within the class."""
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    return [rng.permutation(group) for group in np.split(order, starts[1:])]


def _stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Sorted index arrays, one per fraction, with every class split in those proportions."""
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for members in _by_class(labels, np.random.default_rng(seed)):
        bounds = np.cumsum([0, *_allocate(len(members), fractions)])
        for part, lo, hi in zip(parts, bounds[:-1], bounds[1:]):
            part.append(members[lo:hi])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


def _stratified_cap(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``cap`` items keeping the class proportions (all indices when under the cap)."""
    if cap is None or len(labels) <= cap:
        return np.arange(len(labels))
    groups = _by_class(labels, np.random.default_rng(seed))
    quotas = _allocate(cap, [len(g) for g in groups])
    return np.sort(np.concatenate([g[:q] for g, q in zip(groups, quotas)]))


def _check_memory(count: int, shape: tuple[int, int, int], spec: str) -> None:
    need = count * math.prod(shape) * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: skip the check
        total = 0
    shape_text = "x".join(map(str, shape))
    if total and need > total // 2:
        raise WorkloadError(
            f"--data {spec} : {count} images at {shape_text} need {need / 1e9:.1f} GB as float32, more than half of "
            f"this machine's {total / 1e9:.1f} GB; pass --max-samples N (caps each split) or a smaller --input-size"
        )
    if need > 2**31:
        logger.warning("%s: holding %d images at %s in memory takes %.1f GB", spec, count, shape_text, need / 1e9)


def _sizes(train: Any, val: Any, test: Any) -> dict[str, int]:
    return {"train_size": len(train), "val_size": len(val), "test_size": len(test)}

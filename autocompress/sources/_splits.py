"""Helpers shared by the data loaders: preprocessing, stratified splits and subsamples, sizes and memory.

Holds the default resize / centre crop / normalise pipeline, the checks around a user ``preprocess`` callable,
the stratified split and cap of label arrays (deterministic for a seed), reading a dataset's labels, and the split
sizes written to ``DataSplits.info``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from autocompress.config import Normalization, default_normalization
from autocompress.errors import WorkloadError
from autocompress.sources._text import _one_line

__all__ = [
    "_GRAY_MODES",
    "_allocate",
    "_by_class",
    "_describe_preprocess",
    "_labels_of",
    "_normalization_info",
    "_normalize",
    "_prepare",
    "_preprocess_one",
    "_resize_crop",
    "_size_of",
    "_sizes",
    "_stratified_cap",
    "_stratified_split",
]

# Records keep the name of the public module they were logged from before the split (the CLI prints it).
logger = logging.getLogger("autocompress.sources.data")

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;L"}


def _prepare(
    pixels: torch.Tensor, *, size: int, channels: int, normalization: Normalization | None = None
) -> torch.Tensor:
    """``uint8 N x C x H x W`` → normalised ``float32 N x channels x size x size`` (resize shorter side, centre crop).

    :func:`_resize_crop` then :func:`_normalize`; an image store keeps the uint8 result of the first and applies the
    second on read, which gives the same tensors.
    """
    return _normalize(_resize_crop(pixels, size=size, channels=channels), normalization=normalization)


def _resize_crop(pixels: torch.Tensor, *, size: int, channels: int) -> torch.Tensor:
    """``uint8 N x C x H x W`` → ``uint8 N x channels x size x size``: channels converted, shorter side resized to
    ``size``, centre crop.

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
    return pixels


def _normalize(pixels: torch.Tensor, *, normalization: Normalization | None) -> torch.Tensor:
    """``uint8`` pixels scaled to [0, 1], then ``(x - mean) / std`` with ``normalization`` (``None``: the default
    for the channel count, see :func:`autocompress.config.default_normalization`)."""
    import torchvision.transforms.v2.functional as F

    channels = pixels.shape[-3]
    mean, std = (normalization or default_normalization(channels)).for_channels(channels)
    return F.normalize(pixels.float().div_(255.0), list(mean), list(std))


def _preprocess_one(
    image: Any,
    preprocess: Callable[[Any], torch.Tensor],
    *,
    size: int | None,
    spec: str,
    where: str,
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
        got = (
            f"a {out.dtype} tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        )
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
    preprocess: Callable[[Any], torch.Tensor] | None,
    shape: tuple[int, ...] | None,
    *,
    size: int | None = None,
    normalization: Normalization | None = None,
) -> str:
    """One line for reports: the transform's repr with its whitespace collapsed, or the default pipeline."""
    if preprocess is None:
        assert shape is not None
        norm = normalization or default_normalization(shape[0])
        return (
            f"default: resize shorter side to {shape[1]}, centre crop {shape[1]}x{shape[2]}, scale to [0, 1], "
            f"{norm.describe()}"
        )
    text = re.sub(r"\s+", " ", repr(preprocess)).replace("( ", "(").replace(" )", ")").strip()
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{text}, then resize to {size}x{size}" if size is not None else text


def _normalization_info(normalization: Normalization | None, channels: int) -> dict[str, str]:
    """``info`` entries saying which ``--normalize`` the default pipeline used and whether it was chosen."""
    used = normalization or default_normalization(channels)
    source = "given with --normalize" if normalization is not None else f"the default for {channels}-channel images"
    return {"normalize": str(used), "normalize_source": source}


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


def _sizes(train: Any, val: Any, test: Any) -> dict[str, int]:
    return {"train_size": len(train), "val_size": len(val), "test_size": len(test)}


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

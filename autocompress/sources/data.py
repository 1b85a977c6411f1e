"""Bring-your-own data: train / val / test splits from a ``--data`` spec.

A spec names a registered :class:`~autocompress.sources.DataSource` (:func:`~autocompress.sources.list_data_sources`);
the built-ins:

* ``digits``: scikit-learn's handwritten digits, shipped (:mod:`autocompress.sources._data_digits`): 10 classes,
  upsampled to ``input_size`` (32 by default), standardised with the set's own mean and std, a fixed 60/20/20 split.
* ``imagefolder:PATH``: one folder per class (``PATH/CLASS/IMAGE.png``). With ``PATH/train`` and ``PATH/val``
  (optional ``PATH/test``) those are the splits, and without ``test/`` val is halved (stratified) into val and test;
  otherwise the images are split 60/20/20, stratified.
* ``torchvision:NAME:ROOT``: a torchvision dataset already on disk under ``ROOT`` (or fetched with ``download``),
  e.g. ``torchvision:CIFAR10:./data``. The official train split gives train (90 %) and val (10 %, stratified); the
  official test split is test.
* ``package.module:fn``: a function returning a :class:`DataSplits`, ``(train, val[, test])`` or
  ``{"train": ..., "val": ...[, "test": ...]}`` of map-style datasets or DataLoaders.

Images of image folders and torchvision datasets become float tensors ``C x H x W``: pixels scaled to [0, 1], then
normalised with ``normalize`` (``imagenet``, ``none`` or ``MEAN/STD``; by default the ImageNet mean/std for 3
channels and 0.5/0.5 for 1 channel; recorded in ``info["normalize"]``), unless a ``preprocess`` callable is given
(e.g. the transforms of torchvision's pretrained weights, see :func:`autocompress.sources.weights_transform`): then
it maps each PIL image to the tensor. Every split is deterministic for a given ``seed``: keep it fixed so held-out
data stays held out across studies.

Example:
    >>> splits = load_data("imagefolder:./flowers", input_size=64, max_samples=2000)
    >>> splits.input_shape, splits.num_classes
    ((3, 64, 64), 5)
    >>> pretrained = weights_transform("torchvision:resnet18", "torchvision:DEFAULT")
    >>> load_data("imagefolder:./flowers", preprocess=pretrained).input_shape
    (3, 224, 224)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autocompress.config import MIN_INPUT_SIZE, MIN_MAX_SAMPLES, Normalization, parse_normalize
from autocompress.errors import WorkloadError
from autocompress.sources._base import DataOptions, data_spec_forms, match_data_source
from autocompress.sources._splits import _describe_preprocess
from autocompress.sources._types import DataSplits

__all__ = ["DataSplits", "load_data"]


def __getattr__(name: str) -> Any:
    # The old constant DATA_SPEC_FORMS, kept for callers: now data_spec_forms(), read from the registry when asked for
    # (the registry loads its built-in sources on first use, not at import).
    if name == "DATA_SPEC_FORMS":
        return data_spec_forms()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_data(
    spec: str,
    *,
    input_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    download: bool = False,
    max_samples: int | None = None,
    preprocess: Callable[[Any], torch.Tensor] | None = None,
    normalize: str | Normalization | None = None,
    cache_dir: str | Path | None = None,
) -> DataSplits:
    """Load the splits named by ``spec`` (see the module docstring for the forms).

    Args:
        spec: the spec of a registered data source: ``digits``, ``imagefolder:PATH``, ``torchvision:NAME:ROOT`` or
            ``package.module:fn`` (see the module docstring).
        input_size: images are resized (shorter side) and centre-cropped to this square size; ``None`` means 224
            for image folders, 32 for digits and the native size for torchvision datasets. Not applied to
            ``package.module:fn``.
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
        normalize: how the default pipeline of image folders and torchvision datasets normalises pixels scaled to
            [0, 1]: ``"imagenet"``, ``"none"`` (plain ``ToTensor()`` pixels), ``"MEAN/STD"`` (one number or 3
            comma-separated per side, e.g. ``"0.5/0.25"``) or a :class:`~autocompress.config.Normalization`;
            ``None`` is ImageNet mean/std for 3 channels and 0.5/0.5 for 1 channel. It must match what the model
            was trained on. Not combinable with ``preprocess`` (which normalises itself), ``digits`` (standardised
            already) nor ``package.module:fn`` data (whose function returns finished tensors).
        cache_dir: image folders and torchvision datasets are decoded once into image stores under
            ``cache_dir/data`` and read back one image at a time (a later load with the same files and options
            reuses them); ``None``: a temporary folder removed when the process exits.

    Raises:
        WorkloadError: unknown spec (the message lists the registered forms), options that do not apply to it,
            missing or empty folders, mismatched classes, missing dataset files.
        ConfigError: a malformed ``normalize`` or one whose per-channel values do not fit ``channels``.
    """
    options = _validated(
        input_size=input_size,
        channels=channels,
        seed=seed,
        download=download,
        max_samples=max_samples,
        preprocess=preprocess,
        normalize=normalize,
    )
    options = dataclasses.replace(options, cache_dir=Path(cache_dir) if cache_dir is not None else None)
    source = match_data_source(spec)
    source.check(spec, options)
    return source.load(spec, options)


def _validated(
    *,
    input_size: int | None,
    channels: int | None,
    seed: int,
    download: bool,
    max_samples: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
    normalize: str | Normalization | None,
) -> DataOptions:
    """The options of :func:`load_data` checked (one-line errors) and ``normalize`` parsed; what every source gets."""
    if channels not in (None, 1, 3):
        raise WorkloadError(f"--channels {channels} : expected 1 (grayscale) or 3 (RGB)")
    if input_size is not None and input_size < MIN_INPUT_SIZE:
        raise WorkloadError(f"--input-size {input_size} : expected at least {MIN_INPUT_SIZE} pixels, e.g. 224")
    if max_samples is not None and max_samples < MIN_MAX_SAMPLES:
        raise WorkloadError(
            f"--max-samples {max_samples} : expected a cap of at least {MIN_MAX_SAMPLES} images per split"
        )
    if preprocess is not None and not callable(preprocess):
        raise WorkloadError(
            f"preprocess={preprocess!r} : expected a callable mapping a PIL image to a float tensor C x H x W, got a "
            f"{type(preprocess).__name__}; pass e.g. weights_transform(model_spec, weights)"
        )
    normalization = parse_normalize(normalize) if normalize is not None else None
    if normalization is not None and preprocess is not None:
        raise WorkloadError(
            f"--normalize {normalization} : the preprocessing {_describe_preprocess(preprocess, None)} normalises the "
            "images itself (e.g. the transforms of --weights torchvision:ENUM); drop --normalize"
        )
    if normalization is not None and channels is not None:
        normalization.for_channels(channels)  # a per-channel list for the wrong channel count fails before any decoding
    return DataOptions(
        input_size=input_size,
        channels=channels,
        seed=seed,
        download=download,
        max_samples=max_samples,
        preprocess=preprocess,
        normalize=normalization,
    )

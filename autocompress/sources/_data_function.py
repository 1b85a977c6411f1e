"""The ``package.module:fn`` data loader: splits returned by a user function.

Calls the function with the keyword arguments it accepts, accepts a :class:`DataSplits`, a tuple or a dict of
map-style datasets or DataLoaders, checks their items and labels, halves val into val and test when no test
split is given, and caps each split with ``max_samples``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from autocompress.errors import WorkloadError
from autocompress.sources._base import DataOptions, DataSource
from autocompress.sources._resolve import _MODULE_SPEC, _accepts, _resolve_object
from autocompress.sources._splits import _describe_preprocess, _labels_of, _sizes, _stratified_cap, _stratified_split
from autocompress.sources._text import _one_line
from autocompress.sources._types import DataSplits

__all__ = ["FunctionData", "_as_dataset", "_item_shape", "_load_from_function"]

# Records keep the name of the public module they were logged from before the split (the CLI prints it).
logger = logging.getLogger("autocompress.sources.data")


def _load_from_function(
    spec: str,
    *,
    input_size: int | None,
    channels: int | None,
    seed: int,
    max_samples: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
) -> DataSplits:
    fn, name = _resolve_object(spec, option="--data"), spec.split(":", 1)[1]
    if not callable(fn):
        raise WorkloadError(
            f"--data {spec} : {name} is a {type(fn).__name__}, expected a function returning the datasets"
        )
    kwargs = _arguments_for(fn, spec, seed=seed, input_size=input_size, channels=channels, preprocess=preprocess)
    try:
        result = fn(**kwargs)
    except Exception as exc:  # user code: one line here, the chained traceback shows with --debug
        raise WorkloadError(f"--data {spec} : calling {name}() raised {type(exc).__name__}: {_one_line(exc)}") from exc
    if isinstance(result, DataSplits):
        return result
    roles = ("train", "val", "test")
    given = {role: _as_dataset(p, role, spec) for role, p in zip(roles, _split_parts(result, spec)) if p is not None}
    # Check the item format before reading labels: a dataset of PIL images would fail there less clearly.
    shapes = {role: _item_shape(ds, role, spec) for role, ds in given.items()}
    if len(set(shapes.values())) != 1:
        raise WorkloadError(
            f"--data {spec} : the splits have different image shapes {shapes}; resize them to one shape"
        )
    labels = {role: _labels_of(ds) for role, ds in given.items()}
    layout = "train, val, test from the function"
    if "test" not in given:
        given, labels = _halve_val(given, labels, seed=seed)
        layout = "train, val from the function, val halved (stratified) into val and test"
    sources = {role: len(labels[role]) for role in roles}
    given, labels = _cap_splits(given, labels, max_samples=max_samples, seed=seed)
    classes, top = _check_labels(given, labels, spec)
    return DataSplits(
        given["train"],
        given["val"],
        given["test"],
        input_shape=shapes["train"],
        num_classes=len(classes) if classes else top + 1,
        info={
            "data": spec,
            "source": "function",
            "layout": layout,
            "classes": classes,
            "seed": seed,
            "max_samples": max_samples,
            "preprocess": _describe_preprocess(preprocess, None) if "preprocess" in kwargs else f"by {name}()",
            "source_sizes": sources,
            **_sizes(*(given[r] for r in roles)),
        },
    )


def _arguments_for(
    fn: Callable[..., Any],
    spec: str,
    *,
    seed: int,
    input_size: int | None,
    channels: int | None,
    preprocess: Callable[[Any], torch.Tensor] | None,
) -> dict[str, Any]:
    """The keyword arguments ``fn`` accepts among those offered; a warning when it would ignore ``preprocess``."""
    offered = {"seed": seed, "input_size": input_size, "channels": channels, "preprocess": preprocess}
    kwargs = {k: v for k, v in offered.items() if v is not None and _accepts(fn, k)}
    if preprocess is not None and "preprocess" not in kwargs:
        logger.warning(
            "%s takes no preprocess argument: its images are used as it returns them, not with %s",
            spec,
            _describe_preprocess(preprocess, None),
        )
    return kwargs


def _split_parts(result: Any, spec: str) -> list[Any]:
    """``[train, val, test]`` from the function's tuple, list or dict (``test`` is ``None`` when not given)."""
    expected = "a DataSplits, (train, val[, test]) or {'train', 'val'[, 'test']} of Datasets or DataLoaders"
    if isinstance(result, Mapping) and "train" in result and "val" in result:
        return [result["train"], result["val"], result.get("test")]
    if isinstance(result, (tuple, list)) and len(result) in (2, 3):
        return [*result, None][:3]
    raise WorkloadError(f"--data {spec} : the function returned {type(result).__name__}, expected {expected}")


def _halve_val(
    given: dict[str, Dataset], labels: dict[str, np.ndarray], *, seed: int
) -> tuple[dict[str, Dataset], dict[str, np.ndarray]]:
    """The splits with val halved, class by class, into val and test (for a function that returns no test)."""
    halves = _stratified_split(labels["val"], (0.5, 0.5), seed)
    val, test = (Subset(given["val"], idx.tolist()) for idx in halves)
    val_labels, test_labels = (labels["val"][idx] for idx in halves)
    return {**given, "val": val, "test": test}, {**labels, "val": val_labels, "test": test_labels}


def _cap_splits(
    given: dict[str, Dataset], labels: dict[str, np.ndarray], *, max_samples: int | None, seed: int
) -> tuple[dict[str, Dataset], dict[str, np.ndarray]]:
    """Each split cut to at most ``max_samples`` items, keeping its class proportions."""
    given, labels = dict(given), dict(labels)
    for role in list(given):
        keep = _stratified_cap(labels[role], max_samples, seed)
        if len(keep) < len(labels[role]):
            given[role], labels[role] = Subset(given[role], keep.tolist()), labels[role][keep]
    return given, labels


def _check_labels(given: dict[str, Dataset], labels: dict[str, np.ndarray], spec: str) -> tuple[list[str] | None, int]:
    """The class names of the train split's dataset (``None`` without them) and the highest label; a WorkloadError
    when a label is negative or past the class names."""
    base = given["train"].dataset if isinstance(given["train"], Subset) else given["train"]
    classes = [str(c) for c in getattr(base, "classes", None) or []] or None
    top = max(int(lab.max()) for lab in labels.values() if len(lab))
    if min(int(lab.min()) for lab in labels.values() if len(lab)) < 0 or (classes and top >= len(classes)):
        low = min(int(lab.min()) for lab in labels.values() if len(lab))
        raise WorkloadError(
            f"--data {spec} : labels run from {low} to {top}, expected 0 .. {len(classes or []) or 'N'} - 1"
        )
    return classes, top


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


class FunctionData(DataSource):
    """``package.module:fn``: the function gets ``seed``, ``input_size``, ``channels`` and ``preprocess`` when it takes
    them; ``--normalize`` does not apply (it returns finished tensors)."""

    name = "function"
    form = "package.module:fn"
    example = "mydata.cifar:load"
    help = "a function importable from the working directory or PYTHONPATH that returns the splits"
    settings = ("--input-size", "--channels", "--max-samples")
    generic = True

    @classmethod
    def matches(cls, spec: str) -> bool:
        return bool(_MODULE_SPEC.match(spec))

    def check(self, spec: str, options: DataOptions) -> None:
        if options.normalize is not None:
            raise WorkloadError(
                f"--normalize {options.normalize} : --data {spec} returns finished tensors, so --normalize does not "
                "apply; normalise inside the function (or drop --normalize)"
            )

    def load(self, spec: str, options: DataOptions) -> DataSplits:
        return _load_from_function(
            spec,
            input_size=options.input_size,
            channels=options.channels,
            seed=options.seed,
            max_samples=options.max_samples,
            preprocess=options.preprocess,
        )

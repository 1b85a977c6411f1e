"""The :class:`DataSplits` container that every data loader returns.

Kept apart from :mod:`autocompress.sources.data` so that the loader modules can build it without importing the
module that imports them; ``autocompress.sources.data`` and ``autocompress.sources`` re-export it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

__all__ = ["DataSplits"]


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

"""The containers that sources return: :class:`DataSplits` (every data loader) and :class:`Workload` (a teacher
and its data).

Kept apart from :mod:`autocompress.sources.data` and :mod:`autocompress.sources.workload` so that the source
modules can build them without importing the modules that import them; those modules and
``autocompress.sources`` re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["DataSplits", "Workload"]


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


@dataclass
class Workload:
    """A teacher model and its data.

    Attributes:
        name: short identifier used in reports.
        model: the original (teacher) model, in eval mode.
        train: map-style dataset of ``(image tensor, label)`` for fine-tuning and calibration.
        val: held-out data that drives the search.
        test: held-out data used only for the final report.
        input_shape: ``(channels, height, width)`` of one image.
        num_classes: number of classes of the model's head.
        info: free-form facts about where model and data came from (written to ``metrics.json``).
    """

    name: str
    model: nn.Module
    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero tensor of the model's input shape (tracing, export, latency)."""
        return torch.zeros(batch_size, *self.input_shape)

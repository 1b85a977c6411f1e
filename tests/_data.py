"""Test helpers for datasets: every item of a map-style dataset stacked into tensors (fine for a few dozen images;
the package itself never does this to a whole split)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["stacked"]


def stacked(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images N x C x H x W, labels N)`` of ``dataset``, in order."""
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items])

"""Top-1 / top-5 accuracy of an ONNX artifact (what ships) or of an ``nn.Module`` (for comparison)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from autocompress.measure.latency import ort_session

__all__ = ["Accuracy", "evaluate_onnx", "evaluate_torch"]


@dataclass(frozen=True)
class Accuracy:
    """Fractions in [0, 1] over ``n`` images."""

    top1: float
    top5: float
    n: int


def _score(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    top1 = float((logits.argmax(1) == labels).mean())
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top5 = float((topk == labels[:, None]).any(1).mean())
    return Accuracy(top1=top1, top5=top5, n=len(labels))


def evaluate_onnx(path: Path, dataset: Dataset, *, batch_size: int = 64, threads: int = 2) -> Accuracy:
    """Accuracy of the ONNX file at ``path`` on ``dataset``; the number reported for every artifact."""
    session = ort_session(path, threads=threads)
    input_name = session.get_inputs()[0].name
    logits, labels = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
        logits.append(session.run(None, {input_name: images.numpy().astype(np.float32)})[0])
        labels.append(targets.numpy())
    return _score(np.concatenate(logits), np.concatenate(labels))


@torch.no_grad()
def evaluate_torch(model: nn.Module, dataset: Dataset, *, batch_size: int = 256) -> Accuracy:
    """Accuracy of an ``nn.Module`` in eval mode on ``dataset``."""
    model.eval()
    logits, labels = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
        logits.append(model(images).numpy())
        labels.append(targets.numpy())
    return _score(np.concatenate(logits), np.concatenate(labels))

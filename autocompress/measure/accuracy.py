"""Top-1 / top-5 accuracy of an artifact on its runtime (what ships) or of an ``nn.Module`` (for comparison).

Scoring is not timing: latency keeps ``--threads`` (the deployment's setting), while accuracy is scored with every
core this process may use (:func:`scoring_threads`), batched. The artifact and the runtime are the same, so the
predictions are too (``tests/test_accuracy.py`` checks it on every runtime); only the wall time differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from autocompress.policy import QuantPolicy
from autocompress.runtimes import Artifact, Runner, Runtime, get_runtime

__all__ = ["Accuracy", "evaluate", "evaluate_artifact", "evaluate_onnx", "evaluate_torch", "scoring_threads"]


@dataclass(frozen=True)
class Accuracy:
    """Fractions in [0, 1] over ``n`` images."""

    top1: float
    top5: float
    n: int


def scoring_threads(*, workers: int = 1) -> int:
    """Threads for accuracy scoring: the cores this process may run on (its CPU affinity), shared evenly among the
    ``workers`` processes of one study on this host (``--workers``). Timing never runs beside scoring: scoring is
    heavy work under the core guard (:mod:`autocompress.measure.guard`)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _score(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    top1 = float((logits.argmax(1) == labels).mean())
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top5 = float((topk == labels[:, None]).any(1).mean())
    return Accuracy(top1=top1, top5=top5, n=len(labels))


def evaluate(runner: Runner, dataset: Dataset, *, batch_size: int = 64) -> Accuracy:
    """Accuracy of the artifact ``runner`` runs, on ``dataset``; the number reported for every artifact."""
    logits, labels = [], []
    with runner.session():
        for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
            logits.append(runner.run(images.numpy().astype(np.float32)))
            labels.append(targets.numpy())
    return _score(np.concatenate(logits), np.concatenate(labels))


def evaluate_artifact(
    runtime: Runtime, artifact: Artifact, dataset: Dataset, *, threads: int, batch_size: int = 64
) -> Accuracy:
    """Accuracy of ``artifact`` on ``runtime`` with ``threads`` threads (any batch size)."""
    return evaluate(runtime.runner(artifact, threads=threads), dataset, batch_size=batch_size)


def evaluate_onnx(path: Path, dataset: Dataset, *, batch_size: int = 64, threads: int = 2) -> Accuracy:
    """Accuracy of the ONNX file at ``path`` on ONNX Runtime."""
    return evaluate_artifact(
        get_runtime("onnxruntime"), Artifact(path, QuantPolicy()), dataset, threads=threads, batch_size=batch_size
    )


@torch.no_grad()
def evaluate_torch(model: nn.Module, dataset: Dataset, *, batch_size: int = 256) -> Accuracy:
    """Accuracy of an ``nn.Module`` in eval mode on ``dataset``."""
    model.eval()
    logits, labels = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
        logits.append(model(images).numpy())
        labels.append(targets.numpy())
    return _score(np.concatenate(logits), np.concatenate(labels))

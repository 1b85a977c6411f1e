"""Top-1 / top-5 accuracy of an artifact on its runtime (what ships) or of an ``nn.Module`` (for comparison).

Scoring is not timing: latency keeps ``--threads`` (the deployment's setting), while accuracy is scored with every
core this process may use (:func:`scoring_threads`), batched. The artifact and the runtime are the same, so the
predictions are too (``tests/test_accuracy.py`` checks it on every runtime); only the wall time differs.

**A drop carries an interval.** Student and teacher are scored on the same images, so their difference is a *paired*
one: only the images one gets right and the other wrong (discordant pairs) move it. :class:`PairedDrop` keeps those
two counts and gives the drop with a 95 % interval (Bonett and Price's adjusted Wald interval for paired proportions,
which keeps its coverage for small counts, where the plain Wald interval collapses to zero width). Tiny example: 360
images, the student misses 6 the teacher gets right and gets 1 the teacher misses: drop (6 - 1) / 360 = 1.39 pt,
interval [-0.24, 3.00] pt: on other images of the same kind it could keep a 1 pt limit, or break it by 2 pt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from autocompress.hardware.cpu import process_cores
from autocompress.policy import QuantPolicy
from autocompress.runtimes import Artifact, Runner, Runtime, get_runtime

__all__ = [
    "Accuracy",
    "PairedDrop",
    "evaluate",
    "evaluate_artifact",
    "evaluate_onnx",
    "evaluate_torch",
    "paired_drop",
    "drop_resolution",
    "scoring_threads",
]

_Z95 = 1.959964  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Accuracy:
    """Fractions in [0, 1] over ``n`` images; ``correct`` says which images top-1 got right (in dataset order)."""

    top1: float
    top5: float
    n: int
    correct: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PairedDrop:
    """A student's top-1 drop against the teacher on the same ``n`` images, from the discordant pairs.

    Attributes:
        worse: images the teacher gets right and the student wrong.
        better: images the student gets right and the teacher wrong.
        n: images scored.
    """

    worse: int
    better: int
    n: int

    @property
    def drop_pt(self) -> float:
        return (self.worse - self.better) / self.n * 100.0 if self.n else 0.0

    @property
    def interval_pt(self) -> tuple[float, float]:
        """95 % interval of the drop in percentage points (Bonett-Price adjusted Wald: one pseudo-image added to
        each discordant cell, two to ``n``)."""
        n = self.n + 2
        p_worse, p_better = (self.worse + 1) / n, (self.better + 1) / n
        diff = p_worse - p_better
        half = _Z95 * math.sqrt(max(p_worse + p_better - diff * diff, 0.0) / n)
        return ((diff - half) * 100.0, (diff + half) * 100.0)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval_pt
        return {
            "worse": self.worse,
            "better": self.better,
            "n": self.n,
            "drop_pt": self.drop_pt,
            "interval_pt": [low, high],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedDrop:
        return cls(worse=int(data["worse"]), better=int(data["better"]), n=int(data["n"]))


def paired_drop(student: Accuracy | np.ndarray, teacher: Accuracy | np.ndarray) -> PairedDrop:
    """The paired drop of ``student`` against ``teacher``, scored on the same images in the same order (their
    ``correct`` masks, or the masks themselves)."""
    s = student.correct if isinstance(student, Accuracy) else student
    t = teacher.correct if isinstance(teacher, Accuracy) else teacher
    if s is None or t is None or len(s) != len(t):
        raise ValueError("paired_drop needs per-image results of both models on the same images")
    s, t = np.asarray(s, dtype=bool), np.asarray(t, dtype=bool)
    return PairedDrop(worse=int((t & ~s).sum()), better=int((s & ~t).sum()), n=len(s))


def drop_resolution(n: int, *, limit_pt: float, changed: float = 0.02) -> tuple[float, int]:
    """How well ``n`` images resolve an accuracy limit, for the set-up's note: the 95 % half-width (pt) of the
    drop of a student that changes the answer on a fraction ``changed`` of the images, half each way (net drop 0),
    and the images that would make that half-width at most half of ``limit_pt``. Example: 359 images, 2 % changed:
    ±1.7 pt; a 1 pt limit wants about 3,100 images."""
    flips = max(int(round(changed * n / 2)), 0)
    half = PairedDrop(flips, flips, n).interval_pt[1]
    target = max(limit_pt, 0.1) / 2 / 100.0
    needed = math.ceil(_Z95**2 * changed / target**2)  # discordant fraction `changed`, net 0: var = changed / n
    return half, needed


def scoring_threads(*, workers: int = 1) -> int:
    """Threads for accuracy scoring: the cores this process may run on (its CPU affinity), shared evenly among the
    ``workers`` processes of one study on this host (``--workers``). Timing never runs beside scoring: scoring is
    heavy work under the core guard (:mod:`autocompress.measure.guard`)."""
    return max(1, len(process_cores()) // max(1, workers))


def _score(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    correct = logits.argmax(1) == labels
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top5 = float((topk == labels[:, None]).any(1).mean())
    return Accuracy(top1=float(correct.mean()), top5=top5, n=len(labels), correct=correct)


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
def evaluate_torch(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 256, device: torch.device | str = "cpu"
) -> Accuracy:
    """Accuracy of an ``nn.Module`` in eval mode on ``dataset``, run on ``device`` (the model comes back on the
    CPU)."""
    model.eval()
    model.to(device)
    logits, labels = [], []
    try:
        for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
            logits.append(model(images.to(device)).cpu().numpy())
            labels.append(targets.numpy())
    finally:
        model.to("cpu")
    return _score(np.concatenate(logits), np.concatenate(labels))

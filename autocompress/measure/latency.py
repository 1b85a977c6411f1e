"""Latency of an ONNX Runtime session, measured the way a deployment would see it.

Protocol: one session with a fixed intra-op thread count (inter-op 1, sequential execution), a fixed batch of real-
shaped input, ``warmup`` untimed runs (allocations, kernel selection, caches), then ``repeats`` timed runs with
``time.perf_counter_ns``. We report the median and the inter-quartile range: the median is robust to the occasional
scheduler hiccup and the IQR says how much to trust it. Two artifacts whose medians differ by less than their IQRs
are not meaningfully different.

The PyTorch teacher is timed with the same protocol (``torch.set_num_threads`` inside a context manager that
restores the previous value), so "speed-up vs the original model" compares like with like.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Latency", "LatencyCache", "measure_callable", "measure_onnx", "measure_torch", "torch_threads", "ort_session", "structure_key"]


@dataclass(frozen=True)
class Latency:
    """Summary of repeated timings, in milliseconds."""

    median_ms: float
    iqr_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    threads: int
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms (IQR {self.iqr_ms:.3f}, n={self.n}, {self.threads} thr, batch {self.batch_size})"


def measure_callable(
    run: Callable[[], object], *, warmup: int, repeats: int, threads: int, batch_size: int
) -> Latency:
    """Time ``run()`` ``repeats`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    samples = np.empty(repeats, dtype=np.float64)
    for i in range(repeats):
        start = time.perf_counter_ns()
        run()
        samples[i] = (time.perf_counter_ns() - start) / 1e6
    q10, q25, q50, q75, q90 = np.percentile(samples, [10, 25, 50, 75, 90])
    return Latency(
        median_ms=float(q50), iqr_ms=float(q75 - q25), p10_ms=float(q10), p90_ms=float(q90),
        n=repeats, threads=threads, batch_size=batch_size,
    )


def ort_session(path: Path, *, threads: int) -> Any:
    """An ONNX Runtime CPU session pinned to ``threads`` intra-op threads, full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_onnx(
    path: Path,
    input_shape: tuple[int, ...],
    *,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 20,
    repeats: int = 100,
) -> Latency:
    """Median latency of the ONNX file at ``path`` for one batch of shape ``(batch_size, *input_shape)``."""
    session = ort_session(path, threads=threads)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)}
    return measure_callable(lambda: session.run(None, feed), warmup=warmup, repeats=repeats, threads=threads, batch_size=batch_size)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the previous value afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_torch(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 20,
    repeats: int = 100,
) -> Latency:
    """Median eager-mode PyTorch fp32 latency of ``model`` (eval, no grad) with the same protocol as ONNX."""
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32))
    with torch_threads(threads), torch.inference_mode():
        return measure_callable(lambda: model(x), warmup=warmup, repeats=repeats, threads=threads, batch_size=batch_size)


def structure_key(model: nn.Module, *extra: object) -> str:
    """Hash of the model's layer shapes plus ``extra`` (quant settings, threads, batch).

    Two models with the same key differ only in weight values, so their latency is the same up to noise: the search
    reuses a measurement instead of timing the same architecture again.
    """
    digest = hashlib.sha1()
    for name, tensor in list(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:16]


class LatencyCache:
    """In-memory ``structure_key → Latency`` map (per study process; no global state)."""

    def __init__(self) -> None:
        self._entries: dict[str, Latency] = {}

    def get(self, key: str) -> Latency | None:
        return self._entries.get(key)

    def put(self, key: str, latency: Latency) -> None:
        self._entries[key] = latency

"""The latency protocol: the numbers it reports, the threads it really runs with, and the artifact it times.

No wall-clock assertions here (this machine is shared and noisy): a fake clock gives exact timings, and thread
counts are read back from where they take effect. Speed itself is measured by the benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autocompress.compress import prune_model
from autocompress.measure.latency import (
    Protocol,
    measure_callable,
    measure_onnx,
    measure_torch,
    structure_key,
    torch_threads,
)
from autocompress.policy import PrunePolicy
from autocompress.runtimes import export_onnx, ort_session


class FakeClock:
    """``perf_counter_ns`` that only advances when a run "takes" time: run ``i`` lasts ``durations_ms[i]``."""

    def __init__(self, durations_ms: list[float]) -> None:
        self.now_ns = 0
        self.durations_ms = list(durations_ms)
        self.calls = 0

    def perf_counter_ns(self) -> int:
        return self.now_ns

    def run(self) -> None:
        self.now_ns += int(self.durations_ms[self.calls] * 1e6)
        self.calls += 1


def test_measure_callable_counts_only_timed_runs_and_keeps_the_setting() -> None:
    calls = {"n": 0}

    def run() -> None:
        calls["n"] += 1

    lat = measure_callable(
        run,
        warmup=3,
        repeats=20,
        threads=4,
        batch_size=8,
        protocol=Protocol(window_s=0.05, max_window_s=0.05, warmup_s=0.0),
    )
    assert lat.n >= 20 and calls["n"] >= lat.n + 3, "warm-up runs are not in the figure"
    assert (lat.threads, lat.batch_size) == (4, 8)
    assert lat.p10_ms <= lat.p90_ms and lat.low <= lat.median_ms <= lat.high


def test_torch_threads_sets_and_restores_even_on_error() -> None:
    outer = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), torch_threads(1):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2, "restored after an exception too"
    finally:
        torch.set_num_threads(outer)


def test_measure_torch_runs_every_call_at_the_requested_threads() -> None:
    seen: list[int] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x.flatten(1)

    outer = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        lat = measure_torch(
            Probe(),
            (1, 4, 4),
            threads=1,
            batch_size=3,
            warmup=2,
            repeats=5,
            protocol=Protocol(window_s=0.02, max_window_s=0.02, warmup_s=0.0),
        )
        assert len(seen) >= lat.n + 2 and set(seen) == {1}, f"warm-up + timed runs at 1 thread, got {set(seen)}"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)


@pytest.fixture()
def tiny_onnx(tiny_workload, tmp_path: Path) -> tuple[nn.Module, Path]:
    model = tiny_workload.model.eval()
    return model, export_onnx(model, tiny_workload.example_input(), tmp_path / "tiny.onnx")


@pytest.mark.parametrize("threads", [1, 2])
def test_ort_session_options_read_back(tiny_onnx: tuple[nn.Module, Path], threads: int) -> None:
    import onnxruntime as ort

    session = ort_session(tiny_onnx[1], threads=threads)
    options = session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_onnx_artifact_computes_the_pytorch_models_logits(tiny_workload, tiny_onnx: tuple[nn.Module, Path]) -> None:
    """The timed artifact is the model: fp32 ONNX logits match PyTorch's on real val images, at batch 1 and 16."""
    model, path = tiny_onnx
    session = ort_session(path, threads=1)
    name = session.get_inputs()[0].name
    images = torch.stack([tiny_workload.val[i][0] for i in range(16)])
    with torch.no_grad():
        expected = model(images).numpy()
    got = np.concatenate([session.run(None, {name: images[i : i + 1].numpy()})[0] for i in range(16)])
    assert np.abs(got - expected).max() < 1e-4, np.abs(got - expected).max()
    assert (got.argmax(1) == expected.argmax(1)).all()
    batched = session.run(None, {name: images.numpy()})[0]
    assert np.abs(batched - expected).max() < 1e-4
    lat = measure_onnx(
        path,
        tiny_workload.input_shape,
        threads=1,
        batch_size=4,
        warmup=1,
        repeats=5,
        protocol=Protocol(window_s=0.1, max_window_s=0.1),
    )
    assert lat.n >= 5 and (lat.threads, lat.batch_size) == (1, 4) and lat.low <= lat.median_ms <= lat.high


def test_structure_key_ignores_weights_but_not_shapes(demo_width_model, x32) -> None:
    other = type(demo_width_model)()  # same architecture, different random weights
    assert structure_key(demo_width_model, "int8") == structure_key(other, "int8")
    assert structure_key(demo_width_model, "int8") != structure_key(demo_width_model, "none")
    pruned = prune_model(demo_width_model, PrunePolicy(ratios={"layer1.0.conv1": 0.5}), x32, num_classes=10)
    assert structure_key(pruned, "int8") != structure_key(demo_width_model, "int8")

"""The fresh-process confirmation of the choice (phases.confirm_choice), with the re-measurement faked as numbers."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

import autocompress.study.phases as phases
from autocompress.config import SearchConfig
from autocompress.measure.latency import Latency
from autocompress.policy import Policy, QuantPolicy
from autocompress.runtimes import Artifact
from autocompress.study.record import TrialRecord

BUDGET = 1.0


def figure(ms: float, *, noise: str = "quiet", high: float | None = None) -> Latency:
    return Latency(
        median_ms=ms,
        iqr_ms=0.0,
        p10_ms=ms,
        p90_ms=ms,
        n=30,
        threads=1,
        batch_size=1,
        low_ms=ms * 0.97,
        high_ms=high if high is not None else ms * 1.03,
        noise=noise,
        block_medians=(ms, ms, ms),
    )


def record(n: int, accuracy: float, ms: float) -> TrialRecord:
    return TrialRecord(
        number=n,
        outcome="complete",
        policy=Policy(),
        budget_ms=BUDGET,
        max_drop_pt=1.0,
        teacher_accuracy=0.99,
        accuracy=accuracy,
        latency=figure(ms),
        finetuned=True,
        artifact=f"trials/{n:05d}/model.onnx",
    )


def confirm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh: dict[int, list[Latency]]) -> tuple:
    calls: list[int] = []

    def fake(artifact: Artifact, *_a: object, **_kw: object) -> tuple[Latency, Latency]:
        n = int(artifact.path.parent.name)
        calls.append(n)
        return fresh[n].pop(0), figure(2.0)

    monkeypatch.setattr(phases, "remeasure_fresh", fake)
    records = [record(1, 0.99, 0.90), record(2, 0.985, 0.80)]
    reference = types.SimpleNamespace(artifact=Artifact(tmp_path / "teacher.onnx", QuantPolicy()))
    lines: list[str] = []
    choice = phases.confirm_choice(
        records,
        reference=reference,
        config=SearchConfig(output=tmp_path),  # type: ignore[arg-type]
        input_shape=(1, 8, 8),
        say=lines.append,
    )
    return choice, calls, lines


def test_a_noisy_over_budget_figure_is_measured_again_before_the_candidate_is_passed_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Trial 1 (the most accurate) reads 1.10 ms in a noisy window, then 0.92 ms: pooled, it keeps the budget.
    choice, calls, _ = confirm(monkeypatch, tmp_path, {1: [figure(1.10, noise="noisy"), figure(0.92)]})
    assert calls == [1, 1]
    assert choice is not None and choice.record.number == 1 and choice.feasible
    assert choice.confirmed is not None and choice.confirmed.median_ms == pytest.approx(0.92)


def test_a_clearly_over_budget_figure_passes_the_candidate_over_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Trial 1 reads 1.20 ms in a quiet window, its interval wholly over the budget: the next candidate is confirmed.
    choice, calls, lines = confirm(monkeypatch, tmp_path, {1: [figure(1.20)], 2: [figure(0.81)]})
    assert calls == [1, 2]
    assert choice is not None and choice.record.number == 2 and choice.passed_over == (1,)
    assert any("not called chosen" in line for line in lines)


def test_fresh_process_takes_the_figure_with_the_searchs_whole_protocol(tmp_path: Path) -> None:
    # Two tiny ONNX files timed in a real new process; every Protocol field travels (here: 2-run blocks, no turns'
    # re-warm run, a short window), and the figures come back as Latency objects with side-by-side fields.
    import torch
    from torch import nn

    from autocompress.measure.fresh import remeasure_fresh
    from autocompress.measure.latency import Protocol
    from autocompress.runtimes import get_runtime

    runtime = get_runtime("onnxruntime")
    x = torch.zeros(1, 1, 8, 8)
    small = runtime.build(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()).eval(),
        QuantPolicy(mode="none"),
        example_input=x,
        calibration=[],
        workdir=tmp_path / "small",
    )
    large = runtime.build(
        nn.Sequential(nn.Conv2d(1, 32, 3), nn.Conv2d(32, 32, 3), nn.Flatten()).eval(),
        QuantPolicy(mode="none"),
        example_input=x,
        calibration=[],
        workdir=tmp_path / "large",
    )
    protocol = Protocol(warmup=3, min_runs=10, block_runs=2, rewarm_runs=0, window_s=0.1, max_window_s=0.2)
    assert Protocol(**json.loads(json.dumps(protocol.to_dict()))) == protocol
    candidate, reference = remeasure_fresh(small, large, (1, 8, 8), threads=1, batch_size=1, protocol=protocol)
    assert candidate.n >= 10 and candidate.n == 2 * candidate.blocks, "the protocol's 2-run blocks were used"
    assert reference.median_ms > 0 and candidate.reference_ms is not None and candidate.ratio is not None
    assert candidate.low <= candidate.median_ms <= candidate.high

"""The teacher, measured once per study: the yardstick for the budget, the accuracy drop and every speed-up.

:func:`measure_reference` times the teacher in eager PyTorch and as an fp32 artifact on the study's runtime (the
:class:`~autocompress.measure.latency.LatencyMeter`'s anchor, and what ``--latency-budget 0.5x`` is a fraction of) and
scores that artifact on val.

**One yardstick under ``--runtime auto``.** The teacher's fp32 artifact is built on every searched runtime and timed
side by side; the fastest is the reference. So ``0.5x`` means the same milliseconds whichever runtime a trial uses,
and it is half of the best the user could have without compressing: a runtime switch alone is not counted as a
compression. Tiny example: fp32 teachers at 2.0 ms (runtime A), 1.8 ms (B) and 3.0 ms (C) → the reference is B's
1.8 ms, and ``0.25x`` is 0.45 ms for a trial on A, B or C.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocompress.compress.prune import count_macs_params
from autocompress.config import SearchConfig
from autocompress.hardware.cpu import CpuInfo, detect_cpu
from autocompress.measure.accuracy import evaluate_artifact, scoring_threads
from autocompress.measure.latency import Latency, LatencyMeter, measure_torch
from autocompress.policy import QuantPolicy
from autocompress.runtimes import Artifact, Runtime, get_runtime
from autocompress.sources.workload import Workload

__all__ = ["Reference", "measure_reference", "study_target"]


@dataclass(frozen=True)
class Reference:
    """The teacher measured in this run: the yardstick for budget, accuracy drop and speed-up.

    Attributes:
        torch_latency: the teacher in eager PyTorch (the "original model" of every speed-up).
        runtime_latency: the teacher's fp32 artifact on the study's runtime (the budget's yardstick).
        artifact: that fp32 artifact (the meter's side-by-side reference).
        target: where both were measured (:func:`study_target`).
        val_correct: which val images the teacher's artifact gets right (this process's scoring; not stored: a
            resumed study scores the same teacher on the same data again), for the trials' paired drops.
        runtime_latencies: ``--runtime auto``: the teacher's fp32 artifact on each searched runtime, timed side by
            side (the fastest is ``runtime_latency``); empty for a one-runtime study.
    """

    torch_latency: Latency
    runtime_latency: Latency
    val_accuracy: float
    budget_ms: float
    macs: int
    params: int
    artifact: Artifact
    target: dict[str, Any] = dataclasses.field(default_factory=dict)
    val_correct: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    runtime_latencies: dict[str, Latency] = dataclasses.field(default_factory=dict)

    @property
    def runtime(self) -> str:
        """The runtime of the budget's yardstick (under ``--runtime auto``: of the fastest fp32 teacher)."""
        return str(self.target.get("runtime", self.artifact.runtime))

    def to_dict(self) -> dict[str, Any]:
        data = {
            "teacher_torch_latency": self.torch_latency.to_dict(),
            "teacher_runtime_latency": self.runtime_latency.to_dict(),
            "target": dict(self.target),
            "teacher_val_accuracy": self.val_accuracy,
            "budget_ms": self.budget_ms,
            "teacher_macs": self.macs,
            "teacher_params": self.params,
        }
        if self.runtime_latencies:
            data["teacher_runtime_latencies"] = {k: v.to_dict() for k, v in self.runtime_latencies.items()}
        return data

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Reference:
        """The reference a study stored (a build host's: it never measures the teacher; its artifact stays on the
        target, so ``artifact`` names no file here)."""
        return cls(
            torch_latency=Latency.from_dict(data["teacher_torch_latency"]),
            runtime_latency=Latency.from_dict(data["teacher_runtime_latency"]),
            val_accuracy=float(data["teacher_val_accuracy"]),
            budget_ms=float(data["budget_ms"]),
            macs=int(data["teacher_macs"]),
            params=int(data["teacher_params"]),
            artifact=Artifact(
                Path("(on the target)"), QuantPolicy(mode="none"), runtime=str(data["target"].get("runtime"))
            ),
            target=dict(data["target"]),
            runtime_latencies={
                k: Latency.from_dict(v) for k, v in (data.get("teacher_runtime_latencies") or {}).items()
            },
        )


def study_target(runtime: Runtime, config: SearchConfig, cpu: CpuInfo) -> dict[str, Any]:
    """Where latency is measured: runtime + version + threads + batch + CPU model and ISA (on every record)."""
    return {
        "runtime": runtime.name,
        "version": runtime.version(),
        "threads": config.threads,
        "batch_size": config.batch_size,
        "cpu": cpu.model,
        "isa": cpu.isa,
    }


def _fastest_teacher(
    workload: Workload, config: SearchConfig, workdir: Path, runtimes: Sequence[Runtime]
) -> tuple[Artifact, LatencyMeter, Latency, dict[str, Latency]]:
    """The teacher's fp32 artifact on each of ``runtimes``, timed side by side; returns the fastest one, a meter
    anchored on it, its figure, and every runtime's figure (empty for one runtime)."""
    x = workload.example_input()

    def meter_on(artifact: Artifact, runtime: Runtime) -> LatencyMeter:
        shape, cfg = workload.input_shape, config
        return LatencyMeter(
            runtime, artifact, shape, threads=cfg.threads, batch_size=cfg.batch_size, protocol=cfg.protocol
        )

    artifacts = {
        rt.name: rt.build(
            workload.model,
            QuantPolicy(mode="none"),
            example_input=x,
            calibration=workload.train,
            workdir=workdir / rt.name if len(runtimes) > 1 else workdir,
        )
        for rt in runtimes
    }
    first = runtimes[0]
    meter = meter_on(artifacts[first.name], first)
    figures = {first.name: meter.calibrate()}
    for rt in runtimes[1:]:
        figures[rt.name] = meter.measure(artifacts[rt.name])
    fastest = min(runtimes, key=lambda rt: figures[rt.name].median_ms)
    if fastest is not first:  # the anchor and every canary are the yardstick's own runtime
        meter = meter_on(artifacts[fastest.name], fastest)
        figures[fastest.name] = meter.calibrate()
    by_runtime = figures if len(runtimes) > 1 else {}
    return artifacts[fastest.name], meter, figures[fastest.name], by_runtime


def measure_reference(
    workload: Workload,
    config: SearchConfig,
    workdir: Path,
    *,
    runtime: Runtime | None = None,
    cpu: CpuInfo | None = None,
    runtimes: Sequence[Runtime] = (),
) -> tuple[Reference, LatencyMeter]:
    """Teacher latency in PyTorch and as an fp32 artifact on the study's runtime, and the artifact's val accuracy.

    Returns the reference and the study's :class:`LatencyMeter`, whose reference is this artifact: its long first
    figure is the anchor every later figure's canary compares with, and the budget's yardstick. With several
    ``runtimes`` (``--runtime auto``) the fastest fp32 teacher among them is that artifact (module docstring).
    """
    runtimes = list(runtimes) or [runtime or get_runtime(config.runtime)]
    x = workload.example_input()
    artifact, meter, runtime_latency, by_runtime = _fastest_teacher(workload, config, workdir, runtimes)
    runtime = next(rt for rt in runtimes if rt.name == artifact.runtime)
    torch_latency = measure_torch(
        workload.model,
        workload.input_shape,
        threads=config.threads,
        batch_size=config.batch_size,
        warmup=config.warmup,
        repeats=config.repeats,
        protocol=config.protocol,
    )
    macs, params = count_macs_params(workload.model, x)
    val = evaluate_artifact(runtime, artifact, workload.val, threads=scoring_threads(workers=config.workers))
    reference = Reference(
        torch_latency=torch_latency,
        runtime_latency=runtime_latency,
        val_accuracy=val.top1,
        val_correct=val.correct,
        budget_ms=config.latency_budget.resolve(runtime_latency.median_ms),
        macs=macs,
        params=params,
        artifact=artifact,
        target=study_target(runtime, config, cpu or detect_cpu()),
        runtime_latencies=by_runtime,
    )
    return reference, meter

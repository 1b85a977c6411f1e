"""The teacher, measured once per study: the yardstick for the budget, the accuracy drop and every speed-up.

:func:`measure_reference` times the teacher in eager PyTorch and as an fp32 artifact on the study's runtime (the
:class:`~autocompress.measure.latency.LatencyMeter`'s anchor, and what ``--latency-budget 0.5x`` is a fraction of) and
scores that artifact on val.
"""

from __future__ import annotations

import dataclasses
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher_torch_latency": self.torch_latency.to_dict(),
            "teacher_runtime_latency": self.runtime_latency.to_dict(),
            "target": dict(self.target),
            "teacher_val_accuracy": self.val_accuracy,
            "budget_ms": self.budget_ms,
            "teacher_macs": self.macs,
            "teacher_params": self.params,
        }

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
            artifact=Artifact(Path("(on the target)"), QuantPolicy(mode="none")),
            target=dict(data["target"]),
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


def measure_reference(
    workload: Workload,
    config: SearchConfig,
    workdir: Path,
    *,
    runtime: Runtime | None = None,
    cpu: CpuInfo | None = None,
) -> tuple[Reference, LatencyMeter]:
    """Teacher latency in PyTorch and as an fp32 artifact on the study's runtime, and the artifact's val accuracy.

    Returns the reference and the study's :class:`LatencyMeter`, whose reference is this artifact: its long first
    figure is the anchor every later figure's canary compares with, and the budget's yardstick.
    """
    runtime = runtime or get_runtime(config.runtime)
    x = workload.example_input()
    artifact = runtime.build(
        workload.model, QuantPolicy(mode="none"), example_input=x, calibration=workload.train, workdir=workdir
    )
    meter = LatencyMeter(
        runtime,
        artifact,
        workload.input_shape,
        threads=config.threads,
        batch_size=config.batch_size,
        protocol=config.protocol,
    )
    runtime_latency = meter.calibrate()
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
    )
    return reference, meter

"""Test helper: a real :class:`~autocompress.study.trial.TrialRunner` on a workload, outside a study (the teacher
measured as the study's set-up measures it), for tests that call ``runner.evaluate`` on a policy of their own."""

from __future__ import annotations

from pathlib import Path

from autocompress.compress.prune import PrunableGroup, PruningGraph
from autocompress.config import SearchConfig
from autocompress.hardware.cpu import detect_cpu, machine_fingerprint
from autocompress.runtimes import get_runtime
from autocompress.sources.workload import Workload
from autocompress.study.reference import measure_reference
from autocompress.study.space import SearchSpace
from autocompress.study.trial import TrialRunner

__all__ = ["trial_runner"]


def trial_runner(
    workload: Workload, space: SearchSpace, config: SearchConfig, teacher_dir: Path
) -> tuple[TrialRunner, list[PrunableGroup]]:
    """The runner (ONNX Runtime, this CPU's int8 kernel, budget from ``config``) and the model's prunable groups."""
    pruning = PruningGraph(workload.model, workload.example_input(), num_classes=workload.num_classes)
    groups = list(pruning.groups)
    cpu = detect_cpu()
    reference, meter = measure_reference(workload, config, teacher_dir, cpu=cpu)
    runner = TrialRunner(
        workload,
        space,
        config,
        budget_ms=reference.budget_ms,
        teacher_accuracy=reference.val_accuracy,
        groups=groups,
        int8_kernel=get_runtime("onnxruntime").int8_kernel(cpu),
        fingerprint=machine_fingerprint(cpu),
        meter=meter,
        target=reference.target,
        pruning=pruning,
    )
    return runner, groups

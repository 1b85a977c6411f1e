"""Write the chosen model folder: the ONNX artifact that was measured, a self-contained PyTorch program, the policy
and every measured number.

``results/<study>/chosen/``::

    model.onnx      the deployable artifact (fp32 or int8 QDQ), exactly the file whose latency/accuracy were measured
    model.pt2       the pruned, fine-tuned fp32 model as a torch.export program: torch.export.load(path).module()
    policy.json     the compression policy (Policy.to_dict())
    metrics.json    val + test accuracy of model.onnx, latency median/IQR, speed-ups, params, MACs, size, machine
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from autocompress.config import SearchConfig
from autocompress.measure.accuracy import evaluate_onnx, evaluate_torch
from autocompress.measure.latency import measure_onnx, measure_torch
from autocompress.pareto import Choice
from autocompress.study import Reference
from autocompress.workload import Workload

__all__ = ["export_chosen", "machine_fingerprint"]

logger = logging.getLogger(__name__)

_VERSIONED = ("autocompress", "torch", "torchvision", "torch-pruning", "onnx", "onnxruntime", "optuna", "numpy")


def machine_fingerprint() -> dict[str, Any]:
    """CPU model, core count, OS and the versions of the libraries that shape the numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import os

    return {"cpu": cpu, "logical_cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def _export_program(model: torch.nn.Module, example_input: torch.Tensor, path: Path) -> str:
    """Save ``model`` as a torch.export program with a dynamic batch axis (static if the model refuses)."""
    model.eval()
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(model, (example_input.repeat(2, *([1] * (example_input.dim() - 1))),),
                                      dynamic_shapes=({0: batch},))
        note = "dynamic batch"
    except Exception as exc:  # some architectures specialise on the batch size; a static program still loads
        logger.info("dynamic-batch torch.export failed (%s); exporting with a static batch", exc)
        program = torch.export.export(model, (example_input,))
        note = f"static batch {example_input.shape[0]}"
    torch.export.save(program, str(path))
    return note


def export_chosen(choice: Choice, *, workload: Workload, reference: Reference, config: SearchConfig,
                  destination: Path | None = None) -> Path:
    """Write the model folder for ``choice`` (default ``<study>/chosen/``) and return its path.

    The folder is built under a temporary name and renamed at the end, so an interrupted export never leaves a
    half-written folder behind.
    """
    cand = choice.candidate
    final = Path(destination) if destination is not None else config.study_dir / "chosen"
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    artifact = config.study_dir / cand.attrs["artifact"]
    trial_dir = artifact.parent
    shutil.copyfile(artifact, tmp / "model.onnx")
    student = torch.load(trial_dir / "student.pt", weights_only=False)  # our own file, written by this study
    program_note = _export_program(student, workload.example_input(), tmp / "model.pt2")
    (tmp / "policy.json").write_text(json.dumps(cand.attrs["policy"], indent=2, sort_keys=True))

    # Measured now, back to back, so the speed-up compares numbers taken under the same machine load.
    protocol = {"threads": config.threads, "batch_size": config.batch_size, "warmup": config.warmup, "repeats": config.repeats * 3}
    teacher_torch = measure_torch(workload.model, workload.input_shape, **protocol)
    teacher_ort = measure_onnx(reference.onnx_path, workload.input_shape, **protocol)
    chosen = measure_onnx(tmp / "model.onnx", workload.input_shape, **protocol)
    test = evaluate_onnx(tmp / "model.onnx", workload.test)
    teacher_test = evaluate_onnx(reference.onnx_path, workload.test)
    teacher_torch_test = evaluate_torch(workload.model, workload.test)
    metrics = {
        "trial": cand.number,
        "feasible": choice.feasible,
        "choice_reason": choice.reason,
        "policy_summary": cand.attrs.get("policy_summary"),
        "accuracy": {
            "val_top1": cand.accuracy,
            "test_top1": test.top1,
            "test_top5": test.top5,
            "teacher_val_top1": reference.val_accuracy,
            "teacher_test_top1": teacher_test.top1,
            "teacher_torch_test_top1": teacher_torch_test.top1,
            "test_drop_pt": (teacher_test.top1 - test.top1) * 100,
            "val_drop_pt": cand.attrs.get("accuracy_drop_pt"),
            "n_val": len(workload.val),  # type: ignore[arg-type]
            "n_test": test.n,
            "measured_on": "model.onnx with ONNX Runtime",
        },
        "latency": {
            "chosen_ms": chosen.to_dict(),
            "teacher_torch_fp32_ms": teacher_torch.to_dict(),
            "teacher_ort_fp32_ms": teacher_ort.to_dict(),
            "speedup_vs_teacher_torch": teacher_torch.median_ms / chosen.median_ms,
            "speedup_vs_teacher_ort": teacher_ort.median_ms / chosen.median_ms,
            "during_search_ms": cand.latency_ms,
            "budget_ms": reference.budget_ms,
            "within_budget": chosen.median_ms <= reference.budget_ms,
        },
        "model": {
            "params": cand.attrs.get("params"),
            "macs": cand.attrs.get("macs"),
            "teacher_params": reference.params,
            "teacher_macs": reference.macs,
            "onnx_size_mb": (tmp / "model.onnx").stat().st_size / 1e6,
            "input_shape": list(workload.input_shape),
            "num_classes": workload.num_classes,
            "pt2": program_note,
        },
        "workload": workload.info,
        "machine": machine_fingerprint(),
    }
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final

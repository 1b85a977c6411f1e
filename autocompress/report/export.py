"""Write the exported model folder: the artifact that was measured (for the study's runtime), a self-contained PyTorch
program, the policy and every measured number.

``results/<study>/chosen/`` when the model meets the budget and the accuracy limit; ``results/<study>/over_budget/``
when nothing did and this is the fastest model within the accuracy limit (``metrics.json`` says by how much)::

    model.onnx      --runtime onnxruntime: the deployable artifact (fp32 or int8 QDQ), exactly the measured file
    model.xml/.bin  --runtime openvino: the OpenVINO IR (fp32, or int8 from NNCF), exactly the measured files
    model.pt        --runtime torch: the TorchScript program that was measured (torch.jit.load(path))
    model.pt2       the pruned, fine-tuned fp32 model as a torch.export program: torch.export.load(path).module()
    policy.json     the compression policy (Policy.to_dict())
    metrics.json    val + test accuracy of the artifact, latency median/interval, speed-ups, params, MACs, size, machine

Nothing is unpickled: the trial's weights are a plain-array ``.npz`` loaded into the structure rebuilt from the policy
(:mod:`autocompress.sources.weights`). An existing destination is replaced only when it is an export this tool wrote.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from autocompress.compress.prune import prune_model
from autocompress.config import SearchConfig
from autocompress.errors import ConfigError, WorkloadError
from autocompress.hardware.cpu import machine_fingerprint
from autocompress.measure.accuracy import evaluate_artifact, evaluate_torch, paired_drop, scoring_threads
from autocompress.measure.fresh import remeasure_fresh
from autocompress.measure.latency import Latency, Protocol, measure_torch
from autocompress.runtimes import Artifact, Runtime, get_runtime, list_runtimes
from autocompress.sources.weights import load_weights
from autocompress.sources.workload import Workload
from autocompress.study.pareto import Choice, suggested_budget_ms
from autocompress.study.record import TrialRecord
from autocompress.study.reference import Reference
from autocompress.study.trial import WEIGHTS_FILE

__all__ = ["export_chosen", "machine_fingerprint", "export_files"]

logger = logging.getLogger(__name__)

_OWN_FILES = ("model.pt2", "policy.json", "metrics.json")  # written for every runtime
# The artifact's files in the export folder, per runtime (the file the study measured, under a fixed name).


def export_files() -> tuple[str, ...]:
    """Every file name an export folder may hold: each runtime's artifact names and our own files."""
    names = [n for runtime in list_runtimes(installed_only=False) for n in Runtime.registry[runtime].export_names]
    return (*names, *_OWN_FILES)


_MARKER = "autocompress_export"


def _export_program(model: torch.nn.Module, example_input: torch.Tensor, path: Path) -> str:
    """Save ``model`` as a torch.export program with a dynamic batch axis (static if the model refuses)."""
    model.eval()
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(
            model, (example_input.repeat(2, *([1] * (example_input.dim() - 1))),), dynamic_shapes=({0: batch},)
        )
        note = "dynamic batch"
    except Exception as exc:  # some architectures specialise on the batch size; a static program still loads
        logger.info("dynamic-batch torch.export failed (%s); exporting with a static batch", exc)
        program = torch.export.export(model, (example_input,))
        note = f"static batch {example_input.shape[0]}"
    torch.export.save(program, str(path))
    return note


def _is_our_export(folder: Path) -> bool:
    """True when ``folder`` holds only files an export writes and its metrics.json carries our marker."""
    names = {p.name for p in folder.iterdir()}
    if not names <= set(export_files()) or "metrics.json" not in names:
        return False
    try:
        return bool(json.loads((folder / "metrics.json").read_text()).get(_MARKER))
    except (OSError, ValueError):
        return False


def _check_destination(final: Path) -> None:
    if final.exists() and (not final.is_dir() or not _is_our_export(final)):
        raise ConfigError(
            f"export destination {str(final)!r} already exists and was not written by an autocompress "
            "export; nothing was changed — choose a new folder (or remove it yourself)"
        )


def _confirmed(choice: Choice, *, workload: Workload, reference: Reference, config: SearchConfig) -> Choice:
    """``choice`` with its fresh-process figures (taken now when the search could not), and no longer called feasible
    when that figure is over the budget."""
    record = choice.record
    if record.artifact is not None and (choice.confirmed is None or choice.confirmed_reference is None):
        # Not confirmed by the search (the API's export of an older result, or the fresh process failed then).
        searched = record.artifact_in(config.study_dir)
        assert searched is not None
        chosen, teacher = remeasure_fresh(
            searched,
            reference.artifact,
            workload.input_shape,
            threads=config.threads,
            batch_size=config.batch_size,
            protocol=config.protocol.longer(2.5),
        )
        choice = dataclasses.replace(choice, confirmed=chosen, confirmed_reference=teacher)
    if choice.feasible and choice.confirmed is not None and choice.confirmed.median_ms > record.budget_ms:
        choice = dataclasses.replace(
            choice,
            feasible=False,
            reason=(
                f"feasible in the search but {choice.confirmed.median_ms:.3f} ms when re-measured at export, over the "
                f"{record.budget_ms:.3f} ms budget"
            ),
            suggested_budget_ms=suggested_budget_ms(choice.confirmed.median_ms),
        )
    return choice


def _replace_folder(final: Path, tmp: Path) -> None:
    """Put the finished ``tmp`` folder at ``final``; an earlier export there is removed only once the new one is in
    place."""
    if not final.exists():
        tmp.rename(final)
        return
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old)


def export_chosen(
    choice: Choice, *, workload: Workload, reference: Reference, config: SearchConfig, destination: Path | None = None
) -> Path:
    """Write the model folder for ``choice`` and return its path.

    Default destination: ``<study>/chosen/`` for a feasible choice, ``<study>/over_budget/`` otherwise. The folder is
    built under a temporary name and renamed at the end, so an interrupted export never leaves a half-written folder.
    An existing destination is replaced only if it is an earlier export (our four files, our marker); anything else
    is refused with a ConfigError and left untouched.
    """
    record = choice.record
    choice = _confirmed(choice, workload=workload, reference=reference, config=config)
    default_name = "chosen" if choice.feasible else "over_budget"
    final = Path(destination) if destination is not None else config.study_dir / default_name
    _check_destination(final)
    if record.artifact is None or record.policy is None:
        raise ConfigError(f"trial {record.number} has no artifact to export; choose a complete trial")
    artifact = record.artifact_in(config.study_dir)
    assert artifact is not None
    trial_dir = artifact.path.parent
    x = workload.example_input()
    # Rebuild the structure from the policy, then load the trial's weights (a plain-array .npz, never a pickle).
    student = prune_model(workload.model, record.policy.prune, x, num_classes=workload.num_classes)
    load_weights(student, trial_dir / WEIGHTS_FILE)

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        # An IR's .xml finds its weights by its own stem: .xml and .bin renamed together stay a pair.
        names = get_runtime(artifact.runtime).export_names
        for source, name in zip(artifact.all_files, names):
            shutil.copyfile(source, tmp / name)
        program_note = _export_program(student, x, tmp / "model.pt2")
        (tmp / "policy.json").write_text(record.policy.to_json())
        shipped = Artifact(
            tmp / names[0], artifact.quant, runtime=artifact.runtime, files=tuple(tmp / name for name in names)
        )
        metrics = _metrics(choice, workload=workload, reference=reference, config=config, shipped=shipped)
        metrics["model"]["pt2"] = program_note
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _replace_folder(final, tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise WorkloadError(
                f"cannot write the exported model to {final.parent} ({exc.strerror or exc}); nothing was "
                "written there — free some space or pass another --output, then rerun the same command "
                "(the study resumes and only exports)"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _metrics(
    choice: Choice, *, workload: Workload, reference: Reference, config: SearchConfig, shipped: Artifact
) -> dict[str, Any]:
    """Everything ``metrics.json`` says about the shipped model: accuracy, latency, size, and where it was measured."""
    record = choice.record
    # The shipped figures: the chosen artifact and the teacher's, re-measured side by side in a fresh process with a
    # longer protocol (study.confirm_choice); measured here, the same way, only if that re-measurement was not possible.
    protocol = config.protocol.longer(2.5)
    assert choice.confirmed is not None and choice.confirmed_reference is not None
    teacher_torch = measure_torch(
        workload.model,
        workload.input_shape,
        threads=config.threads,
        batch_size=config.batch_size,
        warmup=config.warmup,
        repeats=config.repeats,
        protocol=protocol,
    )
    return {
        _MARKER: True,
        "trial": record.number,
        "feasible": choice.feasible,
        "status": "chosen" if choice.feasible else "over budget: fastest model within the accuracy limit",
        "choice_reason": choice.reason,
        "prefer": choice.prefer,
        "policy_summary": record.summary,
        "accuracy": _accuracy_metrics(record, workload=workload, reference=reference, config=config, shipped=shipped),
        "latency": _latency_metrics(
            choice,
            chosen=choice.confirmed,
            teacher_fp32=choice.confirmed_reference,
            teacher_torch=teacher_torch,
            reference=reference,
            protocol=protocol,
        ),
        "model": _model_metrics(record, workload=workload, reference=reference, shipped=shipped),
        "workload": workload.info,
        "machine": machine_fingerprint(),
        "record": record.to_dict(),
    }


def _accuracy_metrics(
    record: TrialRecord, *, workload: Workload, reference: Reference, config: SearchConfig, shipped: Artifact
) -> dict[str, Any]:
    """The shipped artifact's test accuracy beside the teacher's (its artifact and its torch model), and the val
    figures of the search."""
    runtime = get_runtime(shipped.runtime)
    scoring = scoring_threads(workers=config.workers)
    test = evaluate_artifact(runtime, shipped, workload.test, threads=scoring)
    teacher_runtime = get_runtime(reference.artifact.runtime)  # --runtime auto: the yardstick's, maybe another
    teacher_test = evaluate_artifact(teacher_runtime, reference.artifact, workload.test, threads=scoring)
    teacher_torch_test = evaluate_torch(workload.model, workload.test)
    paired = paired_drop(test, teacher_test)
    low, high = paired.interval_pt
    return {
        "val_top1": record.accuracy,
        "test_top1": test.top1,
        "test_top5": test.top5,
        "teacher_val_top1": reference.val_accuracy,
        "teacher_test_top1": teacher_test.top1,
        "teacher_torch_test_top1": teacher_torch_test.top1,
        "test_drop_pt": (teacher_test.top1 - test.top1) * 100,
        # The drop is a paired difference on the same images: its 95 % interval, and whether it reaches past the
        # limit (then the limit is not a promise on new data of this kind: more val/test images would resolve it).
        "test_drop_interval_pt": [low, high],
        "test_paired": {"worse": paired.worse, "better": paired.better},
        "test_drop_may_exceed_limit": high > config.max_accuracy_drop,
        "val_drop_pt": record.accuracy_drop_pt,
        "val_drop_interval_pt": list(record.drop_interval_pt) if record.drop_interval_pt else None,
        "max_drop_pt": config.max_accuracy_drop,
        "n_val": len(workload.val),  # type: ignore[arg-type]
        "n_test": test.n,
        "measured_on": f"{shipped.path.name} with {shipped.runtime}",
    }


def _latency_metrics(
    choice: Choice,
    *,
    chosen: Latency,
    teacher_fp32: Latency,
    teacher_torch: Latency,
    reference: Reference,
    protocol: Protocol,
) -> dict[str, Any]:
    """The confirmed latencies against the teacher's, the search's figure and the budget."""
    record = choice.record
    search = record.latency
    return {
        "chosen_ms": chosen.to_dict(),
        "teacher_torch_fp32_ms": teacher_torch.to_dict(),
        "runtime": dict(reference.target),
        "teacher_fp32_ms": teacher_fp32.to_dict(),
        "speedup_vs_teacher_torch": teacher_torch.median_ms / chosen.median_ms,
        "speedup_vs_teacher_fp32": teacher_fp32.median_ms / chosen.median_ms,
        "during_search_ms": record.latency_ms,
        "during_search_interval_ms": [search.low, search.high] if search else None,
        "inside_search_interval": bool(search and search.low <= chosen.median_ms <= search.high),
        "measured": "fresh process, side by side with the teacher",
        "protocol": protocol.to_dict(),
        "budget_ms": reference.budget_ms,
        "within_budget": chosen.median_ms <= reference.budget_ms,
        "overshoot_ms": max(0.0, chosen.median_ms - reference.budget_ms),
        "suggested_budget_ms": choice.suggested_budget_ms,
        "suggested_budget_x": (
            choice.suggested_budget_ms / reference.runtime_latency.median_ms if choice.suggested_budget_ms else None
        ),
    }


def _model_metrics(
    record: TrialRecord, *, workload: Workload, reference: Reference, shipped: Artifact
) -> dict[str, Any]:
    """Size and shape of the shipped model beside the teacher's, and how it was compressed."""
    return {
        "params": record.params,
        "macs": record.macs,
        "teacher_params": reference.params,
        "teacher_macs": reference.macs,
        "artifact_size_mb": shipped.size_mb,
        "precision": dict(record.precision) if record.precision is not None else None,
        "input_shape": list(workload.input_shape),
        "num_classes": workload.num_classes,
        "int8_kernel": record.policy.quant.kernel if record.policy else None,
        "finetuned": record.finetuned,
    }

"""One trial: ``policy → prune → build artifact → latency gate → distill → build → measure`` → one :class:`TrialRecord`.

:class:`Objective` is the Optuna side (sample the policy, write the record, tell Optuna the outcome) and is the same for
every evaluator; :class:`TrialRunner` is the real evaluator. Tests plug a synthetic evaluator into the same
:class:`Objective`, so the sampler, the space and the constraints are tested exactly as the search runs them.

A trial whose pruned artifact is already over the latency budget stops before fine-tuning (fine-tuning cannot change
the architecture). Its Optuna state is PRUNED, with the latency constraint set and the accuracy not charged: the
accuracy of a model that was never fine-tuned is not the policy's accuracy and must not steer the search. Unpruned
policies (fp32, int8-only) have nothing to fine-tune, so their measured accuracy is final and they always complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from autocompress.compress.distill import TeacherLogits, distill
from autocompress.compress.prune import PrunableGroup, PruningGraph, count_macs_params, sparsify_model, weight_sparsity
from autocompress.compress.training import training_setup
from autocompress.config import SearchConfig
from autocompress.hardware.cpu import Int8Kernel
from autocompress.measure.accuracy import Accuracy, PairedDrop, evaluate, evaluate_torch, paired_drop, scoring_threads
from autocompress.measure.guard import core_guard
from autocompress.measure.latency import Latency, LatencyCache, Meter, combine, structure_key
from autocompress.measure.model import LatencyModel, MacsEstimator, Prediction, precision_key
from autocompress.policy import Policy, PrunePolicy
from autocompress.runtimes import Artifact, Runtime, get_runtime
from autocompress.scale.workers import owner
from autocompress.sources.weights import load_weights, save_weights
from autocompress.sources.workload import Workload
from autocompress.study.halving import RUNGS_ATTR, RungFigure, decide, rung_population, rung_steps
from autocompress.study.record import WEIGHTS_FROM_ATTR, TrialRecord, artifact_store, write_record
from autocompress.study.space import QUANT_RULED_OUT_ATTR, SearchSpace

__all__ = [
    "Objective",
    "TrialRunner",
    "StopRequested",
    "ROLE_ATTR",
    "LABEL_ATTR",
    "STEPS_SCALE_ATTR",
    "WEIGHTS_FILE",
    "WEIGHTS_FROM_ATTR",
    "FP32_LAYERS_ATTR",
    "MAX_REMEASURES",
    "MAX_SKIPS_IN_A_ROW",
]

logger = logging.getLogger(__name__)

# User attributes an enqueued trial carries (study.enqueue_trial(..., user_attrs=...)).
ROLE_ATTR = "role"
LABEL_ATTR = "label"
STEPS_SCALE_ATTR = "steps_scale"  # a promoted near miss: the same policy fine-tuned this many times longer
FP32_LAYERS_ATTR = "fp32_layers"  # a refined trial: these groups' root layers stay fp32 (QuantPolicy.fp32_layers)
WEIGHTS_FILE = "student_weights.npz"
MAX_REMEASURES = 2  # extra figures when a figure straddles the budget or lies far from its prediction
MAX_SKIPS_IN_A_ROW = 8  # after this many proposals skipped in a row, the next one is built anyway
_STAGE_SEED = 7919  # a halved trial's later stages draw other batches than its first


class StopRequested(Exception):
    """Ctrl-C was pressed: the trial stops at the next stage boundary and is queued again for the resume."""


def skip_reason(prediction: Prediction | None, budget_ms: float) -> str | None:
    """Why a proposal need not be built (``None``: build it): predicted over the budget.

    See :meth:`Prediction.likely_over`.
    """
    if prediction is None or not prediction.likely_over(budget_ms):
        return None
    bound = (
        f"at least {prediction.low_ms:.3f}"
        if prediction.over(budget_ms)
        else f"interval {prediction.low_ms:.3f}-{prediction.high_ms:.3f}"
    )
    return (
        f"predicted over the latency budget before anything was built ({prediction.ms:.3f} ms, {bound}; "
        f"budget {budget_ms:.3f} ms)"
    )


def _noted(trial: optuna.Trial, record: TrialRecord) -> TrialRecord:
    """``record`` with what sampling and enqueuing decided for it: why its precision was not sampled, when it was
    not, and the source trial of a refined one (whatever evaluator built it, so the choice can judge it)."""
    ruled_out = trial.user_attrs.get(QUANT_RULED_OUT_ATTR)
    if ruled_out:
        record = dataclasses.replace(record, quant_ruled_out=str(ruled_out))
    weights_from = trial.user_attrs.get(WEIGHTS_FROM_ATTR)
    if weights_from is not None:
        record = dataclasses.replace(record, weights_from=int(weights_from))
    return record


class Objective:
    """The Optuna objective shared by every evaluator: ``trial → (accuracy, latency_ms)``.

    Subclasses implement :meth:`evaluate`, which turns a policy into a :class:`TrialRecord` without knowing Optuna.
    """

    def __init__(
        self,
        space: SearchSpace,
        groups: list[PrunableGroup],
        *,
        int8_kernel: Int8Kernel | None,
        study_dir: Path | None = None,
    ) -> None:
        self.space = space
        self.groups = groups
        self.int8_kernel = int8_kernel
        self.study_dir = study_dir
        self.stop_requested = False  # set by the search's SIGINT handler; checked between stages
        self.on_stage: Callable[[str], None] = lambda text: None  # live progress (the CLI's bar)
        self.train_size: int | None = None  # resolves KD epochs into steps (SearchSpace.suggest)
        self.skips_in_a_row = 0
        self.on_trial_start: Callable[[optuna.Trial], None] = lambda trial: None  # binds the study's trial slot
        # The trial being evaluated (its rung figures are written to it, the study's other rungs read through it).
        self.current_trial: optuna.Trial | None = None

    def check_stop(self, stage: str) -> None:
        """Raise :class:`StopRequested` after ``stage`` if Ctrl-C was pressed."""
        if self.stop_requested:
            raise StopRequested(
                f"interrupted: Ctrl-C after the {stage} stage; this policy is queued again for the resume"
            )

    def evaluate(
        self, policy: Policy, *, number: int, role: str, label: str, weights_from: int | None = None
    ) -> TrialRecord:
        """``policy`` built, measured and scored (``weights_from``: deploy that trial's fine-tuned weights instead of
        fine-tuning; the structure is the same)."""
        raise NotImplementedError

    def sync_latency_model(self, records: Sequence[TrialRecord]) -> int:
        """Learn what other processes measured on this study; the base class has no latency model."""
        return 0

    def failed_record(self, policy: Policy | None, *, number: int, role: str, label: str, reason: str) -> TrialRecord:
        raise NotImplementedError

    def skip_record(self, policy: Policy, *, number: int, role: str, label: str) -> TrialRecord | None:
        """A ``skipped`` record when ``policy`` need not be built (predicted over the budget); ``None`` to build it.

        The base class never skips; :class:`TrialRunner` asks its latency model.
        """
        return None

    def quantized_ruled_out(self, prune: PrunePolicy, runtime: str | None = None) -> str | None:
        """Why no quantized precision is worth sampling for ``prune``'s structure on ``runtime`` (``None``: the
        study's one runtime); ``None``: sample the precision.

        The base class never rules one out; :class:`TrialRunner` asks its latency model.
        """
        return None

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        from autocompress.study.resume import OWNER_ATTR, owner_attrs

        trial.set_user_attr(OWNER_ATTR, owner_attrs())  # so a resume can tell a killed trial from a running one
        self.on_trial_start(trial)
        role = str(trial.user_attrs.get(ROLE_ATTR, "sampled"))
        label = str(trial.user_attrs.get(LABEL_ATTR, ""))
        policy: Policy | None = None
        try:
            # Only a sampled trial's precision is the sampler's to choose; an enqueued one keeps its parameters.
            policy = self.space.suggest(
                trial,
                self.groups,
                int8_kernel=self.int8_kernel,
                train_size=self.train_size,
                quantize_unless=self.quantized_ruled_out if role == "sampled" else None,
            )
            scale = int(trial.user_attrs.get(STEPS_SCALE_ATTR, 1))
            if scale > 1:
                policy = dataclasses.replace(
                    policy, distill=dataclasses.replace(policy.distill, steps=policy.distill.steps * scale)
                )
            fp32_layers = trial.user_attrs.get(FP32_LAYERS_ATTR)
            if fp32_layers is not None:  # a refined trial: the same policy with these layers in fp32
                policy = dataclasses.replace(
                    policy,
                    quant=dataclasses.replace(
                        policy.quant, fp32_layers=tuple(sorted(set(policy.quant.fp32_layers) | set(fp32_layers)))
                    ),
                )
            weights_from = trial.user_attrs.get(WEIGHTS_FROM_ATTR)
            skipped = self.skip_record(policy, number=trial.number, role=role, label=label)
            if skipped is not None and self.skips_in_a_row < MAX_SKIPS_IN_A_ROW:
                self.skips_in_a_row += 1
                write_record(trial, _noted(trial, skipped))
                raise optuna.TrialPruned(skipped.stopped_reason)
            self.skips_in_a_row = 0
            self.current_trial = trial
            # weights_from only when set: evaluators written before refinement (tests' synthetic ones) lack the keyword
            record = _noted(
                trial,
                self.evaluate(
                    policy,
                    number=trial.number,
                    role=role,
                    label=label,
                    **({} if weights_from is None else {"weights_from": int(weights_from)}),
                ),
            )
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            reason = (str(exc) if isinstance(exc, StopRequested) else f"{type(exc).__name__}: {exc}")[:2000]
            failed = self.failed_record(policy, number=trial.number, role=role, label=label, reason=reason)
            write_record(trial, _noted(trial, failed))
            trial.set_user_attr("fail_traceback", traceback.format_exc()[-4000:])
            raise
        finally:
            self.current_trial = None
        write_record(trial, record)
        self._upload(trial, record)
        if record.outcome == "stopped":
            raise optuna.TrialPruned(record.stopped_reason)
        assert record.accuracy is not None and record.latency_ms is not None
        return record.accuracy, record.latency_ms

    def _upload(self, trial: optuna.Trial, record: TrialRecord) -> None:
        """Put the trial's artifact and policy in the study's artifact store (downloadable in optuna-dashboard)."""
        artifact = record.artifact_in(self.study_dir) if self.study_dir is not None else None
        if artifact is None:
            return
        store = artifact_store(self.study_dir)  # type: ignore[arg-type]
        policy_file = artifact.path.parent / "policy.json"
        policy_file.write_text(json.dumps(record.policy.to_dict() if record.policy else {}, indent=2, sort_keys=True))
        for path in (*artifact.all_files, policy_file):
            if path.is_file():
                optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


class TrialRunner(Objective):
    """The real evaluator: builds, measures and scores one policy on ``workload``.

    Latency comes from ``meter`` (side by side with the teacher artifact, :class:`LatencyMeter`); every figure feeds
    ``latency_model``, which predicts proposals before they are built. No process-global state: the same runner can
    later run in several worker processes on one shared storage.
    """

    def __init__(
        self,
        workload: Workload,
        space: SearchSpace,
        config: SearchConfig,
        *,
        budget_ms: float,
        teacher_accuracy: float,
        teacher_val_correct: np.ndarray | None = None,
        groups: list[PrunableGroup],
        int8_kernel: Int8Kernel,
        fingerprint: Mapping[str, Any],
        meter: Meter,
        cache: LatencyCache | None = None,
        latency_model: LatencyModel | None = None,
        runtime: Runtime | None = None,
        runtimes: Sequence[Runtime] = (),
        target: Mapping[str, Any] | None = None,
        device: torch.device | str = "cpu",
        scorer: Callable[[Artifact], tuple[float, dict[str, int]]] | None = None,
        pruning: PruningGraph | None = None,
    ) -> None:
        super().__init__(space, groups, int8_kernel=int8_kernel, study_dir=config.study_dir)
        self.workload = workload
        # The teacher's dependency graph, traced once (by the session, which also took the groups from it): every
        # trial's structure is pruned from a copy of it.
        self.pruning = pruning or PruningGraph(
            workload.model, workload.example_input(), num_classes=workload.num_classes
        )
        self.config = config
        self.budget_ms = budget_ms
        # False when the probe found the budget out of reach: no trial is stopped or skipped for it, and the samplers
        # see the accuracy limit as the only constraint (record.constraint_values); set by the study's set-up.
        self.budget_reachable = True
        self.teacher_accuracy = teacher_accuracy
        self.teacher_val_correct = teacher_val_correct  # the teacher artifact's per-image val results: paired drops
        self.fingerprint = dict(fingerprint)
        self.meter = meter
        self.scorer = scorer  # a build host's: the target scores (autocompress.scale.remote); None: scored here
        self.runtime = runtime or get_runtime(config.runtime)  # the reference's (the budget's yardstick)
        # --runtime auto: every searched runtime by name; a policy's ``runtime`` picks its builder and runner
        self.runtimes = {rt.name: rt for rt in (self.runtime, *runtimes)}
        self.target = dict(target or {"runtime": self.runtime.name, "version": self.runtime.version()})
        self.cache = cache or LatencyCache()
        self.latency_model = latency_model or LatencyModel()
        self.macs = MacsEstimator(workload.model, groups, workload.example_input())
        self.train_size = len(workload.train)  # type: ignore[arg-type]
        self.device = torch.device(device)
        self.cores = core_guard()
        # Filled as KD steps draw train images (trials that stop early never need them).
        self.teacher_logits = TeacherLogits(workload.model, self.train_size)
        self._rung_teacher: Accuracy | None = None  # the PyTorch teacher's val accuracy, the rungs' reference

    # ------------------------------------------------------------------ building blocks (also used by the probe)
    def runtime_named(self, name: str | None) -> Runtime:
        """The runtime ``name`` (a policy's or an artifact's); ``None``: the study's one runtime."""
        if name is None:
            return self.runtime
        return self.runtimes.get(name) or self.runtimes.setdefault(name, get_runtime(name))

    def build(
        self, policy: Policy, workdir: Path, *, weights_from: int | None = None, student: nn.Module | None = None
    ) -> tuple[nn.Module, Artifact]:
        """The pruned (not fine-tuned) model and its artifact for the policy's runtime in ``workdir``; with
        ``weights_from``, the pruned structure carries that trial's fine-tuned weights (same structure: its policy's
        pruning). ``student``: the model ``policy.prune`` already built (the probe deploys one pruned level in every
        precision; pruning a large model takes seconds), used as it is."""
        x = self.workload.example_input()
        with self.cores.heavy():
            if student is None:
                student = self.pruning.prune(policy.prune)
            if weights_from is not None:
                load_weights(student, self.config.study_dir / "trials" / f"{weights_from:05d}" / WEIGHTS_FILE)
            artifact = self.runtime_named(policy.runtime).build(
                student,
                policy.quant,
                example_input=x,
                calibration=self.workload.train,
                workdir=workdir,
                seed=self.config.seed,
            )
        return student, artifact

    def time(
        self, model: nn.Module, artifact: Artifact, *, decide: bool = False, expected_ms: float | None = None
    ) -> tuple[Latency, bool, int]:
        """Latency of ``artifact``, whether it was reused, and how many extra figures were taken: the one cache rule
        (a figure of the same structure and precision holds for every later trial of it). ``decide``: a figure taken
        now is measured again while it straddles the budget or lies far from ``expected_ms`` (:meth:`decide`; the
        gate before fine-tuning), not only once (the probe)."""
        key = self._structure_key(model, artifact)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True, 0
        if decide:
            latency, extra = self.time_artifact(artifact, expected_ms=expected_ms)
        else:
            latency, extra = self.meter.measure(artifact), 0
        self.cache.put(key, latency)
        return latency, False, extra

    # ------------------------------------------------------------------ the measure step (the target's side)
    # A trial is build steps (prune, distill, runtime.build: any device) and measure steps (these two: the target CPU
    # and runtime). The measure steps need only the artifact's files, this study's meter and the val split, so they
    # can run where the model is deployed, on an artifact another host built (``TrialRecord.artifact_in``).
    def time_artifact(
        self, artifact: Artifact, *, prior: Latency | None = None, expected_ms: float | None = None
    ) -> tuple[Latency, int]:
        """Latency of ``artifact`` on the target, side by side with the teacher, pooled with ``prior`` (blocks of
        the same structure and precision) and measured again while it straddles the budget or lies far from
        ``expected_ms`` (:meth:`decide`); returns the figure and how many extra figures were taken."""
        latency = self.meter.measure(artifact)
        if prior is not None:
            latency = combine(latency, prior)
        return self.decide(latency, artifact, expected_ms=expected_ms)

    def score_artifact(self, artifact: Artifact) -> tuple[float, dict[str, int]]:
        """Val top-1 of ``artifact`` on the target runtime, and the precision each layer ran in (read back)."""
        top1, precision, _ = self.score_paired(artifact)
        return top1, precision

    def score_paired(self, artifact: Artifact) -> tuple[float, dict[str, int], PairedDrop | None]:
        """:meth:`score_artifact`, and the drop against the teacher from the paired predictions on the same val images
        (``None`` where a remote target scored it, or the teacher's per-image results are unknown)."""
        if self.scorer is not None:
            top1, precision = self.scorer(artifact)
            return top1, precision, None
        with self.cores.heavy():
            runtime = self.runtime_named(artifact.runtime)
            scorer = runtime.runner(artifact, threads=scoring_threads(workers=self.config.workers))
            scored = evaluate(scorer, self.workload.val)
            teacher = self.teacher_val_correct
            paired = paired_drop(scored, teacher) if teacher is not None and scored.n == len(teacher) else None
            return scored.top1, scorer.precision(), paired

    def _structure_key(self, model: nn.Module, artifact: Artifact) -> str:
        cfg, q = self.config, artifact.quant
        return structure_key(
            model, artifact.runtime, q.mode, q.granularity, q.kernel, q.fp32_layers, cfg.threads, cfg.batch_size
        )

    def decide(self, latency: Latency, artifact: Artifact, *, expected_ms: float | None) -> tuple[Latency, int]:
        """Measure ``artifact`` again (at most :data:`MAX_REMEASURES` times, pooling the blocks) while its interval
        straddles the budget, or once when it lies far from the latency model's prediction ``expected_ms``.

        Returns the pooled figure and how many extra figures were taken. Tiny example: budget 0.50 ms, figure 0.49
        [0.475, 0.53] straddles → measured again, pooled 0.48 [0.466, 0.497] is within with confidence.
        """
        extra = 0
        far = (
            expected_ms is not None
            and abs(latency.median_ms - expected_ms) > 2 * self.latency_model.width * expected_ms
        )
        while extra < MAX_REMEASURES and (latency.straddles(self.gate_budget_ms) or (far and extra == 0)):
            latency = combine(latency, self.meter.measure(artifact))
            extra += 1
        return latency, extra

    @property
    def gate_budget_ms(self) -> float:
        """The budget the gate, the skip and the re-measurement decide against: the study's, or none (infinity) when
        it is out of reach, since every structure breaks it and only fine-tuning tells which keep the accuracy."""
        return self.budget_ms if self.budget_reachable else math.inf

    def predict(self, policy: Policy) -> tuple[int, Any]:
        """``(estimated MACs, Prediction or None)`` of ``policy`` before anything is built."""
        return self.latency_model.predict_policy(policy, self.macs)

    def learn(self, policy: Policy, macs: int, latency: Latency, *, trial: int | None = None) -> None:
        self.latency_model.add(precision_key(policy.quant, policy.runtime), macs, latency.median_ms, trial=trial)

    def sync_latency_model(self, records: Sequence[TrialRecord]) -> int:
        """Learn the gate figures other processes measured on this study (``--workers``); returns how many."""
        added = 0
        for r in records:
            gate = r.latency_before_finetune or r.latency
            if (
                r.policy is None
                or gate is None
                or r.macs_estimate is None
                or r.number in self.latency_model.trials
                or r.outcome not in ("complete", "stopped")
            ):
                continue
            self.learn(r.policy, r.macs_estimate, gate, trial=r.number)
            added += 1
        return added

    def _base(self, policy: Policy | None, *, number: int, role: str, label: str) -> dict[str, Any]:
        stages = {
            "finetune": training_setup(self.device),
            "measure": f"{policy.runtime if policy and policy.runtime else self.target.get('runtime')} on "
            f"{self.target.get('cpu')}",
            "worker": owner(),
        }
        return {
            "number": number,
            "policy": policy,
            "role": role,
            "label": label,
            "budget_ms": self.budget_ms,
            "budget_reachable": self.budget_reachable,
            "max_drop_pt": self.config.max_accuracy_drop,
            "teacher_accuracy": self.teacher_accuracy,
            "fingerprint": self.fingerprint,
            "target": self.target,
            "stages": stages,
        }

    def _measured_stages(self, base: dict[str, Any]) -> dict[str, Any]:
        """``base`` with the host that measured the trial (a build host's remote meter: the measure worker that
        answered; read when the trial's figures are in)."""
        measured_by = self.meter.measured_by
        return {**base, "stages": {**base["stages"], "measured_by": measured_by}} if measured_by else base

    def failed_record(self, policy: Policy | None, *, number: int, role: str, label: str, reason: str) -> TrialRecord:
        return TrialRecord(
            outcome="failed", fail_reason=reason, **self._base(policy, number=number, role=role, label=label)
        )

    def skip_record(self, policy: Policy, *, number: int, role: str, label: str) -> TrialRecord | None:
        """A ``skipped`` record for a sampled, pruned proposal :func:`skip_reason` rules out; ``None`` to build it."""
        if role != "sampled" or policy.prune.is_identity:
            return None
        macs, prediction = self.predict(policy)
        reason = skip_reason(prediction, self.gate_budget_ms)
        if reason is None or prediction is None:
            return None
        return TrialRecord(
            outcome="skipped",
            predicted=prediction.to_dict(),
            macs_estimate=macs,
            timings={"total_s": 0.0},
            stopped_reason=reason,
            **self._base(policy, number=number, role=role, label=label),
        )

    def quantized_ruled_out(self, prune: PrunePolicy, runtime: str | None = None) -> str | None:
        """Why no quantized precision is worth sampling for this structure on ``runtime``.

        See :meth:`LatencyModel.quantized_ruled_out`.
        """
        if prune.is_identity:
            return None
        modes, macs = self.space.modes_of(runtime), self.macs.estimate(prune)
        return self.latency_model.quantized_ruled_out(modes, macs, runtime=runtime)

    # ------------------------------------------------------------------ one trial
    def _finetune(
        self,
        student: nn.Module,
        policy: Policy,
        *,
        number: int,
        workdir: Path,
        timings: dict[str, float],
        halve_at_ms: float | None = None,
    ) -> tuple[nn.Module, Artifact, tuple[float, float], Policy, list[RungFigure]]:
        """Distil ``student`` from the teacher's logits (on the fine-tuning device), re-apply the policy's sparsity,
        and build its artifact again; returns the student, the artifact, the KD loss (first, last), the policy with
        the KD steps it got, and its rung figures.

        ``halve_at_ms``: the structure's latency, when the space halves this trial's fine-tuning
        (:mod:`autocompress.study.halving`): it may stop at a rung, with fewer steps than the policy asked for."""
        cfg, wl = self.config, self.workload
        total = policy.distill.steps
        halving = self.space.halving if halve_at_ms is not None else None
        ends = [*rung_steps(total, halving), total] if halving else [total]
        done, seconds, figures = 0, 0.0, []
        first_loss: float | None = None
        for rung, end in enumerate(ends):
            stage = dataclasses.replace(policy.distill, steps=end - done)
            self.on_stage(f"trial {number}: fine-tuning ({done}-{end} of {total} KD steps)")
            with self.cores.heavy():
                result = distill(
                    student,
                    self.teacher_logits,
                    wl.train,
                    stage,
                    seed=cfg.seed + number + _STAGE_SEED * rung,
                    device=self.device,
                    augment=self.space.augment,
                )
            seconds += result.seconds
            first_loss = result.first_loss if first_loss is None else first_loss
            done = end
            self.check_stop("fine-tuning")
            if end == total:
                break
            assert halve_at_ms is not None
            t = time.perf_counter()
            figure = self._rung(student, rung=rung, steps=end, latency_ms=halve_at_ms, number=number)
            seconds += time.perf_counter() - t
            figures.append(figure)
            if not figure.went_on:
                break
        timings["distill_s"] = seconds
        policy = dataclasses.replace(policy, distill=dataclasses.replace(policy.distill, steps=done))
        if policy.prune.sparsity > 0:
            # Fine-tuning moves the zeroed weights again: re-apply the magnitude mask so the shipped model has
            # exactly the sparsity the policy asked for (prune → fine-tune → prune).
            student = sparsify_model(student, sparsity=policy.prune.sparsity, num_classes=wl.num_classes)
        t = time.perf_counter()
        with self.cores.heavy():
            artifact = self.runtime_named(policy.runtime).build(
                student,
                policy.quant,
                example_input=wl.example_input(),
                calibration=wl.train,
                workdir=workdir,
                seed=cfg.seed,
            )
        timings["deploy_s"] = time.perf_counter() - t
        assert first_loss is not None
        return student, artifact, (first_loss, result.last_loss), policy, figures

    def _rung(self, student: nn.Module, *, rung: int, steps: int, latency_ms: float, number: int) -> RungFigure:
        """The student's val drop at ``rung`` (PyTorch, on the fine-tuning device) and whether it goes on, against
        the study's other trials at the same rung; the figure is written to the trial at once (other workers read it).
        """
        self.on_stage(f"trial {number}: rung {rung + 1} of the halving (val drop after {steps} KD steps)")
        with self.cores.heavy():
            if self._rung_teacher is None:
                self._rung_teacher = evaluate_torch(self.workload.model, self.workload.val, device=self.device)
            drop = (self._rung_teacher.top1 - evaluate_torch(student, self.workload.val, device=self.device).top1) * 100
        trial = self.current_trial
        others = trial.study.get_trials(deepcopy=False) if trial is not None else []
        earlier = rung_population(others, rung=rung, exclude=trial.number if trial is not None else -1)
        assert self.space.halving is not None
        figure = RungFigure(rung=rung, steps=steps, drop_pt=round(drop, 4), latency_ms=latency_ms, went_on=True)
        decision = decide(figure, earlier, eta=self.space.halving.eta, limit_pt=self.config.max_accuracy_drop)
        figure = dataclasses.replace(
            figure, went_on=decision.went_on, position=decision.position, population=decision.population
        )
        if trial is not None:
            written = list(trial.user_attrs.get(RUNGS_ATTR) or ())
            trial.set_user_attr(RUNGS_ATTR, [*written, figure.to_dict()])
        logger.info("trial %d rung %d: drop %.2f pt after %d steps; %s", number, rung, drop, steps, decision.reason)
        return figure

    def _fresh_workdir(self, number: int) -> Path:
        """Trial ``number``'s folder, emptied: files an earlier run left under the same number must not end up beside
        this trial's artifact."""
        workdir = self.config.study_dir / "trials" / f"{number:05d}"
        if workdir.exists():
            shutil.rmtree(workdir)
        return workdir

    def _gate(
        self,
        student: nn.Module,
        artifact: Artifact,
        policy: Policy,
        macs_estimate: int,
        prediction: Prediction | None,
        *,
        number: int,
        timings: dict[str, float],
    ) -> tuple[Latency, bool, int]:
        """The latency gate before fine-tuning: the pruned artifact's latency (measured again while it straddles the
        budget or lies far from the prediction), whether it came from the cache, and how many extra figures it took.
        A new figure teaches the latency model (at ``macs_estimate``, the policy's estimated MACs)."""
        t = time.perf_counter()
        self.on_stage(f"trial {number}: latency gate")
        gate, cache_hit, remeasured = self.time(
            student, artifact, decide=True, expected_ms=prediction.ms if prediction else None
        )
        if not cache_hit:
            self.learn(policy, macs_estimate, gate, trial=number)
        timings["latency_s"] = time.perf_counter() - t
        return gate, cache_hit, remeasured

    def _stopped_record(
        self, gate: Latency, artifact: Artifact, *, timings: dict[str, float], remeasured: int, fields: dict[str, Any]
    ) -> TrialRecord:
        """The ``stopped`` record of a pruned artifact over the budget at its gate: not fine-tuned (fine-tuning cannot
        change the architecture), its gate figure as its latency; ``fields``: the rest of the trial's record (base,
        sizes, prediction)."""
        confidence = "with confidence" if gate.over(self.budget_ms) else "after measuring again"
        return TrialRecord(
            outcome="stopped",
            latency=gate,
            finetuned=False,
            timings=timings,
            remeasured=remeasured,
            stopped_reason=(
                f"over the latency budget before fine-tuning ({gate.median_ms:.3f} > "
                f"{self.budget_ms:.3f} ms, {confidence})"
            ),
            artifact=artifact.path.relative_to(self.config.study_dir).as_posix(),
            size_mb=artifact.size_mb,
            **fields,
        )

    def _time_shipped(
        self, student: nn.Module, artifact: Artifact, gate: Latency, *, number: int, timings: dict[str, float]
    ) -> tuple[Latency, int]:
        """Time the artifact that ships, with the gate's figure as prior, and cache it under its structure; returns
        the latency and how many extra figures it took (its time is added to ``timings["latency_s"]``)."""
        t = time.perf_counter()
        self.on_stage(f"trial {number}: latency of the artifact")
        # The gate timed the same structure at the same precision (latency does not depend on the weights): its
        # blocks are evidence too, and noise only adds time. Measured: prune 45 % int8 read 0.547 ms at its gate
        # and 0.641 ms [0.622, 0.895] after fine-tuning, in a slow phase, against a 0.568 ms budget.
        latency, more = self.time_artifact(artifact, prior=gate, expected_ms=gate.median_ms)
        self.cache.put(self._structure_key(student, artifact), latency)
        timings["latency_s"] += time.perf_counter() - t
        return latency, more

    def evaluate(
        self, policy: Policy, *, number: int, role: str, label: str, weights_from: int | None = None
    ) -> TrialRecord:
        cfg, wl = self.config, self.workload
        started = time.perf_counter()
        workdir = self._fresh_workdir(number)
        timings: dict[str, float] = {}
        base = self._base(policy, number=number, role=role, label=label)
        macs_estimate, prediction = self.predict(policy)
        extra = {"predicted": prediction.to_dict() if prediction else None, "macs_estimate": macs_estimate}

        t = time.perf_counter()
        self.on_stage(f"trial {number}: prune + export ({policy.describe()})")
        student, artifact = self.build(policy, workdir, weights_from=weights_from)
        macs, params = count_macs_params(student, wl.example_input())
        timings["build_s"] = time.perf_counter() - t
        self.check_stop("prune and deploy")
        gate, cache_hit, remeasured = self._gate(
            student, artifact, policy, macs_estimate, prediction, number=number, timings=timings
        )
        sizes = {"macs": macs, "params": params, "latency_before_finetune": gate}

        # Rescue and promoted trials are fine-tuned although they may be over the budget: nothing met it (rescue), or
        # the structure was already judged within it (a near miss fine-tuned longer).
        over = gate.median_ms > self.gate_budget_ms
        if over and not policy.prune.is_identity and role not in ("rescue", "promoted"):
            timings["total_s"] = time.perf_counter() - started
            fields = {**sizes, **self._measured_stages(base), **extra}
            return self._stopped_record(gate, artifact, timings=timings, remeasured=remeasured, fields=fields)

        self.check_stop("latency gate")
        finetuned, kd_loss, rungs = False, None, []
        latency = gate
        if weights_from is not None:
            finetuned = True  # the weights were fine-tuned in trial ``weights_from``; this one only deploys them again
        elif policy.distill.steps > 0 and not policy.prune.is_identity:
            student, artifact, kd_loss, policy, rungs = self._finetune(
                student,
                policy,
                number=number,
                workdir=workdir,
                timings=timings,
                halve_at_ms=gate.median_ms if role == "sampled" else None,
            )
            base["policy"] = policy  # the KD steps it got: fewer than sampled where it stopped at a rung
            finetuned = True
        if (finetuned and weights_from is None) or cache_hit:  # a refined trial's gate timed the file it ships
            # The objective includes a fresh measurement of the artifact that ships; the gate timed another file
            # (before fine-tuning, or another trial's model of the same structure).
            latency, more = self._time_shipped(student, artifact, gate, number=number, timings=timings)
            remeasured += more
        t = time.perf_counter()
        self.on_stage(f"trial {number}: val accuracy of the artifact")
        accuracy, precision, paired = self.score_paired(artifact)
        timings["evaluate_s"] = time.perf_counter() - t
        save_weights(student, workdir / WEIGHTS_FILE)
        timings["total_s"] = time.perf_counter() - started
        return TrialRecord(
            outcome="complete",
            accuracy=accuracy,
            latency=latency,
            finetuned=finetuned,
            kd_loss=kd_loss,
            weight_sparsity=weight_sparsity(student),
            size_mb=artifact.size_mb,
            timings=timings,
            remeasured=remeasured,
            artifact=artifact.path.relative_to(cfg.study_dir).as_posix(),
            precision=precision,
            accuracy_paired=paired.to_dict() if paired is not None else None,
            rungs=tuple(f.to_dict() for f in rungs),
            **sizes,
            **self._measured_stages(base),
            **extra,
        )

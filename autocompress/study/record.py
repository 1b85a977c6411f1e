"""The typed record of one trial: what it built, measured and decided — written to and read from the study here only.

A :class:`TrialRecord` is stored as one JSON user attribute (:data:`RECORD_KEY`) of the Optuna trial, next to the
constraint values the samplers read. Report, export, the Pareto choice, the dashboard and the benchmarks read it back
with :func:`read_record` / :func:`read_records` instead of reaching into string-keyed attributes.

**Outcomes.** ``complete``: the artifact was measured and scored (fine-tuned when the policy prunes). ``stopped``: the
pruned artifact was already over the latency budget, so nothing was fine-tuned (fine-tuning cannot change the
architecture); the Optuna trial is PRUNED, and the accuracy of a model that was never fine-tuned is *not* the policy's
accuracy, so it is neither recorded as an objective nor charged as a constraint. ``skipped``: the latency model
(:mod:`autocompress.measure.model`) predicted the proposal over the budget (``Prediction.likely_over``), so nothing was
built; the trial is PRUNED with its *predicted* latency as the constraint, so the sampler learns from it like from a
stopped one. ``failed``: an error, with its reason.

**Latency decisions use the interval.** A figure whose interval straddles the budget is measured again (bounded)
before the trial decides; ``within_budget`` is then the figure against the budget, and ``confidently_within`` says
whether the whole interval is below it (the choice prefers those).

**Constraints, and how the samplers rank what breaks them.** Optuna's samplers rank infeasible trials by the sum of
their positive constraint values. ``accuracy = (drop_pt - max_drop_pt) / max(max_drop_pt, 0.1)``; ``latency =
latency_ms / budget_ms - 1`` within the budget (<= 0) and :data:`LATENCY_OVER_BUDGET_OFFSET` (100) plus that overshoot
over it. The offset makes the budget the hard constraint: any trial over the budget ranks behind any trial within it,
whatever its drop (a drop is at most 100 pt, so at most 99 on the accuracy scale). Why: a structure over the budget
cannot be made feasible by fine-tuning, a drop over the limit often can, and the KD parameters of a trial stopped or
skipped over the budget were never used. On one relative scale (session 6) a stopped or skipped trial 5 % over the
budget scored 0.05 and ranked *above* every complete trial 3-80 pt over the accuracy limit, so TPE's "good" set was
made of over-budget structures with meaningless KD settings. Measured (tight, seed 2, Zen 3): 33 of 69 proposals
skipped over the budget, KD steps never learned (most trials 34-67 steps, drops 3-80 pt), 1 feasible of 30. Tiny
example, budget 0.5 ms and max drop 1 pt: a 0.6 ms trial scores 100.2 on latency, a trial within the budget with a
3 pt drop scores 2.0 on accuracy and ranks ahead of it. Feasibility (every value <= 0) is unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from autocompress.measure.latency import Latency
from autocompress.policy import Policy
from autocompress.runtimes import Artifact
from autocompress.scale.storage import set_live_trial_system_attr, set_trial_user_attr

__all__ = [
    "AFTER_SEARCH_ROLES",
    "TrialRecord",
    "RECORD_KEY",
    "CONSTRAINT_NAMES",
    "OUTCOMES",
    "write_record",
    "write_failed_record",
    "counted",
    "INTERRUPTED",
    "read_record",
    "read_records",
    "constraint_values",
    "LATENCY_OVER_BUDGET_OFFSET",
    "artifact_store",
    "ARTIFACTS_DIR",
]

RECORD_KEY = "record"
WEIGHTS_FROM_ATTR = (
    "weights_from"  # a refined trial's user attribute: the trial whose fine-tuned weights it deploys again
)
ARTIFACTS_DIR = "artifacts"  # under the study folder: Optuna's artifact store (each trial's model.onnx, policy.json)
CONSTRAINT_NAMES = ("latency", "accuracy")
OUTCOMES = ("complete", "stopped", "skipped", "failed")
# Trials run after the search, not proposed by it: the rescue (nothing was feasible) and the layer refinement of the
# choice. They do not count towards --trials, nor towards the search's own figures (hypervolume per trial).
AFTER_SEARCH_ROLES = ("rescue", "refined")
# A failed record's reason starts with this when its process ended mid-trial (it is queued again, and not counted).
INTERRUPTED = "interrupted"
_MIN_DROP_SCALE_PT = 0.1  # a max drop of 0 pt still needs a scale: 0.1 pt is one image in a thousand
# Optuna < 5 and optuna-dashboard read feasibility from this system attribute (a list, in CONSTRAINT_NAMES order).
_LEGACY_CONSTRAINTS_KEY = "constraints"


def _latency_from(data: Mapping[str, Any] | None) -> Latency | None:
    return Latency.from_dict(data) if data else None


@dataclass(frozen=True)
class TrialRecord:
    """One trial, as measured.

    Attributes:
        number: the Optuna trial number.
        outcome: ``complete`` | ``stopped`` (over budget before fine-tuning) | ``failed``.
        policy: the compression recipe (``None`` only when the trial failed before sampling it).
        role: ``sampled`` by the sampler, or why it was enqueued: ``baseline``, ``seed`` (the probe structure nearest
            the budget), ``rescue`` (a stopped structure fine-tuned anyway because nothing was feasible), ``promoted``
            (a near miss fine-tuned longer) or ``refined`` (the choice deployed again with some layers in fp32).
        label: a human label for enqueued trials (``fp32 (uncompressed)``, ``rescue of trial 12``), else ``""``.
        budget_ms / max_drop_pt: the constraints this trial was judged against.
        budget_reachable: ``False`` when the probe found the budget below anything the space reaches: the search then
            looks for the fastest model within the accuracy limit, and the samplers see the accuracy limit as the
            only constraint (:func:`constraint_values`); the record is still judged against ``budget_ms``.
        accuracy: val top-1 of the artifact; ``None`` when it is not the policy's accuracy (stopped and pruned).
        accuracy_before_finetune: val top-1 of a stopped, pruned artifact that was never fine-tuned (display only).
        teacher_accuracy: val top-1 of the teacher's fp32 artifact on the study's runtime (the reference of
            ``accuracy_drop_pt``).
        latency: the artifact that ships (after fine-tuning when there was one); ``latency_before_finetune`` is the
            gate measurement taken before fine-tuning.
        finetuned: whether distillation ran.
        stopped_reason / fail_reason: why the trial stopped early or failed.
        macs / params / size_mb / weight_sparsity: of the pruned model and its artifact.
        artifact: the ONNX file, relative to the study folder.
        timings: seconds per stage (``prune_s``, ``deploy_s``, ``latency_s``, ``distill_s``, ``evaluate_s``,
            ``total_s``).
        kd_loss: first and last distillation loss, when fine-tuned.
        fingerprint: host, CPU model, int8 ISA, int8 kernel and library versions of the process that ran the trial.
        predicted: the latency model's prediction before the trial was built (``ms``, ``low_ms``, ``high_ms``).
        remeasured: how many extra figures were taken because the first straddled the budget or lay far from the
            prediction (they are pooled into ``latency``).
        macs_estimate: the MACs the latency model used as its feature (estimated from the policy, not counted).
        target: where the latency was measured: runtime, its version, threads, batch size, CPU model and int8 ISA
            (:func:`autocompress.study.reference.study_target`). The Pareto set and the choice never mix targets.
        precision: the precision each compute layer ran in, read back from the runtime (``{"int8": 14, "fp32": 1}``).
        stages: where each stage ran: ``finetune`` (``cpu`` or ``cuda:0``), ``measure`` (the target CPU) and ``worker``
            (the process: host, pid, uuid); the seconds each took are in ``timings``.
        quant_ruled_out: why the sampler was not offered a quantized precision for this structure (the latency model
            predicted it no faster than fp32, :meth:`~autocompress.measure.model.LatencyModel.quantized_ruled_out`), so
            the trial is fp32; ``None`` when the precision was sampled or enqueued.
        weights_from: a ``refined`` trial: the trial whose fine-tuned weights it deployed again (its *source*, against
            which :func:`autocompress.study.pareto.refinement_helped` judges it); ``None`` otherwise.
        accuracy_paired: the val drop from the discordant pairs against the teacher's artifact
            (:class:`~autocompress.measure.accuracy.PairedDrop` as a dict: ``worse``, ``better``, ``n``, the drop and
            its 95 % interval); ``None`` where it was not scored here (a remote target's figure).
    """

    number: int
    outcome: str
    policy: Policy | None
    budget_ms: float
    max_drop_pt: float
    teacher_accuracy: float
    role: str = "sampled"
    label: str = ""
    accuracy: float | None = None
    accuracy_before_finetune: float | None = None
    latency: Latency | None = None
    latency_before_finetune: Latency | None = None
    finetuned: bool = False
    stopped_reason: str | None = None
    fail_reason: str | None = None
    macs: int | None = None
    params: int | None = None
    size_mb: float | None = None
    weight_sparsity: float | None = None
    artifact: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    kd_loss: tuple[float, float] | None = None
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    predicted: Mapping[str, Any] | None = None
    remeasured: int = 0
    macs_estimate: int | None = None
    target: Mapping[str, Any] = field(default_factory=dict)
    precision: Mapping[str, int] | None = None
    stages: Mapping[str, Any] = field(default_factory=dict)
    quant_ruled_out: str | None = None
    weights_from: int | None = None
    accuracy_paired: Mapping[str, Any] | None = None
    budget_reachable: bool = True
    rungs: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, self.outcome

    # ------------------------------------------------------------------ derived figures
    @property
    def latency_ms(self) -> float | None:
        return self.latency.median_ms if self.latency else None

    @property
    def accuracy_drop_pt(self) -> float | None:
        """Drop in percentage points against the teacher's artifact (negative = better than the teacher)."""
        return None if self.accuracy is None else (self.teacher_accuracy - self.accuracy) * 100.0

    @property
    def drop_interval_pt(self) -> tuple[float, float] | None:
        """95 % interval of the val drop from the paired predictions (see :mod:`autocompress.measure.accuracy`)."""
        if not self.accuracy_paired:
            return None
        low, high = self.accuracy_paired["interval_pt"]
        return float(low), float(high)

    @property
    def within_budget(self) -> bool:
        return self.latency is not None and self.latency.median_ms <= self.budget_ms

    @property
    def confidently_within(self) -> bool:
        """The whole latency interval lies within the budget."""
        return self.latency is not None and self.latency.within(self.budget_ms)

    @property
    def within_accuracy(self) -> bool:
        """The policy's own accuracy was measured and its drop is within the limit."""
        drop = self.accuracy_drop_pt
        return drop is not None and drop <= self.max_drop_pt

    @property
    def confidently_within_accuracy(self) -> bool:
        """The whole 95 % interval of the paired val drop lies within the accuracy limit (``False`` without one)."""
        interval = self.drop_interval_pt
        return interval is not None and interval[1] <= self.max_drop_pt

    @property
    def feasible(self) -> bool:
        return self.outcome == "complete" and self.within_budget and self.within_accuracy

    @property
    def overshoot_ms(self) -> float:
        """How far over the budget the artifact is (0 when within)."""
        return max(0.0, (self.latency_ms or math.inf) - self.budget_ms)

    @property
    def runtime(self) -> str:
        """The runtime the artifact was built for and measured on: the policy's (``--runtime auto``), else the
        study's (ONNX Runtime for records written before runtimes)."""
        if self.policy is not None and self.policy.runtime is not None:
            return self.policy.runtime
        return str(self.target.get("runtime", "onnxruntime"))

    def artifact_in(self, study_dir: Path) -> Artifact | None:
        """The trial's artifact (its files under ``study_dir``, its precision plan and runtime), if it has one."""
        if self.artifact is None or self.policy is None:
            return None
        path = Path(study_dir) / self.artifact
        files = (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,)
        return Artifact(path, self.policy.quant, runtime=self.runtime, files=files)

    @property
    def halted_at(self) -> Mapping[str, Any] | None:
        """The rung where successive halving stopped this trial's fine-tuning (:mod:`autocompress.study.halving`),
        or ``None`` when it got every step it was sampled with."""
        return next((r for r in self.rungs if not r.get("went_on", True)), None)

    @property
    def summary(self) -> str:
        return self.policy.describe() if self.policy else "(no policy)"

    @property
    def constraints(self) -> dict[str, float]:
        return constraint_values(self)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["policy"] = self.policy.to_dict() if self.policy else None
        data["timings"] = {k: round(float(v), 4) for k, v in self.timings.items()}
        data["fingerprint"] = dict(self.fingerprint)
        data["kd_loss"] = list(self.kd_loss) if self.kd_loss else None
        data["latency"] = self.latency.to_dict() if self.latency else None
        data["latency_before_finetune"] = (
            self.latency_before_finetune.to_dict() if self.latency_before_finetune else None
        )
        data["predicted"] = dict(self.predicted) if self.predicted else None
        data["target"] = dict(self.target)
        data["precision"] = dict(self.precision) if self.precision is not None else None
        data["stages"] = dict(self.stages)
        data["rungs"] = [dict(r) for r in self.rungs]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["policy"] = Policy.from_dict(data["policy"]) if data.get("policy") else None
        values["latency"] = _latency_from(data.get("latency"))
        values["predicted"] = dict(data["predicted"]) if data.get("predicted") else None
        values["latency_before_finetune"] = _latency_from(data.get("latency_before_finetune"))
        values["kd_loss"] = tuple(data["kd_loss"]) if data.get("kd_loss") else None
        values["rungs"] = tuple(dict(r) for r in data.get("rungs") or ())
        return cls(**values)

    def with_number(self, number: int) -> TrialRecord:
        return replace(self, number=number)


LATENCY_OVER_BUDGET_OFFSET = 100.0  # over the budget ranks behind any drop (module docstring)


def constraint_values(record: TrialRecord) -> dict[str, float]:
    """Constraint values on one scale (<= 0 is feasible); see the module docstring.

    A stopped trial is infeasible by latency only: its accuracy was never that of the policy, so it is not charged.
    Under a budget nothing can reach (``budget_reachable`` false) the latency value is 0: every trial breaks the
    budget, and ranking them by how far would steer the samplers to the most pruned structures whatever they lose
    (measured at 0.02x on an AMX Xeon: 32 of 46 proposals skipped, the export 1.57x slower than a model within the
    accuracy limit that a 0.15x study found). With the accuracy limit as the only constraint, the samplers' front
    within it runs down to the fastest model that keeps it, which is what such a study exports (to ``over_budget/``).
    """
    if record.latency_ms is not None:
        overshoot = record.latency_ms / record.budget_ms - 1.0
    elif record.predicted and record.predicted.get("ms"):
        overshoot = float(record.predicted["ms"]) / record.budget_ms - 1.0
    else:
        overshoot = 1.0
    latency = overshoot if overshoot <= 0 else LATENCY_OVER_BUDGET_OFFSET + overshoot
    if not record.budget_reachable:
        latency = 0.0
    drop = record.accuracy_drop_pt
    if drop is None:
        accuracy = 0.0
    else:
        accuracy = (drop - record.max_drop_pt) / max(record.max_drop_pt, _MIN_DROP_SCALE_PT)
    return {"latency": float(latency), "accuracy": float(accuracy)}


def write_record(trial: optuna.Trial, record: TrialRecord) -> None:
    """Store ``record`` on ``trial``: the record itself and the constraints every sampler and viewer reads.

    Constraints are written once, as the ``constraints`` list in :data:`CONSTRAINT_NAMES` order: Optuna 5's samplers
    read it (``FrozenTrial.constraints`` names them ``"0"``, ``"1"``) and optuna-dashboard 0.21 reads only this form
    to show feasibility. Writing Optuna 5's named ``set_constraint`` keys as well would make the samplers count each
    constraint twice (the GP sampler multiplies their feasibility probabilities). The names live in the record.
    Call once per trial.
    """
    trial.set_user_attr(RECORD_KEY, json.loads(json.dumps(record.to_dict())))
    if record.outcome == "failed":
        return
    values = constraint_values(record)
    set_live_trial_system_attr(trial, _LEGACY_CONSTRAINTS_KEY, [values[n] for n in CONSTRAINT_NAMES])


def write_failed_record(study: optuna.Study, trial: optuna.trial.FrozenTrial, record: TrialRecord) -> None:
    """Store the failed ``record`` of a trial another process left RUNNING (its process died): it is written before
    the trial is marked failed, while its attributes can still change."""
    assert record.outcome == "failed", record.outcome
    set_trial_user_attr(study, trial, RECORD_KEY, json.loads(json.dumps(record.to_dict())))


def counted(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The trials that count towards ``--trials``: those that were fully measured (fine-tuned where they prune) or
    failed. Not proposals skipped or stopped over the budget before fine-tuning (seconds, not a trial's worth of
    work), not the rescue phase or the layer refinement, not trials cut short by an interruption."""
    return [
        r
        for r in records
        if r.role not in AFTER_SEARCH_ROLES
        and (r.outcome == "complete" or (r.outcome == "failed" and not (r.fail_reason or "").startswith(INTERRUPTED)))
    ]


def read_record(trial: optuna.trial.FrozenTrial) -> TrialRecord | None:
    """The record of ``trial``; ``None`` for trials that never wrote one (still running, or killed)."""
    data = trial.user_attrs.get(RECORD_KEY)
    if not data:
        return None
    record = TrialRecord.from_dict(data).with_number(trial.number)
    weights_from = trial.user_attrs.get(WEIGHTS_FROM_ATTR)
    if record.weights_from is None and weights_from is not None:
        # a refined trial of a study written before records carried ``weights_from``: its enqueue attribute says it,
        # so a resumed old study still judges it against its source (pareto.refinement_helped)
        record = replace(record, weights_from=int(weights_from))
    return record


def read_records(
    trials: Iterable[optuna.trial.FrozenTrial] | optuna.Study, *, outcomes: Iterable[str] = OUTCOMES
) -> list[TrialRecord]:
    """Records of every trial of a study (or of ``trials``) whose outcome is in ``outcomes``, in trial order."""
    if isinstance(trials, optuna.Study):
        trials = trials.get_trials(deepcopy=False)
    wanted = set(outcomes)
    out = []
    for t in trials:
        record = read_record(t)
        if record is not None and record.outcome in wanted:
            out.append(record)
    return out


def artifact_store(study_dir: Path) -> optuna.artifacts.FileSystemArtifactStore:
    """The study's Optuna artifact store (``<study>/artifacts``): every trial uploads its ONNX model and policy
    there, so optuna-dashboard can offer them for download."""
    base = Path(study_dir) / ARTIFACTS_DIR
    base.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(base))

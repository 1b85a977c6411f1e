"""The study: create or resume it, verify the teacher, probe the reachable latency range, run the trials, rescue
when nothing is feasible, and confirm the choice.

The objective itself (one trial → one :class:`~autocompress.study.record.TrialRecord`) lives in :mod:`autocompress.study.trial`
and the phases around the sampler (near-miss promotion, rescue, confirmed choice) in :mod:`autocompress.study.phases`;
this module wires them into an Optuna study:

1. verify the teacher's preprocessing (:mod:`autocompress.sources.preprocess_check`), then measure it: PyTorch and fp32 ONNX
   Runtime latency (the :class:`~autocompress.measure.latency.LatencyMeter`'s anchor), val accuracy → the budget;
2. probe the space's reachable range (:mod:`autocompress.study.probe`), which also gives the latency model its first points,
   and say at once when the budget is below it;
3. enqueue the baselines and the probed structure nearest the budget, then let the sampler run until ``--trials``
   trials count (skipped and stopped proposals do not; near misses are promoted as they appear);
4. if no trial is feasible, rescue (:func:`autocompress.study.phases.rescue`);
5. confirm the choice in a fresh process (:func:`autocompress.study.phases.confirm_choice`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from autocompress.compress.prune import count_macs_params, prunable_groups
from autocompress.config import SearchConfig
from autocompress.hardware.cpu import CpuInfo, cpu_from_fingerprint, detect_cpu, machine_fingerprint
from autocompress.errors import ConfigError, UnsupportedModelError
from autocompress.measure.accuracy import evaluate_artifact
from autocompress.measure.latency import Latency, LatencyMeter, Meter, measure_torch
from autocompress.measure.model import LatencyModel
from autocompress.study.pareto import Choice, pareto_front
from autocompress.policy import QuantPolicy
from autocompress.sources.preprocess_check import verify_preprocessing
from autocompress.study.probe import Probe, run_probe
from autocompress.study.record import AFTER_SEARCH_ROLES, RECORD_KEY, TrialRecord, read_record, read_records
from autocompress.runtimes import Artifact, Runtime, get_runtime
from autocompress.study.resume import IDENTITY_ATTR, INTERRUPTED, check_identity, recover_interrupted, study_identity
from autocompress.study.space import SearchSpace
from autocompress.study.phases import NEAR_MISS_STEPS_SCALE, confirm_choice, promote_near_miss, refine_layers, rescue as _rescue
from autocompress.study.trial import LABEL_ATTR, ROLE_ATTR, TrialRunner
from autocompress.scale.remote import MeasureQueue, RemoteMeter, serve
from autocompress.scale.workers import StorageLock, TrialSlots, core_guard, pid_alive, process_uuid
from autocompress.sources.workload import Workload, check_teacher_accuracy
from autocompress.hardware.device import resolve_device

__all__ = ["check_existing_study", "Reference", "SearchResult", "SearchInterrupted", "SearchProgress", "create_study", "measure_reference", "run_study", "PROPOSALS_PER_TRIAL"]

logger = logging.getLogger(__name__)

Say = Callable[[str], None]
_MAX_CONSECUTIVE_FAILURES = 5
PROPOSALS_PER_TRIAL = 4  # skipped and stopped proposals do not count as trials; this bounds them
# Attributes that must match when a study is resumed: changing them would mix incomparable trials.
_RESUME_KEYS = ("latency_budget", "max_accuracy_drop", "threads", "batch_size", "model", "data", "space")


@dataclass(frozen=True)
class Reference:
    """The teacher measured in this run: the yardstick for budget, accuracy drop and speed-up.

    Attributes:
        torch_latency: the teacher in eager PyTorch (the "original model" of every speed-up).
        runtime_latency: the teacher's fp32 artifact on the study's runtime (the budget's yardstick).
        artifact: that fp32 artifact (the meter's side-by-side reference).
        target: where both were measured (:func:`study_target`).
    """

    torch_latency: Latency
    runtime_latency: Latency
    val_accuracy: float
    budget_ms: float
    macs: int
    params: int
    artifact: Artifact
    target: dict[str, Any] = dataclasses.field(default_factory=dict)

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
        return cls(torch_latency=Latency.from_dict(data["teacher_torch_latency"]),
                   runtime_latency=Latency.from_dict(data["teacher_runtime_latency"]),
                   val_accuracy=float(data["teacher_val_accuracy"]), budget_ms=float(data["budget_ms"]),
                   macs=int(data["teacher_macs"]), params=int(data["teacher_params"]),
                   artifact=Artifact(Path("(on the target)"), QuantPolicy(mode="none")), target=dict(data["target"]))


@dataclass
class SearchResult:
    """What a search returns: the study, every trial's record, the Pareto front, the choice and the probe."""

    study: optuna.Study
    records: list[TrialRecord]
    front: list[TrialRecord]
    choice: Choice | None
    reference: Reference
    probe: Probe | None
    cpu: CpuInfo
    failed: int
    latency_model: dict[str, Any] = dataclasses.field(default_factory=dict)
    noise: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def complete(self) -> list[TrialRecord]:
        """Trials whose artifact was fully measured (fine-tuned where the policy prunes)."""
        return [r for r in self.records if r.outcome == "complete"]


def study_target(runtime: Runtime, config: SearchConfig, cpu: CpuInfo) -> dict[str, Any]:
    """Where latency is measured: runtime + version + threads + batch + CPU model and ISA (on every record)."""
    return {"runtime": runtime.name, "version": runtime.version(), "threads": config.threads,
            "batch_size": config.batch_size, "cpu": cpu.model, "isa": cpu.isa}


def measure_reference(workload: Workload, config: SearchConfig, workdir: Path, *, runtime: Runtime | None = None,
                      cpu: CpuInfo | None = None) -> tuple[Reference, LatencyMeter]:
    """Teacher latency in PyTorch and as an fp32 artifact on the study's runtime, and the artifact's val accuracy.

    Returns the reference and the study's :class:`LatencyMeter`, whose reference is this artifact: its long first
    figure is the anchor every later figure's canary compares with, and the budget's yardstick.
    """
    runtime = runtime or get_runtime(config.runtime)
    x = workload.example_input()
    artifact = runtime.build(workload.model, QuantPolicy(mode="none"), example_input=x, calibration=workload.train,
                             workdir=workdir)
    meter = LatencyMeter(runtime, artifact, workload.input_shape, threads=config.threads, batch_size=config.batch_size,
                         protocol=config.protocol)
    runtime_latency = meter.calibrate()
    torch_latency = measure_torch(workload.model, workload.input_shape, threads=config.threads,
                                  batch_size=config.batch_size, warmup=config.warmup, repeats=config.repeats,
                                  protocol=config.protocol)
    macs, params = count_macs_params(workload.model, x)
    reference = Reference(
        torch_latency=torch_latency,
        runtime_latency=runtime_latency,
        val_accuracy=evaluate_artifact(runtime, artifact, workload.val, threads=config.threads).top1,
        budget_ms=config.latency_budget.resolve(runtime_latency.median_ms),
        macs=macs,
        params=params,
        artifact=artifact,
        target=study_target(runtime, config, cpu or detect_cpu()),
    )
    return reference, meter


def _sampler(config: SearchConfig) -> optuna.samplers.BaseSampler:
    seed = config.seed
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, config.trials // 3)))
    if config.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models correlated ratios jointly and handles the conditional KD parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          n_startup_trials=max(3, min(10, config.trials // 3)))


def check_existing_study(config: SearchConfig) -> None:
    """Refuse, before anything is loaded or written, a study name the storage already uses for another kind of study."""
    db = config.study_dir / "study.db"
    if config.storage is None and not db.exists():
        return
    try:
        summaries = optuna.get_all_study_summaries(config.storage_url, include_best_trial=False)
    except Exception:  # unreachable storage: reported with its own message where the study is created
        return
    wanted = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    for summary in summaries:
        if summary.study_name == config.study_name and summary.directions != wanted:
            found = ", ".join(d.name.lower() for d in summary.directions)
            raise ConfigError(f"--study-name {config.study_name!r}: the storage already holds a study of that name with "
                              f"directions [{found}], not autocompress's [maximize accuracy, minimize latency_ms]; "
                              "pick another --study-name or --storage")


HEARTBEAT_S = 60  # a RUNNING trial's process proves it is alive this often ...
GRACE_S = 300  # ... and is failed and retried (once) by the next process to start trials after this long without


_OPEN_ATTEMPTS = 5  # opening a storage another process is creating at the same moment (see _storage)


def _storage(url: str) -> optuna.storages.BaseStorage | str:
    """An RDB storage with heartbeats, so a trial whose process died on *another* host is failed and retried by
    Optuna (``RetryHeartbeatStaleTrialCallback``); a dead process on this host is caught before the next trial
    (:func:`autocompress.study.resume.recover_interrupted`). SQLite waits up to a minute for another process's write
    instead of failing with "database is locked" (several workers on one file). Other URLs (journal, gRPC) are passed
    to Optuna as they are."""
    if not url.startswith(("sqlite:", "postgresql", "mysql", "oracle", "mssql")):
        return url
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {
        "pool_pre_ping": True}
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
            # Several processes opened a new database at the same moment: each creates the tables and stamps the
            # schema version, and the later ones fail ("table studies already exists", "UNIQUE constraint failed:
            # alembic_version"). The first one's tables are there now: open again. Anything else is raised.
            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if not racing or attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def create_study(config: SearchConfig) -> optuna.Study:
    """Create or load the study named in ``config`` (multi-objective: accuracy up, latency down)."""
    config.study_dir.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            study_name=config.study_name,
            storage=_storage(config.storage_url),
            sampler=_sampler(config),
            directions=["maximize", "minimize"],
            load_if_exists=True,
        )
    except ValueError as exc:
        raise ConfigError(f"--study-name {config.study_name!r}: {exc}; pick another --study-name") from None
    wanted = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    if study.directions != wanted:
        # Optuna loads an existing study of that name whatever its directions: refuse it before writing anything.
        found = ", ".join(d.name.lower() for d in study.directions)
        raise ConfigError(f"--study-name {config.study_name!r}: the storage already holds a study of that name with "
                          f"directions [{found}], not autocompress's [maximize accuracy, minimize latency_ms]; "
                          "pick another --study-name or --storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
    return study


def _check_resume(study: optuna.Study, config: SearchConfig, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The stored reference of a study being resumed (``None`` for a new study), after checking it means the same."""
    stored = study.user_attrs.get("config")
    if stored is None:
        return None
    stored_identity = study.user_attrs.get(IDENTITY_ATTR)
    if stored_identity is not None:
        check_identity(stored_identity, identity, study_name=config.study_name)
    else:  # a study written before identities were stored: compare the options it has
        current = config.to_dict()
        changed = [k for k in _RESUME_KEYS if stored.get(k) != current.get(k)]
        if changed:
            diffs = ", ".join(f"{k}: {stored.get(k)!r} → {current.get(k)!r}" for k in changed)
            raise ConfigError(f"study {config.study_name!r} was created with other settings ({diffs}); "
                              "rerun with the original options or pick a new --study-name")
    return study.user_attrs.get("reference")


def _record_interrupted(study: optuna.Study, runner: TrialRunner) -> Callable[[optuna.trial.FrozenTrial, str], None]:
    def on_failed(trial: optuna.trial.FrozenTrial, reason: str) -> None:
        try:
            policy = runner.space.fixed_policy(trial.params, runner.groups, int8_kernel=runner.int8_kernel,
                                               train_size=runner.train_size)
        except Exception:  # parameters incomplete: the process died while sampling them
            policy = None
        record = runner.failed_record(policy, number=trial.number, role=str(trial.user_attrs.get(ROLE_ATTR, "sampled")),
                                      label=str(trial.user_attrs.get(LABEL_ATTR, "")), reason=reason)
        study._storage.set_trial_user_attr(trial._trial_id, RECORD_KEY, record.to_dict())
    return on_failed


def _counted(records: list[TrialRecord]) -> list[TrialRecord]:
    """The trials that count towards ``--trials``: those that were fully measured (fine-tuned where they prune) or
    failed. Not proposals skipped or stopped over the budget before fine-tuning (seconds, not a trial's worth of
    work), not the rescue phase or the layer refinement, not trials cut short by an interruption."""
    return [r for r in records if r.role not in AFTER_SEARCH_ROLES and (r.outcome == "complete" or (
        r.outcome == "failed" and not (r.fail_reason or "").startswith(INTERRUPTED)))]


def _stored_latency_model(study: optuna.Study) -> LatencyModel:
    """The latency model a resumed study had learnt (empty for a new study); the probe and trials extend it."""
    stored = study.user_attrs.get("latency_model")
    return LatencyModel.from_dict(stored) if stored else LatencyModel()


class SearchProgress:
    """Hooks the search calls while it runs; the CLI draws them as a live bar. Every hook does nothing by default."""

    def stage(self, text: str) -> None:
        """The search entered a stage (``probe: prune 50% · int8``, ``trial 7: fine-tuning (90 steps)``)."""

    def trials(self, *, done: int, total: int, best: TrialRecord | None) -> None:
        """A trial ended: ``done`` of ``total`` counted trials, ``best`` the best feasible record so far."""


class SearchInterrupted(Exception):
    """Ctrl-C stopped the search; what finished is kept and the same command resumes."""

    def __init__(self, finished: int, total: int) -> None:
        super().__init__(f"interrupted: {finished} of {total} trials are finished and kept")
        self.finished = finished
        self.total = total


@contextlib.contextmanager
def _stop_on_ctrl_c(runner: TrialRunner, study: optuna.Study, say: Say) -> Iterator[None]:
    """First Ctrl-C: finish the current stage, queue the trial again, stop the study. Second Ctrl-C: stop now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        runner.stop_requested = True
        with contextlib.suppress(RuntimeError):  # outside optimize() (e.g. between phases) there is nothing to stop
            study.stop()
        say("Ctrl-C: stopping after the current stage (press Ctrl-C again to stop at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_study(workload: Workload, space: SearchSpace, config: SearchConfig, *, say: Say | None = None,
              cpu: CpuInfo | None = None, progress: SearchProgress | None = None, finish: bool = True,
              serve_measurements: bool = False) -> SearchResult:
    """Run (or resume, or join) the study until it has ``config.trials`` counted trials or the timeout passes.

    Several processes may run this on one storage (``--workers``, or plain ``search`` commands): the set-up (probe,
    baselines, seed, the stored budget) happens once under a storage lock, every trial takes a slot so that the count
    is exact across processes, and the rescue runs once (:mod:`autocompress.scale.workers`). ``finish=False`` (a worker
    started by ``--workers``) runs trials only: no rescue, no choice.

    Build here, measure on the target (:mod:`autocompress.scale.remote`): ``serve_measurements=True`` (``autocompress
    measure-worker``, on the target) sets the study up and finishes it like any process, but instead of running trials
    it times and scores what build hosts ask for; ``config.build_only`` (``search --build-only``) waits for that
    set-up, builds for the target's CPU (the stored fingerprint: its int8 kernel and precisions) and asks the target
    for every figure; it never finishes.

    ``say`` gets one line per event (teacher, probe, each finished trial); ``progress`` gets the live stage and trial
    count. ``cpu`` overrides the detected CPU (its ISA picks the int8 kernel settings); tests use it.
    """
    say = say or logger.info
    progress = progress or SearchProgress()
    build_only = config.build_only  # (the CLI refuses --build-only on a measure worker before anything is written)
    finish = finish and not build_only
    study = create_study(config)
    if build_only:
        fingerprint = _wait_for_target(study, config, say)  # build for the target's CPU, not this host's
        cpu = cpu_from_fingerprint(fingerprint)
    else:
        cpu = cpu or detect_cpu()
        fingerprint = machine_fingerprint(cpu)
    runtime = get_runtime(config.runtime)
    kernel = runtime.int8_kernel(cpu)
    space = space.for_runtime(runtime.modes(cpu), runtime.kernels(), runtime=runtime.name)
    x = workload.example_input()
    groups = prunable_groups(workload.model, x, num_classes=workload.num_classes) if space.prune_per != "none" else []
    identity = study_identity(workload, space, config, fingerprint)
    stored_reference = _check_resume(study, config, identity)
    say(f"CPU: {cpu.model} · int8 ISA {cpu.isa} → int8 kernel {kernel.name} ({kernel.reason})")
    device, device_note = resolve_device(config.device)
    say(device_note)

    check = verify_preprocessing(workload)  # a far better --normalize: one-line WorkloadError naming it, before timing
    say(f"teacher preprocessing: {check.summary()}")
    say(f"runtime: {runtime.name} {runtime.version()} · precisions {', '.join(space.quant_modes)}")
    meter: Meter
    if build_only:
        reference, meter = Reference.from_stored(study.user_attrs["reference"]), RemoteMeter(study)
        say(f"build only: every latency and accuracy figure is taken by the measure worker on the target "
            f"({fingerprint.get('host')}, {cpu.model}, {cpu.isa})")
    else:
        say(f"measuring the teacher (PyTorch fp32 and {runtime.name} fp32)")
        reference, meter = measure_reference(workload, config, _teacher_folder(config), runtime=runtime, cpu=cpu)
        check_teacher_accuracy(reference.val_accuracy, workload, allow_low=config.allow_low_teacher_accuracy)

    def make_runner(ref: Reference) -> TrialRunner:
        made = TrialRunner(workload, space, config, budget_ms=ref.budget_ms, teacher_accuracy=ref.val_accuracy,
                           groups=groups, int8_kernel=kernel, fingerprint=fingerprint, meter=meter, runtime=runtime,
                           target=ref.target, latency_model=_stored_latency_model(study), device=device,
                           scorer=meter.score if isinstance(meter, RemoteMeter) else None)
        made.on_stage = progress.stage
        return made

    probe: Probe | None = None
    # Set up once per study, whichever process gets here first; the others wait, then join as a resume would (the
    # check above may have seen a set-up in progress: only the one under the lock decides).
    with StorageLock(study, "setup", stale_s=GRACE_S,
                     on_wait=lambda line: say(f"{line}: another process is setting this study up")):
        stored_reference = _check_resume(study, config, identity)
        if stored_reference is None:
            runner = make_runner(reference)
            study.set_user_attr("preprocess_check", check.to_dict())
            probe = _probe(study, runner, say=say, fresh=True)
            _set_up(study, config, space, reference, groups, fingerprint, identity, probe)
            study.set_user_attr("latency_model", runner.latency_model.to_dict())  # other workers start from it
    if stored_reference is not None:
        # A resumed (or joined) study keeps the budget and accuracy reference its first trials were scored against.
        reference = dataclasses.replace(reference, budget_ms=stored_reference["budget_ms"],
                                        val_accuracy=stored_reference["teacher_val_accuracy"])
        runner = make_runner(reference)
        probe = _probe(study, runner, say=say, fresh=False)
    say(f"teacher: PyTorch {reference.torch_latency}; {runtime.name} {reference.runtime_latency}; "
        f"val accuracy {reference.val_accuracy:.2%}; budget {reference.budget_ms:.3f} ms ({config.latency_budget}); "
        f"{len(groups)} prunable groups")
    _warn_if_unreachable(probe, reference, config, say=say)

    finished = _counted(read_records(study))
    if finished:
        say(f"resuming study {config.study_name!r}: {len(finished)} of {config.trials} trials already finished")
    with _stop_on_ctrl_c(runner, study, say):
        if serve_measurements:
            _serve(study, runner, config=config, say=say)
        else:
            _optimize(study, runner, config=config, say=say, progress=progress)
        if finish and not runner.stop_requested:
            with StorageLock(study, "finish", stale_s=GRACE_S,
                             on_wait=lambda line: say(f"{line}: another process is finishing this study")):
                _wait_for_other_workers(study, runner, config=config, say=say, progress=progress)
                records = read_records(study)
                counted = len(_counted(records))
                if space.refine_layers and not runner.stop_requested and study.user_attrs.get("refined_at") != counted:
                    refine_layers(study, runner, say=say)
                    study.set_user_attr("refined_at", counted)  # once per study (until more trials are asked for)
                    records = read_records(study)
                if not runner.stop_requested and not any(r.feasible for r in records) \
                        and study.user_attrs.get("rescued_at") != counted:
                    _rescue(study, runner, config=config, say=say)
                    study.set_user_attr("rescued_at", counted)  # once per study (until more trials are asked for)
    study.set_user_attr("latency_model", runner.latency_model.to_dict())
    study.set_user_attr("latency_model_summary", runner.latency_model.summary())
    if not build_only:  # a build host took no figure itself: the study's noise is the target's
        study.set_user_attr("noise", {**meter.noise_summary(), "core_guard_wait_s": round(core_guard().waited_s, 2)})
    if runner.stop_requested:
        _requeue_stopped(study)
        raise SearchInterrupted(len(_counted(read_records(study))), config.trials)

    records = read_records(study)
    failed = sum(1 for r in records if r.outcome == "failed")
    complete = [r for r in records if r.outcome == "complete"]
    if not finish:
        return SearchResult(study=study, records=records, front=pareto_front(complete), choice=None,
                            reference=reference, probe=probe, cpu=cpu, failed=failed,
                            latency_model=runner.latency_model.summary(), noise=meter.noise_summary())
    if not complete and not any(r.outcome in ("stopped", "skipped") for r in records):
        reasons = sorted({r.fail_reason or "unknown" for r in records}) or ["no trial ran"]
        raise UnsupportedModelError(f"every trial failed; first reason: {reasons[0]}")
    choice = confirm_choice(records, reference=reference, config=config, input_shape=workload.input_shape, say=say)
    if choice is not None:
        study.set_user_attr("choice", {"trial": choice.record.number, "feasible": choice.feasible,
                                       "passed_over": list(choice.passed_over),
                                       "confirmed": choice.confirmed.to_dict() if choice.confirmed else None})
    return SearchResult(study=study, records=records, front=pareto_front(complete), choice=choice,
                        reference=reference, probe=probe, cpu=cpu, failed=failed,
                        latency_model=runner.latency_model.summary(), noise=meter.noise_summary())


def _wait_for_target(study: optuna.Study, config: SearchConfig, say: Say, *, timeout_s: float = 900.0,
                     poll_s: float = 1.0) -> dict[str, Any]:
    """A build host's start: the target's fingerprint, once a measure worker has set the study up."""
    deadline = time.monotonic() + timeout_s
    told = False
    while IDENTITY_ATTR not in study.user_attrs:
        if time.monotonic() >= deadline:
            raise ConfigError(f"--build-only: study {config.study_name!r} was not set up by a measure worker within "
                              f"{timeout_s:.0f} s; start `python -m autocompress measure-worker` with the same options "
                              "on the target host first")
        if not told:
            say(f"waiting for a measure worker on the target to set study {config.study_name!r} up")
            told = True
        time.sleep(poll_s)
    return dict(study.user_attrs["fingerprint"])


def _serve(study: optuna.Study, runner: TrialRunner, *, config: SearchConfig, say: Say) -> None:
    """The measure worker's part of the search: answer build hosts' requests (on this CPU, with this study's meter,
    under the core guard) until the study has ``--trials`` counted trials and nothing runs."""
    total = config.trials

    def done() -> bool:
        if runner.stop_requested:
            return True
        _fail_stale(study)
        records = read_records(study)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        used = sum(1 for r in records if r.role not in AFTER_SEARCH_ROLES)
        return not running and (len(_counted(records)) >= total or used >= PROPOSALS_PER_TRIAL * total)

    say(f"measure worker: serving latency and accuracy for study {config.study_name!r}; start build hosts with "
        f"`python -m autocompress search --build-only` and the same --storage, --study-name and --output")
    answered = serve(MeasureQueue(study), measure=runner.meter.measure, score=runner.score_artifact,
                     anchor=lambda: runner.meter.anchor_ms, done=done, say=say)
    say(f"measure worker: {answered} figures taken for build hosts")


def _teacher_folder(config: SearchConfig) -> Path:
    """This process's folder for the teacher's artifact: each worker builds its own (two processes never write one
    file); the folders of processes that ended are removed."""
    root = config.study_dir / "teacher"
    if root.is_dir():
        for old in root.iterdir():
            pid = old.name.split("-")[0]
            if old.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
    return root / f"{os.getpid()}-{process_uuid()[:6]}"


def _set_up(study: optuna.Study, config: SearchConfig, space: SearchSpace, reference: Reference,
            groups: list[Any], fingerprint: dict[str, Any], identity: dict[str, Any], probe: Probe | None) -> None:
    """Write what a new study is judged by (options, budget, identity) and enqueue its baselines and the probe's seed.
    Runs once per study, under the set-up lock."""
    study.set_user_attr("config", config.to_dict())
    study.set_user_attr("reference", reference.to_dict())
    study.set_user_attr("groups", [g.name for g in groups])
    study.set_user_attr("fingerprint", fingerprint)
    baselines = space.baselines(groups)
    for label, params in baselines:
        study.enqueue_trial(params, user_attrs={ROLE_ATTR: "baseline", LABEL_ATTR: label})
    if probe is not None:
        seed = probe.nearest(reference.budget_ms)
        duplicate = any(all(params.get(k) == v for k, v in seed.params.items()) for _, params in baselines)
        if seed.level > 0 and not duplicate:
            # The seed sits at the edge of the budget, where accuracy is hardest to keep: fine-tune it fully.
            study.enqueue_trial({**seed.params, **space.kd_params(longest=True)},
                                user_attrs={ROLE_ATTR: "seed", LABEL_ATTR: f"probe: {seed.label}"})
    study.set_user_attr(IDENTITY_ATTR, identity)  # last: a study with an identity is a study that is set up


def _fail_stale(study: optuna.Study) -> None:
    """Optuna's heartbeat check (what ``optimize`` runs before each trial), for a process that waits between trials."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _recover(study: optuna.Study, runner: TrialRunner, say: Say) -> None:
    """Fail and queue again the RUNNING trials of dead processes on this host (a killed worker, an earlier run)."""
    recovered = recover_interrupted(study, on_failed=_record_interrupted(study, runner))
    if recovered:
        say(f"trial(s) {', '.join(map(str, recovered))} were interrupted (their process ended); marked failed and "
            "queued again")


def _optimize(study: optuna.Study, runner: TrialRunner, *, config: SearchConfig, say: Say,
              progress: SearchProgress) -> None:
    """Run trials until ``config.trials`` of them count (see :func:`_counted`) across every process on the study, at
    most :data:`PROPOSALS_PER_TRIAL` proposals per counted trial in all; near misses are promoted as they appear.

    One trial at a time, each in a slot reserved in the storage (:class:`autocompress.scale.workers.TrialSlots`): counted
    trials plus trials in flight never exceed ``--trials``, so N processes end with exactly that many.
    """
    total = config.trials
    slots = TrialSlots(study, total)
    state = {"consecutive": 0, "stop": False}

    def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        records = read_records(study)
        done = len(_counted(records))
        say(_progress_line(trial, done, total, runner.budget_ms))
        feasible = [r for r in records if r.feasible]
        progress.trials(done=done, total=total, best=min(feasible, key=lambda r: (-(r.accuracy or 0), r.latency_ms)) if feasible else None)
        if runner.stop_requested:
            return
        state["consecutive"] = state["consecutive"] + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        if state["consecutive"] >= _MAX_CONSECUTIVE_FAILURES:
            say(f"stopping: {_MAX_CONSECUTIVE_FAILURES} trials in a row failed (see fail_reason above)")
            state["stop"] = True
            return
        waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        if done + waiting < total:
            promoted = promote_near_miss(study, records, space=runner.space, trials=total)
            if promoted is not None:
                say(f"trial {promoted} is a near miss (within the budget, drop just over the limit): queued again with "
                    f"{NEAR_MISS_STEPS_SCALE}x the fine-tuning")

    # The allowance is the study's, not this run's: a resumed study that needs one more trial may use what the first
    # run left of PROPOSALS_PER_TRIAL x --trials (with a per-run allowance, 4 proposals stopped over a tight budget
    # once ended a resumed tiny study one trial short). This run may always make as many proposals as trials remained.
    remaining_at_start = total - len(_counted(read_records(study)))
    own = 0
    started = time.monotonic()
    waiting_said = False
    exhausted = False
    while not state["stop"] and not runner.stop_requested:
        if config.timeout is not None and time.monotonic() - started >= config.timeout:
            break
        _recover(study, runner, say)
        records = read_records(study)
        done = len(_counted(records))
        if done >= total:
            break
        used = sum(1 for r in records if r.role not in AFTER_SEARCH_ROLES)
        if own >= remaining_at_start and used >= PROPOSALS_PER_TRIAL * total:
            exhausted = True
            break
        token = slots.reserve(done)
        if token is None:  # the trials in flight in other processes may fill --trials: wait for them
            if not waiting_said:
                say(f"waiting: {done} of {total} trials are finished and other processes run the rest")
                waiting_said = True
            _fail_stale(study)
            time.sleep(1.0)
            continue
        waiting_said = False
        runner.sync_latency_model(records)
        runner.on_trial_start = lambda trial, token=token: slots.bind(token, trial.number)  # type: ignore[misc]
        try:
            study.optimize(runner, n_trials=1, catch=(Exception,), callbacks=[on_trial_end])
        finally:
            runner.on_trial_start = lambda trial: None
            slots.release(token)
        own += 1
    if exhausted:
        say(f"ended with {len(_counted(read_records(study)))} of {total} counted trials: the sampler's proposals "
            f"({PROPOSALS_PER_TRIAL} per trial in all) were skipped or stopped over the budget; a looser "
            "--latency-budget or a space that prunes more leaves more to fine-tune")


def _wait_for_other_workers(study: optuna.Study, runner: TrialRunner, *, config: SearchConfig, say: Say,
                            progress: SearchProgress) -> None:
    """Before the rescue and the choice: let other processes' trials finish, and run what a dead one left queued."""
    said = False
    while not runner.stop_requested:
        _recover(study, runner, say)
        _fail_stale(study)
        states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
        open_trials = study.get_trials(deepcopy=False, states=states)
        if not open_trials:
            return
        waiting = [t for t in open_trials if t.state == optuna.trial.TrialState.WAITING]
        if waiting and len(_counted(read_records(study))) < config.trials:
            _optimize(study, runner, config=config, say=say, progress=progress)  # e.g. a dead worker's retried trial
            continue
        if len(waiting) == len(open_trials):
            return  # only queued trials beyond --trials are left (e.g. a promotion that no longer fits)
        if not said:
            running = [t.number for t in open_trials if t.state == optuna.trial.TrialState.RUNNING]
            say(f"waiting for trial(s) {', '.join(map(str, running))} of other processes to finish before the choice")
            said = True
        time.sleep(2.0)


def _requeue_stopped(study: optuna.Study) -> None:
    """Queue again the trials Ctrl-C cut short, so the resume runs their policies (once each)."""
    queued = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        record = read_record(trial)
        if record and (record.fail_reason or "").startswith(INTERRUPTED) and trial.number not in queued:
            if any(t.user_attrs.get("retry_of") == trial.number for t in study.get_trials(deepcopy=False)):
                continue
            attrs = {k: v for k, v in trial.user_attrs.items() if k in (ROLE_ATTR, LABEL_ATTR)}
            study.enqueue_trial(dict(trial.params), user_attrs={**attrs, "retry_of": trial.number}, skip_if_exists=False)


def _probe(study: optuna.Study, runner: TrialRunner, *, say: Say, fresh: bool) -> Probe | None:
    """Run the reachable-range probe for a new study; a resumed study reuses the stored one."""
    stored = study.user_attrs.get("probe")
    if stored and not fresh:
        probe = Probe.from_dict(stored)
    else:
        say("probing the reachable latency range (no fine-tuning)")
        probe = run_probe(runner, say=runner.on_stage)
        study.set_user_attr("probe", probe.to_dict())
    say(probe.describe())
    return probe


def _warn_if_unreachable(probe: Probe | None, reference: Reference, config: SearchConfig, *, say: Say) -> None:
    if probe is None or probe.reachable(reference.budget_ms):
        return
    suggested = probe.suggested_budget_ms()
    say(f"warning: the budget {reference.budget_ms:.3f} ms ({config.latency_budget}) is below the fastest this space "
        f"reaches on this CPU ({probe.floor.latency.median_ms:.3f} ms, {probe.floor.label}); no policy can meet it — "
        f"ask for --latency-budget {suggested:g}ms ({suggested / reference.runtime_latency.median_ms:.2f}x) or more; "
        "searching anyway for the fastest model within the accuracy limit")


def _progress_line(trial: optuna.trial.FrozenTrial, done: int | None, total: int | None, budget_ms: float) -> str:
    head = f"[trial {trial.number:>3} · {done}/{total}]" if done is not None else f"[trial {trial.number:>3} · rescue]"
    record = read_record(trial)
    if record is None:
        return f"{head} {trial.state.name.lower()}"
    label = f" [{record.label}]" if record.label else ""
    if record.outcome == "skipped":
        return f"{head}{label} {record.summary} → skipped, not built: {record.stopped_reason}"
    if record.outcome == "failed":
        return f"{head}{label} FAILED {record.summary}: {record.fail_reason}"
    acc = (f"val acc {record.accuracy:.2%} (drop {record.accuracy_drop_pt:+.2f} pt)" if record.accuracy is not None
           else "accuracy not measured (never fine-tuned)")
    status = "feasible" if record.feasible else "infeasible"
    stopped = " · stopped before fine-tuning (over budget)" if record.outcome == "stopped" else ""
    return (f"{head}{label} {record.summary} → {acc} · {record.latency_ms:.3f} ms (budget {budget_ms:.3f}) · "
            f"{status}{stopped} · {record.timings.get('total_s', 0):.1f} s")

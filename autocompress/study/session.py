"""The study as three phases: set up, run trials, finish.

:class:`StudySession` holds what the phases share (the study, the runtime, the trial runner, the reference);
:func:`run_study` runs them in order:

1. :meth:`StudySession.set_up` — open (or resume, or join) the study; verify the teacher's preprocessing
   (:mod:`autocompress.sources.preprocess_check`) and measure it (:mod:`autocompress.study.reference`: the budget's
   yardstick); once per study, under the storage's set-up lock: probe the reachable latency range
   (:mod:`autocompress.study.probe`) and enqueue the baselines and the probed structure nearest the budget.
2. :meth:`StudySession.run_trials` — slots and ask/tell until ``--trials`` trials count
   (:mod:`autocompress.study.loop`); a measure worker answers build hosts instead.
3. :meth:`StudySession.finish` — once per study, under the finish lock: wait for other processes, layer refinement,
   rescue when nothing is feasible (:mod:`autocompress.study.phases`); then the choice, confirmed in a fresh process.

What each process does is its :class:`Mode`: a plain search runs all three phases; a ``--workers`` process and a
``--build-only`` build host never finish; a measure worker serves figures instead of running trials.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from autocompress.compress.prune import PruningGraph
from autocompress.config import SearchConfig
from autocompress.errors import ConfigError, UnsupportedModelError
from autocompress.hardware.cpu import CpuInfo, cpu_from_fingerprint, detect_cpu, machine_fingerprint
from autocompress.hardware.device import resolve_device
from autocompress.measure.accuracy import drop_resolution
from autocompress.measure.guard import core_guard
from autocompress.measure.latency import Meter
from autocompress.measure.model import LatencyModel
from autocompress.scale.remote import RemoteMeter
from autocompress.scale.storage import GRACE_S, open_study
from autocompress.scale.workers import StorageLock, pid_alive, process_uuid
from autocompress.sources.preprocess_check import verify_preprocessing
from autocompress.sources.workload import Workload, check_teacher_accuracy
from autocompress.study import loop
from autocompress.study.events import Say, SearchProgress
from autocompress.study.pareto import Choice, pareto_front
from autocompress.study.phases import confirm_choice, refine_layers, rescue
from autocompress.study.probe import Probe, run_probe
from autocompress.study.record import TrialRecord, counted, read_records
from autocompress.study.reference import Reference, measure_reference
from autocompress.study.resume import IDENTITY_ATTR, check_identity, study_identity
from autocompress.study.samplers import make_sampler
from autocompress.study.space import SearchSpace
from autocompress.study.trial import LABEL_ATTR, ROLE_ATTR, TrialRunner

if TYPE_CHECKING:
    from autocompress.runtimes import Runtime

__all__ = [
    "Mode",
    "SearchInterrupted",
    "SearchResult",
    "StudySession",
    "accuracy_resolution",
    "create_study",
    "run_study",
]

logger = logging.getLogger(__name__)

# Attributes that must match when a study is resumed: changing them would mix incomparable trials.
_RESUME_KEYS = ("latency_budget", "max_accuracy_drop", "threads", "batch_size", "model", "data", "space")
_TARGET_WAIT_S = 900.0  # a build host waits this long for the measure worker to set the study up


def accuracy_resolution(n_val: int, *, limit_pt: float) -> str:
    """The set-up's note on how well the val split resolves the accuracy limit (see
    :func:`autocompress.measure.accuracy.drop_resolution`): one image's worth, the 95 % interval of a drop when 2 %
    of the images change answer, and the val images a limit needs for that interval to be at most half of it."""
    half, needed = drop_resolution(n_val, limit_pt=limit_pt)
    line = (
        f"accuracy: {n_val} val images, one image = {100 / max(n_val, 1):.2f} pt; a student that changes 2 % of the "
        f"answers has a drop interval of about ±{half:.2f} pt (95 %)"
    )
    if half > limit_pt / 2:
        line += (
            f", wide against the {limit_pt:g} pt limit: a choice within it on val may break it on new data "
            f"(about {needed:,} val images resolve it; metrics.json gives the test drop's interval)"
        )
    return line


class Mode(enum.Enum):
    """What one process does on a study."""

    LOCAL = "local"  # set up, run trials, finish: a plain `autocompress search`
    WORKER = "worker"  # one of --workers N: set up or join, run trials, never finish
    BUILD_HOST = "build-host"  # --build-only: build for the target's CPU, ask the target for every figure, never finish
    MEASURE_WORKER = "measure-worker"  # the target: set up, answer build hosts, finish

    @property
    def finishes(self) -> bool:
        return self in (Mode.LOCAL, Mode.MEASURE_WORKER)

    @property
    def measures_here(self) -> bool:
        """Whether this process takes latency and accuracy figures itself (a build host asks the target)."""
        return self is not Mode.BUILD_HOST

    @classmethod
    def of(cls, config: SearchConfig, *, worker: bool = False, measure_worker: bool = False) -> Mode:
        """The mode of a process started with ``config`` (``--build-only`` decides first)."""
        if config.build_only:
            return cls.BUILD_HOST
        if measure_worker:
            return cls.MEASURE_WORKER
        return cls.WORKER if worker else cls.LOCAL


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


class SearchInterrupted(Exception):
    """Ctrl-C stopped the search; what finished is kept and the same command resumes."""

    def __init__(self, finished: int, total: int) -> None:
        super().__init__(f"interrupted: {finished} of {total} trials are finished and kept")
        self.finished = finished
        self.total = total


def create_study(config: SearchConfig) -> optuna.Study:
    """Create or load the study named in ``config``, with its ``--sampler``."""
    return open_study(config, sampler=make_sampler(config.sampler, seed=config.seed, trials=config.trials))


def run_study(
    workload: Workload,
    space: SearchSpace,
    config: SearchConfig,
    *,
    say: Say | None = None,
    cpu: CpuInfo | None = None,
    progress: SearchProgress | None = None,
    mode: Mode | None = None,
) -> SearchResult:
    """Run (or resume, or join) the study until it has ``config.trials`` counted trials or the timeout passes.

    Several processes may run this on one storage (``--workers``, or plain ``search`` commands): the set-up happens
    once under a storage lock, every trial takes a slot so that the count is exact across processes, and the
    finishing phases run once (:mod:`autocompress.scale.workers`). ``mode`` says what this process does (default:
    :meth:`Mode.of` the config). ``say`` gets one line per event; ``progress`` the live stage and trial count.
    ``cpu`` overrides the detected CPU (its ISA picks the int8 kernel settings); tests use it.

    Raises:
        SearchInterrupted: Ctrl-C; the trial in progress is queued again and the same call resumes.
    """
    session = StudySession(
        workload,
        space,
        config,
        mode=mode or Mode.of(config),
        say=say or logger.info,
        cpu=cpu,
        progress=progress or SearchProgress(),
    )
    session.set_up()
    session.run_trials()
    return session.finish()


class StudySession:
    """One process's part of a study (module docstring). Call :meth:`set_up`, :meth:`run_trials`, :meth:`finish`."""

    def __init__(
        self,
        workload: Workload,
        space: SearchSpace,
        config: SearchConfig,
        *,
        mode: Mode,
        say: Say,
        cpu: CpuInfo | None,
        progress: SearchProgress,
    ) -> None:
        self.workload, self.space, self.config, self.mode = workload, space, config, mode
        self.say, self.progress, self._cpu = say, progress, cpu
        self.study: optuna.Study
        self.runner: TrialRunner
        self.reference: Reference
        self.meter: Meter
        self.probe: Probe | None = None

    # ------------------------------------------------------------------------------------------------ 1. set up
    def set_up(self) -> None:
        """Open the study, check a resume means the same, measure the teacher, and set a new study up (once)."""
        config, say = self.config, self.say
        self.study = create_study(config)
        if self.mode is Mode.BUILD_HOST:
            self.fingerprint = _wait_for_target(self.study, config, say)  # build for the target's CPU, not this one
            self.cpu = cpu_from_fingerprint(self.fingerprint)
        else:
            self.cpu = self._cpu or detect_cpu()
            self.fingerprint = machine_fingerprint(self.cpu)
        self._prepare_space()
        # A study resumed with other options is refused now, before the teacher is measured; the check under the
        # set-up lock below decides for a study another process sets up at this moment.
        _stored_reference(self.study, config, self.identity)
        self._measure_teacher()
        with StorageLock(
            self.study,
            "setup",
            stale_s=GRACE_S,
            on_wait=lambda line: say(f"{line}: another process is setting this study up"),
        ):
            stored = _stored_reference(self.study, config, self.identity)
            if stored is None:
                self._set_up_new_study()
        if stored is not None:
            # A resumed (or joined) study keeps the budget and accuracy reference its first trials were scored against.
            self.reference = dataclasses.replace(
                self.reference, budget_ms=stored["budget_ms"], val_accuracy=stored["teacher_val_accuracy"]
            )
            self.runner = self._make_runner()
            self.probe = self._run_probe(fresh=False)
        self._say_set_up()

    def _prepare_space(self) -> None:
        """The runtime (or, ``--runtime auto``, the installed runtimes), its int8 kernel on this CPU, the space it
        narrows to, the prunable groups and the identity."""
        from autocompress.runtimes import AUTO, resolve_runtimes

        self.runtimes, missing = resolve_runtimes(self.config.runtime)
        self.runtime = self.runtimes[0]  # until the teacher is measured: then the reference's runtime
        self.kernel = self.runtime.int8_kernel(self.cpu)
        if self.config.runtime == AUTO:
            self._prepare_auto(missing)
        else:
            self.space = self.space.for_runtime(
                self.runtime.modes(self.cpu), self.runtime.kernels(), runtime=self.runtime.name
            )
        workload = self.workload
        # Traced once here; the trial runner prunes every trial's structure from this graph.
        self.pruning = PruningGraph(workload.model, workload.example_input(), num_classes=workload.num_classes)
        self.groups = list(self.pruning.groups) if self.space.prune_per != "none" else []
        self.identity = study_identity(workload, self.space, self.config, self.fingerprint)
        self.say(
            f"CPU: {self.cpu.model} · int8 ISA {self.cpu.isa} → int8 kernel {self.kernel.name} ({self.kernel.reason})"
        )
        self.device, device_note = resolve_device(self.config.device)
        self.say(device_note)

    def _prepare_auto(self, missing: list[str]) -> None:
        """``--runtime auto``: the space over every installed runtime, each with its modes and int8 kernel here."""
        from autocompress.study.space import RuntimeOffer

        offers = [
            RuntimeOffer(rt.name, rt.modes(self.cpu), rt.kernels() or ("auto",), rt.int8_kernel(self.cpu))
            for rt in self.runtimes
        ]
        self.space, dropped = self.space.for_runtimes(offers)
        searched = {o.name for o in self.space.offers}
        self.runtimes = [rt for rt in self.runtimes if rt.name in searched]
        self.runtime = self.runtimes[0]
        lines = [f"{o.name} {self.runtime_named(o.name).version()} ({', '.join(o.modes)})" for o in self.space.offers]
        note = f"; not installed: {', '.join(missing)}" if missing else ""
        note += f"; not searched: {', '.join(dropped)}" if dropped else ""
        self.say(f"runtime auto: searching {'; '.join(lines)}{note}")

    def runtime_named(self, name: str) -> Runtime:
        """The searched runtime called ``name``."""
        return next(rt for rt in self.runtimes if rt.name == name)

    def _measure_teacher(self) -> None:
        """Check the teacher's preprocessing, then measure it here (a build host reads the target's measurement)."""
        say = self.say
        self.preprocess_check = verify_preprocessing(self.workload)  # a far better --normalize: a one-line error
        say(f"teacher preprocessing: {self.preprocess_check.summary()}")
        if not self.space.offers:
            modes = ", ".join(self.space.quant_modes)
            say(f"runtime: {self.runtime.name} {self.runtime.version()} · precisions {modes}")
        say(f"fine-tuning per trial: {self.space.describe_kd(len(self.workload.train))}")  # type: ignore[arg-type]
        if not self.mode.measures_here:
            self.reference = Reference.from_stored(self.study.user_attrs["reference"])
            self.runtime = self.runtime_named(self.reference.runtime)
            self.meter = RemoteMeter(self.study)
            say(
                f"build only: every latency and accuracy figure is taken by the measure worker on the target "
                f"({self.fingerprint.get('host')}, {self.cpu.model}, {self.cpu.isa})"
            )
            return
        say(f"measuring the teacher (PyTorch fp32 and {', '.join(rt.name for rt in self.runtimes)} fp32)")
        self.reference, self.meter = measure_reference(
            self.workload, self.config, _teacher_folder(self.config), runtimes=self.runtimes, cpu=self.cpu
        )
        self.runtime = self.runtime_named(self.reference.runtime)  # auto: the fastest fp32 teacher's
        check_teacher_accuracy(
            self.reference.val_accuracy, self.workload, allow_low=self.config.allow_low_teacher_accuracy
        )

    def _make_runner(self) -> TrialRunner:
        stored = self.study.user_attrs.get("latency_model")  # a resumed study's; the probe and trials extend it
        runner = TrialRunner(
            self.workload,
            self.space,
            self.config,
            budget_ms=self.reference.budget_ms,
            teacher_accuracy=self.reference.val_accuracy,
            teacher_val_correct=self.reference.val_correct,
            groups=self.groups,
            int8_kernel=self.kernel,
            fingerprint=self.fingerprint,
            meter=self.meter,
            runtime=self.runtime,
            runtimes=self.runtimes,
            target=self.reference.target,
            device=self.device,
            latency_model=LatencyModel.from_dict(stored) if stored else LatencyModel(),
            scorer=self.meter.score if isinstance(self.meter, RemoteMeter) else None,
            pruning=self.pruning,
        )
        runner.on_stage = self.progress.stage
        return runner

    def _set_up_new_study(self) -> None:
        """Write what a new study is judged by (options, budget, identity), probe, and enqueue its baselines and the
        probe's seed. Runs once per study, under the set-up lock."""
        study, reference = self.study, self.reference
        self.runner = self._make_runner()
        study.set_user_attr("preprocess_check", self.preprocess_check.to_dict())
        self.probe = self._run_probe(fresh=True)
        study.set_user_attr("config", self.config.to_dict())
        study.set_user_attr("reference", reference.to_dict())
        study.set_user_attr("groups", [g.name for g in self.groups])
        study.set_user_attr("fingerprint", self.fingerprint)
        baselines = self.space.baselines(self.groups, fp32_runtime=self.runtime.name)
        for label, params in baselines:
            study.enqueue_trial(params, user_attrs={ROLE_ATTR: "baseline", LABEL_ATTR: label})
        if self.probe is not None:
            seed = self.probe.nearest(reference.budget_ms)
            duplicate = any(all(params.get(k) == v for k, v in seed.params.items()) for _, params in baselines)
            if seed.level > 0 and not duplicate:
                # The seed sits at the edge of the budget, where accuracy is hardest to keep: fine-tune it fully.
                study.enqueue_trial(
                    {**seed.params, **self.space.kd_params(longest=True)},
                    user_attrs={ROLE_ATTR: "seed", LABEL_ATTR: f"probe: {seed.label}"},
                )
        study.set_user_attr(IDENTITY_ATTR, self.identity)  # last but one: a study with an identity is set up
        study.set_user_attr("latency_model", self.runner.latency_model.to_dict())  # other workers start from it

    def _run_probe(self, *, fresh: bool) -> Probe:
        """Run the reachable-range probe for a new study; a resumed study reuses the stored one."""
        stored = self.study.user_attrs.get("probe")
        if stored and not fresh:
            probe = Probe.from_dict(stored)
        else:
            self.say("probing the reachable latency range (no fine-tuning)")
            probe = run_probe(self.runner, say=self.runner.on_stage)
            self.study.set_user_attr("probe", probe.to_dict())
        self.say(probe.describe())
        return probe

    def _say_set_up(self) -> None:
        reference, config, say = self.reference, self.config, self.say
        teacher = f"{self.runtime.name} {reference.runtime_latency}"
        if reference.runtime_latencies:
            others = [f"{name} {lat.median_ms:.3f} ms" for name, lat in reference.runtime_latencies.items()]
            teacher = f"fp32 {', '.join(others)}; the budget's yardstick is the fastest, {teacher}"
        say(
            f"teacher: PyTorch {reference.torch_latency}; {teacher}; "
            f"val accuracy {reference.val_accuracy:.2%}; budget {reference.budget_ms:.3f} ms "
            f"({config.latency_budget}); {len(self.groups)} prunable groups"
        )
        say(accuracy_resolution(len(self.workload.val), limit_pt=config.max_accuracy_drop))  # type: ignore[arg-type]
        probe = self.probe
        if probe is not None and not probe.reachable(reference.budget_ms):
            self.runner.budget_reachable = False  # trials are fine-tuned whatever their latency (TrialRunner)
            suggested = probe.suggested_budget_ms()
            say(
                f"warning: the budget {reference.budget_ms:.3f} ms ({config.latency_budget}) is below the fastest this "
                f"space reaches on this CPU ({probe.floor.latency.median_ms:.3f} ms, {probe.floor.label}); no policy "
                f"can meet it — ask for --latency-budget {suggested:g}ms "
                f"({suggested / reference.runtime_latency.median_ms:.2f}x) or more; searching anyway for the fastest "
                "model within the accuracy limit (no trial is stopped or skipped for the budget; it goes to "
                "over_budget/)"
            )
        finished = counted(read_records(self.study))
        if finished:
            say(f"resuming study {config.study_name!r}: {len(finished)} of {config.trials} trials already finished")

    # ------------------------------------------------------------------------------------------------ 2. trials
    def run_trials(self) -> None:
        """Run trials until ``--trials`` count (a measure worker: answer build hosts until then)."""
        with loop.stop_on_ctrl_c(self.runner, self.study, self.say):
            if self.mode is Mode.MEASURE_WORKER:
                loop.serve_build_hosts(self.study, self.runner, config=self.config, say=self.say)
            else:
                loop.optimize(self.study, self.runner, config=self.config, say=self.say, progress=self.progress)

    # ------------------------------------------------------------------------------------------------ 3. finish
    def finish(self) -> SearchResult:
        """Once per study: the phases after the sampler, then the confirmed choice. A process that does not finish
        (a worker, a build host) returns its result without a choice.

        Raises:
            SearchInterrupted: Ctrl-C during the search or these phases.
        """
        runner, study = self.runner, self.study
        if self.mode.finishes and not runner.stop_requested:
            with (
                loop.stop_on_ctrl_c(runner, study, self.say),
                StorageLock(
                    study,
                    "finish",
                    stale_s=GRACE_S,
                    on_wait=lambda line: self.say(f"{line}: another process is finishing this study"),
                ),
            ):
                loop.wait_for_other_workers(study, runner, config=self.config, say=self.say, progress=self.progress)
                self._after_search()
        self._save_state()
        if runner.stop_requested:
            loop.requeue_stopped(study)
            raise SearchInterrupted(len(counted(read_records(study))), self.config.trials)
        records = read_records(study)
        if not self.mode.finishes:
            return self._result(records, choice=None)
        if not any(r.outcome == "complete" for r in records) and not any(
            r.outcome in ("stopped", "skipped") for r in records
        ):
            reasons = sorted({r.fail_reason or "unknown" for r in records}) or ["no trial ran"]
            raise UnsupportedModelError(f"every trial failed; first reason: {reasons[0]}")
        choice = confirm_choice(
            records, reference=self.reference, config=self.config, input_shape=self.workload.input_shape, say=self.say
        )
        if choice is not None:
            study.set_user_attr(
                "choice",
                {
                    "trial": choice.record.number,
                    "feasible": choice.feasible,
                    "passed_over": list(choice.passed_over),
                    "prefer": choice.prefer,
                    "confirmed": choice.confirmed.to_dict() if choice.confirmed else None,
                },
            )
        return self._result(records, choice=choice)

    def _after_search(self) -> None:
        """Layer refinement of the choice, and the rescue when nothing is feasible: once per study (until more
        trials are asked for)."""
        study, runner = self.study, self.runner
        done = len(counted(read_records(study)))
        if self.space.refine_layers and not runner.stop_requested and study.user_attrs.get("refined_at") != done:
            refine_layers(study, runner, say=self.say, prefer=self.config.prefer)
            study.set_user_attr("refined_at", done)
        records = read_records(study)
        if (
            not runner.stop_requested
            and not any(r.feasible for r in records)
            and study.user_attrs.get("rescued_at") != done
        ):
            rescue(study, runner, config=self.config, say=self.say)
            study.set_user_attr("rescued_at", done)

    def _save_state(self) -> None:
        """What the next process on this study starts from: the latency model, and this host's noise figures."""
        model = self.runner.latency_model
        self.study.set_user_attr("latency_model", model.to_dict())
        self.study.set_user_attr("latency_model_summary", model.summary())
        if self.mode.measures_here:  # a build host took no figure itself: the study's noise is the target's
            noise = {**self.meter.noise_summary(), "core_guard_wait_s": round(core_guard().waited_s, 2)}
            self.study.set_user_attr("noise", noise)

    def _result(self, records: list[TrialRecord], *, choice: Choice | None) -> SearchResult:
        complete = [r for r in records if r.outcome == "complete"]
        return SearchResult(
            study=self.study,
            records=records,
            front=pareto_front(complete),
            choice=choice,
            reference=self.reference,
            probe=self.probe,
            cpu=self.cpu,
            failed=sum(1 for r in records if r.outcome == "failed"),
            latency_model=self.runner.latency_model.summary(),
            noise=self.meter.noise_summary(),
        )


# ---------------------------------------------------------------------------------------------------- helpers
def _stored_reference(study: optuna.Study, config: SearchConfig, identity: dict[str, Any]) -> dict[str, Any] | None:
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
            raise ConfigError(
                f"study {config.study_name!r} was created with other settings ({diffs}); "
                "rerun with the original options or pick a new --study-name"
            )
    return study.user_attrs.get("reference")


def _wait_for_target(
    study: optuna.Study, config: SearchConfig, say: Say, *, timeout_s: float = _TARGET_WAIT_S, poll_s: float = 1.0
) -> dict[str, Any]:
    """A build host's start: the target's fingerprint, once a measure worker has set the study up."""
    deadline = time.monotonic() + timeout_s
    told = False
    while IDENTITY_ATTR not in study.user_attrs:
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"--build-only: study {config.study_name!r} was not set up by a measure worker within "
                f"{timeout_s:.0f} s; start `python -m autocompress measure-worker` with the same options "
                "on the target host first"
            )
        if not told:
            say(f"waiting for a measure worker on the target to set study {config.study_name!r} up")
            told = True
        time.sleep(poll_s)
    return dict(study.user_attrs["fingerprint"])


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

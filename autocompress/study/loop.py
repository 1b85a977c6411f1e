"""The trial loop: slots booked in the storage, then Optuna's ask/tell, until ``--trials`` trials count.

Several processes may run this loop on one study: each trial first takes a slot
(:class:`~autocompress.scale.workers.TrialSlots`), so counted trials plus trials in flight never exceed ``--trials``
and N processes end with exactly that many. Also here: what keeps the loop honest when processes die or the user
presses Ctrl-C (interrupted trials failed and queued again), and the measure worker's loop, which answers build
hosts instead of running trials.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

import optuna

from autocompress.config import SearchConfig
from autocompress.scale.remote import MeasureQueue, serve
from autocompress.scale.storage import fail_stale_trials
from autocompress.scale.workers import TrialSlots
from autocompress.study.events import Say, SearchProgress, trial_line
from autocompress.study.pareto import PREFERENCES, choose
from autocompress.study.phases import promote_near_miss
from autocompress.study.record import (
    AFTER_SEARCH_ROLES,
    INTERRUPTED,
    TrialRecord,
    counted,
    read_record,
    read_records,
    write_failed_record,
)
from autocompress.study.resume import recover_interrupted
from autocompress.study.trial import LABEL_ATTR, ROLE_ATTR, TrialRunner

__all__ = [
    "PROPOSALS_PER_TRIAL",
    "optimize",
    "recover",
    "requeue_stopped",
    "serve_build_hosts",
    "stop_on_ctrl_c",
    "wait_for_other_workers",
]

PROPOSALS_PER_TRIAL = 4  # skipped and stopped proposals do not count as trials; this bounds them
_MAX_CONSECUTIVE_FAILURES = 5


def _proposals_used(records: list[TrialRecord]) -> int:
    """Proposals the search made so far, whatever became of them (the rescue and refinement are not proposals)."""
    return sum(1 for r in records if r.role not in AFTER_SEARCH_ROLES)


class _TrialEnd:
    """Optuna's end-of-trial callback: the trial's line, the progress bar, the failure streak, near-miss promotion."""

    def __init__(
        self, runner: TrialRunner, *, total: int, say: Say, progress: SearchProgress, prefer: str = PREFERENCES[0]
    ) -> None:
        self.runner, self.total, self.say, self.progress, self.prefer = runner, total, say, progress, prefer
        self.consecutive_failures = 0
        self.stop = False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        records = read_records(study)
        done = len(counted(records))
        self.say(trial_line(trial, done, self.total, self.runner.budget_ms))
        choice = choose(records, prefer=self.prefer)  # "best so far": what the search would choose now: the one rule
        self.progress.trials(done=done, total=self.total, best=choice.record if choice and choice.feasible else None)
        if self.runner.stop_requested:
            return
        failed = trial.state == optuna.trial.TrialState.FAIL
        self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
        if self.consecutive_failures >= _MAX_CONSECUTIVE_FAILURES:
            self.say(f"stopping: {_MAX_CONSECUTIVE_FAILURES} trials in a row failed (see fail_reason above)")
            self.stop = True
            return
        waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        if done + waiting < self.total:
            promoted = promote_near_miss(study, records, space=self.runner.space, trials=self.total)
            if promoted is not None:
                number, label = promoted
                self.say(
                    f"trial {number} is a near miss (within the budget, drop just over the limit): queued "
                    f"again ({label})"
                )


def optimize(
    study: optuna.Study, runner: TrialRunner, *, config: SearchConfig, say: Say, progress: SearchProgress
) -> None:
    """Run trials until ``config.trials`` of them count (:func:`~autocompress.study.record.counted`) across every
    process on the study, at most :data:`PROPOSALS_PER_TRIAL` proposals per counted trial in all; near misses are
    promoted as they appear. One trial at a time, each in a slot reserved in the storage."""
    total = config.trials
    slots = TrialSlots(study, total)
    on_trial_end = _TrialEnd(runner, total=total, say=say, progress=progress, prefer=config.prefer)
    # The allowance is the study's, not this run's: a resumed study that needs one more trial may use what the first
    # run left of PROPOSALS_PER_TRIAL x --trials (with a per-run allowance, 4 proposals stopped over a tight budget
    # once ended a resumed tiny study one trial short). This run may always make as many proposals as trials remained.
    remaining_at_start = total - len(counted(read_records(study)))
    own = 0
    started = time.monotonic()
    waiting_said = False
    while not on_trial_end.stop and not runner.stop_requested:
        if config.timeout is not None and time.monotonic() - started >= config.timeout:
            return
        recover(study, runner, say)
        records = read_records(study)
        done = len(counted(records))
        if done >= total:
            return
        if own >= remaining_at_start and _proposals_used(records) >= PROPOSALS_PER_TRIAL * total:
            say(
                f"ended with {done} of {total} counted trials: the sampler's proposals "
                f"({PROPOSALS_PER_TRIAL} per trial in all) were skipped or stopped over the budget; a looser "
                "--latency-budget or a space that prunes more leaves more to fine-tune"
            )
            return
        token = slots.reserve(done)
        if token is None:  # the trials in flight in other processes may fill --trials: wait for them
            if not waiting_said:
                say(f"waiting: {done} of {total} trials are finished and other processes run the rest")
                waiting_said = True
            fail_stale_trials(study)
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


def wait_for_other_workers(
    study: optuna.Study, runner: TrialRunner, *, config: SearchConfig, say: Say, progress: SearchProgress
) -> None:
    """Before the rescue and the choice: let other processes' trials finish, and run what a dead one left queued."""
    said = False
    while not runner.stop_requested:
        recover(study, runner, say)
        fail_stale_trials(study)
        states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
        open_trials = study.get_trials(deepcopy=False, states=states)
        if not open_trials:
            return
        waiting = [t for t in open_trials if t.state == optuna.trial.TrialState.WAITING]
        if waiting and len(counted(read_records(study))) < config.trials:
            optimize(study, runner, config=config, say=say, progress=progress)  # e.g. a dead worker's retried trial
            continue
        if len(waiting) == len(open_trials):
            return  # only queued trials beyond --trials are left (e.g. a promotion that no longer fits)
        if not said:
            running = [t.number for t in open_trials if t.state == optuna.trial.TrialState.RUNNING]
            say(f"waiting for trial(s) {', '.join(map(str, running))} of other processes to finish before the choice")
            said = True
        time.sleep(2.0)


def serve_build_hosts(study: optuna.Study, runner: TrialRunner, *, config: SearchConfig, say: Say) -> None:
    """The measure worker's part of the search: answer build hosts' requests (on this CPU, with this study's meter,
    under the core guard) until the study has ``--trials`` counted trials and nothing runs."""
    total = config.trials

    def done() -> bool:
        if runner.stop_requested:
            return True
        fail_stale_trials(study)
        records = read_records(study)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return not running and (
            len(counted(records)) >= total or _proposals_used(records) >= PROPOSALS_PER_TRIAL * total
        )

    say(
        f"measure worker: serving latency and accuracy for study {config.study_name!r}; start build hosts with "
        f"`python -m autocompress search --build-only` and the same --storage, --study-name and --output"
    )
    answered = serve(
        MeasureQueue(study),
        measure=runner.meter.measure,
        score=runner.score_artifact,
        anchor=lambda: runner.meter.anchor_ms,
        done=done,
        say=say,
    )
    say(f"measure worker: {answered} figures taken for build hosts")


def _record_interrupted(study: optuna.Study, runner: TrialRunner) -> Callable[[optuna.trial.FrozenTrial, str], None]:
    def on_failed(trial: optuna.trial.FrozenTrial, reason: str) -> None:
        try:
            policy = runner.space.fixed_policy(
                trial.params, runner.groups, int8_kernel=runner.int8_kernel, train_size=runner.train_size
            )
        except Exception:  # parameters incomplete: the process died while sampling them
            policy = None
        record = runner.failed_record(
            policy,
            number=trial.number,
            role=str(trial.user_attrs.get(ROLE_ATTR, "sampled")),
            label=str(trial.user_attrs.get(LABEL_ATTR, "")),
            reason=reason,
        )
        write_failed_record(study, trial, record)

    return on_failed


def recover(study: optuna.Study, runner: TrialRunner, say: Say) -> None:
    """Fail and queue again the RUNNING trials of dead processes on this host (a killed worker, an earlier run)."""
    recovered = recover_interrupted(study, on_failed=_record_interrupted(study, runner))
    if recovered:
        say(
            f"trial(s) {', '.join(map(str, recovered))} were interrupted (their process ended); marked failed and "
            "queued again"
        )


def requeue_stopped(study: optuna.Study) -> None:
    """Queue again the trials Ctrl-C cut short, so the resume runs their policies (once each)."""
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    queued = {t.user_attrs.get("retry_of") for t in waiting}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        record = read_record(trial)
        if record and (record.fail_reason or "").startswith(INTERRUPTED) and trial.number not in queued:
            if any(t.user_attrs.get("retry_of") == trial.number for t in study.get_trials(deepcopy=False)):
                continue
            attrs = {k: v for k, v in trial.user_attrs.items() if k in (ROLE_ATTR, LABEL_ATTR)}
            study.enqueue_trial(
                dict(trial.params), user_attrs={**attrs, "retry_of": trial.number}, skip_if_exists=False
            )


@contextlib.contextmanager
def stop_on_ctrl_c(runner: TrialRunner, study: optuna.Study, say: Say) -> Iterator[None]:
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

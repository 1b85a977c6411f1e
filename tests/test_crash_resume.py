"""Nothing lost: a search killed with SIGKILL mid-trial, or stopped with Ctrl-C, resumes to exactly the requested
number of trials with nothing left RUNNING and the interrupted policy retried. Real CLI processes, tiny model."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import torch
from _cli_project import tiny_cli_project

from autocompress.sources.workload import Workload
from autocompress.study.record import read_record, read_records

TRIALS = 5
SPACE = """\
prune: {per: uniform, level: {low: 0.1, high: 0.6, step: 0.1}, ratio: {low: 0.0, high: 0.6}}
quantize: {mode: [none], calibration_samples: 16}
distill: {steps: {low: 80, high: 100, step: 20}}  # long enough to be caught mid-trial
"""


def _project(tmp_path: Path, teacher: torch.nn.Module) -> list[str]:
    return [
        *tiny_cli_project(tmp_path, teacher, SPACE),
        "--trials",
        str(TRIALS),
        "--latency-budget",
        "10x",
        "--max-accuracy-drop",
        "50",
        "--repeats",
        "10",
        "--warmup",
        "3",
        "--latency-window",
        "0.3",
        "--output",
        "out",
        "--study-name",
        "crash",
    ]


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="crash", storage=f"sqlite:///{tmp_path}/out/crash/study.db")


def _start_and_interrupt(tmp_path: Path, command: list[str], sig: int) -> tuple[subprocess.CompletedProcess[str], int]:
    """Start the search, wait until a pruning trial (after the fp32 baseline, trial 0) is RUNNING, send ``sig``."""
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "out" / "crash" / "study.db"
    deadline = time.monotonic() + 600
    target = None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                running = _study(tmp_path).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            except Exception:  # the study is being created
                running = []
            started = [t for t in running if t.number >= 1 and "owner" in t.user_attrs and t.params]
            if started:
                target = started[0].number
                time.sleep(0.3)  # inside the trial (pruning, fine-tuning)
                proc.send_signal(sig)
                break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert target is not None, f"no trial was caught running; stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}"
    return subprocess.CompletedProcess(command, proc.returncode, out, err), target


def _finish_and_check(tmp_path: Path, command: list[str], interrupted: int, reason: str) -> None:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = _study(tmp_path)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    killed = study.trials[interrupted]
    assert killed.state == optuna.trial.TrialState.FAIL
    record = read_record(killed)
    assert record is not None and record.outcome == "failed" and (record.fail_reason or "").startswith(reason), record
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == interrupted]
    assert len(retries) == 1 and retries[0].params == killed.params, "the interrupted policy runs again, once"
    assert retries[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    counted = [
        r for r in read_records(study) if r.role != "rescue" and not (r.fail_reason or "").startswith("interrupted")
    ]
    assert len(counted) == TRIALS, f"{len(counted)} counted trials, wanted exactly {TRIALS}"


@pytest.mark.slow
def test_sigkill_mid_trial_then_same_command_resumes(tiny_workload: Workload, tmp_path: Path) -> None:
    command = _project(tmp_path, tiny_workload.model)
    killed, number = _start_and_interrupt(tmp_path, command, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    running = _study(tmp_path).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert [t.number for t in running] == [number], "SIGKILL leaves the trial RUNNING until the resume recovers it"
    finished_before = {t.number for t in _study(tmp_path).trials if t.state.is_finished()}
    _finish_and_check(tmp_path, command, number, "interrupted: process")
    # No finished trial was lost or rerun.
    study = _study(tmp_path)
    assert all(study.trials[n].state.is_finished() for n in finished_before)


@pytest.mark.slow
def test_ctrl_c_stops_after_the_stage_keeps_trials_and_prints_the_resume_command(
    tiny_workload: Workload, tmp_path: Path
) -> None:
    command = _project(tmp_path, tiny_workload.model)
    stopped, number = _start_and_interrupt(tmp_path, command, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    last = stopped.stderr.strip().splitlines()[-1]
    assert "trials are finished and kept" in last and "resume with: python -m autocompress search" in last, last
    assert "--study-name crash" in last and "Traceback" not in stopped.stderr
    study = _study(tmp_path)
    assert not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)), "the cut trial is queued again"
    _finish_and_check(tmp_path, command, number, "interrupted: Ctrl-C")


def test_a_trial_dead_on_another_host_is_failed_by_the_heartbeat_and_retried(
    tiny_workload: Workload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials of other hosts cannot be checked by pid: the RDB heartbeat fails them after the grace period and
    Optuna's RetryHeartbeatStaleTrialCallback queues their parameters again."""
    import autocompress.scale.storage as storage_module
    from autocompress.config import SearchConfig, parse_budget
    from autocompress.study.session import create_study, run_study
    from autocompress.study.space import SearchSpace

    monkeypatch.setattr(storage_module, "HEARTBEAT_S", 1)
    monkeypatch.setattr(storage_module, "GRACE_S", 2)
    space = SearchSpace.from_dict(
        {"prune": {"per": "none"}, "quantize": {"mode": ["none", "int8"], "calibration_samples": 8}}, source="hb"
    )
    config = SearchConfig(
        trials=3,
        study_name="hb",
        output=tmp_path,
        latency_budget=parse_budget("10x"),
        max_accuracy_drop=50.0,
        warmup=2,
        repeats=5,
        latency_window=0.2,
    )
    study = create_study(config)
    ghost = study.ask({"quant.mode": optuna.distributions.CategoricalDistribution(["none", "int8"])})
    ghost.set_user_attr("owner", {"host": "another-host", "pid": 1})
    storage_module.storage_of(study).record_heartbeat(storage_module.trial_id(ghost))  # it ran, then its host went away
    time.sleep(3)
    result = run_study(tiny_workload, space, config)
    trials = result.study.trials
    assert trials[ghost.number].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == ghost.number]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    # The retry reuses what the dead trial had sampled (here only quant.mode) and samples the rest.
    assert trials[ghost.number].params.items() <= retried[0].params.items()
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]

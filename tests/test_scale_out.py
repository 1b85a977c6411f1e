"""Several processes on one study (real CLI processes, tiny model): ``--workers 2``, two plain ``search`` commands on
one SQLite study, and two workers on a real PostgreSQL server with one of them SIGKILLed mid-trial. Every run ends
with exactly ``--trials`` counted trials, the baselines once, every trial judged against the one stored budget, and
nothing left RUNNING."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import torch
from _cli_project import tiny_cli_project

from autocompress.sources.workload import Workload
from autocompress.study.record import TrialRecord, read_records

TRIALS = 6
# Everything is within a 10x budget and a 50 pt limit: every trial fine-tunes and counts, so the count is exact
# only if the workers share it. Few, short KD steps keep each trial about a second.
SPACE = """\
prune: {per: uniform, level: {low: 0.1, high: 0.6, step: 0.1}, ratio: {low: 0.0, high: 0.6}}
quantize: {mode: [none], calibration_samples: 16}
distill: {steps: {low: 40, high: 60, step: 20}}
"""
POSTGRES = os.environ.get("AUTOCOMPRESS_TEST_POSTGRES")


def _project(tmp_path: Path, teacher: torch.nn.Module, study: str, *extra: str) -> list[str]:
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
        study,
        *extra,
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "AUTOCOMPRESS_CORE_LOCK": str(tmp_path / "cores.lock"),
    }


def _check_study(study: optuna.Study) -> list[TrialRecord]:
    """Exactly TRIALS counted trials, baselines once, one budget, nothing RUNNING or WAITING; returns the records."""
    records = read_records(study)
    counted = [
        r
        for r in records
        if r.role != "rescue"
        and (r.outcome == "complete" or (r.outcome == "failed" and not (r.fail_reason or "").startswith("interrupted")))
    ]
    assert len(counted) == TRIALS, f"{len(counted)} counted trials, wanted exactly {TRIALS}: " + ", ".join(
        f"{r.number}:{r.outcome}/{r.role}" for r in records
    )
    # Enqueued once per study (fp32 only in this space); a retry of a killed baseline is not a second enqueue.
    baselines = [
        t
        for t in study.trials
        if t.user_attrs.get("role") == "baseline"
        and "retry_of" not in t.user_attrs
        and "failed_trial" not in t.system_attrs
    ]
    assert len(baselines) == 1, f"the baselines are enqueued once per study, found {len(baselines)}"
    budget = study.user_attrs["reference"]["budget_ms"]
    assert {r.budget_ms for r in records} == {budget}, "every trial is judged against the budget the study stored"
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers))), "trial numbers are unique and dense"
    # This study's locks only: a shared server may hold other studies (and another run's leftovers).
    assert not [
        name for name in optuna.get_all_study_names(study._storage) if name.startswith(f"{study.study_name}.lock.")
    ], "every lock was released"
    return records


def _pids(records: list[TrialRecord]) -> set[int]:
    return {int(r.stages["worker"]["pid"]) for r in records if r.stages.get("worker")}


@pytest.mark.slow
def test_workers_2_share_one_study_exactly(tiny_workload: Workload, tmp_path: Path) -> None:
    command = _project(tmp_path, tiny_workload.model, "w2", "--workers", "2")
    done = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "started 1 more worker process" in done.stdout
    study = optuna.load_study(study_name="w2", storage=f"sqlite:///{tmp_path}/out/w2/study.db")
    records = _check_study(study)
    assert len(_pids(records)) == 2, "both processes ran trials"
    log = (tmp_path / "out" / "w2" / "workers" / "worker-1.log").read_text()
    assert "worker done" in log, log[-2000:]
    assert (tmp_path / "out" / "w2" / "chosen" / "metrics.json").is_file()
    assert study.user_attrs["noise"]["core_guard_wait_s"] >= 0


@pytest.mark.slow
def test_two_plain_search_commands_on_one_study_end_with_exactly_the_trials(
    tiny_workload: Workload, tmp_path: Path
) -> None:
    command = _project(tmp_path, tiny_workload.model, "race")
    first = subprocess.Popen(
        command, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.0)
    second = subprocess.Popen(
        command, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    outs = [p.communicate(timeout=900) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outs):
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
    study = optuna.load_study(study_name="race", storage=f"sqlite:///{tmp_path}/out/race/study.db")
    records = _check_study(study)
    assert len(_pids(records)) == 2, "both processes ran trials"
    assert "another process is setting this study up" in outs[1][0] or "another process is setting" in outs[0][0]
    for out, _ in outs:
        assert "/6]" in out and "7/6" not in out, "progress never counts past --trials"


@pytest.mark.slow
def test_postgresql_two_workers_one_sigkilled_nothing_lost(tiny_workload: Workload, tmp_path: Path) -> None:
    if not POSTGRES:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL test: .ci/run starts a server and sets AUTOCOMPRESS_TEST_POSTGRES")
        pytest.skip("set AUTOCOMPRESS_TEST_POSTGRES=postgresql+psycopg2://user:password@host/db to run it")
    name = f"pg-{uuid.uuid4().hex[:8]}"
    command = _project(tmp_path, tiny_workload.model, name, "--storage", POSTGRES)
    survivor = subprocess.Popen(
        command, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    victim = subprocess.Popen(
        command, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # One storage (one connection pool) for the whole watch: a fresh `load_study(storage=url)` per poll opens a new
    # engine each time, and its idle connections pile up until the server refuses clients ("too many clients").
    storage = optuna.storages.RDBStorage(POSTGRES)
    deadline = time.monotonic() + 600
    try:
        _watch_and_check(name, storage, survivor, victim, deadline)
    finally:
        for proc in (survivor, victim):
            if proc.poll() is None:
                proc.kill()
        for leftover in optuna.get_all_study_names(storage):  # the study and its auxiliary (lock, queue) studies
            if leftover == name or leftover.startswith(name + "."):
                optuna.delete_study(study_name=leftover, storage=storage)
        storage.engine.dispose()


def _watch_and_check(
    name: str,
    storage: optuna.storages.BaseStorage,
    survivor: subprocess.Popen[str],
    victim: subprocess.Popen[bytes],
    deadline: float,
) -> None:
    """SIGKILL ``victim`` inside one of its trials, wait for ``survivor`` to finish, check that nothing was lost."""
    killed_trial = None
    try:
        while time.monotonic() < deadline and killed_trial is None and victim.poll() is None:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
                running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            except KeyError:  # not created yet
                running = []
            for t in running:
                if (t.user_attrs.get("owner") or {}).get("pid") == victim.pid and t.params:
                    time.sleep(0.2)  # inside the trial
                    victim.send_signal(signal.SIGKILL)
                    killed_trial = t.number  # not reaped: a zombie, as a --workers child would be
                    break
            time.sleep(0.05)
        out, err = survivor.communicate(timeout=900)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert killed_trial is not None, "the second worker was never caught inside a trial"
    assert survivor.returncode == 0, out[-3000:] + err[-3000:]
    study = optuna.load_study(study_name=name, storage=storage)
    records = _check_study(study)
    killed = [r for r in records if r.number == killed_trial]
    assert killed and killed[0].outcome == "failed" and (killed[0].fail_reason or "").startswith("interrupted")
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == killed_trial]
    assert len(retries) == 1 and retries[0].state.is_finished(), "the killed worker's trial ran again, once"


def test_build_and_measure_steps_run_apart(tiny_workload: Workload, tmp_path: Path) -> None:
    """The seam of a build host and a measure worker: one runner builds (prune + export), another one, with its own
    meter and teacher, as a process on the deploy target would have, measures and scores the artifact from its files
    alone; the scores agree exactly and the latency figures agree within noise."""
    from autocompress.compress.prune import prunable_groups
    from autocompress.config import SearchConfig, parse_budget
    from autocompress.hardware.cpu import detect_cpu, machine_fingerprint
    from autocompress.runtimes import Artifact, get_runtime
    from autocompress.study.reference import measure_reference
    from autocompress.study.space import load_space
    from autocompress.study.trial import TrialRunner

    config = SearchConfig(
        trials=1,
        output=tmp_path,
        study_name="seam",
        latency_budget=parse_budget("10x"),
        warmup=3,
        repeats=10,
        latency_window=0.3,
    )
    x = tiny_workload.example_input()
    groups = prunable_groups(tiny_workload.model, x, num_classes=10)
    space = load_space("default")
    runtime = get_runtime("onnxruntime")
    cpu = detect_cpu()

    def runner(folder: str) -> TrialRunner:
        reference, meter = measure_reference(tiny_workload, config, tmp_path / folder, runtime=runtime, cpu=cpu)
        return TrialRunner(
            tiny_workload,
            space,
            config,
            budget_ms=reference.budget_ms,
            teacher_accuracy=reference.val_accuracy,
            groups=groups,
            int8_kernel=runtime.int8_kernel(cpu),
            fingerprint=machine_fingerprint(cpu),
            meter=meter,
            runtime=runtime,
            target=reference.target,
        )

    builder, target = runner("build-host"), runner("target")
    params = {**space.uniform_params(groups, 0.5), **space.quant_params("none", groups), **space.kd_params()}
    policy = space.fixed_policy(
        params, groups, int8_kernel=runtime.int8_kernel(cpu), train_size=len(tiny_workload.train)
    )
    _, built = builder.build(policy, tmp_path / "trials" / "00000")
    shipped = Artifact(built.path, policy.quant, runtime=built.runtime)  # what a record names: files + plan
    here, _ = builder.time_artifact(built)
    there, _ = target.time_artifact(shipped)
    assert target.score_artifact(shipped) == builder.score_artifact(built)
    assert there.low_ms <= there.median_ms <= there.high_ms  # type: ignore[operator]
    assert 1 / 3 < there.median_ms / here.median_ms < 3, (here, there)


@pytest.mark.slow
def test_build_host_builds_and_the_measure_worker_measures(
    tiny_workload: Workload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``measure-worker`` (a subprocess: the target) sets the study up and finishes it; ``search --build-only`` (this
    process: the build host) runs every trial and never times or scores anything itself — its meter, its torch
    timing and its scorer raise here. Exactly --trials trials, each measured by the measure worker's process, judged
    against the target's budget; the target exports the chosen model."""
    from autocompress import cli
    from autocompress.measure.latency import LatencyMeter

    command = _project(tmp_path, tiny_workload.model, "split")
    target = subprocess.Popen(
        [*command[:3], "measure-worker", *command[4:]],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("a build host never measures")

    monkeypatch.setattr(LatencyMeter, "measure", boom)
    monkeypatch.setattr(LatencyMeter, "calibrate", boom)
    monkeypatch.setattr("autocompress.study.reference.measure_torch", boom)
    monkeypatch.setattr("autocompress.study.trial.evaluate", boom)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AUTOCOMPRESS_CORE_LOCK", str(tmp_path / "cores.lock"))
    storage = f"sqlite:///{tmp_path}/out/split/study.db"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and target.poll() is None:  # the target sets the study up first
            # Not created yet; or the target is creating the database this very moment (schema stamp race).
            with contextlib.suppress(KeyError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
                if (tmp_path / "out" / "split" / "study.db").exists() and "identity" in optuna.load_study(
                    study_name="split", storage=storage
                ).user_attrs:
                    break
            time.sleep(0.5)
        assert target.poll() is None, target.communicate()[1][-3000:]
        assert cli.main(["search", *command[4:], "--build-only"]) == 0
        out, err = target.communicate(timeout=600)
    finally:
        if target.poll() is None:
            target.kill()
    assert target.returncode == 0, out[-3000:] + err[-3000:]
    assert "measure worker:" in out and "figures taken for build hosts" in out, out[-3000:]
    study = optuna.load_study(study_name="split", storage=storage)
    records = _check_study(study)
    sampled = [r for r in records if r.role != "rescue"]
    assert {int(r.stages["worker"]["pid"]) for r in sampled} == {os.getpid()}, "the build host ran every trial"
    assert {int(r.stages["measured_by"]["pid"]) for r in sampled} == {target.pid}, "the target measured every one"
    assert {r.fingerprint["cpu"] for r in records} == {study.user_attrs["fingerprint"]["cpu"]}
    assert (tmp_path / "out" / "split" / "chosen" / "metrics.json").is_file() or (
        tmp_path / "out" / "split" / "over_budget" / "metrics.json"
    ).is_file()

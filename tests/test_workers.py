"""The pieces several processes on one study rely on: the storage lock, trial slots, the owner of a trial and the
host-level core guard (timing never beside heavy work)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from autocompress.measure.guard import CoreGuard
from autocompress.scale.workers import StorageLock, TrialSlots, host_id, owner, owner_is_dead_here


def _study(tmp_path: Path, name: str = "s") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name, storage=f"sqlite:///{tmp_path}/s.db", load_if_exists=True, directions=["maximize", "minimize"]
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_storage_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    study = _study(tmp_path)
    order: list[str] = []
    first = StorageLock(study, "setup", poll_s=0.05)
    first.acquire()

    def second() -> None:
        with StorageLock(_study(tmp_path), "setup", poll_s=0.05):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    order.append("first releases")
    first.release()
    thread.join(timeout=30)
    assert order == ["first releases", "second"], "the second holder waited for the first"
    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/s.db")]
    assert names == ["s"], "a released lock leaves no study behind"


def test_a_lock_whose_holder_died_on_this_host_is_taken_over(tmp_path: Path) -> None:
    study = _study(tmp_path)
    storage = study._storage
    ghost = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s.lock.setup")
    storage.set_study_user_attr(ghost, "holder", {**owner(), "pid": _dead_pid(), "uuid": "someone-else"})
    storage.set_study_user_attr(ghost, "beat", time.time())
    started = time.monotonic()
    with StorageLock(study, "setup", poll_s=0.05):
        pass
    assert time.monotonic() - started < 5


@pytest.mark.timeout(60)  # the failure mode is waiting forever for the silent holder
def test_a_lock_whose_holder_stopped_beating_is_taken_over(tmp_path: Path) -> None:
    study = _study(tmp_path)
    url = f"sqlite:///{tmp_path}/s.db"
    ghost = optuna.create_study(study_name="s.lock.setup", storage=url)  # a holder on another host, silent 100 s
    ghost.set_user_attr("holder", {"host": "elsewhere", "host_id": "other:1", "pid": 1, "uuid": "x"})
    ghost.set_user_attr("beat", time.time() - 100)
    started = time.monotonic()
    with StorageLock(study, "setup", stale_s=30, poll_s=0.05):
        took = time.monotonic() - started
        holders = {s.study_name: s.user_attrs.get("holder", {}) for s in optuna.get_all_study_summaries(url)}
    assert took < 10, f"the stale lock was taken over after {took:.1f} s, not at once"
    assert holders["s.lock.setup"]["uuid"] == owner()["uuid"], f"this process holds the lock now: {holders}"
    assert "s.lock.setup" not in optuna.get_all_study_names(url), "released on leaving the block"


def test_slots_cap_counted_plus_in_flight_at_the_total(tmp_path: Path) -> None:
    study = _study(tmp_path)
    slots = TrialSlots(study, total=3)
    a, b = slots.reserve(counted=1), slots.reserve(counted=1)
    assert a and b and slots.reserve(counted=1) is None, "1 counted + 2 in flight fill 3"
    trial = study.ask()
    slots.bind(a, trial.number)
    assert slots.in_flight() == 2
    slots.release(b)  # ended without counting (stopped over budget)
    assert slots.in_flight() == 1
    study.tell(trial, [0.9, 1.0])  # finished: its slot no longer holds anything
    assert slots.in_flight() == 0
    assert slots.reserve(counted=2) is not None


def test_an_unbound_slot_of_a_dead_process_frees_at_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.set_user_attr(
        "slot:ghost", {"owner": {**owner(), "pid": _dead_pid(), "uuid": "ghost"}, "t": time.time(), "trial": None}
    )
    assert TrialSlots(study, total=1).in_flight() == 0


def test_a_killed_child_not_yet_reaped_is_dead() -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not owner_is_dead_here({**owner(), "pid": proc.pid, "uuid": "child"})
        proc.send_signal(signal.SIGKILL)
        time.sleep(0.5)  # a zombie until we wait() for it
        assert owner_is_dead_here({**owner(), "pid": proc.pid, "uuid": "child"})
    finally:
        proc.wait()


def test_only_this_host_judges_an_owner_dead_by_its_pid() -> None:
    dead = _dead_pid()
    assert owner_is_dead_here({**owner(), "pid": dead, "uuid": "other"})
    assert not owner_is_dead_here(owner()), "this process is alive"
    # Another container with the same host name, pid 1: not ours to judge (the heartbeat does it).
    assert not owner_is_dead_here({"host": owner()["host"], "host_id": "another-machine:4026531836", "pid": dead})
    assert host_id().count(":") == 1


def _hold_heavy(path: str, cores: list[int], seconds: float, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    guard = CoreGuard(Path(path), cores=cores)
    with guard.heavy():
        ready.set()
        time.sleep(seconds)


@pytest.mark.parametrize(
    ("heavy_cores", "timing_cores", "waits"),
    [([0, 1], [0, 1], True), ([0, 1], [1], True), ([0], [1], False), ([2, 3], [0, 1], False)],
    ids=["same cores", "one shared core", "disjoint cores", "disjoint pairs"],
)
def test_timing_waits_for_heavy_work_in_another_process_on_its_cores_only(
    tmp_path: Path, heavy_cores: list[int], timing_cores: list[int], waits: bool
) -> None:
    # The cores are the guard's say, not the machine's: the test needs no particular core count.
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    lock = str(tmp_path / "cores.lock")
    proc = ctx.Process(target=_hold_heavy, args=(lock, heavy_cores, 1.5, ready))
    proc.start()
    try:
        assert ready.wait(60)
        guard = CoreGuard(Path(lock), cores=timing_cores)
        started = time.monotonic()
        with guard.timing():
            waited = time.monotonic() - started
        if waits:
            assert waited > 0.5, "the timing started while another process was fine-tuning on its cores"
            assert guard.waited_s >= waited * 0.9
        else:
            assert waited < 0.5, "a timing waited for heavy work on other cores"
            assert proc.is_alive(), "the heavy work was still running while the timing ran"
    finally:
        proc.join(timeout=30)


def test_the_guard_runs_on_the_cores_of_its_process() -> None:
    assert CoreGuard(Path("x.lock")).cores == tuple(sorted(os.sched_getaffinity(0)))
    assert CoreGuard(Path("x.lock"), cores=[3, 1, 3]).cores == (1, 3)


def test_timing_inside_heavy_work_is_refused(tmp_path: Path) -> None:
    guard = CoreGuard(tmp_path / "cores.lock")
    with guard.heavy(), guard.heavy():  # nested heavy work is one hold
        with pytest.raises(RuntimeError, match="inside heavy work"):
            with guard.timing():
                pass
    with guard.timing():
        pass


def test_the_guard_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import autocompress.measure.guard as workers

    monkeypatch.setenv("AUTOCOMPRESS_CORE_LOCK", "off")
    assert workers._default_guard_path() is None
    monkeypatch.setenv("AUTOCOMPRESS_CORE_LOCK", "/tmp/x.lock")
    assert workers._default_guard_path() == Path("/tmp/x.lock")
    monkeypatch.delenv("AUTOCOMPRESS_CORE_LOCK")
    assert str(workers._default_guard_path()).endswith(f"autocompress-{os.getuid()}.cores.lock")


_OPEN_AT = """
import sys, time
from autocompress.scale.storage import open_storage
start = float(sys.argv[2])
while time.time() < start:
    pass
open_storage(sys.argv[1])
"""


def test_processes_opening_a_new_database_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    """Several workers started together on a study whose SQLite file does not exist yet: each creates the tables and
    stamps the schema version; without the retry in ``autocompress.scale.storage.open_storage`` every one but the first
    could fail with ``UNIQUE constraint failed: alembic_version.version_num`` (seen in the suite, 2026-12-02)."""
    for round_ in range(2):
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        start = time.time() + 8.0  # after every child has imported torch
        children = [
            subprocess.Popen([sys.executable, "-c", _OPEN_AT, url, str(start)], stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        for child in children:
            _, err = child.communicate(timeout=120)
            assert child.returncode == 0, err[-2000:]
        assert optuna.get_all_study_names(url) == []

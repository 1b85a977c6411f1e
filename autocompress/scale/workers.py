"""Several processes on one study: who owns a trial, a lock every process on the storage sees, trial slots counted
in the storage.

**Owner.** A trial records the process that runs it (:func:`owner`): host name, a host id (the machine id and the
pid namespace, so two containers that share a host name and both run as pid 1 are told apart), pid and a per-process
uuid. Only a process on the same host id may judge a trial's owner dead by its pid (:func:`owner_is_dead_here`);
other hosts' trials are left to the storage's heartbeat.

**Storage lock** (:class:`StorageLock`). Optuna has no lock, but creating a study whose name is taken fails
atomically in every Optuna storage (a unique column in RDB, a check under the journal's own lock). So a lock named
``<study>.lock.<purpose>`` is held while a study of that name exists. The holder beats every few seconds; a lock
whose holder stopped beating for ``stale_s`` is taken over (its holder died).

**Slots** (:class:`TrialSlots`). ``--trials N`` counts fully measured trials, and whether a trial counts is known only
after its latency gate (a stopped or skipped proposal does not). A worker therefore reserves a slot under the lock
before it starts a trial: ``counted + slots in flight < N``, else it waits for a slot to free (a proposal that ended
not counting) or for the study to be done. N workers thus end with exactly N counted trials.

The host-level guard that keeps latency timing away from heavy work is :mod:`autocompress.measure.guard`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from autocompress.scale.storage import LOCK_INFIX, storage_of

__all__ = [
    "process_uuid",
    "host_id",
    "owner",
    "owner_is_dead_here",
    "StorageLock",
    "TrialSlots",
    "pid_alive",
    "SLOT_PREFIX",
]

_UUIDS: dict[int, str] = {}
SLOT_PREFIX = "slot:"
_UNBOUND_SLOT_S = 120.0  # a slot reserved but never bound to a trial (its process died in between) frees after this


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def process_uuid() -> str:
    """A uuid of this process (a forked child gets its own)."""
    return _UUIDS.setdefault(os.getpid(), uuid.uuid4().hex[:16])


def host_id() -> str:
    """This host and pid namespace: ``<machine id>:<pid namespace inode>`` (containers differ in the second part)."""
    machine = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id") or socket.gethostname()
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = "-"
    return f"{machine[:16]}:{pidns}"


def owner() -> dict[str, Any]:
    """Who runs a trial (written when it starts): host, host id, pid and this process's uuid."""
    return {"host": socket.gethostname(), "host_id": host_id(), "pid": os.getpid(), "uuid": process_uuid()}


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs here.

    A zombie (killed, not yet reaped by its parent, e.g. a ``--workers`` child) is dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _read(f"/proc/{pid}/stat")
    return not (stat and stat.rsplit(")", 1)[-1].split()[:1] == ["Z"])


def owner_is_dead_here(who: dict[str, Any]) -> bool:
    """True when ``who`` ran on this host id and its process is gone (or is this process: a trial of ours that is
    still RUNNING while we are between trials was left by an earlier run with our pid). An owner recorded before host
    ids existed is judged by host name, as it was then."""
    if who.get("uuid") == process_uuid():
        return False  # ours and running
    same_host = who.get("host_id") == host_id() if "host_id" in who else who.get("host") == socket.gethostname()
    if not same_host:
        return False
    pid = int(who.get("pid", -1))
    return pid == os.getpid() or not pid_alive(pid)


class StorageLock:
    """Mutual exclusion among every process on one Optuna storage (module docstring).

    Example::

        with StorageLock(study, "setup", on_wait=print):
            ...  # only one process of any host runs this at a time
    """

    def __init__(
        self,
        study: optuna.Study,
        purpose: str,
        *,
        stale_s: float = 60.0,
        beat_s: float = 5.0,
        poll_s: float = 0.2,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.study = study
        self.name = f"{study.study_name}{LOCK_INFIX}{purpose}"
        self.stale_s = stale_s
        self.beat_s = beat_s
        self.poll_s = poll_s
        self.on_wait = on_wait
        self._id: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def _store(self) -> optuna.storages.BaseStorage:
        return storage_of(self.study)

    def _try_create(self) -> bool:
        try:
            self._id = self._store.create_new_study([optuna.study.StudyDirection.MINIMIZE], self.name)
        except optuna.exceptions.DuplicatedStudyError:
            return False
        self._store.set_study_user_attr(self._id, "holder", {**owner(), "since": time.time()})
        self._store.set_study_user_attr(self._id, "beat", time.time())
        return True

    def _holder(self) -> tuple[int, dict[str, Any], float] | None:
        try:
            lock_id = self._store.get_study_id_from_name(self.name)
            attrs = self._store.get_study_user_attrs(lock_id)
        except KeyError:
            return None
        holder = attrs.get("holder") or {}
        return lock_id, holder, float(attrs.get("beat") or holder.get("since") or 0.0)

    def acquire(self) -> None:
        told = False
        while not self._try_create():
            seen = self._holder()
            if seen is None:
                continue  # released between our two calls
            lock_id, holder, beat = seen
            if holder and (owner_is_dead_here(holder) or time.time() - beat > self.stale_s):
                with contextlib.suppress(KeyError):  # another waiter took it over first
                    self._store.delete_study(lock_id)
                continue
            if not told and self.on_wait is not None:
                self.on_wait(
                    f"waiting for {holder.get('host', '?')} pid {holder.get('pid', '?')} "
                    f"({self.name.rsplit('.', 1)[-1]} of study {self.study.study_name!r})"
                )
                told = True
            time.sleep(self.poll_s)
        self._stop.clear()
        self._beat = threading.Thread(target=self._beating, name=f"lock-{self.name}", daemon=True)
        self._beat.start()

    def _beating(self) -> None:
        while not self._stop.wait(self.beat_s):
            with contextlib.suppress(Exception):  # a failed beat only shortens the time until a takeover
                if self._id is not None:
                    self._store.set_study_user_attr(self._id, "beat", time.time())

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._id is not None:
            with contextlib.suppress(KeyError):
                self._store.delete_study(self._id)
        self._id = None

    def __enter__(self) -> StorageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class TrialSlots:
    """At most ``total`` counted trials across every worker (module docstring). Slots live in the study's user
    attributes (``slot:<uuid>`` → owner, time, trial number) and are reserved under a :class:`StorageLock`."""

    def __init__(self, study: optuna.Study, total: int) -> None:
        self.study = study
        self.total = total

    def in_flight(self, *, exclude: str | None = None) -> int:
        """Slots whose trial has not finished yet (or that were reserved moments ago and are not bound yet)."""
        running = {
            t.number
            for t in self.study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
            )
        }
        count = 0
        for key, slot in self.study.user_attrs.items():
            if not key.startswith(SLOT_PREFIX) or key == exclude or not slot or slot.get("done"):
                continue
            trial = slot.get("trial")
            if trial is None:
                count += time.time() - float(slot.get("t", 0)) < _UNBOUND_SLOT_S and not owner_is_dead_here(
                    slot.get("owner", {})
                )
            else:
                count += int(trial) in running
        return count

    def reserve(self, counted: int) -> str | None:
        """A slot token when ``counted`` plus the slots in flight leave room for one more trial; else ``None``."""
        with StorageLock(self.study, "slots", stale_s=30.0):
            if counted + self.in_flight() >= self.total:
                return None
            token = f"{SLOT_PREFIX}{uuid.uuid4().hex[:12]}"
            self.study.set_user_attr(token, {"owner": owner(), "t": time.time(), "trial": None})
            return token

    def bind(self, token: str, trial_number: int) -> None:
        self.study.set_user_attr(token, {"owner": owner(), "t": time.time(), "trial": trial_number})

    def release(self, token: str) -> None:
        slot = dict(self.study.user_attrs.get(token) or {})
        self.study.set_user_attr(token, {**slot, "done": True})

"""The core guard: a lock per CPU core that keeps latency timing away from heavy work on the same cores.

Fine-tuning, calibration and scoring next to a latency measurement corrupt it. Every autocompress process takes, for
each core it may run on (its CPU affinity), a file lock (:class:`CoreGuard`): heavy work takes them shared, timing
exclusive (writer preference through a turnstile, so timing is not starved by overlapping fine-tunings). Processes
on the same cores (the usual case: every process may use every core) therefore exclude each other exactly as one
host-wide lock would; processes pinned to *disjoint* cores (``taskset -c``) never wait for each other. That is how a
GPU host keeps its GPU busy: ``taskset -c 12-15 autocompress measure-worker ...`` times on four cores of its own,
and ``taskset -c 0-11 autocompress search --build-only --workers 4 --device cuda ...`` fine-tunes and builds on the
others without ever waiting behind a timing (README, "Several workers"). ``AUTOCOMPRESS_CORE_LOCK`` names the lock
files' prefix, or ``off`` turns the guard off.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from autocompress.hardware.cpu import process_cores

__all__ = ["CoreGuard", "core_guard"]


class CoreGuard:
    """Heavy work shared, timing exclusive, among the autocompress processes that share a core (module docstring).

    ``path`` is the lock files' prefix (``<tmp>/autocompress-<uid>.cores.lock`` by default; ``AUTOCOMPRESS_CORE_LOCK``
    moves it, ``off`` disables the guard): core 3's lock is ``<path>.core3``. ``cores``: the cores this process runs
    on, its CPU affinity when it starts unless given. Nested heavy work is one hold; timing inside heavy work is a
    programming error.
    """

    def __init__(self, path: Path | None, cores: Sequence[int] | None = None) -> None:
        self.path = path
        self.cores = tuple(sorted(set(cores if cores is not None else process_cores())))
        self._local = threading.local()
        self.waited_s = 0.0  # time spent waiting for other processes (reported with the study's noise)

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextlib.contextmanager
    def _files(self) -> Iterator[list[tuple[int, int]]]:
        """``(turnstile, data)`` descriptors of every core's lock, in core order: every process takes them in the same
        order, so two timings never wait for each other in a cycle."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opened: list[tuple[int, int]] = []
        try:
            for core in self.cores:
                data = f"{self.path}.core{core}"
                opened.append(
                    (
                        os.open(data + ".turnstile", os.O_RDWR | os.O_CREAT, 0o666),
                        os.open(data, os.O_RDWR | os.O_CREAT, 0o666),
                    )
                )
            yield opened
        finally:
            for turnstile, data in opened:
                os.close(data)  # closing a descriptor releases its lock
                os.close(turnstile)

    @contextlib.contextmanager
    def heavy(self) -> Iterator[None]:
        """Fine-tuning, building, calibrating, scoring: many may run at once, never beside a timing on their cores."""
        if self.path is None or self._depth() > 0:
            self._local.depth = self._depth() + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._files() as locks:
            started = time.perf_counter()
            for turnstile, data in locks:
                fcntl.flock(turnstile, fcntl.LOCK_EX)  # waits while a timing holds the turnstile (writer preference)
                fcntl.flock(turnstile, fcntl.LOCK_UN)
                fcntl.flock(data, fcntl.LOCK_SH)
            self.waited_s += time.perf_counter() - started
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
                for _, data in reversed(locks):
                    fcntl.flock(data, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """A latency measurement: alone on its cores among autocompress processes."""
        if self._depth() > 0:
            raise RuntimeError("a latency measurement inside heavy work would time the work too")
        if self.path is None or getattr(self._local, "timing", False):
            yield
            return
        with self._files() as locks:
            started = time.perf_counter()
            try:
                for turnstile, data in locks:
                    fcntl.flock(turnstile, fcntl.LOCK_EX)
                    fcntl.flock(data, fcntl.LOCK_EX)
                self.waited_s += time.perf_counter() - started
                self._local.timing = True
                yield
            finally:
                self._local.timing = False
                for turnstile, data in reversed(locks):
                    fcntl.flock(data, fcntl.LOCK_UN)
                    fcntl.flock(turnstile, fcntl.LOCK_UN)


def _default_guard_path() -> Path | None:
    value = os.environ.get("AUTOCOMPRESS_CORE_LOCK", "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value)
    return Path(tempfile.gettempdir()) / f"autocompress-{os.getuid()}.cores.lock"


_GUARD: CoreGuard | None = None


def core_guard() -> CoreGuard:
    """This process's :class:`CoreGuard` (one per process, on the cores the process may run on when first asked)."""
    global _GUARD
    if _GUARD is None:
        _GUARD = CoreGuard(_default_guard_path())
    return _GUARD

"""The core guard: a host-level lock that keeps latency timing away from heavy work.

Fine-tuning, calibration and scoring next to a latency measurement corrupt it. Every autocompress process on a host
takes a file lock (:class:`CoreGuard`): heavy work takes it shared, timing exclusive (writer preference through a
turnstile, so timing is not starved by overlapping fine-tunings). ``AUTOCOMPRESS_CORE_LOCK`` names the lock file, or
``off`` turns the guard off.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CoreGuard", "core_guard"]


class CoreGuard:
    """Heavy work shared, timing exclusive, among every autocompress process on this host (module docstring).

    ``path`` is the lock file (``<tmp>/autocompress-<uid>.cores.lock`` by default; ``AUTOCOMPRESS_CORE_LOCK`` moves
    it, ``off`` disables the guard). Nested heavy work is one hold; timing inside heavy work is a programming error.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._local = threading.local()
        self.waited_s = 0.0  # time spent waiting for other processes (reported with the study's noise)

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextlib.contextmanager
    def _files(self) -> Iterator[tuple[int, int]]:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        turnstile = os.open(str(self.path) + ".turnstile", os.O_RDWR | os.O_CREAT, 0o666)
        data = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            yield turnstile, data
        finally:
            os.close(data)
            os.close(turnstile)

    @contextlib.contextmanager
    def heavy(self) -> Iterator[None]:
        """Fine-tuning, building, calibrating, scoring: many may run at once, never beside a timing."""
        if self.path is None or self._depth() > 0:
            self._local.depth = self._depth() + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._files() as (turnstile, data):
            started = time.perf_counter()
            fcntl.flock(turnstile, fcntl.LOCK_EX)  # waits while a timing holds the turnstile (writer preference)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            fcntl.flock(data, fcntl.LOCK_SH)
            self.waited_s += time.perf_counter() - started
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
                fcntl.flock(data, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """A latency measurement: alone among autocompress processes on this host."""
        if self._depth() > 0:
            raise RuntimeError("a latency measurement inside heavy work would time the work too")
        if self.path is None or getattr(self._local, "timing", False):
            yield
            return
        with self._files() as (turnstile, data):
            started = time.perf_counter()
            fcntl.flock(turnstile, fcntl.LOCK_EX)
            try:
                fcntl.flock(data, fcntl.LOCK_EX)
                self.waited_s += time.perf_counter() - started
                self._local.timing = True
                try:
                    yield
                finally:
                    self._local.timing = False
                    fcntl.flock(data, fcntl.LOCK_UN)
            finally:
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
    """This process's :class:`CoreGuard` (one per process: the lock file is per host)."""
    global _GUARD
    if _GUARD is None:
        _GUARD = CoreGuard(_default_guard_path())
    return _GUARD

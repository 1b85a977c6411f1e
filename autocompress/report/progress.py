"""The live progress bar of ``autocompress search`` (rich): trials done / total, time left, the best feasible model
so far and the current trial's stage. One log line per finished trial is printed above it by the CLI.

Drawn only on a terminal: in CI logs and pipes the per-trial lines are the progress, and ``--quiet`` silences both.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from autocompress.study.events import SearchProgress
from autocompress.study.record import TrialRecord

__all__ = ["RichProgress"]


class RichProgress(SearchProgress):
    """A :class:`SearchProgress` drawn with :class:`rich.progress.Progress` on ``console``."""

    def __init__(self, console: Console, *, total: int) -> None:
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[best]} · {task.fields[stage]}"),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("search", total=total, best="best feasible: none yet", stage="starting")

    @property
    def console(self) -> Console:
        """Print through this while the bar is live, so lines appear above it."""
        return self._bar.console

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._bar.stop()

    def stage(self, text: str) -> None:
        self._bar.update(self._task, stage=text)

    def trials(self, *, done: int, total: int, best: TrialRecord | None) -> None:
        best_text = "best feasible: none yet"
        if best is not None and best.accuracy is not None and best.latency_ms is not None:
            best_text = f"best feasible: trial {best.number}, {best.accuracy:.2%} at {best.latency_ms:.3f} ms"
        self._bar.update(self._task, completed=done, total=total, best=best_text)

"""What the search tells while it runs: one line per event (``say``) and the live hooks a progress bar draws.

Kept apart from the session so that the phases, the trial loop and the terminal's progress bar can all use it
without importing the session.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from autocompress.study.record import TrialRecord, read_record

__all__ = ["Say", "SearchProgress", "trial_line"]

Say = Callable[[str], None]


class SearchProgress:
    """Hooks the search calls while it runs; the CLI draws them as a live bar. Every hook does nothing by default."""

    def stage(self, text: str) -> None:
        """The search entered a stage (``probe: prune 50% · int8``, ``trial 7: fine-tuning (90 steps)``)."""

    def trials(self, *, done: int, total: int, best: TrialRecord | None) -> None:
        """A trial ended: ``done`` of ``total`` counted trials, ``best`` the best feasible record so far."""


def trial_line(trial: optuna.trial.FrozenTrial, done: int | None, total: int | None, budget_ms: float) -> str:
    """The one line said when ``trial`` ends (``done``/``total`` counted trials; ``None`` during the rescue)."""
    head = f"[trial {trial.number:>3} · {done}/{total}]" if done is not None else f"[trial {trial.number:>3} · rescue]"
    record = read_record(trial)
    if record is None:
        return f"{head} {trial.state.name.lower()}"
    label = f" [{record.label}]" if record.label else ""
    if record.outcome == "skipped":
        return f"{head}{label} {record.summary} → skipped, not built: {record.stopped_reason}"
    if record.outcome == "failed":
        return f"{head}{label} FAILED {record.summary}: {record.fail_reason}"
    acc = (
        f"val acc {record.accuracy:.2%} (drop {record.accuracy_drop_pt:+.2f} pt)"
        if record.accuracy is not None
        else "accuracy not measured (never fine-tuned)"
    )
    status = "feasible" if record.feasible else "infeasible"
    stopped = " · stopped before fine-tuning (over budget)" if record.outcome == "stopped" else ""
    halted = record.halted_at
    if halted is not None:
        stopped += (
            f" · halved at rung {halted['rung'] + 1} (ranked {halted['position']} of {halted['population']}, "
            f"{halted['drop_pt']:+.2f} pt in PyTorch)"
        )
    return (
        f"{head}{label} {record.summary} → {acc} · {record.latency_ms:.3f} ms (budget {budget_ms:.3f}) · "
        f"{status}{stopped} · {record.timings.get('total_s', 0):.1f} s"
    )

"""The live bar shows trials done/total, the best feasible model so far and the current stage."""

from __future__ import annotations

import io

from rich.console import Console

from autocompress.measure.latency import Latency
from autocompress.report.progress import RichProgress
from autocompress.study.record import TrialRecord


def test_bar_shows_count_best_and_stage() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    best = TrialRecord(
        number=7,
        outcome="complete",
        policy=None,
        budget_ms=1.0,
        max_drop_pt=1.0,
        teacher_accuracy=0.99,
        accuracy=0.985,
        latency=Latency(0.42, 0.01, 0.41, 0.43, 10, 1, 1),
    )
    with RichProgress(console, total=20) as bar:
        bar.trials(done=3, total=20, best=None)
        bar.stage("trial 3: fine-tuning (90 KD steps)")
        bar._bar.refresh()
        first = out.getvalue()
        bar.trials(done=8, total=20, best=best)
        bar._bar.refresh()
    text = out.getvalue()
    assert "3/20" in first and "best feasible: none yet" in first and "trial 3: fine-tuning (90 KD steps)" in first
    assert "8/20" in text and "best feasible: trial 7, 98.50% at 0.420 ms" in text

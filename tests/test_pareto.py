"""Pareto front, the choice under constraints (never a model that breaks the accuracy limit) and the hypervolume."""

from __future__ import annotations

import pytest

from autocompress.measure.latency import Latency
from autocompress.pareto import choose, hypervolume, pareto_front
from autocompress.record import TrialRecord

BUDGET, MAX_DROP, TEACHER = 1.0, 1.0, 0.99


def rec(n: int, acc: float | None, lat: float, *, outcome: str = "complete", budget: float = BUDGET) -> TrialRecord:
    latency = Latency(median_ms=lat, iqr_ms=0.01, p10_ms=lat, p90_ms=lat, n=10, threads=1, batch_size=1)
    return TrialRecord(number=n, outcome=outcome, policy=None, budget_ms=budget, max_drop_pt=MAX_DROP,
                       teacher_accuracy=TEACHER, accuracy=acc, latency=latency, finetuned=acc is not None)


def test_pareto_front_keeps_only_non_dominated_complete_records_sorted_by_latency() -> None:
    records = [rec(0, 0.99, 2.0), rec(1, 0.98, 1.0), rec(2, 0.97, 1.5), rec(3, 0.95, 0.5), rec(4, 0.98, 1.0),
               rec(5, None, 0.1, outcome="stopped")]
    front = pareto_front(records)
    # 2 is dominated by 1 (less accurate and slower); 1 and 4 tie exactly and both stay; a stopped trial has no
    # accuracy of its own and is not on the front however fast it is.
    assert [r.number for r in front] == [3, 1, 4, 0]


def test_choice_is_the_most_accurate_feasible_record() -> None:
    # 0 is over budget; 3 breaks the accuracy limit (drop 9 pt); 1 and 2 are feasible, 1 more accurate.
    choice = choose([rec(0, 0.99, 2.0), rec(1, 0.985, 0.9), rec(2, 0.982, 0.8), rec(3, 0.90, 0.5)])
    assert choice is not None and choice.feasible and choice.record.number == 1
    assert choice.suggested_budget_ms is None


def test_accuracy_ties_go_to_lower_latency() -> None:
    choice = choose([rec(0, 0.985, 0.9), rec(1, 0.985, 0.8)])
    assert choice is not None and choice.record.number == 1


def test_nothing_feasible_exports_the_fastest_model_within_the_accuracy_limit_never_a_broken_one() -> None:
    records = [
        rec(0, 0.99, 3.0),                      # teacher-like: within accuracy, 2 ms over
        rec(1, 0.985, 1.2),                     # fine-tuned, within accuracy, 0.2 ms over → the answer
        rec(2, 0.50, 0.9),                      # meets the budget but loses 49 pt: never chosen
        rec(3, None, 0.4, outcome="stopped"),   # never fine-tuned: its accuracy is unknown
    ]
    choice = choose(records)
    assert choice is not None and not choice.feasible
    assert choice.record.number == 1
    assert choice.overshoot_ms == pytest.approx(0.2)
    # Suggested budget: the model's latency + 10 %, rounded up to two digits (1.32 → 1.4).
    assert choice.suggested_budget_ms == pytest.approx(1.4)
    assert "0.200 ms over the budget" in choice.reason


def test_no_record_within_the_accuracy_limit_means_no_choice() -> None:
    assert choose([rec(0, 0.5, 0.5), rec(1, None, 0.2, outcome="stopped")]) is None
    assert choose([]) is None


def test_hypervolume_on_normalised_axes() -> None:
    # Axes: latency/budget and drop/max_drop, reference point (1, 1). One feasible point at (0.5, 0.5) → 0.25.
    assert hypervolume([rec(0, TEACHER - 0.005, 0.5)]) == pytest.approx(0.25)
    # A second point (0.25, 1.0 → no area of its own) adds nothing; (0.25, 0) adds a 0.25-wide strip below 0.5.
    assert hypervolume([rec(0, TEACHER - 0.005, 0.5), rec(1, TEACHER - 0.01, 0.25)]) == pytest.approx(0.25)
    assert hypervolume([rec(0, TEACHER - 0.005, 0.5), rec(1, TEACHER, 0.25)]) == pytest.approx(0.75)
    # Infeasible records add nothing; nothing feasible is 0.
    assert hypervolume([rec(0, TEACHER, 1.5), rec(1, 0.5, 0.1)]) == 0.0


def test_rescue_candidates_bisect_between_the_slowest_failure_and_the_best_within_limit() -> None:
    from dataclasses import replace

    from autocompress.policy import Policy, PrunePolicy
    from autocompress.study import _rescue_candidates

    def stopped(n: int, lat: float) -> TrialRecord:
        return replace(rec(n, None, lat, outcome="stopped"), policy=Policy(prune=PrunePolicy(ratios={"g": n / 100})))

    records = [rec(0, TEACHER, 3.0), *(stopped(n, lat) for n, lat in [(1, 1.8), (2, 1.5), (3, 1.2), (4, 2.0), (5, 3.5)])]
    # Nothing rescued yet: every stopped structure faster than the best model within the limit (3.0 ms), fastest first.
    assert [r.number for r in _rescue_candidates(records)] == [3, 2, 1, 4]
    # Rescuing trial 3 (1.2 ms) broke the limit and trial 1 (1.8 ms) kept it: only 1.5 ms is left between them.
    rescued = [replace(rec(6, 0.5, 1.2), role="rescue", label="rescue of trial 3"),
               replace(rec(7, TEACHER - 0.005, 1.8), role="rescue", label="rescue of trial 1")]
    assert [r.number for r in _rescue_candidates(records + rescued)] == [2]

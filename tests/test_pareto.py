from __future__ import annotations

from autocompress.pareto import Candidate, choose, pareto_front


def cand(n: int, acc: float, lat: float, *, lat_c: float = -1.0, acc_c: float = -1.0) -> Candidate:
    return Candidate(number=n, accuracy=acc, latency_ms=lat, constraints={"latency_ms": lat_c, "accuracy_drop_pt": acc_c})


def test_pareto_front_keeps_only_non_dominated_sorted_by_latency() -> None:
    cands = [cand(0, 0.99, 2.0), cand(1, 0.98, 1.0), cand(2, 0.97, 1.5), cand(3, 0.95, 0.5), cand(4, 0.98, 1.0)]
    front = pareto_front(cands)
    # 2 is dominated by 1 (less accurate and slower); 1 and 4 tie exactly and both stay.
    assert [c.number for c in front] == [3, 1, 4, 0]


def test_choice_is_best_accuracy_among_feasible() -> None:
    cands = [cand(0, 0.99, 2.0, lat_c=1.0), cand(1, 0.98, 1.0), cand(2, 0.975, 0.8), cand(3, 0.90, 0.5, acc_c=5.0)]
    choice = choose(cands)
    assert choice is not None and choice.feasible
    assert choice.candidate.number == 1


def test_accuracy_ties_go_to_lower_latency() -> None:
    choice = choose([cand(0, 0.98, 1.0), cand(1, 0.98, 0.9)])
    assert choice is not None and choice.candidate.number == 1


def test_no_feasible_candidate_returns_closest_to_budget_and_says_so() -> None:
    cands = [cand(0, 0.99, 3.0, lat_c=2.0), cand(1, 0.97, 1.2, lat_c=0.2), cand(2, 0.5, 0.9, lat_c=-0.1, acc_c=40.0)]
    choice = choose(cands)
    assert choice is not None and not choice.feasible
    # Latency excess is ranked first: trial 2 meets the budget (0 ms over) but misses accuracy by 40 pt.
    assert choice.candidate.number == 2
    assert "no candidate meets the constraints" in choice.reason


def test_empty_study_has_no_choice() -> None:
    assert choose([]) is None

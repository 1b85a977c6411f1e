"""Pareto front, the choice under constraints (never a model that breaks the accuracy limit) and the hypervolume."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest

from autocompress.measure.latency import Latency
from autocompress.study.pareto import PREFERENCES, choose, hypervolume, pareto_front, stored_rule
from autocompress.study.record import RECORD_KEY, WEIGHTS_FROM_ATTR, TrialRecord, read_records

BUDGET, MAX_DROP, TEACHER = 1.0, 1.0, 0.99


def rec(n: int, acc: float | None, lat: float, *, outcome: str = "complete", budget: float = BUDGET) -> TrialRecord:
    latency = Latency(median_ms=lat, iqr_ms=0.01, p10_ms=lat, p90_ms=lat, n=10, threads=1, batch_size=1)
    return TrialRecord(
        number=n,
        outcome=outcome,
        policy=None,
        budget_ms=budget,
        max_drop_pt=MAX_DROP,
        teacher_accuracy=TEACHER,
        accuracy=acc,
        latency=latency,
        finetuned=acc is not None,
    )


def test_pareto_front_keeps_only_non_dominated_complete_records_sorted_by_latency() -> None:
    records = [
        rec(0, 0.99, 2.0),
        rec(1, 0.98, 1.0),
        rec(2, 0.97, 1.5),
        rec(3, 0.95, 0.5),
        rec(4, 0.98, 1.0),
        rec(5, None, 0.1, outcome="stopped"),
    ]
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
        rec(0, 0.99, 3.0),  # teacher-like: within accuracy, 2 ms over
        rec(1, 0.985, 1.2),  # fine-tuned, within accuracy, 0.2 ms over → the answer
        rec(2, 0.50, 0.9),  # meets the budget but loses 49 pt: never chosen
        rec(3, None, 0.4, outcome="stopped"),  # never fine-tuned: its accuracy is unknown
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


def test_rescue_bracket_counts_a_failure_only_at_the_longest_fine_tuning() -> None:
    from dataclasses import replace

    from autocompress.policy import DistillPolicy, Policy, PrunePolicy
    from autocompress.study.phases import _bracket

    def done(n: int, level: float, acc: float, steps: int) -> TrialRecord:
        policy = Policy(prune=PrunePolicy(ratios={"a": level, "b": level}), distill=DistillPolicy(steps=steps))
        return replace(rec(n, acc, 0.5), policy=policy)

    records = [
        done(0, 0.0, TEACHER, 0),
        done(1, 0.4, TEACHER - 0.005, 150),
        done(2, 0.6, 0.90, 30),
        done(3, 0.8, 0.80, 150),
    ]
    # 40 % keeps the limit; 60 % broke it after only 30 steps (not a verdict at 150); 80 % broke it at 150.
    assert _bracket(records, longest_steps=150) == (pytest.approx(0.4), pytest.approx(0.8))
    assert _bracket(records, longest_steps=30) == (pytest.approx(0.4), pytest.approx(0.6))


def test_choice_prefers_a_confident_record_and_passes_over_excluded_ones() -> None:
    from dataclasses import replace

    confident = rec(1, 0.985, 0.80)
    straddling = replace(rec(2, 0.985, 0.79), latency=Latency(0.79, 0, 0.79, 0.79, 10, 1, 1, low_ms=0.75, high_ms=1.02))
    best = rec(3, 0.99, 0.9)
    choice = choose([confident, straddling, best])
    assert choice is not None and choice.record.number == 3
    # Trial 3 was over the budget when re-measured: among the equally accurate others, the confident one wins.
    choice = choose([confident, straddling, best], exclude=[3])
    assert choice is not None and choice.feasible and choice.record.number == 1 and choice.passed_over == (3,)
    # Everything feasible passed over: the fallback is the fastest within the accuracy limit, never called chosen.
    fallback = choose([confident, straddling, best], exclude=[1, 2, 3])
    assert fallback is not None and not fallback.feasible


def test_rescue_finishes_first_the_structure_that_keeps_the_budget() -> None:
    from dataclasses import replace

    from autocompress.study.phases import _budget_side_misses, _label

    # Budget 1.0 ms, limit 1 pt. Fine-tuning changes accuracy, never latency: only structures within the budget can
    # still become feasible, however far over the accuracy limit they are; the closest one first.
    within_far = replace(rec(1, TEACHER - 0.40, 0.60), role="sampled")  # 40 pt over, within the budget
    within_near = replace(rec(2, TEACHER - 0.028, 0.58), role="rescue")  # 2.8 pt over, within the budget
    over_budget = replace(rec(3, TEACHER - 0.011, 1.30), role="rescue")  # just over the limit, but too slow
    keeps_both = replace(rec(4, TEACHER - 0.005, 0.90), role="sampled")  # feasible: nothing to finish
    never_tuned = replace(rec(5, None, 0.40, outcome="stopped"), role="sampled")
    records = [within_far, within_near, over_budget, keeps_both, never_tuned]
    assert [r.number for r in _budget_side_misses(records)] == [2, 1]
    # Once fine-tuned longer (rescue label) it is not picked again.
    retried = replace(rec(6, TEACHER - 0.02, 0.58), role="rescue", label=f"rescue: {_label(2)}")
    assert [r.number for r in _budget_side_misses([*records, retried])] == [1]


def refined(n: int, acc: float, lat: float, low: float, high: float, *, source: int) -> TrialRecord:
    latency = Latency(
        median_ms=lat, iqr_ms=0.01, p10_ms=lat, p90_ms=lat, n=10, threads=1, batch_size=1, low_ms=low, high_ms=high
    )
    return TrialRecord(
        number=n,
        outcome="complete",
        policy=None,
        budget_ms=BUDGET,
        max_drop_pt=MAX_DROP,
        teacher_accuracy=TEACHER,
        accuracy=acc,
        latency=latency,
        finetuned=False,
        role="refined",
        weights_from=source,
    )


def test_a_refined_variant_is_chosen_only_where_it_helped_its_source() -> None:
    source = replace(refined(0, 0.985, 0.173, 0.167, 0.178, source=0), role="sampled", weights_from=None)
    # The OpenVINO run that exposed it: one val image more accurate, but slower with confidence than its source.
    slower_but_more_accurate = refined(1, 0.988, 0.198, 0.191, 0.203, source=0)
    choice = choose([source, slower_but_more_accurate])
    assert choice is not None and choice.record.number == 0
    # The same variant without its source in view is judged as any record (nothing to compare it with).
    alone = choose([slower_but_more_accurate])
    assert alone is not None and alone.record.number == 1
    # More accurate at no higher latency (its interval reaches the source's): it helped, so it is chosen.
    overlapping = refined(2, 0.988, 0.180, 0.176, 0.184, source=0)
    choice = choose([source, slower_but_more_accurate, overlapping])
    assert choice is not None and choice.record.number == 2
    # Faster with confidence at the same accuracy: chosen over its source (accuracy ties go to the faster).
    faster = refined(3, 0.985, 0.150, 0.146, 0.155, source=0)
    choice = choose([source, slower_but_more_accurate, faster])
    assert choice is not None and choice.record.number == 3
    # Faster but less accurate: not a help, so the more accurate source stays chosen (as it would anyway).
    faster_but_worse = refined(4, 0.982, 0.150, 0.146, 0.155, source=0)
    choice = choose([source, faster_but_worse])
    assert choice is not None and choice.record.number == 0


def test_a_refined_trial_of_a_study_written_before_weights_from_is_judged_against_its_source() -> None:
    # Studies written before records carried ``weights_from`` hold it only as the enqueued trial's user attribute:
    # read_record derives it, so the resumed study's choice still sees the variant as its source's refinement.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    source = replace(refined(0, 0.985, 0.173, 0.167, 0.178, source=0), role="sampled", weights_from=None)
    old_variant = replace(refined(1, 0.988, 0.198, 0.191, 0.203, source=0), weights_from=None)
    for record, attrs in ((source, {}), (old_variant, {WEIGHTS_FROM_ATTR: 0})):
        data = record.to_dict()
        data.pop("weights_from", None)  # as an old study wrote it
        trial = optuna.trial.create_trial(
            values=[record.accuracy, record.latency.median_ms], user_attrs={**attrs, RECORD_KEY: data}
        )
        study.add_trial(trial)
    records = read_records(study)
    assert [r.weights_from for r in records] == [None, 0]
    choice = choose(records)
    assert choice is not None and choice.record.number == 0, "slower with confidence than its source: not chosen"


def test_prefer_latency_chooses_the_fastest_feasible_record_and_the_stored_rule_is_read_back() -> None:
    # 0 over budget; 3 fastest but breaks the limit (drop 9 pt); 1 and 2 feasible: accuracy picks 1, latency 2.
    records = [rec(0, 0.99, 2.0), rec(1, 0.985, 0.9), rec(2, 0.982, 0.8), rec(3, 0.90, 0.5)]
    by_accuracy, by_latency = choose(records), choose(records, prefer="latency")
    assert by_accuracy is not None and by_accuracy.record.number == 1 and by_accuracy.prefer == "accuracy"
    assert by_latency is not None and by_latency.record.number == 2 and by_latency.prefer == "latency"
    assert "fastest" in by_latency.reason and "most accurate" in by_accuracy.reason
    # Latency ties go to the more accurate record; nothing feasible: the same fallback for both rules.
    tie = choose([rec(4, 0.982, 0.8), rec(5, 0.986, 0.8)], prefer="latency")
    assert tie is not None and tie.record.number == 5
    over = [rec(6, 0.985, 1.5), rec(7, 0.984, 1.2)]
    assert [choose(over, prefer=p).record.number for p in PREFERENCES] == [7, 7]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="prefer must be one of accuracy, latency"):
        choose(records, prefer="fast")
    # The report and the dashboard read the rule the study recorded, then its config, then the default.
    assert stored_rule({"choice": {"prefer": "latency", "passed_over": [3]}}) == ("latency", (3,))
    assert stored_rule({"config": {"prefer": "latency"}}) == ("latency", ())
    assert stored_rule({}) == ("accuracy", ())


def test_prefer_latency_takes_the_surer_model_among_those_as_fast_within_the_noise() -> None:
    def timed(n: int, acc: float, ms: float, low: float, high: float, drop_interval: tuple[float, float]):
        latency = Latency(median_ms=ms, iqr_ms=0.01, p10_ms=ms, p90_ms=ms, n=10, threads=1, batch_size=1)
        latency = replace(latency, low_ms=low, high_ms=high)
        return replace(rec(n, acc, ms), latency=latency, accuracy_paired={"interval_pt": list(drop_interval)})

    # The module docstring's example, limit MAX_DROP: A is the fastest figure, but B's interval reaches it and B's
    # drop interval lies within the limit while A's does not; C is slower with confidence.
    a = timed(0, TEACHER - (MAX_DROP - 0.2) / 100, 0.200, 0.195, 0.210, (-0.2, MAX_DROP + 0.9))
    b = timed(1, TEACHER, 0.205, 0.198, 0.214, (-0.8, 0.8))
    c = timed(2, TEACHER + 0.002, 0.260, 0.250, 0.270, (-1.0, 0.5))
    assert all(r.feasible for r in (a, b, c))
    # D: a noisy phase widened its interval down to A's figure, but its own figure is far outside A's interval.
    d = timed(3, TEACHER + 0.002, 0.250, 0.150, 0.260, (-1.0, 0.5))
    pick = choose([a, d], prefer="latency")
    assert pick is not None and pick.record.number == 0, "D is slower with confidence from A's side: not a tie"
    choice = choose([a, b, c], prefer="latency")
    assert choice is not None and choice.record.number == 1
    assert b.confidently_within_accuracy and not a.confidently_within_accuracy
    # Without B, A is the fastest and C is no tie: A, whatever its drop interval says.
    choice = choose([a, c], prefer="latency")
    assert choice is not None and choice.record.number == 0

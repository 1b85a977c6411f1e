"""Successive halving of the fine-tuning (autocompress.study.halving): the rule, the space key, and a trial that stops
at its rung or goes on, decided against the study's other rung figures."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
from _runner import trial_runner

from autocompress.config import SearchConfig, parse_budget
from autocompress.errors import ConfigError
from autocompress.report.table import write_csv
from autocompress.sources.workload import Workload
from autocompress.study.halving import (
    MIN_RUNG_STEPS,
    RUNGS_ATTR,
    Halving,
    RungFigure,
    decide,
    rung_population,
    rung_steps,
)
from autocompress.study.record import read_records
from autocompress.study.session import run_study
from autocompress.study.space import SearchSpace


def _figure(drop: float, ms: float = 0.2, rung: int = 0) -> RungFigure:
    return RungFigure(rung=rung, steps=50, drop_pt=drop, latency_ms=ms, went_on=True)


# ------------------------------------------------------------------------------------------------ the rule


def test_rungs_fall_at_fractions_of_the_trials_own_length_and_never_below_the_floor() -> None:
    assert rung_steps(152, Halving(eta=3, rungs=1)) == [51]
    assert rung_steps(450, Halving(eta=3, rungs=2)) == [50, 150]
    assert rung_steps(90, Halving(eta=3, rungs=2)) == [10, 30]
    assert rung_steps(60, Halving(eta=3, rungs=2)) == [20], "60/9 = 7 steps is below the floor: dropped"
    assert rung_steps(3 * MIN_RUNG_STEPS - 2, Halving(eta=3)) == []


def test_the_docstrings_example_stops_a_middling_trial_and_keeps_a_good_one() -> None:
    earlier = [_figure(d) for d in (0.3, 0.8, 2.0, 4.1, 6.0)]
    stopped = decide(_figure(1.5), earlier, eta=3, limit_pt=1.0)
    assert (stopped.went_on, stopped.position, stopped.population) == (False, 3, 6)
    kept = decide(_figure(0.5), earlier, eta=3, limit_pt=1.0)
    assert (kept.went_on, kept.position) == (True, 2)


def test_too_few_earlier_figures_never_stop_a_trial() -> None:
    decision = decide(_figure(50.0), [_figure(0.1), _figure(0.2)], eta=3, limit_pt=1.0)
    assert decision.went_on and decision.position == 3, "ranked last, but two figures are too little evidence"


def test_a_faster_trial_within_the_limit_keeps_its_place_on_the_front() -> None:
    earlier = [_figure(d, ms=0.30) for d in (0.1, 0.2, 0.3, 0.4, 0.5)]
    # Larger drop than all of them but faster and within the limit: not dominated, so on the first front.
    fast = decide(_figure(0.9, ms=0.10), earlier, eta=3, limit_pt=1.0)
    assert fast.went_on and fast.position == 2, fast
    # The same speed-up with a drop over the limit counts for nothing: over the limit ranks after all within it.
    lossy = decide(_figure(1.2, ms=0.10), earlier, eta=3, limit_pt=1.0)
    assert not lossy.went_on and lossy.position == 6, lossy


def test_a_tie_goes_to_the_new_trial() -> None:
    earlier = [_figure(1.0), _figure(1.0), _figure(1.0)]
    assert decide(_figure(1.0), earlier, eta=3, limit_pt=0.5).position == 1


def test_the_population_is_read_from_the_other_trials_rung_attribute() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, figures in enumerate([[_figure(0.5), _figure(0.2, rung=1)], [_figure(0.7)], []]):
        study.add_trial(
            optuna.trial.create_trial(
                values=[0.9, 1.0], user_attrs={RUNGS_ATTR: [f.to_dict() for f in figures]} if figures else {}
            )
        )
        assert study.trials[-1].number == number
    assert [f.drop_pt for f in rung_population(study.trials, rung=0, exclude=1)] == [0.5]
    assert [f.drop_pt for f in rung_population(study.trials, rung=1, exclude=2)] == [0.2]


# ------------------------------------------------------------------------------------------------ the space key


def test_the_space_reads_halving_and_says_what_it_costs() -> None:
    space = SearchSpace.from_dict({"distill": {"steps": {"low": 30, "high": 90, "step": 30}, "halving": {"eta": 3}}})
    assert space.halving == Halving(eta=3, rungs=1)
    assert "successive halving: every trial first 1/3 of its KD steps, the best 1/3 go on" in space.describe_kd(1000)
    assert SearchSpace.from_dict({"distill": {"halving": True}}).halving == Halving()
    assert SearchSpace.from_dict({"distill": {"halving": False}}).halving is None
    assert SearchSpace.from_dict({}).halving is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"eta": 1}, "eta must be at least 2"),
        ({"eta": 3, "speed": 2}, "must be a mapping {eta, rungs}"),
        ({"rungs": 0}, "rungs must be a positive integer"),
        ("often", "must be a mapping {eta, rungs}"),
    ],
)
def test_a_bad_halving_is_a_one_line_config_error(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match="distill.halving") as info:
        SearchSpace.from_dict({"distill": {"halving": value}}, source="s.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ in a study

HALVING_SPACE = SearchSpace.from_dict(
    {
        "prune": {"per": "uniform", "ratio": {"low": 0.2, "high": 0.6, "step": 0.1}},
        "distill": {"steps": {"low": 30, "high": 30}, "halving": {"eta": 2}},
        "quantize": {"mode": ["none"]},
    },
    source="halving",
)


def _config(tmp_path: Path, trials: int) -> SearchConfig:
    return SearchConfig(
        trials=trials,
        study_name="h",
        output=tmp_path,
        latency_budget=parse_budget("10x"),  # every structure keeps it: the test is about fine-tuning
        max_accuracy_drop=1.0,
        warmup=2,
        repeats=5,
        seed=0,
        latency_window=0.1,
    )


def test_a_study_halves_sampled_trials_by_the_rule_and_records_what_each_got(
    tiny_workload: Workload, tmp_path: Path
) -> None:
    result = run_study(tiny_workload, HALVING_SPACE, _config(tmp_path, trials=7))
    records = {r.number: r for r in read_records(result.study)}
    sampled = [r for r in records.values() if r.role == "sampled" and r.finetuned]
    assert len(sampled) >= 2
    seen: list[RungFigure] = []
    for r in sorted(sampled, key=lambda r: r.number):  # one process: trials ran in number order
        assert len(r.rungs) == 1, "30 steps at eta 2: one rung, at 15 steps"
        figure = RungFigure.from_dict(r.rungs[0])
        assert figure.steps == 15 and figure.latency_ms == pytest.approx(r.latency_before_finetune.median_ms)
        # The decision recorded is the rule applied to the figures of the trials before it.
        again = decide(figure, seen, eta=2, limit_pt=1.0)
        assert (again.went_on, again.position, again.population) == (figure.went_on, figure.position, figure.population)
        assert r.policy is not None and r.policy.distill.steps == (30 if figure.went_on else 15)
        assert (r.halted_at is None) == figure.went_on
        assert r.outcome == "complete" and r.accuracy is not None, "a halved trial is still deployed and scored"
        seen.append(figure)
    assert all(RungFigure.from_dict(r.rungs[0]).went_on for r in sorted(sampled, key=lambda r: r.number)[:2])
    # Baselines and enqueued trials are not halved: they get their whole length.
    assert all(not r.rungs for r in records.values() if r.role != "sampled")
    # trials.csv says where each halved trial stopped.
    rows = list(csv.DictReader(write_csv(tmp_path / "trials.csv", list(records.values()), None).open()))
    assert {int(row["trial"]): row["halved_at_rung"] for row in rows} == {
        n: ("1" if r.halted_at else "") for n, r in records.items()
    }


def test_a_trial_outranked_at_its_rung_stops_there_and_one_that_leads_goes_on(
    tiny_workload: Workload, tmp_path: Path
) -> None:
    runner, groups = trial_runner(tiny_workload, HALVING_SPACE, _config(tmp_path, trials=1), tmp_path / "teacher")
    params = {**HALVING_SPACE.uniform_params(groups, 0.4), **HALVING_SPACE.quant_params("none")}
    policy = HALVING_SPACE.fixed_policy(
        {**params, **HALVING_SPACE.kd_params()}, groups, train_size=len(tiny_workload.train)
    )
    for earlier_drop, goes_on in ((-100.0, False), (100.0, True)):
        study = optuna.create_study(directions=["maximize", "minimize"])
        for _ in range(3):  # earlier trials of the same structure at the rung: all far better, or all far worse
            attrs = {RUNGS_ATTR: [_figure(earlier_drop, ms=1e-6).to_dict()]}
            study.add_trial(optuna.trial.create_trial(values=[0.9, 1.0], user_attrs=attrs))
        runner.current_trial = study.ask()
        record = runner.evaluate(policy, number=runner.current_trial.number, role="sampled", label="")
        written = runner.current_trial.user_attrs[RUNGS_ATTR]
        assert len(written) == 1 and written[0]["went_on"] is goes_on and written[0]["population"] == 4
        assert record.policy is not None and record.policy.distill.steps == (30 if goes_on else 15)
        assert record.outcome == "complete" and record.finetuned and record.accuracy is not None
        assert (record.halted_at is not None) is not goes_on
        assert record.timings["distill_s"] > 0


def test_a_halted_near_miss_is_promoted_to_its_whole_fine_tuning_and_a_whole_one_to_3x() -> None:
    from autocompress.measure.latency import Latency
    from autocompress.study.phases import NEAR_MISS_STEPS_SCALE, near_misses, promote_near_miss
    from autocompress.study.record import TrialRecord
    from autocompress.study.trial import LABEL_ATTR, STEPS_SCALE_ATTR

    study = optuna.create_study(directions=["maximize", "minimize"])
    steps = {"kd.steps": optuna.distributions.IntDistribution(30, 30)}
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(values=[0.9, 0.1], params={"kd.steps": 30}, distributions=steps))
    latency = Latency(median_ms=0.1, iqr_ms=0.001, p10_ms=0.1, p90_ms=0.1, n=10, threads=1, batch_size=1)
    halted_rung = {**_figure(1.4).to_dict(), "went_on": False, "position": 3, "population": 4}

    def near_miss(number: int, rungs: tuple) -> TrialRecord:  # drop 1.2 pt against a 1 pt limit, within the budget
        return TrialRecord(
            number=number,
            outcome="complete",
            policy=HALVING_SPACE.fixed_policy({**HALVING_SPACE.quant_params("none"), **HALVING_SPACE.kd_params()}, []),
            budget_ms=1.0,
            max_drop_pt=1.0,
            teacher_accuracy=0.99,
            accuracy=0.978,
            latency=latency,
            finetuned=True,
            rungs=rungs,
        )

    records = [near_miss(0, (halted_rung,)), near_miss(1, ())]
    assert [r.number for r in near_misses(records)] == [0, 1]
    assert promote_near_miss(study, records, space=HALVING_SPACE, trials=10) == (
        0,
        "near miss of trial 0: its whole fine-tuning (halved at rung 1)",
    )
    assert promote_near_miss(study, records, space=HALVING_SPACE, trials=10) == (
        1,
        f"near miss of trial 1: {NEAR_MISS_STEPS_SCALE}x fine-tuning",
    )
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [(t.user_attrs[LABEL_ATTR], t.user_attrs[STEPS_SCALE_ATTR]) for t in waiting] == [
        ("near miss of trial 0: its whole fine-tuning (halved at rung 1)", 1),
        (f"near miss of trial 1: {NEAR_MISS_STEPS_SCALE}x fine-tuning", NEAR_MISS_STEPS_SCALE),
    ]

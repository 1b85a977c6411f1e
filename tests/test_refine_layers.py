"""Layer refinement (``quantize.refine_layers: true``): the int8 choice deployed again with layers in fp32.

The phase logic runs on a synthetic evaluator (numbers by formula, through the real space, records and study); the
real path (the source trial's fine-tuned weights loaded into the pruned structure, deployed again, no fine-tuning)
runs on the tiny digits model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from autocompress.compress.prune import PrunableGroup
from autocompress.config import SearchConfig, parse_budget
from autocompress.measure.latency import Latency
from autocompress.policy import Policy
from autocompress.sources.workload import Workload
from autocompress.study.pareto import choose
from autocompress.study.phases import refine_layers
from autocompress.study.record import TrialRecord, read_records
from autocompress.study.record import counted as _counted
from autocompress.study.session import create_study, run_study
from autocompress.study.space import SearchSpace, load_space
from autocompress.study.trial import STEPS_SCALE_ATTR, Objective

GROUPS = [PrunableGroup(name=f"layer{i}.conv", channels=32, layers=(f"layer{i}.conv",)) for i in range(4)]
TEACHER_ACC, BUDGET_MS = 0.99, 0.2
# fp32 on layer0: int8 cost time there (faster in fp32); on layer2: one image more accurate at the same latency;
# on layer1: slower; on layer3: less accurate.
EFFECT_MS = {"layer0.conv": -0.01, "layer1.conv": +0.02, "layer2.conv": 0.0, "layer3.conv": 0.0}
EFFECT_ACC = {"layer0.conv": 0.0, "layer1.conv": 0.0, "layer2.conv": +0.003, "layer3.conv": -0.003}


def _latency(ms: float) -> Latency:
    return Latency(
        median_ms=ms,
        iqr_ms=0.0,
        p10_ms=ms,
        p90_ms=ms,
        n=30,
        threads=1,
        batch_size=1,
        low_ms=ms * 0.99,
        high_ms=ms * 1.01,
    )


class Layered(Objective):
    """An int8 model at 0.10 ms and 98.5 %; each layer in fp32 moves latency and accuracy by EFFECT_*."""

    calls: list[tuple[str, int | None, tuple[str, ...]]]
    budget_ms = BUDGET_MS  # the phases' progress lines name the budget

    def failed_record(self, policy: Policy | None, *, number: int, role: str, label: str, reason: str) -> TrialRecord:
        return TrialRecord(
            number=number,
            policy=policy,
            role=role,
            label=label,
            budget_ms=BUDGET_MS,
            max_drop_pt=1.0,
            teacher_accuracy=TEACHER_ACC,
            outcome="failed",
            fail_reason=reason,
        )

    def evaluate(
        self, policy: Policy, *, number: int, role: str, label: str, weights_from: int | None = None
    ) -> TrialRecord:
        self.calls.append((role, weights_from, policy.quant.fp32_layers))
        layers = policy.quant.fp32_layers
        ms = 0.10 + sum(EFFECT_MS[g] for g in layers) if policy.quant.mode == "int8" else 0.15
        accuracy = 0.985 + sum(EFFECT_ACC[g] for g in layers)
        return TrialRecord(
            number=number,
            policy=policy,
            role=role,
            label=label,
            budget_ms=BUDGET_MS,
            max_drop_pt=1.0,
            teacher_accuracy=TEACHER_ACC,
            outcome="complete",
            latency=_latency(ms),
            accuracy=accuracy,
            finetuned=True,
        )


def _study_with_an_int8_choice(tmp_path: Path, space: SearchSpace) -> tuple[optuna.Study, Layered]:
    study = create_study(SearchConfig(trials=1, study_name="refine", output=tmp_path))
    objective = Layered(space, GROUPS, int8_kernel=None)
    objective.calls = []
    objective.train_size = 1000
    params = {**space.uniform_params(GROUPS, 0.5), **space.quant_params("int8", GROUPS), **space.kd_params()}
    study.enqueue_trial(params, user_attrs={STEPS_SCALE_ATTR: 3})  # a promoted near miss: its policy has 3x the KD
    study.optimize(objective, n_trials=1)
    return study, objective


def test_each_layer_alone_then_the_layers_that_helped_together(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dataclasses.replace(load_space("default"), refine_layers=True)
    study, objective = _study_with_an_int8_choice(tmp_path, space)
    lines: list[str] = []
    ran = refine_layers(study, objective, say=lines.append)
    refined = [r for r in read_records(study) if r.role == "refined"]
    # one variant per group, then layer0 (faster) and layer2 (more accurate, same latency) together
    assert ran == len(refined) == len(GROUPS) + 1
    assert [r.policy.quant.fp32_layers for r in refined] == [(g.name,) for g in GROUPS] + [
        ("layer0.conv", "layer2.conv")
    ]
    assert all(weights_from == 0 for role, weights_from, _ in objective.calls if role == "refined"), objective.calls
    assert all(r.weights_from == 0 for r in refined), "each record names its source, whatever evaluator built it"
    assert all(r.policy.prune == read_records(study)[0].policy.prune for r in refined), "the same structure"
    assert all(r.policy.distill == read_records(study)[0].policy.distill for r in refined), "the same KD recipe"
    combined = refined[-1]
    assert combined.latency_ms == pytest.approx(0.09) and combined.accuracy == pytest.approx(0.988)
    choice = choose(read_records(study))
    assert choice is not None and choice.record.number == combined.number
    assert _counted(read_records(study)) == read_records(study)[:1], "refined trials do not count towards --trials"
    assert "layer refinement of trial 0" in lines[0]
    # One round: the choice is now a refined variant, which is not refined again.
    assert refine_layers(study, objective, say=lines.append) == 0


def test_an_fp32_choice_is_not_refined(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dataclasses.replace(load_space("default"), refine_layers=True)
    study = create_study(SearchConfig(trials=1, study_name="refine-fp32", output=tmp_path))
    objective = Layered(space, GROUPS, int8_kernel=None)
    objective.calls = []
    objective.train_size = 1000
    study.enqueue_trial(
        {**space.uniform_params(GROUPS, 0.5), **space.quant_params("none", GROUPS), **space.kd_params()}
    )
    study.optimize(objective, n_trials=1)
    assert refine_layers(study, objective, say=lambda _: None) == 0
    assert [r.role for r in read_records(study)] == ["sampled"]


def test_the_space_file_key_is_checked() -> None:
    assert SearchSpace.from_dict({"quantize": {"refine_layers": True}}, source="s").refine_layers is True
    assert load_space("default").refine_layers is False
    from autocompress.errors import ConfigError

    with pytest.raises(ConfigError, match="quantize.refine_layers must be true or false"):
        SearchSpace.from_dict({"quantize": {"refine_layers": "yes"}}, source="s")


@pytest.mark.slow
def test_refined_trials_deploy_the_source_weights_without_fine_tuning(tiny_workload: Workload, tmp_path: Path) -> None:
    # A budget every structure keeps and an int8-only space, so the choice is int8 on any CPU; the refinement then
    # deploys the chosen trial's fine-tuned weights again with one layer in fp32 at a time.
    space = SearchSpace.from_dict(
        {
            "prune": {"per": "uniform", "ratio": {"low": 0.0, "high": 0.5, "step": 0.1}},
            "distill": {"steps": {"low": 10, "high": 20, "step": 10}},
            "quantize": {"mode": ["int8"], "calibration_samples": 16, "refine_layers": True},
        },
        source="refine",
    )
    config = SearchConfig(
        trials=2,
        study_name="r",
        output=tmp_path,
        latency_budget=parse_budget("10x"),
        max_accuracy_drop=50.0,
        warmup=3,
        repeats=10,
        seed=0,
        latency_window=0.2,
    )
    result = run_study(tiny_workload, space, config, say=lambda _: None)
    refined = [r for r in result.records if r.role == "refined"]
    assert refined, [(r.role, r.outcome, r.policy and r.policy.quant.mode) for r in result.records]
    source_number = int(refined[0].label.split("refine of trial ")[1].split(":")[0])
    source = next(r for r in result.records if r.number == source_number)
    assert source.policy is not None and source.policy.quant.mode == "int8"
    for r in refined:
        assert r.outcome == "complete" and r.finetuned and r.policy is not None
        assert r.policy.prune == source.policy.prune and len(r.policy.quant.fp32_layers) >= 1
        assert "distill_s" not in r.timings, "deployed again, not fine-tuned"
        # the source's fine-tuned weights: accuracy close to the source's (only the precision of a layer changed)
        assert abs((r.accuracy or 0.0) - (source.accuracy or 0.0)) < 0.05, (r.accuracy, source.accuracy)
        assert (tmp_path / "r" / r.artifact).exists()
    assert len(_counted(result.records)) == 2, "the refinement does not count towards --trials"

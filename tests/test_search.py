"""The study end to end at the library level, on the tiny digits model (seconds, not minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from autocompress.config import SearchConfig, parse_budget
from autocompress.errors import ConfigError
from autocompress.export import export_chosen
from autocompress.space import SearchSpace
from autocompress.study import run_study
from autocompress.workload import Workload

FAST_SPACE = SearchSpace.from_dict({
    "prune": {"per": "uniform", "ratio": {"low": 0.0, "high": 0.6, "step": 0.1}},
    "distill": {"steps": {"low": 10, "high": 20, "step": 10}},
    "quantize": {"calibration_samples": 16},
}, source="fast")


def _config(tmp_path: Path, **overrides) -> SearchConfig:
    base = dict(trials=4, study_name="t", output=tmp_path, latency_budget=parse_budget("0.9x"),
                max_accuracy_drop=5.0, warmup=3, repeats=10, seed=0)
    return SearchConfig(**{**base, **overrides})


def test_study_runs_exports_and_resumes(tiny_workload: Workload, tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = run_study(tiny_workload, FAST_SPACE, config)
    assert len(result.study.trials) == 4
    baselines = [t.user_attrs.get("baseline") for t in result.study.trials[:3]]
    assert baselines == ["fp32 (uncompressed)", "int8 per-channel only", "uniform 50% prune + KD + int8"]
    for t in result.study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert set(t.constraints) == {"latency_ms", "accuracy_drop_pt"}
    assert result.study.metric_names == ["accuracy", "latency_ms"]
    assert result.choice is not None

    chosen = export_chosen(result.choice, workload=tiny_workload, reference=result.reference, config=config)
    assert {p.name for p in chosen.iterdir()} == {"model.onnx", "model.pt2", "policy.json", "metrics.json"}
    metrics = json.loads((chosen / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"]["test_top1"] <= 1.0
    assert metrics["latency"]["speedup_vs_teacher_torch"] > 0
    assert metrics["machine"]["versions"]["onnxruntime"]
    # The PyTorch program loads without autocompress and reproduces the ONNX model's predictions.
    import numpy as np
    import onnxruntime as ort
    import torch

    program = torch.export.load(str(chosen / "model.pt2")).module()
    images = torch.stack([tiny_workload.val[i][0] for i in range(8)])
    if json.loads((chosen / "policy.json").read_text())["quant"]["mode"] == "none":
        onnx_out = ort.InferenceSession(str(chosen / "model.onnx")).run(None, {"input": images.numpy()})[0]
        np.testing.assert_allclose(program(images).detach().numpy(), onnx_out, atol=1e-3)

    # Same command again with a higher target: resumes, runs only the missing trial.
    resumed = run_study(tiny_workload, FAST_SPACE, _config(tmp_path, trials=5))
    assert len(resumed.study.trials) == 5


def test_resume_with_other_budget_is_refused(tiny_workload: Workload, tmp_path: Path) -> None:
    run_study(tiny_workload, FAST_SPACE, _config(tmp_path, trials=1))
    with pytest.raises(ConfigError, match=r"was created with other settings \(latency_budget: '0.9x' → '0.5x'\)"):
        run_study(tiny_workload, FAST_SPACE, _config(tmp_path, trials=2, latency_budget=parse_budget("0.5x")))


def test_over_budget_trial_stops_before_finetuning(tiny_workload: Workload, tmp_path: Path) -> None:
    config = _config(tmp_path, trials=3, latency_budget=parse_budget("0.0001ms"))
    result = run_study(tiny_workload, FAST_SPACE, config)
    pruned_trial = result.study.trials[2]  # the enqueued 50 % prune + KD baseline
    assert pruned_trial.user_attrs["policy"]["distill"]["steps"] > 0
    assert "over the latency budget before fine-tuning" in pruned_trial.user_attrs["stopped"]
    assert pruned_trial.user_attrs["finetuned"] is False
    assert "distill_s" not in pruned_trial.user_attrs["timings"]
    assert pruned_trial.user_attrs["timings"]["total_s"] < 2.0
    assert not any(c.feasible for c in result.candidates)
    assert result.choice is not None and not result.choice.feasible


@pytest.mark.parametrize("sampler", ["nsga2", "random", "gp"])
def test_every_sampler_runs(tiny_workload: Workload, tmp_path: Path, sampler: str) -> None:
    result = run_study(tiny_workload, FAST_SPACE, _config(tmp_path, trials=4, sampler=sampler))
    assert len(result.candidates) == 4


def test_unstructured_sparsity_survives_finetuning(tiny_workload: Workload, tmp_path: Path) -> None:
    space = SearchSpace.from_dict({
        "prune": {"per": "uniform", "ratio": 0.3, "sparsity": 0.5},
        "quantize": {"mode": ["none"]},
        "distill": {"steps": 10},
    }, source="sparse")
    result = run_study(tiny_workload, space, _config(tmp_path, trials=1, max_accuracy_drop=100.0, latency_budget=parse_budget("10x")))
    trial = result.study.trials[0]
    assert trial.user_attrs["finetuned"] is True
    # Classifier stays dense, so the whole-model figure is a little under the per-layer 50 %.
    assert 0.4 <= trial.user_attrs["weight_sparsity"] <= 0.5
    assert trial.user_attrs["policy"]["prune"]["sparsity"] == 0.5

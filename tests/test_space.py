from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from autocompress.compress.prune import PrunableGroup
from autocompress.errors import ConfigError
from autocompress.study.space import SearchSpace, list_spaces, load_space

GROUPS = [
    PrunableGroup("stem.0", 8, ("stem.0",)),
    PrunableGroup("layer1.0.conv1", 8, ("layer1.0.conv1",)),
    PrunableGroup("layer2.0.conv1", 16, ("layer2.0.conv1",)),
]


def test_default_space_ships_and_loads() -> None:
    assert "default" in list_spaces()
    space = load_space("default")
    assert space.prune_per == "group"
    assert space.quant_modes == ("none", "int8")
    assert 0.0 <= space.prune_ratio.low < space.prune_ratio.high < 1.0


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("prune:\n  ratios: {low: 0, high: 0.5}\n", r"unknown key prune.ratios"),
        ("pruning: {}\n", r"unknown key 'pruning'"),
        ("prune:\n  ratio: {low: 0.6, high: 0.2}\n", r"prune.ratio is an empty range"),
        ("prune:\n  ratio: {low: 0.0, high: 1.0}\n", r"prune.ratio must lie in \[0, 1\)"),
        ("quantize:\n  mode: [none, int4]\n", r"quantize.mode: unknown choice 'int4'"),
        ("distill:\n  steps: {low: 10.5, high: 20}\n", r"distill.steps needs whole"),
        ("prune: [1, 2]\n", r"prune must be a mapping"),
    ],
)
def test_bad_space_is_one_line_error_naming_file_and_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as info:
        load_space(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_space_name_lists_shipped_spaces() -> None:
    with pytest.raises(ConfigError, match=r"no search space named 'nope'; shipped: .*default"):
        load_space("nope")


def test_suggest_builds_policy_with_one_ratio_per_group() -> None:
    space = load_space("default")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    policy = space.suggest(trial, GROUPS, train_size=1078)
    assert set(policy.prune.ratios) == {g.name for g in GROUPS}
    assert all(space.prune_ratio.low <= r <= space.prune_ratio.high for r in policy.prune.ratios.values())
    # KD parameters exist exactly when something is pruned (conditional space).
    assert ("kd.epochs" in trial.params) == (not policy.prune.is_identity)


@pytest.mark.parametrize(
    "per,expected",
    [("uniform", {"prune.ratio"}), ("stage", {"prune.stem.0", "prune.layer1", "prune.layer2"}), ("none", set())],
)
def test_prune_granularity_controls_parameters(per: str, expected: set[str]) -> None:
    space = SearchSpace.from_dict({"prune": {"per": per}})
    assert set(space.prune_params(GROUPS)) == expected


def test_baselines_are_enqueued_exactly() -> None:
    space = load_space("default")
    study = optuna.create_study(directions=["maximize", "minimize"])
    baselines = space.baselines(GROUPS)
    assert [label for label, _ in baselines] == [
        "fp32 (uncompressed)",
        "int8 per-channel only",
        "uniform 50% prune + KD + int8",
    ]
    for _, params in baselines:
        study.enqueue_trial(params)
    policies = [space.suggest(study.ask(), GROUPS, train_size=1078) for _ in baselines]
    assert policies[0].prune.is_identity and policies[0].quant.mode == "none"
    assert policies[1].prune.is_identity and policies[1].quant.granularity == "per_channel"
    assert set(policies[2].prune.ratios.values()) == {0.5} and policies[2].distill.steps > 0


@pytest.mark.parametrize(
    ("layer", "stage"),
    [
        ("layer1.0.conv1", "layer1"),
        ("features.3.conv.0.0", "features.3"),
        ("features.denseblock2.denselayer1.conv1", "features.denseblock2"),
        ("encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_0"),
        ("conv", "conv"),
    ],
)
def test_stage_of(layer: str, stage: str) -> None:
    from autocompress.study.space import stage_of

    assert stage_of(layer) == stage


@pytest.mark.parametrize("name", ["default", "per_stage", "int8_only", "prune_only", "resnet", "mobilenet", "mlp"])
def test_every_shipped_space_is_valid(name: str) -> None:
    assert load_space(name).source.endswith(f"{name}.yaml")


LEVEL_SPACE = {
    "prune": {
        "per": "group",
        "level": {"low": 0.0, "high": 0.8, "step": 0.1},
        "spread": 0.1,
        "ratio": {"low": 0.0, "high": 0.85},
    }
}


def test_level_plus_offsets_gives_clipped_per_group_ratios() -> None:
    space = SearchSpace.from_dict(LEVEL_SPACE, source="lvl")
    offsets = {f"prune.offset.{g.name}": 0.1 if i % 2 else -0.1 for i, g in enumerate(GROUPS)}
    for level in (0.0, 0.8):
        policy = space.fixed_policy({"prune.level": level, **offsets, "quant.mode": "none"}, GROUPS, train_size=1078)
        for i, g in enumerate(GROUPS):
            expected = min(max(level + (0.1 if i % 2 else -0.1), 0.0), 0.85)
            assert policy.prune.ratios[g.name] == pytest.approx(expected), (level, g.name)


def test_level_reaches_both_corners_in_few_random_trials() -> None:
    """The point of the global level: 20 random trials see both light (< 15 %) and strong (> 65 %) mean pruning."""
    space = SearchSpace.from_dict(LEVEL_SPACE, source="lvl")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    means = [space.suggest(study.ask(), GROUPS, train_size=1078).prune.mean_ratio for _ in range(20)]
    assert min(means) < 0.15 and max(means) > 0.65, means


@pytest.mark.parametrize(
    "prune,message",
    [
        (
            {"level": {"low": 0.0, "high": 0.9}, "ratio": {"low": 0.0, "high": 0.8}},
            r"prune.level must lie inside prune.ratio",
        ),
        ({"level": {"low": 0.0, "high": 0.5}, "spread": 1.5}, r"prune.spread must be a number in \[0, 1\)"),
        ({"level": {"low": 0.0, "high": 0.5}, "spread": "wide"}, r"prune.spread must be a number"),
    ],
)
def test_level_schema_errors_name_the_key(prune: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchSpace.from_dict({"prune": prune}, source="bad.yaml")


def test_int8_kernel_auto_follows_the_cpu_and_explicit_kernels_are_searched() -> None:
    from autocompress.hardware.cpu import CpuInfo, int8_kernel_for

    avx2 = int8_kernel_for(CpuInfo.from_flags(["avx2"]))
    vnni = int8_kernel_for(CpuInfo.from_flags(["avx2", "avx512bw", "avx512_vnni"]))
    space = SearchSpace.from_dict({"quantize": {"mode": ["int8"], "kernel": ["auto"]}}, source="auto")
    params = {"quant.mode": "int8", "quant.granularity": "per_channel", "quant.calibration": "minmax"}
    assert space.fixed_policy(params, [], int8_kernel=avx2).quant.kernel == "u8s8_reduce"
    assert space.fixed_policy(params, [], int8_kernel=vnni).quant.kernel == "u8s8"
    searched = SearchSpace.from_dict({"quantize": {"mode": ["int8"], "kernel": ["auto", "s8s8"]}}, source="both")
    s8 = searched.fixed_policy({**params, "quant.kernel": "s8s8"}, [], int8_kernel=avx2).quant
    assert (s8.activation_type, s8.reduce_range, s8.kernel) == ("int8", False, "s8s8")
    with pytest.raises(ConfigError, match="quantize.kernel: unknown choice 'u4'"):
        SearchSpace.from_dict({"quantize": {"kernel": ["u4"]}}, source="bad")


def test_kd_epochs_scale_with_the_training_set() -> None:
    """9 epochs are 152 steps of 64 on the demo's 1,078 images and 422 on 3,000: the length follows the data."""
    space = load_space("default")
    params = {**space.uniform_params(GROUPS, 0.5), **space.quant_params("none"), **space.kd_params(longest=True)}
    assert params["kd.epochs"] == 9
    assert space.fixed_policy(params, GROUPS, train_size=1078).distill.steps == 152
    assert space.fixed_policy(params, GROUPS, train_size=3000).distill.steps == 422


def test_space_refuses_both_epochs_and_steps() -> None:
    with pytest.raises(ConfigError, match="both epochs and steps"):
        SearchSpace.from_dict({"distill": {"epochs": {"low": 1, "high": 2}, "steps": {"low": 10, "high": 20}}})


def test_per_layer_int8_samples_which_layers_stay_fp32() -> None:
    space = SearchSpace.from_dict({"quantize": {"mode": ["int8"], "per_layer": True}}, source="t.yaml")
    first, second = GROUPS[0].name, GROUPS[1].name
    params = {
        **space.uniform_params(GROUPS, 0.5),
        **space.quant_params("int8", GROUPS),
        **space.kd_params(),
        f"quant.fp32.{second}": True,
    }
    policy = space.fixed_policy(params, GROUPS)
    assert policy.quant.fp32_layers == (second,)
    assert first not in policy.quant.fp32_layers
    # Fixed policies (baselines, probe, rescue) keep every layer int8.
    assert (
        space.fixed_policy(
            {**space.uniform_params(GROUPS, 0.5), **space.quant_params("int8")}, GROUPS
        ).quant.fp32_layers
        == ()
    )
    labels = dict(space.baselines(GROUPS))
    assert all(labels["int8 per-channel only"][f"quant.fp32.{g.name}"] is False for g in GROUPS)
    # Off by default: no per-layer parameter at all.
    assert not any(k.startswith("quant.fp32.") for k in SearchSpace().quant_params("int8", GROUPS))
    with pytest.raises(ConfigError, match=r"quantize.per_layer must be true or false, got 'yes'"):
        SearchSpace.from_dict({"quantize": {"per_layer": "yes"}}, source="t.yaml")

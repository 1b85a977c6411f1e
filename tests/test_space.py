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
    assert space.quant_modes == ("none", "int8", "bf16")  # bf16 stays only where a runtime runs it natively
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
        "bf16 only",  # the shipped space lists bf16; a runtime without native bf16 drops it and this baseline
    ]
    for _, params in baselines:
        study.enqueue_trial(params)
    policies = [space.suggest(study.ask(), GROUPS, train_size=1078) for _ in baselines]
    assert policies[3].prune.is_identity and policies[3].quant.mode == "bf16"
    onnx = space.for_runtime(("none", "int8", "int8_dynamic"), None, runtime="onnxruntime")
    assert "bf16 only" not in [label for label, _ in onnx.baselines(GROUPS)]
    assert policies[0].prune.is_identity and policies[0].quant.mode == "none"
    assert policies[1].prune.is_identity and policies[1].quant.granularity == "per_channel"
    assert set(policies[2].prune.ratios.values()) == {0.5} and policies[2].distill.steps > 0


@pytest.mark.parametrize(
    ("prune", "labels", "levels"),
    [
        # A space that always prunes has no uncompressed model: its least pruning stands in, fine-tuned, and says so.
        (
            {"per": "stage", "level": 0.25, "ratio": {"low": 0.0, "high": 0.4}},
            ["fp32 · uniform 25% prune + KD", "int8 per-channel · uniform 25% prune + KD"],
            {0.25},
        ),
        # Without a level, ratio.low is the least pruning; the third baseline says the level its 0.3 step builds.
        (
            {"per": "uniform", "ratio": {"low": 0.2, "high": 0.8, "step": 0.3}},
            [
                "fp32 · uniform 20% prune + KD",
                "int8 per-channel · uniform 20% prune + KD",
                "uniform 50% prune + KD + int8",
            ],
            {0.2, 0.5},
        ),
        (
            {"per": "group", "level": {"low": 0.0, "high": 0.6, "step": 0.2}},
            ["fp32 (uncompressed)", "int8 per-channel only", "uniform 40% prune + KD + int8"],
            {0.0, 0.4},
        ),
    ],
)
def test_baselines_say_the_pruning_the_space_builds(prune: dict, labels: list[str], levels: set[float]) -> None:
    space = SearchSpace.from_dict({"prune": prune, "quantize": {"granularity": ["per_channel"]}})
    baselines = space.baselines(GROUPS)
    assert [label for label, _ in baselines] == labels
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _, params in baselines:
        study.enqueue_trial(params)
    policies = [space.suggest(study.ask(), GROUPS, train_size=100) for _ in baselines]
    assert {ratio for p in policies for ratio in p.prune.ratios.values()} == levels
    for policy in policies:  # a pruned baseline is fine-tuned with the space's middle-of-the-road KD settings
        assert (policy.distill.steps > 0) == (not policy.prune.is_identity)
        assert policy.prune.is_identity or policy.distill.alpha == space.alpha.clamp(0.7)


@pytest.mark.parametrize(
    ("prune", "levels"),
    [
        (
            {"per": "group", "level": {"low": 0.0, "high": 0.85, "step": 0.05}, "ratio": {"low": 0.0, "high": 0.9}},
            [0.0, 0.25, 0.5, 0.65, 0.75, 0.85],
        ),
        ({"per": "uniform", "ratio": {"low": 0.0, "high": 0.6, "step": 0.1}}, [0.0, 0.2, 0.5, 0.6]),
        ({"per": "stage", "level": 0.25, "ratio": {"low": 0.0, "high": 0.4}}, [0.25]),
        ({"per": "none"}, [0.0]),
    ],
)
def test_probe_levels_are_the_levels_the_space_builds(prune: dict, levels: list[float]) -> None:
    from types import SimpleNamespace

    from autocompress.study.probe import probe_levels

    runner = SimpleNamespace(space=SearchSpace.from_dict({"prune": prune}), groups=GROUPS)
    assert probe_levels(runner) == levels  # type: ignore[arg-type]


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


def test_max_steps_caps_epochs_over_a_large_training_set_and_the_cost_is_described() -> None:
    space = SearchSpace.from_dict({"distill": {"epochs": {"low": 2, "high": 9, "step": 1}, "max_steps": 2000}})
    nine = optuna.trial.FixedTrial({"kd.epochs": 9.0})
    assert space.kd_steps(nine, 1078) == 152, "a small training set is not affected"
    assert space.kd_steps(nine, 30_000) == 2000, "9 epochs of 30,000 images would be 4,219 steps"
    assert space.kd_steps(optuna.trial.FixedTrial({"kd.epochs": 2.0}), 30_000) == 938
    small = space.describe_kd(1078)
    assert small.startswith("KD 34-152 steps of 64 images (2-9 epochs of 1,078 train images;"), small
    large = space.describe_kd(30_000)
    assert "KD 938-2000 steps" in large and "capped at distill.max_steps 2000" in large, large
    assert "60,032-128,000 images seen per trial" in large, large
    fixed = SearchSpace.from_dict({"distill": {"steps": {"low": 30, "high": 150, "step": 30}}}).describe_kd(1078)
    assert fixed.startswith("KD 30-150 steps of 64 images (1.8-8.9 epochs"), fixed
    with pytest.raises(ConfigError, match="distill.max_steps must be a positive integer"):
        SearchSpace.from_dict({"distill": {"max_steps": 0}})


def test_every_shipped_space_caps_its_fine_tuning() -> None:
    for name in list_spaces():
        space = load_space(name)
        if space.epochs is not None:
            assert space.max_steps is not None, f"{name}: epochs without max_steps grow with the data"


def test_distill_augment_is_a_flag_and_is_described() -> None:
    space = SearchSpace.from_dict({"distill": {"epochs": {"low": 2, "high": 4}, "augment": True}})
    assert space.augment is True and "the teacher run on every batch" in space.describe_kd(1000)
    assert SearchSpace.from_dict({}).augment is False
    with pytest.raises(ConfigError, match="distill.augment"):
        SearchSpace.from_dict({"distill": {"augment": "yes please"}})

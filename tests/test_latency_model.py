"""The latency model: MACs estimated from a policy without pruning, monotone curves, honest intervals."""

from __future__ import annotations

import pytest

from autocompress.compress.prune import count_macs_params, prunable_groups, prune_model
from autocompress.measure.model import LatencyModel, MacsEstimator, _isotonic, precision_key
from autocompress.policy import PrunePolicy, QuantPolicy


@pytest.mark.parametrize("ratios", ["uniform30", "uniform60", "mixed"])
def test_macs_estimate_matches_the_pruned_model(demo_width_model, x32, ratios: str) -> None:
    groups = prunable_groups(demo_width_model, x32, num_classes=10)
    estimator = MacsEstimator(demo_width_model, groups, x32)
    values = {"uniform30": lambda i: 0.3, "uniform60": lambda i: 0.6, "mixed": lambda i: (0.1, 0.4, 0.7)[i % 3]}[ratios]
    policy = PrunePolicy(ratios={g.name: values(i) for i, g in enumerate(groups)}, round_to=4)
    pruned = prune_model(demo_width_model, policy, x32, num_classes=10)
    counted, _ = count_macs_params(pruned, x32)
    assert estimator.estimate(policy) == pytest.approx(counted, rel=0.03), "conv/linear MACs; BN and adds are ~1 %"
    assert estimator.estimate(PrunePolicy()) == estimator.total


def test_isotonic_pools_violators() -> None:
    assert _isotonic([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert _isotonic([3.0, 2.0, 1.0]) == [2.0, 2.0, 2.0]


def test_prediction_interpolates_and_never_extrapolates_a_skip_downwards() -> None:
    model = LatencyModel(min_points=3, min_width=0.1)
    for macs, ms in [(10, 0.2), (50, 0.6), (100, 1.0)]:
        model.add("fp32", macs, ms)
    mid = model.predict("fp32", 75)
    assert mid is not None and mid.ms == pytest.approx(0.8)
    assert mid.low_ms < 0.8 < mid.high_ms
    below = model.predict("fp32", 5)
    assert below is not None and below.low_ms == 0.0, "below the smallest point only the upper side is known"
    above = model.predict("fp32", 200)
    assert above is not None and above.low_ms == pytest.approx(1.0 * (1 - model.width))
    assert above.high_ms == float("inf")
    assert model.predict("int8/per_channel/u8s8", 50) is None, "another precision has its own curve"


def test_likely_over_uses_the_point_estimate_only_between_measured_structures() -> None:
    model = LatencyModel(min_points=3, min_width=0.1)
    for macs, ms in [(10, 0.2), (50, 0.6), (100, 1.0)]:
        model.add("fp32", macs, ms)
    mid = model.predict("fp32", 75)  # 0.8 ms, interval 0.68-0.92 (width 0.15 until 3 points were predicted)
    assert mid is not None and mid.interpolated
    assert mid.likely_over(0.78) and not mid.over(0.78), "estimate above a budget inside the interval: likely over"
    assert not mid.likely_over(0.82), "estimate under the budget: built"
    assert mid.likely_over(0.60) and mid.over(0.60)
    above = model.predict("fp32", 150)  # extrapolated: 1.5 ms by the linear rule, but only "at least 0.85" is known
    assert above is not None and not above.interpolated
    assert not above.likely_over(1.2), "an upward extrapolation is not trusted for a skip"
    assert above.likely_over(0.80)
    below = model.predict("fp32", 5)
    assert below is not None and not below.interpolated and not below.likely_over(0.01)


def test_held_out_error_is_scored_before_each_point_is_added() -> None:
    model = LatencyModel(min_points=2, min_width=0.05)
    model.add("fp32", 10, 1.0)
    model.add("fp32", 30, 3.0)
    model.add("fp32", 20, 2.2)  # predicted 2.0 → 9.1 % error
    assert model.errors == [pytest.approx(0.2 / 2.2)]
    summary = model.summary()
    assert summary["held_out"] == 1 and summary["median_abs_pct_error"] == pytest.approx(9.09, abs=0.01)
    assert LatencyModel.from_dict(model.to_dict()).predict("fp32", 20) == model.predict("fp32", 20)


def test_precision_key_separates_int8_settings() -> None:
    assert precision_key(QuantPolicy(mode="none")) == "fp32"
    a = precision_key(QuantPolicy(mode="int8", granularity="per_channel"))
    b = precision_key(QuantPolicy(mode="int8", granularity="per_tensor"))
    assert a != b and a.startswith("int8/")


def test_a_setting_without_points_borrows_its_modes_curve_with_a_wider_interval() -> None:
    model = LatencyModel(min_points=3, min_width=0.1)
    for macs, ms in [(10, 0.2), (50, 0.6), (100, 1.0)]:
        model.add("int8/per_channel/u8s8", macs, ms)
    own = model.predict("int8/per_channel/u8s8", 75)
    borrowed = model.predict("int8/per_tensor/u8s8", 75)
    assert own is not None and borrowed is not None and borrowed.ms == pytest.approx(own.ms)
    assert borrowed.high_ms - borrowed.low_ms == pytest.approx(1.5 * (own.high_ms - own.low_ms))
    assert model.predict("fp32", 75) is None, "fp32 never borrows int8's curve"


def test_quantized_modes_are_ruled_out_only_where_predicted_no_faster_than_fp32_between_measured_structures() -> None:
    model = LatencyModel(min_points=3, min_width=0.1)
    for macs, ms in [(10, 0.20), (50, 0.60), (100, 1.00)]:
        model.add("fp32", macs, ms)
    # int8 is slower than fp32 when small, faster when large; two settings pooled into the mode's curve.
    for key, macs, ms in [
        ("int8/per_channel/u8s8_reduce", 10, 0.30),
        ("int8/per_tensor/u8s8_reduce", 50, 0.55),
        ("int8/per_channel/u8s8_reduce", 100, 0.60),
    ]:
        model.add(key, macs, ms)
    reason = model.quantized_ruled_out(["none", "int8"], 20)  # int8 0.3625 vs fp32 0.30
    assert reason is not None and "int8 0.362 ms" in reason and "fp32 0.300 ms" in reason
    assert model.quantized_ruled_out(["none", "int8"], 80) is None, "int8 0.58 vs fp32 0.84: faster, offered"
    assert model.quantized_ruled_out(["none", "int8"], 5) is None, "below every measured structure: not interpolated"
    assert model.quantized_ruled_out(["none", "int8"], 150) is None, "above every measured structure: not interpolated"
    assert model.quantized_ruled_out(["none"], 20) is None, "nothing quantized to rule out"
    assert model.quantized_ruled_out(["none", "int8", "bf16"], 20) is None, "bf16 has no curve: it may still pay"
    assert LatencyModel().quantized_ruled_out(["none", "int8"], 20) is None, "an empty model rules nothing out"

from __future__ import annotations

import time

import torch

from autocompress.compress import prune_model
from autocompress.measure.latency import (
    measure_callable,
    measure_torch,
    structure_key,
    torch_threads,
)
from autocompress.policy import PrunePolicy


def test_measure_callable_reports_median_and_spread() -> None:
    lat = measure_callable(lambda: time.sleep(0.002), warmup=2, repeats=15, threads=1, batch_size=1)
    assert 1.9 <= lat.median_ms <= 10.0
    assert lat.iqr_ms >= 0 and lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert lat.n == 15


def test_torch_threads_restores_previous_setting() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_structure_key_ignores_weights_but_not_shapes(demo_width_model, x32) -> None:
    other = type(demo_width_model)()  # same architecture, different random weights
    assert structure_key(demo_width_model, "int8") == structure_key(other, "int8")
    assert structure_key(demo_width_model, "int8") != structure_key(demo_width_model, "none")
    pruned = prune_model(demo_width_model, PrunePolicy(ratios={"layer1.0.conv1": 0.5}), x32, num_classes=10)
    assert structure_key(pruned, "int8") != structure_key(demo_width_model, "int8")


def test_torch_latency_uses_requested_threads(demo_width_model) -> None:
    lat = measure_torch(demo_width_model, (1, 32, 32), threads=1, warmup=2, repeats=5)
    assert lat.threads == 1 and lat.median_ms > 0

from __future__ import annotations

import pytest

from autocompress.errors import ConfigError
from autocompress.policy import DistillPolicy, Policy, PrunePolicy, QuantPolicy


def test_policy_round_trips_through_json() -> None:
    policy = Policy(
        prune=PrunePolicy(ratios={"layer1.0.conv1": 0.35, "stem.0": 0.0}, round_to=4),
        quant=QuantPolicy(mode="int8", granularity="per_tensor", calibration="percentile"),
        distill=DistillPolicy(temperature=3.5, alpha=0.6, lr=1e-3, steps=90),
    )
    assert Policy.from_json(policy.to_json()) == policy
    assert policy.describe() == "prune 18% · int8 per_tensor/percentile · KD 90 steps"


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Policy().quant = QuantPolicy()  # type: ignore[misc]


def test_invalid_quant_mode_names_field_and_choices() -> None:
    with pytest.raises(ConfigError, match=r"quant.mode: expected one of none, int8, int8_dynamic, bf16, got 'fp16'"):
        QuantPolicy(mode="fp16")


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="unexpected field"):
        Policy.from_dict({"quant": {"mode": "int8", "bits": 4}})


def test_identity_prune() -> None:
    assert PrunePolicy(ratios={"a": 0.0}).is_identity
    assert not PrunePolicy(ratios={"a": 0.1}).is_identity

"""The compression policy: the one value that flows through ``prune → distill → quantize → measure``.

A :class:`Policy` is what one Optuna trial samples. It is a frozen dataclass so a stage cannot change what the next
stage receives, and it round-trips through JSON (``policy.json`` in every exported model folder).

Example:
    >>> p = Policy(prune=PrunePolicy(ratios={"layer1.0.conv1": 0.5}), quant=QuantPolicy(mode="int8"))
    >>> Policy.from_dict(p.to_dict()) == p
    True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autocompress.errors import ConfigError

__all__ = [
    "PrunePolicy",
    "QuantPolicy",
    "DistillPolicy",
    "Policy",
    "QUANT_MODES",
    "GRANULARITIES",
    "CALIBRATION_METHODS",
    "ACTIVATION_TYPES",
]

QUANT_MODES = ("none", "int8", "int8_dynamic", "bf16")
GRANULARITIES = ("per_tensor", "per_channel")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class PrunePolicy:
    """Structural channel pruning.

    Attributes:
        ratios: fraction of channels removed per prunable group, keyed by the group's root layer name. Groups that
            are missing are not pruned.
        round_to: kept channel counts are rounded to a multiple of this (SIMD-friendly widths); ``None`` = exact.
        importance: channel importance criterion (``l1`` or ``l2`` magnitude of the whole coupled group).
        sparsity: after structural pruning, the fraction of each Conv/Linear weight zeroed by L1 magnitude
            (unstructured). Dense runtimes do not run faster on zeros: it shrinks the compressed file, and the
            latency measured stays honest about it.
    """

    ratios: Mapping[str, float] = field(default_factory=dict)
    round_to: int | None = None
    importance: str = "l1"
    sparsity: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"prune.sparsity: expected a fraction in [0, 1), got {self.sparsity!r}")

    @property
    def is_identity(self) -> bool:
        """True when the model is left exactly as it is (no channel removed, no weight zeroed)."""
        return all(r <= 0.0 for r in self.ratios.values()) and self.sparsity <= 0.0

    @property
    def mean_ratio(self) -> float:
        """Unweighted mean of the group ratios (0 when there are none), for display."""
        return sum(self.ratios.values()) / len(self.ratios) if self.ratios else 0.0


@dataclass(frozen=True)
class QuantPolicy:
    """The precision plan: post-training quantization (or bf16) for the study's runtime.

    Attributes:
        mode: ``none`` (fp32), ``int8`` (static, calibrated), ``int8_dynamic`` (weights int8, activations
            quantized on the fly; for Linear-heavy models; ONNX Runtime) or ``bf16`` (OpenVINO on CPUs with native
            bf16). Which modes a runtime offers on this CPU: :meth:`autocompress.runtimes.Runtime.modes`.
        granularity: ``per_tensor`` or ``per_channel`` weight scales.
        calibration: activation range method for static int8: ``minmax``, ``entropy`` or ``percentile``.
        calibration_samples: training images used for calibration.
        activation_type: ``uint8`` (U8S8, what ONNX Runtime's x86 kernels are fastest at) or ``int8`` (S8S8).
        reduce_range: quantize weights to 7 bits. Needed on x86 CPUs without VNNI, where U8S8 products are summed in
            a saturating int16 (see :mod:`autocompress.hardware.cpu`); the search sets it from the CPU it runs on.
        fp32_layers: module names (and their children) left in fp32 when the rest is int8: per-layer precision
            (ONNX Runtime ``nodes_to_exclude``, NNCF ``ignored_scope``).
    """

    mode: str = "none"
    granularity: str = "per_channel"
    calibration: str = "minmax"
    calibration_samples: int = 64
    activation_type: str = "uint8"
    reduce_range: bool = False
    fp32_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "fp32_layers", tuple(sorted(self.fp32_layers)))
        _check_choice("quant.mode", self.mode, QUANT_MODES)
        _check_choice("quant.granularity", self.granularity, GRANULARITIES)
        _check_choice("quant.calibration", self.calibration, CALIBRATION_METHODS)
        _check_choice("quant.activation_type", self.activation_type, ACTIVATION_TYPES)

    @property
    def kernel(self) -> str:
        """``u8s8``, ``u8s8_reduce``, ``s8s8`` … (static int8); ``fp32`` when not quantized."""
        if self.mode in ("none", "bf16"):
            return "fp32" if self.mode == "none" else "bf16"
        base = "u8s8" if self.activation_type == "uint8" else "s8s8"
        return f"{base}_reduce" if self.reduce_range else base


@dataclass(frozen=True)
class DistillPolicy:
    """Knowledge-distillation fine-tuning (Hinton et al. 2015) from the original model.

    Attributes:
        temperature: softmax temperature T of the soft targets.
        alpha: weight of the soft (teacher) loss; ``1 - alpha`` weighs the hard-label cross-entropy.
        lr: Adam learning rate.
        steps: optimizer steps; 0 disables fine-tuning.
        batch_size: images per step.
    """

    temperature: float = 4.0
    alpha: float = 0.7
    lr: float = 1e-3
    steps: int = 0
    batch_size: int = 64


@dataclass(frozen=True)
class Policy:
    """One complete compression recipe.

    Attributes:
        runtime: the runtime the artifact is built for and timed on, where the study searches it (``--runtime
            auto``); ``None``: the study's one runtime.
    """

    prune: PrunePolicy = field(default_factory=PrunePolicy)
    quant: QuantPolicy = field(default_factory=QuantPolicy)
    distill: DistillPolicy = field(default_factory=DistillPolicy)
    runtime: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["prune"]["ratios"] = dict(self.prune.ratios)
        data["quant"]["fp32_layers"] = list(self.quant.fp32_layers)
        if self.runtime is None:  # a one-runtime study's policy.json stays as it was
            del data["runtime"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        try:
            return cls(
                prune=PrunePolicy(**{**data.get("prune", {}), "ratios": dict(data.get("prune", {}).get("ratios", {}))}),
                quant=QuantPolicy(**data.get("quant", {})),
                distill=DistillPolicy(**data.get("distill", {})),
                runtime=data.get("runtime"),
            )
        except TypeError as exc:
            raise ConfigError(
                f"policy: unexpected field ({exc}); expected the keys written by Policy.to_dict()"
            ) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        """Short human summary, e.g. ``prune 35% · int8 per_channel/minmax · KD 120 steps``."""
        parts = [f"prune {self.prune.mean_ratio:.0%}" if any(r > 0 for r in self.prune.ratios.values()) else "no prune"]
        if self.prune.sparsity > 0:
            parts.append(f"sparsity {self.prune.sparsity:.0%}")
        if self.quant.mode == "int8":
            kernel = "" if self.quant.kernel == "u8s8" else f" {self.quant.kernel}"
            kept = f" ({len(self.quant.fp32_layers)} layers fp32)" if self.quant.fp32_layers else ""
            parts.append(f"int8 {self.quant.granularity}/{self.quant.calibration}{kernel}{kept}")
        elif self.quant.mode == "bf16":
            parts.append("bf16")
        elif self.quant.mode == "int8_dynamic":
            parts.append(f"int8-dyn {self.quant.granularity}")
        else:
            parts.append("fp32")
        parts.append(f"KD {self.distill.steps} steps" if self.distill.steps else "no KD")
        if self.runtime is not None:
            parts.append(self.runtime)
        return " · ".join(parts)


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}: expected one of {', '.join(valid)}, got {value!r}")

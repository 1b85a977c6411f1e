"""A latency model that learns this study's CPU: predicted latency, with an interval, for a policy not yet built.

It never replaces a measurement. The search uses it to

- skip a proposal predicted over the budget before anything is built (:meth:`Prediction.likely_over`: over with
  confidence, or an interpolated estimate above it; the sampler is told, and proposes again, bounded);
- not offer a quantized precision for a structure where it is predicted no faster than fp32
  (:meth:`LatencyModel.quantized_ruled_out`): the trial is the fp32 twin, as fast and without the quantization loss;
- flag a measurement far from its prediction, which is then measured again;
- place the rescue's structures between the fastest known pass and the slowest known failure.

**Feature: MACs, estimated without pruning.** Pruning a model to count its MACs costs seconds (torch-pruning builds
its dependency graph each time), so :class:`MacsEstimator` computes them from the policy: each Conv/Linear layer's
teacher MACs times the kept fraction of every group it belongs to (a conv belongs to the group that prunes its
output channels and to the one that prunes its input channels; a depthwise conv to one group). Tiny example: a conv of
1 M MACs whose output group keeps 20 of 32 channels and whose input group keeps 16 of 32 → 1 M x 0.625 x 0.5 =
0.31 M.

**Model: monotone in MACs, per precision.** One curve per precision key (quantization mode, granularity, int8
kernel): latency is assumed not to decrease when MACs grow, so the fit is isotonic (pool-adjacent-violators) over the
measured points, interpolated linearly in between (a setting with too few points of its own borrows the curve of
its whole mode, e.g. every int8 setting, with a wider interval). The interval is
``± max(min_width, 2 x median |relative error|)`` of the model's own predictions of points it had not seen yet
(prequential error: each measurement is predicted before it is added, and that error is what the report shows). Beyond
the largest measured MACs only the lower side is known (latency at least the largest point's); below the smallest only
the upper side. So a skip never extrapolates downwards: "over the budget" needs a measured structure with fewer MACs
that is itself over it.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autocompress.compress.prune import PrunableGroup, _kept_channels
from autocompress.policy import Policy, PrunePolicy, QuantPolicy

__all__ = ["MacsEstimator", "LatencyModel", "Prediction", "precision_key"]


def _family(key: str) -> str:
    """``int8/per_tensor/u8s8`` → ``int8/*``: every setting of one quantization mode (``openvino:int8/…`` →
    ``openvino:int8/*``: of one mode on one runtime)."""
    runtime, _, precision = key.rpartition(":")
    prefix = f"{runtime}:" if runtime else ""
    return key if precision in ("fp32", "bf16") else prefix + precision.split("/")[0] + "/*"


def _mode_key(mode: str, runtime: str | None) -> str:
    """The pooled curve of ``mode`` (``none`` → ``fp32``) on ``runtime`` (``None``: the study's one runtime)."""
    key = "fp32" if mode == "none" else mode if mode == "bf16" else f"{mode}/*"
    return f"{runtime}:{key}" if runtime else key


def precision_key(quant: QuantPolicy, runtime: str | None = None) -> str:
    """The curve a policy's latency lies on: fp32, or int8 with its granularity and kernel; under ``--runtime auto``
    one curve per runtime too (``openvino:int8/per_channel/u8s8``): the same structure and precision runs at other
    speeds on other engines."""
    prefix = f"{runtime}:" if runtime else ""
    if quant.mode in ("none", "bf16"):
        return prefix + ("fp32" if quant.mode == "none" else "bf16")
    mixed = "/mixed" if quant.fp32_layers else ""  # some layers kept fp32: its own curve, borrowing int8/* until fitted
    return f"{prefix}{quant.mode}/{quant.granularity}/{quant.kernel}{mixed}"


class MacsEstimator:
    """MACs of the pruned model a :class:`PrunePolicy` would give, without pruning (see the module docstring)."""

    def __init__(self, model: nn.Module, groups: Sequence[PrunableGroup], example_input: torch.Tensor) -> None:
        self.groups = {g.name: g for g in groups}
        self.layer_macs: dict[str, int] = {}
        handles = []
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                handles.append(module.register_forward_hook(self._hook(name)))
        try:
            with torch.no_grad():
                was_training = model.training
                model.eval()
                model(example_input[:1])
                model.train(was_training)
        finally:
            for h in handles:
                h.remove()
        self.layer_groups: dict[str, list[str]] = {name: [] for name in self.layer_macs}
        for g in groups:
            for layer in g.layers:
                if layer in self.layer_groups:
                    self.layer_groups[layer].append(g.name)
        self.total = sum(self.layer_macs.values())

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
            else:
                per_output = module.in_features
            self.layer_macs[name] = int(output.numel() * per_output)

        return hook

    def kept_fraction(self, name: str, prune: PrunePolicy) -> float:
        group = self.groups[name]
        ratio = float(prune.ratios.get(name, 0.0))
        if ratio <= 0:
            return 1.0
        kept = _kept_channels(group.channels, ratio, multiple=group.multiple, round_to=prune.round_to)
        return kept / group.channels

    def estimate(self, prune: PrunePolicy) -> int:
        total = 0.0
        for layer, macs in self.layer_macs.items():
            factor = 1.0
            for name in self.layer_groups[layer]:
                factor *= self.kept_fraction(name, prune)
            total += macs * factor
        return int(total)


@dataclass(frozen=True)
class Prediction:
    """Predicted latency with its interval; ``low_ms`` is 0 / ``high_ms`` inf where the model cannot bound a side."""

    ms: float
    low_ms: float
    high_ms: float
    points: int

    def over(self, budget_ms: float) -> bool:
        """Over the budget with confidence: the whole interval lies above it."""
        return self.low_ms > budget_ms

    @property
    def interpolated(self) -> bool:
        """Both sides bounded: the structure lies between measured ones (no extrapolation)."""
        return self.low_ms > 0 and not math.isinf(self.high_ms)

    def likely_over(self, budget_ms: float) -> bool:
        """More likely over the budget than not: over with confidence, or an interpolated point estimate above it.

        Between measured structures the error is symmetric (prequential median a few %), so a point estimate over the
        budget is over more often than not; the structures just under it are, by the same monotone curve, almost as
        accurate. Extrapolated upwards (more MACs than any measured structure) only the confident rule applies: the
        linear extrapolation overestimates when latency has a fixed part. Measured (tight scenario, seed 1, Zen 3): 4
        of its 6 sampled stops had interpolated estimates over the budget with the interval across it.
        """
        return self.over(budget_ms) or (self.interpolated and self.ms > budget_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ms": self.ms,
            "low_ms": self.low_ms,
            "high_ms": None if math.isinf(self.high_ms) else self.high_ms,
            "points": self.points,
        }


def _isotonic(values: Sequence[float]) -> list[float]:
    """Pool-adjacent-violators: the non-decreasing sequence closest to ``values`` in least squares.

    Example: ``[1, 3, 2, 4]`` → ``[1, 2.5, 2.5, 4]``.
    """
    blocks: list[list[float]] = []  # [sum, count]
    for v in values:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out: list[float] = []
    for s, c in blocks:
        out.extend([s / c] * int(c))
    return out


@dataclass
class _Curve:
    macs: list[int] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)

    def fitted(self) -> tuple[list[int], list[float]]:
        order = sorted(range(len(self.macs)), key=lambda i: (self.macs[i], self.ms[i]))
        xs = [self.macs[i] for i in order]
        return xs, _isotonic([self.ms[i] for i in order])


class LatencyModel:
    """Per-precision monotone latency-vs-MACs curves fitted to this study's measurements (module docstring)."""

    def __init__(self, *, min_points: int = 3, min_width: float = 0.08) -> None:
        self.min_points = min_points
        self.min_width = min_width
        self._curves: dict[str, _Curve] = {}
        self.errors: list[float] = []  # prequential |relative error| of each point predicted before it was added
        self.trials: set[int] = set()  # the trials whose figures are in (a worker also learns other workers' ones)

    def add(self, key: str, macs: int, latency_ms: float, *, trial: int | None = None) -> None:
        """Add one measurement (after scoring the prediction it would have had); ``trial``: whose figure it is."""
        if trial is not None:
            self.trials.add(int(trial))
        prediction = self.predict(key, macs)
        if prediction is not None and latency_ms > 0 and self._inside_range(key, macs):
            self.errors.append(abs(prediction.ms - latency_ms) / latency_ms)
        for curve_key in dict.fromkeys((key, _family(key))):
            curve = self._curves.setdefault(curve_key, _Curve())
            curve.macs.append(int(macs))
            curve.ms.append(float(latency_ms))

    def _inside_range(self, key: str, macs: int) -> bool:
        curve = self._curves.get(key)
        return curve is not None and bool(curve.macs) and min(curve.macs) <= macs <= max(curve.macs)

    @property
    def width(self) -> float:
        """Relative half-width of the prediction interval."""
        if len(self.errors) < 3:
            return max(self.min_width, 0.15)
        return max(self.min_width, 2.0 * statistics.median(self.errors))

    def predict(self, key: str, macs: int) -> Prediction | None:
        """The latency of a structure of ``macs`` at precision ``key``; ``None`` with fewer than ``min_points``.

        A precision with too few points of its own (int8 per-tensor when the probe timed per-channel) borrows the
        curve of its whole mode (every int8 setting), with a 1.5x wider interval.
        """
        curve, w = self._curves.get(key), self.width
        if curve is None or len(curve.macs) < self.min_points:
            curve, w = self._curves.get(_family(key)), self.width * 1.5
            if curve is None or len(curve.macs) < self.min_points:
                return None
        xs, ys = curve.fitted()
        if macs >= xs[-1]:
            # Monotone: at least the largest point; the upper side is unknown when extrapolating.
            ms = ys[-1] if macs == xs[-1] else ys[-1] * (macs / xs[-1]) if xs[-1] > 0 else ys[-1]
            high = ms * (1 + w) if macs == xs[-1] else math.inf
            return Prediction(ms=ms, low_ms=ys[-1] * (1 - w), high_ms=high, points=len(xs))
        if macs <= xs[0]:
            ms = ys[0] * (macs / xs[0]) if xs[0] > 0 else ys[0]
            return Prediction(
                ms=ms, low_ms=0.0 if macs < xs[0] else ys[0] * (1 - w), high_ms=ys[0] * (1 + w), points=len(xs)
            )
        i = bisect.bisect_left(xs, macs)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        ms = y0 if x1 == x0 else y0 + (y1 - y0) * (macs - x0) / (x1 - x0)
        return Prediction(ms=ms, low_ms=ms * (1 - w), high_ms=ms * (1 + w), points=len(xs))

    def fitted_points(self, key: str) -> int:
        """How many measurements precision ``key``'s own curve has (0 for none; borrowing is not counted)."""
        curve = self._curves.get(key)
        return len(curve.macs) if curve is not None else 0

    def quantized_ruled_out(self, modes: Sequence[str], macs: int, *, runtime: str | None = None) -> str | None:
        """Why no quantized mode of ``modes`` is worth sampling for a structure of ``macs`` (``None``: some may be).

        A mode is ruled out when its curve (every setting of the mode pooled, ``min_points`` at least) and the fp32
        curve both bound the structure (interpolated, never extrapolated) and the mode's estimate is no faster than
        fp32's: its fp32 twin is as fast and keeps the accuracy quantization costs. Only when *every* quantized mode of
        the space is ruled out does the trial become fp32 (a categorical's choices never change between trials).
        Why it matters: int8 has a fixed cost (quantize/dequantize around every op) that a small, heavily pruned
        network does not earn back. Measured (tight scenario, seed 1, Zen 3): int8 at 72-84 % prune ran 0.27-0.37 ms
        where fp32 ran 0.24, and TPE spent its trials there. Under ``--runtime auto`` the curves are ``runtime``'s.
        """
        quantized = [m for m in modes if m != "none"]
        fp32_key = _mode_key("none", runtime)
        fp32 = self.predict(fp32_key, macs) if self.fitted_points(fp32_key) >= self.min_points else None
        if not quantized or fp32 is None or not fp32.interpolated:
            return None
        figures = []
        for mode in quantized:
            key = _mode_key(mode, runtime)  # the mode's pooled curve: int8 → int8/*, bf16 → bf16
            prediction = self.predict(key, macs) if self.fitted_points(key) >= self.min_points else None
            if prediction is None or not prediction.interpolated or prediction.ms < fp32.ms:
                return None
            figures.append(f"{mode} {prediction.ms:.3f} ms")
        return f"predicted no faster than fp32 at this structure ({', '.join(figures)} vs fp32 {fp32.ms:.3f} ms)"

    def predict_policy(self, policy: Policy, estimator: MacsEstimator) -> tuple[int, Prediction | None]:
        macs = estimator.estimate(policy.prune)
        return macs, self.predict(precision_key(policy.quant, policy.runtime), macs)

    def summary(self) -> dict[str, Any]:
        """The model's accuracy on measurements it had not seen (median and p90 absolute % error), per study."""
        errors = sorted(self.errors)
        return {
            "points": {k: len(c.macs) for k, c in self._curves.items() if not k.endswith("/*")},
            "held_out": len(errors),
            "median_abs_pct_error": round(100 * statistics.median(errors), 2) if errors else None,
            "p90_abs_pct_error": round(100 * errors[min(len(errors) - 1, int(0.9 * len(errors)))], 2)
            if errors
            else None,
            "interval_half_width_pct": round(100 * self.width, 1),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "curves": {k: {"macs": c.macs, "ms": c.ms} for k, c in self._curves.items()},
            "errors": self.errors,
            "trials": sorted(self.trials),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyModel:
        model = cls()
        for key, curve in data.get("curves", {}).items():
            model._curves[key] = _Curve(list(map(int, curve["macs"])), list(map(float, curve["ms"])))
        model.errors = list(map(float, data.get("errors", [])))
        model.trials = set(map(int, data.get("trials", [])))
        return model

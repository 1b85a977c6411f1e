"""Search spaces: YAML files that say which policies a study may try, turned into a :class:`Policy` per trial.

A space is data, not code (``search_spaces/*.yaml``). Its schema, with every key optional except where noted::

    prune:
      per: group | stage | uniform | none   # one ratio per coupled group, per top-level stage, one for all, or off
      level: {low: 0.0, high: 0.85, step: 0.05}   # optional: a global prune level every trial samples ...
      spread: 0.15                          # ... and each group/stage gets level + offset, offset in [-spread, spread]
      ratio: {low: 0.0, high: 0.7, step: 0.05}    # bounds of one group's ratio (without level: sampled per group)
      round_to: 4
      importance: l1 | l2
      sparsity: {low: 0.0, high: 0.5, step: 0.1}   # optional: unstructured L1 zeroing after structural pruning
    quantize:
      mode: [none, int8, int8_dynamic]
      granularity: [per_tensor, per_channel]
      calibration: [minmax, entropy, percentile]
      calibration_samples: 64
      kernel: [auto]                        # int8 types: auto (chosen for this CPU) | u8s8 | u8s8_reduce | s8s8
      per_layer: false                      # true: int8 trials also choose, per prunable layer, to keep it fp32
      refine_layers: false                  # true: after the search, the chosen int8 model tries layers in fp32
    distill:
      temperature: {low: 1.0, high: 8.0, log: true}
      alpha: {low: 0.3, high: 1.0}
      lr: {low: 3.0e-4, high: 3.0e-3, log: true}
      epochs: {low: 2, high: 9, step: 1}   # KD length in passes over the training set (scales with the data) ...
      steps: {low: 30, high: 150, step: 30} # ... or in optimizer steps (one or the other)
      max_steps: 2000                       # cap on one trial's steps however large the training set
      augment: false                        # true: random resized crops + flips, teacher run on each batch
      batch_size: 64
      halving: {eta: 3, rungs: 1}           # optional: a short fine-tune first, the best 1/eta go on (halving.py)

**KD length scales with the data.** ``distill.epochs`` is the fine-tuning length in passes over the training split:
``steps = round(epochs x train images / batch_size)``, at least 1. Tiny example: 9 epochs of the demo's 1,078 images
in batches of 64 is 152 steps; of a 3,000-image workload, 422 steps. ``distill.steps`` (a fixed count) is still
accepted for spaces that want it; the shipped spaces use epochs. ``distill.max_steps`` caps a trial's steps, so that
epochs over a large training set do not make every trial a long training run: 9 epochs of 30,000 images in batches of
64 are 4,219 steps, capped at 2,000 (128,000 images seen, about 4 epochs). :meth:`SearchSpace.describe_kd` prints
what a trial's fine-tuning costs before the study starts.

**Why a global level.** Independent per-group ratios concentrate: the mean of nine uniform ratios in [0, 0.7] is
almost never above 0.5, so strong compression is never sampled (measured on the demo: 20 random trials never drew a
mean above 48 %). A global ``level`` reaches both corners of the space in a few trials (AMC/HAQ-style budgets are
global too), and the per-group ``offset`` keeps the freedom to prune insensitive groups harder. Tiny example: level
0.6, spread 0.15, offsets ``[-0.1, +0.15, 0]`` → ratios ``[0.5, 0.75, 0.6]``, clipped into ``ratio``'s bounds.

**Per-layer int8** (``quantize.per_layer: true``): an int8 trial also samples, for each prunable group's root layer,
``quant.fp32.<layer>`` (keep that layer fp32 or not), mapped to ONNX Runtime's ``nodes_to_exclude`` / NNCF's
``ignored_scope``. int8 is a per-layer choice: it pays on wide layers and can cost more than it saves (quantize and
dequantize steps) on thin, pruned ones. Fixed policies (baselines, probe, rescue) keep every layer int8.

**Layer refinement** (``quantize.refine_layers: true``): the sampler's space stays as it is (no dimension per layer);
after the search, the int8 model the study would choose is deployed again with one prunable group's root layer in
fp32 at a time, from its own fine-tuned weights (no fine-tuning: precision does not change the weights), then with
every layer whose fp32 variant was faster or more accurate together. Each variant is a trial (role ``refined``)
measured and scored like any other, so the choice can only move to a variant that beats the model it came from.

Distillation parameters are only sampled when the trial prunes something: fine-tuning an unpruned model toward
itself would spend time for nothing, and conditional parameters keep the sampler's view honest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import optuna

from autocompress.compress.prune import PrunableGroup, stage_of
from autocompress.config import read_yaml
from autocompress.errors import ConfigError
from autocompress.hardware.cpu import Int8Kernel
from autocompress.policy import (
    CALIBRATION_METHODS,
    GRANULARITIES,
    QUANT_MODES,
    DistillPolicy,
    Policy,
    PrunePolicy,
    QuantPolicy,
)
from autocompress.study.halving import Halving

__all__ = [
    "FloatRange",
    "RuntimeOffer",
    "SearchSpace",
    "list_spaces",
    "load_space",
    "stage_of",
    "INT8_KERNELS",
    "FP32_LAYER_PARAM",
    "QUANT_RULED_OUT_ATTR",
    "RUNTIME_PARAM",
]

PRUNE_MODES = ("group", "stage", "uniform", "none")
QUANT_RULED_OUT_ATTR = "quant_ruled_out"  # trial user attribute: why quant.* was not sampled (the trial is fp32)
FP32_LAYER_PARAM = "quant.fp32."  # + a group's root layer name: keep that layer fp32 in an int8 trial
RUNTIME_PARAM = "runtime"  # --runtime auto: the trial's runtime (its precision is then quant.mode.<runtime>)
# Static-int8 type choices a space may name; ``auto`` is resolved from the CPU
# (autocompress.hardware.cpu.int8_kernel_for).
INT8_KERNELS: dict[str, tuple[str, bool]] = {
    "u8s8": ("uint8", False),
    "u8s8_reduce": ("uint8", True),
    "s8s8": ("int8", False),
}
_SCHEMA: dict[str, set[str]] = {
    "prune": {"per", "level", "spread", "ratio", "round_to", "importance", "sparsity"},
    "quantize": {"mode", "granularity", "calibration", "calibration_samples", "kernel", "per_layer", "refine_layers"},
    "distill": {"temperature", "alpha", "lr", "steps", "epochs", "max_steps", "augment", "batch_size", "halving"},
}
_RANGE_KEYS = {"low", "high", "step", "log"}


@dataclass(frozen=True)
class FloatRange:
    """A numeric range sampled with ``trial.suggest_float`` / ``suggest_int``."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def clamp(self, value: float) -> float:
        """``value`` moved into the range and onto its step grid (for enqueued baselines)."""
        value = min(max(value, self.low), self.high)
        if self.step:
            value = self.low + round((value - self.low) / self.step) * self.step
        return round(value, 10)


@dataclass(frozen=True)
class RuntimeOffer:
    """What one runtime offers a ``--runtime auto`` space on this CPU.

    Attributes:
        name: the runtime (:func:`autocompress.runtimes.get_runtime`).
        modes: its precision modes that the space searches (bf16 only where this CPU runs it natively).
        kernels: the int8 kernel choices the space searches on it (``("auto",)`` where the runtime has no choice).
        int8_kernel: what ``auto`` resolves to on this runtime and CPU.
    """

    name: str
    modes: tuple[str, ...]
    kernels: tuple[str, ...] = ("auto",)
    int8_kernel: Int8Kernel | None = None


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; see the module docstring for the YAML form."""

    source: str = "<defaults>"
    prune_per: str = "group"
    prune_level: FloatRange | None = None
    prune_spread: float = 0.15
    prune_ratio: FloatRange = FloatRange(0.0, 0.7, 0.05)
    round_to: int | None = 4
    importance: str = "l1"
    sparsity: FloatRange | None = None
    quant_modes: tuple[str, ...] = ("none", "int8")
    granularities: tuple[str, ...] = ("per_tensor", "per_channel")
    calibrations: tuple[str, ...] = ("minmax", "percentile")
    calibration_samples: int = 64
    kernels: tuple[str, ...] = ("auto",)
    per_layer: bool = False
    refine_layers: bool = False
    temperature: FloatRange = FloatRange(1.0, 8.0, log=True)
    alpha: FloatRange = FloatRange(0.3, 1.0)
    lr: FloatRange = FloatRange(3e-4, 3e-3, log=True)
    steps: FloatRange = FloatRange(30, 150, 30)
    epochs: FloatRange | None = None
    max_steps: int | None = None
    augment: bool = False
    batch_size: int = 64
    halving: Halving | None = None  # successive halving of the fine-tuning (autocompress.study.halving)
    offers: tuple[RuntimeOffer, ...] = ()  # --runtime auto: the runtimes searched (empty: the study's one runtime)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def for_runtime(self, modes: Sequence[str], kernels: Sequence[str] | None, *, runtime: str) -> SearchSpace:
        """This space restricted to what a runtime offers on this CPU (its precision ``modes``; explicit int8
        ``kernels`` only where the runtime has such a choice, e.g. ONNX Runtime's U8S8/S8S8).

        Example: the default space (``mode: [none, int8]``) on ``--runtime torch`` (fp32 only) searches pruning and
        KD in fp32. A space left with no mode at all is a ConfigError naming the runtime's modes.
        """
        kept = tuple(m for m in self.quant_modes if m in modes)
        if not kept:
            raise ConfigError(
                f"{self.source}: quantize.mode {list(self.quant_modes)} has nothing --runtime {runtime} "
                f"can build on this CPU; it offers {', '.join(modes)} — use a space with one of them"
            )
        explicit = [k for k in self.kernels if k != "auto"]
        if explicit and kernels is not None and not set(explicit) <= set(kernels):
            raise ConfigError(
                f"{self.source}: quantize.kernel {explicit} are not int8 kernels of --runtime {runtime}; "
                f"use auto or one of {', '.join(kernels)}"
            )
        return dataclasses.replace(self, quant_modes=kept, kernels=self.kernels if kernels is not None else ("auto",))

    def for_runtimes(self, offers: Sequence[RuntimeOffer]) -> tuple[SearchSpace, list[str]]:
        """This space searched over several runtimes (``--runtime auto``): each offer narrowed as
        :meth:`for_runtime` narrows a space (its modes that the space names; explicit int8 kernels where it has
        them); a runtime left with no mode of the space is dropped. Returns the space and why runtimes were dropped.

        Example: the default space (``mode: [none, int8, bf16]``) on a CPU with native bf16 searches ONNX Runtime
        fp32/int8, OpenVINO fp32/int8/bf16 and PyTorch fp32/bf16; a space of ``mode: [int8]`` drops PyTorch.
        """
        kept: list[RuntimeOffer] = []
        dropped: list[str] = []
        for offer in offers:
            if not any(m in offer.modes for m in self.quant_modes):
                dropped.append(f"{offer.name} builds only {', '.join(offer.modes)} here")
                continue
            explicit = None if offer.kernels == ("auto",) else offer.kernels
            one = self.for_runtime(offer.modes, explicit, runtime=offer.name)
            kept.append(dataclasses.replace(offer, modes=one.quant_modes, kernels=one.kernels))
        if not kept:
            raise ConfigError(
                f"{self.source}: --runtime auto: no installed runtime can build any of quantize.mode "
                f"{list(self.quant_modes)} on this CPU ({'; '.join(dropped)}); use a space with fp32 (none)"
            )
        modes = tuple(m for m in self.quant_modes if any(m in o.modes for o in kept))
        return dataclasses.replace(self, quant_modes=modes, offers=tuple(kept)), dropped

    # ---------------------------------------------------------------- runtimes (--runtime auto)
    def offer(self, runtime: str) -> RuntimeOffer:
        """The offer of ``runtime`` in a ``--runtime auto`` space."""
        for offer in self.offers:
            if offer.name == runtime:
                return offer
        raise ConfigError(
            f"runtime {runtime!r} is not searched by this study; it searches {', '.join(o.name for o in self.offers)}"
        )

    def modes_of(self, runtime: str | None) -> tuple[str, ...]:
        """The precision modes searched on ``runtime`` (``None``: the study's one runtime)."""
        return self.quant_modes if runtime is None or not self.offers else self.offer(runtime).modes

    @staticmethod
    def mode_param(runtime: str | None) -> str:
        """The Optuna parameter of the precision: ``quant.mode``, or ``quant.mode.<runtime>`` under ``--runtime auto``
        (each runtime offers other modes, and a categorical's choices never change between trials)."""
        return "quant.mode" if runtime is None else f"quant.mode.{runtime}"

    def deployments(self) -> list[tuple[str | None, str]]:
        """Every (runtime, precision mode) pair the space searches; the runtime is ``None`` for a one-runtime study.

        Example: ``[(None, "none"), (None, "int8")]``, or under ``--runtime auto`` ``[("onnxruntime", "none"),
        ("onnxruntime", "int8"), ("openvino", "none"), …]``.
        """
        if not self.offers:
            return [(None, m) for m in self.quant_modes]
        return [(o.name, m) for o in self.offers for m in o.modes]

    # ---------------------------------------------------------------- sampling
    @property
    def has_level(self) -> bool:
        """True when every trial samples one global prune level (``prune.level`` in the YAML)."""
        return self.prune_level is not None and self.prune_per != "none"

    @property
    def max_prune(self) -> float:
        """The strongest ratio any group can get in this space (0 without pruning)."""
        return 0.0 if self.prune_per == "none" else self.prune_ratio.high

    def prune_params(self, groups: Sequence[PrunableGroup]) -> dict[str, list[str]]:
        """Optuna parameter name → the groups it sets (with a level: the per-group offsets)."""
        if self.prune_per == "none" or not groups:
            return {}
        prefix = "prune.offset." if self.has_level else "prune."
        if self.prune_per == "uniform":
            return {} if self.has_level else {"prune.ratio": [g.name for g in groups]}
        if self.prune_per == "stage":
            stages: dict[str, list[str]] = {}
            for g in groups:
                stages.setdefault(f"{prefix}{g.stage}", []).append(g.name)
            return stages
        return {f"{prefix}{g.name}": [g.name] for g in groups}

    def _suggest_ratios(self, trial: optuna.Trial, groups: Sequence[PrunableGroup]) -> dict[str, float]:
        r = self.prune_ratio
        ratios: dict[str, float] = {}
        if self.has_level and groups:
            lv = self.prune_level
            assert lv is not None
            level = trial.suggest_float("prune.level", lv.low, lv.high, step=lv.step, log=lv.log)
            ratios = {g.name: level for g in groups}
            if self.prune_spread > 0:
                step = min(0.05, self.prune_spread)
                for param, members in self.prune_params(groups).items():
                    offset = trial.suggest_float(param, -self.prune_spread, self.prune_spread, step=step)
                    ratios.update({name: level + offset for name in members})
            return {name: round(min(max(v, r.low), r.high), 4) for name, v in ratios.items()}
        for param, members in self.prune_params(groups).items():
            value = trial.suggest_float(param, r.low, r.high, step=r.step, log=r.log)
            ratios.update({name: value for name in members})
        return ratios

    def kd_steps(self, trial: optuna.Trial, train_size: int | None) -> int:
        """The fine-tuning length of ``trial`` in optimizer steps (from ``kd.epochs`` and the train size, or
        ``kd.steps``)."""
        if self.epochs is None:
            return trial.suggest_int(
                "kd.steps", int(self.steps.low), int(self.steps.high), step=int(self.steps.step or 1)
            )
        epochs = trial.suggest_float(
            "kd.epochs", self.epochs.low, self.epochs.high, step=self.epochs.step, log=self.epochs.log
        )
        if train_size is None:
            raise ConfigError(f"{self.source}: distill.epochs needs the training-set size to turn epochs into steps")
        return self._capped(max(1, int(round(epochs * train_size / self.batch_size))))

    def _capped(self, steps: int) -> int:
        return min(steps, self.max_steps) if self.max_steps is not None else steps

    def describe_kd(self, train_size: int) -> str:
        """What one trial's fine-tuning costs, in steps and images seen, for a training split of ``train_size``.

        Example: ``epochs 2-9`` of 1,078 images in batches of 64 → ``"KD 34-152 steps of 64 images (2-9 epochs of
        1,078 train images; 2,176-9,728 images seen per trial)"``.
        """
        size = max(1, train_size)
        if self.epochs is None:
            low, high = int(self.steps.low), int(self.steps.high)
            source = f"{low * self.batch_size / size:.2g}-{high * self.batch_size / size:.2g} epochs"
        else:
            low, high = (max(1, int(round(e * size / self.batch_size))) for e in (self.epochs.low, self.epochs.high))
            source = f"{self.epochs.low:g}-{self.epochs.high:g} epochs"
            if self._capped(high) < high:
                source += f" capped at distill.max_steps {self.max_steps}"
            low, high = self._capped(low), self._capped(high)
        teacher = "; augmented: random crops and flips, the teacher run on every batch" if self.augment else ""
        halving = f"; {self.halving.describe()}" if self.halving else ""
        return (
            f"KD {low}-{high} steps of {self.batch_size} images ({source} of {train_size:,} train images; "
            f"{low * self.batch_size:,}-{high * self.batch_size:,} images seen per trial{teacher}){halving}"
        )

    def suggest(
        self,
        trial: optuna.Trial,
        groups: Sequence[PrunableGroup],
        *,
        int8_kernel: Int8Kernel | None = None,
        train_size: int | None = None,
        quantize_unless: Callable[..., str | None] | None = None,
    ) -> Policy:
        """Sample one :class:`Policy` from this space for ``trial``.

        ``int8_kernel`` resolves the ``auto`` kernel choice (the CPU's settings,
        :func:`autocompress.hardware.cpu.int8_kernel_for`); without it ``auto`` means full-range U8S8. ``train_size``
        turns ``distill.epochs`` into steps. ``quantize_unless`` is asked with the sampled structure before the
        precision is sampled: a reason (the latency model predicts every quantized mode no faster than fp32 there) makes
        the trial fp32 without sampling ``quant.*`` (a conditional parameter, as Optuna's define-by-run spaces allow),
        and the reason is stored as the trial's ``quant_ruled_out`` user attribute.

        Under ``--runtime auto`` (:attr:`offers`) the runtime is sampled first (``runtime``), then its precision
        (``quant.mode.<runtime>``, from its own modes) with its own ``auto`` int8 kernel; ``quantize_unless`` is
        then asked with the runtime too (``quantize_unless(prune, runtime)``).
        """
        ratios = self._suggest_ratios(trial, groups)
        sparsity = 0.0
        if self.sparsity is not None:
            rng = self.sparsity
            sparsity = trial.suggest_float("prune.sparsity", rng.low, rng.high, step=rng.step, log=rng.log)
        prune = PrunePolicy(ratios=ratios, round_to=self.round_to, importance=self.importance, sparsity=sparsity)
        runtime: str | None = None
        modes, kernels = self.quant_modes, self.kernels
        if self.offers:  # --runtime auto: the runtime first, then what it offers on this CPU
            runtime = trial.suggest_categorical(RUNTIME_PARAM, [o.name for o in self.offers])
            offer = self.offer(runtime)
            modes, kernels = offer.modes, offer.kernels
            int8_kernel = offer.int8_kernel or int8_kernel
        ruled_out = None
        if quantize_unless is not None and len(modes) > 1:
            ruled_out = quantize_unless(prune) if runtime is None else quantize_unless(prune, runtime)
        if ruled_out:
            trial.set_user_attr(QUANT_RULED_OUT_ATTR, ruled_out)
            mode = "none" if "none" in modes else modes[0]
        else:
            mode = trial.suggest_categorical(self.mode_param(runtime), list(modes))
        granularity, calibration = "per_channel", "minmax"
        activation_type, reduce_range = "uint8", False
        if mode.startswith("int8"):  # bf16 has no scales and no kernel to choose: nothing more to sample
            granularity = trial.suggest_categorical("quant.granularity", list(self.granularities))
            kernel = kernels[0] if len(kernels) == 1 else trial.suggest_categorical("quant.kernel", list(kernels))
            if kernel == "auto":
                if int8_kernel is not None:
                    activation_type, reduce_range = int8_kernel.activation_type, int8_kernel.reduce_range
            else:
                activation_type, reduce_range = INT8_KERNELS[kernel]
        fp32_layers: tuple[str, ...] = ()
        if mode == "int8":
            calibration = trial.suggest_categorical("quant.calibration", list(self.calibrations))
            if self.per_layer:
                fp32_layers = tuple(
                    g.name for g in groups if trial.suggest_categorical(f"{FP32_LAYER_PARAM}{g.name}", [False, True])
                )
        distill = self._suggest_distill(trial, prune, train_size)
        quant = QuantPolicy(
            mode=mode,
            granularity=granularity,
            calibration=calibration,
            calibration_samples=self.calibration_samples,
            activation_type=activation_type,
            reduce_range=reduce_range,
            fp32_layers=fp32_layers,
        )
        return Policy(prune=prune, quant=quant, distill=distill, runtime=runtime)

    def _suggest_distill(self, trial: optuna.Trial, prune: PrunePolicy, train_size: int | None) -> DistillPolicy:
        """The KD settings of ``trial``: sampled only when something is pruned (see the module docstring)."""
        if prune.is_identity:
            return DistillPolicy(steps=0, batch_size=self.batch_size)
        t, a, lr = self.temperature, self.alpha, self.lr
        return DistillPolicy(
            temperature=trial.suggest_float("kd.temperature", t.low, t.high, log=t.log),
            alpha=trial.suggest_float("kd.alpha", a.low, a.high, step=a.step, log=a.log),
            lr=trial.suggest_float("kd.lr", lr.low, lr.high, log=lr.log),
            steps=self.kd_steps(trial, train_size),
            batch_size=self.batch_size,
        )

    # ------------------------------------------------------- fixed points (baselines, probe, seeds, rescue)
    def uniform_params(self, groups: Sequence[PrunableGroup], level: float) -> dict[str, Any]:
        """Parameters that prune every group at ``level`` (moved into the space's range and step grid)."""
        if self.prune_per == "none" or not groups:
            return {}
        if self.has_level:
            assert self.prune_level is not None
            offsets = {p: 0.0 for p in self.prune_params(groups)} if self.prune_spread > 0 else {}
            return {"prune.level": self.prune_level.clamp(level), **offsets}
        return {p: self.prune_ratio.clamp(level) for p in self.prune_params(groups)}

    def uniform_level(self, level: float) -> float:
        """The uniform prune level :meth:`uniform_params` builds for ``level``: moved into the space's range and onto
        its step grid (``level: 0.25`` builds 0.25 for any ``level``; ``ratio: {low: 0, high: 0.6, step: 0.1}`` builds
        0.2 for 0.25)."""
        if self.prune_per == "none":
            return 0.0
        bounds = self.prune_level if self.has_level and self.prune_level else self.prune_ratio
        return bounds.clamp(level)

    def quant_params(
        self, mode: str, groups: Sequence[PrunableGroup] = (), *, runtime: str | None = None
    ) -> dict[str, Any]:
        """Parameters for ``mode`` (``none``/``int8``/``int8_dynamic``/``bf16``) with the space's preferred settings:
        per-channel weights and minmax calibration where the space has them, the CPU's own kernel (``auto``), and
        (per-layer spaces) every layer of ``groups`` int8. Under ``--runtime auto`` they deploy on ``runtime`` (by
        default the first searched); a one-runtime space ignores ``runtime``. ``{}`` where the mode is not searched
        (on that runtime)."""
        kernels = self.kernels
        if self.offers:
            runtime = runtime or self.offers[0].name
            if runtime not in {o.name for o in self.offers} or mode not in self.offer(runtime).modes:
                return {}
            kernels = self.offer(runtime).kernels
        else:
            runtime = None
            if mode not in self.quant_modes:
                return {}
        params: dict[str, Any] = {RUNTIME_PARAM: runtime} if runtime is not None else {}
        params[self.mode_param(runtime)] = mode
        if mode.startswith("int8"):
            params["quant.granularity"] = (
                "per_channel" if "per_channel" in self.granularities else self.granularities[0]
            )
            if len(kernels) > 1:
                params["quant.kernel"] = "auto" if "auto" in kernels else kernels[0]
        if mode == "int8":
            params["quant.calibration"] = "minmax" if "minmax" in self.calibrations else self.calibrations[0]
            if self.per_layer:
                params.update({f"{FP32_LAYER_PARAM}{g.name}": False for g in groups})
        return params

    def kd_params(self, *, longest: bool = False) -> dict[str, Any]:
        """Middle-of-the-road distillation settings (T=4, alpha=0.7, lr=1e-3), mid-range length (``longest``: the
        space's longest fine-tuning)."""
        length = self.epochs or self.steps
        wanted = length.high if longest else (length.low + length.high) / 2
        params: dict[str, Any] = {
            "kd.temperature": self.temperature.clamp(4.0),
            "kd.alpha": self.alpha.clamp(0.7),
            "kd.lr": self.lr.clamp(1e-3),
        }
        if self.epochs is not None:
            params["kd.epochs"] = self.epochs.clamp(wanted)
        else:
            params["kd.steps"] = int(self.steps.clamp(wanted))
        return params

    def fixed_policy(
        self,
        params: Mapping[str, Any],
        groups: Sequence[PrunableGroup],
        *,
        int8_kernel: Int8Kernel | None = None,
        train_size: int | None = None,
    ) -> Policy:
        """The policy ``params`` describe, without a study (:class:`optuna.trial.FixedTrial`)."""
        full = {**self.kd_params(), **params}
        dense = {"prune.sparsity": self.sparsity.clamp(0.0)} if self.sparsity is not None else {}
        if self.per_layer:  # a fixed policy keeps every layer int8 unless ``params`` says otherwise
            dense.update({f"{FP32_LAYER_PARAM}{g.name}": False for g in groups})
        return self.suggest(
            optuna.trial.FixedTrial({**dense, **full}), groups, int8_kernel=int8_kernel, train_size=train_size
        )

    def baselines(
        self, groups: Sequence[PrunableGroup], *, fp32_runtime: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Reference policies enqueued at the start of every new study, as ``(label, params)``.

        Uncompressed fp32, int8-only per-channel, and uniform 50 % prune + KD + int8 per-channel — each only where
        the space contains it, so every Pareto front has the obvious recipes to beat. A space that always prunes
        (``level: 0.25``, or ``ratio.low`` above 0) has no uncompressed model: its first two baselines are its least
        pruning instead, fine-tuned, and say so (``fp32 · uniform 25% prune + KD``); the third is labelled with the
        level the space really builds (:meth:`uniform_level`).

        Under ``--runtime auto`` each searched runtime gets its own baselines, labelled with its name, except the
        uncompressed fp32 model: only on ``fp32_runtime`` (the fastest fp32 teacher, the budget's yardstick; the
        other runtimes' fp32 teachers were timed at set-up and are slower).
        """
        if not self.offers:
            return self._baselines(groups, runtime=None)
        out = []
        for offer in self.offers:
            for label, params in self._baselines(groups, runtime=offer.name):
                uncompressed = params.get(self.mode_param(offer.name)) == "none" and label.startswith("fp32 (")
                if not uncompressed or offer.name == (fp32_runtime or self.offers[0].name):
                    out.append((f"{label} · {offer.name}", params))
        return out

    def _baselines(self, groups: Sequence[PrunableGroup], *, runtime: str | None) -> list[tuple[str, dict[str, Any]]]:
        """:meth:`baselines` on one runtime (``None``: the study's one runtime)."""
        modes = self.modes_of(runtime)
        dense = {"prune.sparsity": self.sparsity.clamp(0.0)} if self.sparsity is not None else {}
        least = self.uniform_level(0.0) if groups else 0.0
        zero = {**self.uniform_params(groups, 0.0), **dense, **(self.kd_params() if least > 0 else {})}
        pruned = f" · uniform {least:.0%} prune + KD" if least > 0 else ""
        half = self.uniform_params(groups, 0.5)
        out: list[tuple[str, dict[str, Any]]] = []
        if "none" in modes:
            label = f"fp32{pruned}" if pruned else "fp32 (uncompressed)"
            out.append((label, {**zero, **self.quant_params("none", runtime=runtime)}))
        if "int8" in modes and "per_channel" in self.granularities and "minmax" in self.calibrations:
            int8 = self.quant_params("int8", groups, runtime=runtime)
            out.append((f"int8 per-channel{pruned or ' only'}", {**zero, **int8}))
            if half and self.max_prune >= 0.5:
                out.append(
                    (
                        f"uniform {self.uniform_level(0.5):.0%} prune + KD + int8",
                        {**half, **dense, **int8, **self.kd_params()},
                    )
                )
        if "bf16" in modes:  # where bf16 is native (the runtime offers it): the teacher in bf16 first
            out.append((f"bf16{pruned or ' only'}", {**zero, **self.quant_params("bf16", runtime=runtime)}))
        return out

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> SearchSpace:
        """Validate ``data`` (the parsed YAML) and build a space; errors name ``source`` and the key."""
        _check_keys(data, source=source)
        defaults = cls()
        return cls(
            source=source,
            **_prune_fields(data.get("prune", {}) or {}, defaults, source=source),
            **_quantize_fields(data.get("quantize", {}) or {}, defaults, source=source),
            **_distill_fields(data.get("distill", {}) or {}, defaults, source=source),
            raw=dict(data),
        )


def _check_keys(data: Any, *, source: str) -> None:
    """``data`` is a mapping of known sections, each a mapping of known keys: a typo is an error, not a default."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with keys prune/quantize/distill, got {type(data).__name__}")
    for section, body in data.items():
        if section not in _SCHEMA:
            raise ConfigError(f"{source}: unknown key {section!r}; expected one of {', '.join(_SCHEMA)}")
        if not isinstance(body, Mapping):
            raise ConfigError(f"{source}: {section} must be a mapping, got {body!r}")
        for key in body:
            if key not in _SCHEMA[section]:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}; expected one of {', '.join(sorted(_SCHEMA[section]))}"
                )


def _prune_fields(prune: Mapping[str, Any], defaults: SearchSpace, *, source: str) -> dict[str, Any]:
    """The ``prune`` section as :class:`SearchSpace` fields, validated; absent keys take ``defaults``' values."""
    ratio = _range(source, "prune.ratio", prune.get("ratio"), defaults.prune_ratio)
    if ratio.low < 0 or ratio.high >= 1:
        raise ConfigError(
            f"{source}: prune.ratio must lie in [0, 1), got low={ratio.low} high={ratio.high}; "
            "a ratio of 1 would remove every channel"
        )
    level = _range(source, "prune.level", prune.get("level"), FloatRange(0.0, 0.0)) if "level" in prune else None
    if level is not None and (level.low < ratio.low or level.high > ratio.high):
        raise ConfigError(
            f"{source}: prune.level must lie inside prune.ratio's bounds [{ratio.low}, {ratio.high}], "
            f"got low={level.low} high={level.high}; widen prune.ratio or narrow prune.level"
        )
    spread = prune.get("spread", defaults.prune_spread)
    if not isinstance(spread, (int, float)) or isinstance(spread, bool) or not 0 <= spread < 1:
        raise ConfigError(f"{source}: prune.spread must be a number in [0, 1), got {spread!r}")
    per = prune.get("per", defaults.prune_per)
    if per not in PRUNE_MODES:
        raise ConfigError(f"{source}: prune.per must be one of {', '.join(PRUNE_MODES)}, got {per!r}")
    round_to = prune.get("round_to", defaults.round_to)
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise ConfigError(f"{source}: prune.round_to must be a positive integer or null, got {round_to!r}")
    sparsity = (
        _range(source, "prune.sparsity", prune.get("sparsity"), FloatRange(0.0, 0.0)) if "sparsity" in prune else None
    )
    if sparsity is not None and (sparsity.low < 0 or sparsity.high >= 1):
        raise ConfigError(f"{source}: prune.sparsity must lie in [0, 1), got low={sparsity.low} high={sparsity.high}")
    importance = prune.get("importance", defaults.importance)
    if importance not in ("l1", "l2"):
        raise ConfigError(f"{source}: prune.importance must be l1 or l2, got {importance!r}")
    return {
        "prune_per": per,
        "prune_level": level,
        "prune_spread": float(spread),
        "prune_ratio": ratio,
        "round_to": round_to,
        "importance": importance,
        "sparsity": sparsity,
    }


def _quantize_fields(quant: Mapping[str, Any], defaults: SearchSpace, *, source: str) -> dict[str, Any]:
    """The ``quantize`` section as :class:`SearchSpace` fields, validated; absent keys take ``defaults``' values."""
    return {
        "quant_modes": _choices(source, "quantize.mode", quant.get("mode"), defaults.quant_modes, QUANT_MODES),
        "granularities": _choices(
            source, "quantize.granularity", quant.get("granularity"), defaults.granularities, GRANULARITIES
        ),
        "calibrations": _choices(
            source, "quantize.calibration", quant.get("calibration"), defaults.calibrations, CALIBRATION_METHODS
        ),
        "calibration_samples": _positive_int(
            source, "quantize.calibration_samples", quant.get("calibration_samples", defaults.calibration_samples)
        ),
        "kernels": _choices(source, "quantize.kernel", quant.get("kernel"), defaults.kernels, ("auto", *INT8_KERNELS)),
        "per_layer": _flag(source, "quantize.per_layer", quant.get("per_layer", defaults.per_layer)),
        "refine_layers": _flag(source, "quantize.refine_layers", quant.get("refine_layers", defaults.refine_layers)),
    }


def _distill_fields(kd: Mapping[str, Any], defaults: SearchSpace, *, source: str) -> dict[str, Any]:
    """The ``distill`` section as :class:`SearchSpace` fields, validated; absent keys take ``defaults``' values."""
    return {
        "temperature": _range(
            source, "distill.temperature", kd.get("temperature"), defaults.temperature, positive=True
        ),
        "alpha": _range(source, "distill.alpha", kd.get("alpha"), defaults.alpha, unit=True),
        "lr": _range(source, "distill.lr", kd.get("lr"), defaults.lr, positive=True),
        "steps": _range(source, "distill.steps", kd.get("steps"), defaults.steps, integer=True),
        "epochs": _epochs(source, kd),
        "max_steps": (
            _positive_int(source, "distill.max_steps", kd["max_steps"]) if kd.get("max_steps") is not None else None
        ),
        "augment": _flag(source, "distill.augment", kd.get("augment", defaults.augment)),
        "batch_size": _positive_int(source, "distill.batch_size", kd.get("batch_size", defaults.batch_size)),
        "halving": _halving(source, kd.get("halving", defaults.halving)),
    }


def _halving(source: str, value: Any) -> Halving | None:
    """``distill.halving``: ``{eta: 3, rungs: 1}`` (either key may be left out), ``false``/absent for none."""
    if value is None or value is False or isinstance(value, Halving):
        return value or None
    if value is True:
        return Halving()
    if not isinstance(value, Mapping) or set(value) - {"eta", "rungs"}:
        raise ConfigError(f"{source}: distill.halving must be a mapping {{eta, rungs}} or true/false, got {value!r}")
    eta = _positive_int(source, "distill.halving.eta", value.get("eta", Halving.eta))
    rungs = _positive_int(source, "distill.halving.rungs", value.get("rungs", Halving.rungs))
    if eta < 2:
        raise ConfigError(f"{source}: distill.halving.eta must be at least 2 (the share of trials that go on is 1/eta)")
    return Halving(eta=eta, rungs=rungs)


def _flag(source: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
    return value


def _range(
    source: str,
    key: str,
    value: Any,
    default: FloatRange,
    *,
    positive: bool = False,
    unit: bool = False,
    integer: bool = False,
) -> FloatRange:
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"low": value, "high": value}
    if not isinstance(value, Mapping) or not {"low", "high"} <= set(value) or set(value) - _RANGE_KEYS:
        raise ConfigError(f"{source}: {key} must be a mapping {{low, high[, step][, log]}} or a number, got {value!r}")
    try:
        low, high = float(value["low"]), float(value["high"])
        step = float(value["step"]) if value.get("step") is not None else None
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key}: low/high/step must be numbers, got {dict(value)!r}") from None
    log = bool(value.get("log", False))
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{source}: {key} is an empty range (low={low} > high={high}); make low <= high")
    if step is not None and step <= 0:
        raise ConfigError(f"{source}: {key}.step must be positive, got {step}")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{source}: {key}: log ranges need low > 0 and no step, got low={low} step={step}")
    if positive and low <= 0:
        raise ConfigError(f"{source}: {key} must be positive, got low={low}")
    if unit and not (0 <= low and high <= 1):
        raise ConfigError(f"{source}: {key} must lie in [0, 1], got low={low} high={high}")
    if integer:
        if low < 0 or low != int(low) or high != int(high) or (step is not None and step != int(step)):
            raise ConfigError(f"{source}: {key} needs whole non-negative numbers, got {dict(value)!r}")
        step = step or 1.0
    return FloatRange(low, high, step, log)


def _epochs(source: str, kd: Mapping[str, Any]) -> FloatRange | None:
    if "epochs" not in kd:
        return None
    if "steps" in kd:
        raise ConfigError(
            f"{source}: distill has both epochs and steps; give the fine-tuning length one way "
            "(epochs scale with the training set)"
        )
    epochs = _range(source, "distill.epochs", kd["epochs"], FloatRange(1.0, 1.0), positive=True)
    return epochs


def _choices(source: str, key: str, value: Any, default: tuple[str, ...], valid: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: {key} must be a non-empty list from {', '.join(valid)}, got {value!r}")
    for item in value:
        if item not in valid:
            raise ConfigError(f"{source}: {key}: unknown choice {item!r}; expected one of {', '.join(valid)}")
    return tuple(dict.fromkeys(value))


def _positive_int(source: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{source}: {key} must be a positive integer, got {value!r}")
    return value


def _builtin_dir() -> Path:
    return Path(str(resources.files("autocompress.search_spaces")))


def list_spaces() -> list[str]:
    """Names of the search spaces shipped in ``search_spaces/``."""
    return sorted(p.stem for p in _builtin_dir().glob("*.yaml"))


def load_space(name_or_path: str) -> SearchSpace:
    """Load a shipped space by name (``default``) or any YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = _builtin_dir() / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"--space: no search space named {name_or_path!r}; shipped: {', '.join(list_spaces())}, "
                "or give a path to a .yaml file"
            )
    if not path.is_file():
        raise ConfigError(
            f"--space: file {str(path)!r} does not exist; give a YAML file or one of {', '.join(list_spaces())}"
        )
    return SearchSpace.from_dict(read_yaml(path, option="--space"), source=str(path))

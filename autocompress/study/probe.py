"""The reachable-range probe: what latencies can this space reach on this CPU, before trial 1?

A handful of structures that span the space — uniform prune levels 0 / 25 / 50 / 65 / 75 % / the space's maximum, each
in every quantization mode the space has (under ``--runtime auto``: on every searched runtime) — are pruned, deployed
and timed, with no fine-tuning (seconds, not trials).
The result says at once whether the budget is reachable ("this space reaches 0.10–0.83 ms on this CPU"), suggests a
budget when it is not, and seeds the search with the probed structure nearest the budget. Each measurement lands in the
runner's latency cache, so a trial of the same structure is not timed twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autocompress.measure.latency import Latency
from autocompress.study.pareto import suggested_budget_ms

if TYPE_CHECKING:
    from autocompress.study.trial import TrialRunner

__all__ = ["ProbePoint", "Probe", "probe_levels", "run_probe", "PROBE_LEVELS"]


@dataclass(frozen=True)
class ProbePoint:
    """One probed structure: uniform prune ``level`` deployed as ``quant`` (``none``/``int8``/``int8_dynamic``/
    ``bf16``) on ``runtime`` (``None``: the study's one runtime)."""

    level: float
    quant: str
    kernel: str
    latency: Latency
    params: dict[str, Any]
    runtime: str | None = None

    @property
    def label(self) -> str:
        quant = {"none": "fp32", "bf16": "bf16"}.get(self.quant, f"{self.quant} {self.kernel}")
        on = f" · {self.runtime}" if self.runtime else ""
        return f"prune {self.level:.0%} · {quant}{on}"

    def to_dict(self) -> dict[str, Any]:
        data = {
            "level": self.level,
            "quant": self.quant,
            "kernel": self.kernel,
            "latency": self.latency.to_dict(),
            "params": dict(self.params),
        }
        return {**data, "runtime": self.runtime} if self.runtime else data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbePoint:
        return cls(
            level=float(data["level"]),
            quant=str(data["quant"]),
            kernel=str(data["kernel"]),
            latency=Latency.from_dict(data["latency"]),
            params=dict(data["params"]),
            runtime=data.get("runtime"),
        )


@dataclass(frozen=True)
class Probe:
    """The probed points and what they say about a budget."""

    points: tuple[ProbePoint, ...]
    seconds: float = 0.0

    @property
    def floor(self) -> ProbePoint:
        """The fastest probed structure (the space's reachable floor, up to per-group allocation)."""
        return min(self.points, key=lambda p: p.latency.median_ms)

    @property
    def ceiling(self) -> ProbePoint:
        return max(self.points, key=lambda p: p.latency.median_ms)

    def reachable(self, budget_ms: float) -> bool:
        return self.floor.latency.median_ms <= budget_ms

    def nearest(self, budget_ms: float) -> ProbePoint:
        """The least-compressed point within ``budget_ms`` (the most accuracy to keep); the floor if none is."""
        within = [p for p in self.points if p.latency.median_ms <= budget_ms]
        if not within:
            return self.floor
        return min(within, key=lambda p: (p.level, p.quant != "none", -p.latency.median_ms))

    def suggested_budget_ms(self) -> float:
        """A budget this space can meet: the floor plus 10 % for measurement noise, rounded up to 2 digits."""
        return suggested_budget_ms(self.floor.latency.median_ms)

    def describe(self) -> str:
        return (
            f"this space reaches {self.floor.latency.median_ms:.3f}–{self.ceiling.latency.median_ms:.3f} ms on "
            f"this CPU (fastest: {self.floor.label}; {len(self.points)} structures timed in {self.seconds:.1f} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"points": [p.to_dict() for p in self.points], "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        return cls(
            points=tuple(ProbePoint.from_dict(p) for p in data["points"]), seconds=float(data.get("seconds", 0.0))
        )


PROBE_LEVELS = (0.0, 0.25, 0.5, 0.65, 0.75)


def probe_levels(runner: TrialRunner) -> list[float]:
    """Uniform levels to probe: 0, 25, 50, 65, 75 % and the space's maximum, within what the space allows.

    Denser at the strong end, where tight budgets sit: the seed is the least-compressed probed structure within the
    budget, so a coarse grid would seed a needlessly over-pruned model (measured on the demo at 0.15x: with only
    0/25/50/85 %, 50 %+int8 was just over the budget and the seed was 85 % fp32, which lost 18.7 pt).

    Each level is the one the space really builds (:meth:`SearchSpace.uniform_level`: into its bounds, onto its step
    grid), and levels that land on the same value are probed once. Tiny example: ``ratio: {low: 0, high: 0.6, step:
    0.1}`` probes 0 / 20 / 50 / 60 % (25 % is built as 20 %); a fixed ``level: 0.25`` probes 25 % only (0 % is not in
    the space)."""
    space = runner.space
    if space.prune_per == "none" or not runner.groups:
        return [0.0]
    top = space.prune_level.high if space.has_level and space.prune_level else space.prune_ratio.high
    levels = [lv for lv in PROBE_LEVELS if lv < top] + [top]
    return sorted(dict.fromkeys(round(space.uniform_level(lv), 4) for lv in levels))


def run_probe(
    runner: TrialRunner, *, say: Callable[[str], None] | None = None, levels: Sequence[float] | None = None
) -> Probe:
    """Time every (level, runtime and quantization mode) of the space without fine-tuning."""
    started = time.perf_counter()
    space = runner.space
    workdir = runner.config.study_dir / "probe"
    points = []
    for level in levels if levels is not None else probe_levels(runner):
        prune = space.uniform_params(runner.groups, level)
        pruned = None  # one pruned model per level, deployed in every precision (and runtime)
        for runtime, mode in space.deployments():
            params = {**prune, **space.quant_params(mode, runner.groups, runtime=runtime)}
            policy = space.fixed_policy(
                params, runner.groups, int8_kernel=runner.int8_kernel, train_size=runner.train_size
            )
            folder = f"{int(round(level * 100)):02d}_{mode}" + (f"_{runtime}" if runtime else "")
            pruned, artifact = runner.build(policy, workdir / folder, student=pruned)
            latency, hit, _ = runner.time(pruned, artifact)
            if not hit:
                runner.learn(policy, runner.predict(policy)[0], latency)  # the latency model's first points
            kernel = policy.quant.kernel
            point = ProbePoint(level=level, quant=mode, kernel=kernel, latency=latency, params=params, runtime=runtime)
            points.append(point)
            if say:
                say(f"probe: {point.label} → {latency.median_ms:.3f} ms")
    return Probe(points=tuple(points), seconds=time.perf_counter() - started)

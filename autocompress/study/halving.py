"""Successive halving of the fine-tuning: every structure gets a short fine-tune, the promising ones the rest.

A space with ``distill.halving: {eta: 3, rungs: 1}`` splits a sampled trial's KD length ``S`` into stages. With one
rung: ``S/3`` steps first, a complete fine-tune of its own (cosine schedule, BatchNorm re-estimated); then, only if
the trial is promising, the remaining ``2S/3`` steps from those weights (a warm restart, SGDR-style). With two rungs:
``S/9``, then up to ``S/3``, then up to ``S``. A rung shorter than :data:`MIN_RUNG_STEPS` is dropped.

**What "promising" means.** At a rung the student's val drop against the teacher is measured in PyTorch (fp32, on
the fine-tuning device; no artifact is built, so a rung costs a BatchNorm re-estimate and one val pass) and compared
with what the earlier trials of the study reached at the same rung, ranked the way the choice ranks models (Deb's
constrained domination): drops within the accuracy limit first, ordered by Pareto front on (latency, drop), then
drop; drops over the limit after them, the smaller first. The trial goes on when it ranks among the best
``ceil(n / eta)`` of the ``n`` rung figures (its own included), or when fewer than ``eta`` earlier trials reached the
rung (too little evidence to stop anything). Tiny example, eta 3, limit 1 pt: five earlier trials reached rung 1 with
drops 0.3, 0.8, 2.0, 4.1, 6.0 pt, all at 0.20 ms; a new trial at 0.20 ms with 1.5 pt ranks 3rd of 6 and stops
(``ceil(6/3) = 2``); with 0.5 pt it ranks 2nd and goes on. A trial that is much faster than the others stays on
their Pareto front with a larger drop, as long as it keeps the limit.

A stopped trial is not thrown away: its short fine-tune is deployed, timed and scored like any trial (its record
says the steps it got and where it stopped), and the near-miss promotion
(:func:`autocompress.study.phases.promote_near_miss`) can still give it the whole fine-tuning it was sampled with (its
next rung; a near miss that was not halved gets 3x).
Only sampled trials are halved: baselines, seeds, promoted and rescue trials get their whole length.

The rung figures are written to the trial as they happen (:data:`RUNGS_ATTR`), so several workers on one storage
judge against each other's rungs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import optuna

__all__ = [
    "Halving",
    "MIN_RUNG_STEPS",
    "RUNGS_ATTR",
    "RungFigure",
    "RungDecision",
    "rung_steps",
    "decide",
    "rung_population",
]

MIN_RUNG_STEPS = 10  # a shorter fine-tune says nothing about the structure: the rung is dropped
RUNGS_ATTR = "halving_rungs"  # the trial's rung figures, written as they happen (a list of RungFigure dicts)


@dataclass(frozen=True)
class Halving:
    """The space's halving schedule: ``rungs`` short stages, each ``1/eta`` of the next."""

    eta: int = 3
    rungs: int = 1

    def describe(self) -> str:
        fractions = ", ".join(f"1/{self.eta**k}" for k in range(self.rungs, 0, -1))
        return f"successive halving: every trial first {fractions} of its KD steps, the best 1/{self.eta} go on"


@dataclass(frozen=True)
class RungFigure:
    """What one trial reached at one rung, and what was decided there."""

    rung: int  # 0 = the first (shortest) rung
    steps: int  # KD steps done when the figure was taken
    drop_pt: float  # val drop against the teacher, PyTorch fp32, in points
    latency_ms: float  # the structure's latency (its gate figure, measured before fine-tuning)
    went_on: bool  # whether the trial was fine-tuned further
    position: int = 0  # its rank among the rung's figures (1 = best)
    population: int = 1  # how many figures it was ranked among (its own included)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RungFigure:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class RungDecision:
    went_on: bool
    position: int
    population: int
    reason: str


def rung_steps(total: int, halving: Halving) -> list[int]:
    """Cumulative KD steps at which the rungs fall, shortest first; ``total`` itself is not a rung.

    >>> rung_steps(152, Halving(eta=3, rungs=1))
    [51]
    >>> rung_steps(450, Halving(eta=3, rungs=2))
    [50, 150]
    >>> rung_steps(20, Halving(eta=3, rungs=1))  # 7 steps would say nothing: no rung
    []
    """
    out = []
    for k in range(halving.rungs, 0, -1):
        steps = int(round(total / halving.eta**k))
        if MIN_RUNG_STEPS <= steps < total and steps not in out:
            out.append(steps)
    return out


def _dominates(a: RungFigure, b: RungFigure) -> bool:
    return (
        a.latency_ms <= b.latency_ms
        and a.drop_pt <= b.drop_pt
        and (a.latency_ms, a.drop_pt) != (b.latency_ms, b.drop_pt)
    )


def _fronts(figures: Sequence[RungFigure]) -> list[int]:
    """Non-dominated front index of each figure (0 = not dominated by any)."""
    index = [-1] * len(figures)
    left = set(range(len(figures)))
    front = 0
    while left:
        current = {i for i in left if not any(_dominates(figures[j], figures[i]) for j in left if j != i)}
        for i in current:
            index[i] = front
        left -= current
        front += 1
    return index


def decide(figure: RungFigure, earlier: Sequence[RungFigure], *, eta: int, limit_pt: float) -> RungDecision:
    """Whether a trial with ``figure`` at its rung goes on, against the ``earlier`` figures at the same rung (see the
    module docstring for the rule)."""
    population = [figure, *earlier]  # the new figure first: on a tie it ranks ahead (benefit of the doubt)
    within = [f for f in population if f.drop_pt <= limit_pt]
    front_of = {id(f): k for f, k in zip(within, _fronts(within))}

    def key(f: RungFigure) -> tuple[int, float, float]:
        if f.drop_pt <= limit_pt:
            return (0, front_of[id(f)], f.drop_pt)
        return (1, f.drop_pt - limit_pt, f.latency_ms)

    order = sorted(range(len(population)), key=lambda i: (key(population[i]), i))
    position = order.index(0) + 1
    keep = math.ceil(len(population) / eta)
    if len(earlier) < eta:
        return RungDecision(
            True, position, len(population), f"{len(earlier)} earlier trials at this rung (< {eta}): goes on"
        )
    went_on = position <= keep
    verdict = "goes on" if went_on else "stops here"
    return RungDecision(
        went_on,
        position,
        len(population),
        f"ranks {position} of {len(population)} at this rung (best {keep} go on): {verdict}",
    )


def rung_population(trials: Iterable[optuna.trial.FrozenTrial], *, rung: int, exclude: int) -> list[RungFigure]:
    """The figures other trials (not number ``exclude``) reached at ``rung``, read from their :data:`RUNGS_ATTR`."""
    out = []
    for t in trials:
        if t.number == exclude:
            continue
        for data in t.user_attrs.get(RUNGS_ATTR) or ():
            figure = RungFigure.from_dict(data)
            if figure.rung == rung:
                out.append(figure)
    return out

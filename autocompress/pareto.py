"""Pareto set and the final choice, on plain :class:`Candidate` records (testable without a study).

Objectives: accuracy (higher is better) and latency (lower is better). A candidate is *feasible* when every
constraint value is <= 0 (Optuna's convention): ``latency_ms - budget`` and ``accuracy_drop_pt - max_drop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

__all__ = ["Candidate", "Choice", "candidates_from_study", "pareto_front", "choose"]


@dataclass(frozen=True)
class Candidate:
    """One finished trial, as the report and the choice see it."""

    number: int
    accuracy: float
    latency_ms: float
    constraints: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(v <= 0.0 for v in self.constraints.values())

    @property
    def violation(self) -> tuple[float, float]:
        """``(latency over budget in ms, accuracy drop over the limit in pt)``, zeros when within."""
        return (max(0.0, self.constraints.get("latency_ms", 0.0)), max(0.0, self.constraints.get("accuracy_drop_pt", 0.0)))

    def dominates(self, other: Candidate) -> bool:
        at_least = self.accuracy >= other.accuracy and self.latency_ms <= other.latency_ms
        better = self.accuracy > other.accuracy or self.latency_ms < other.latency_ms
        return at_least and better


@dataclass(frozen=True)
class Choice:
    """The candidate to export and whether it meets every constraint."""

    candidate: Candidate
    feasible: bool
    reason: str


def candidates_from_study(study: optuna.Study) -> list[Candidate]:
    """Every COMPLETE trial of ``study`` as a :class:`Candidate`."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.values is None:
            continue
        out.append(Candidate(number=t.number, accuracy=t.values[0], latency_ms=t.values[1],
                             constraints=dict(t.constraints), attrs=dict(t.user_attrs)))
    return out


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Non-dominated candidates, sorted by latency (fastest first). O(n²), fine for studies of thousands."""
    front = [c for c in candidates if not any(o.dominates(c) for o in candidates if o is not c)]
    return sorted(front, key=lambda c: (c.latency_ms, -c.accuracy, c.number))


def choose(candidates: Sequence[Candidate]) -> Choice | None:
    """Best val accuracy among feasible Pareto members; if none is feasible, the closest to the constraints.

    Ties in accuracy go to the lower latency, then the earlier trial. "Closest" ranks by latency excess first (the
    hard requirement), then accuracy excess. Returns ``None`` when there is no candidate at all.
    """
    if not candidates:
        return None
    front = pareto_front(candidates)
    feasible = [c for c in front if c.feasible]
    if feasible:
        best = min(feasible, key=lambda c: (-c.accuracy, c.latency_ms, c.number))
        return Choice(best, True, "best validation accuracy among feasible Pareto members")
    closest = min(front, key=lambda c: (*c.violation, -c.accuracy, c.number))
    lat, acc = closest.violation
    return Choice(closest, False, f"no candidate meets the constraints; closest is {lat:.3f} ms over the budget and {acc:.2f} pt over the accuracy-drop limit")

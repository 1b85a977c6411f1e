"""Pareto set, hypervolume and the final choice, on :class:`~autocompress.study.record.TrialRecord` values.

Objectives: accuracy (higher is better) and latency (lower is better). A record is *feasible* when it was fully
measured (``complete``), is within the latency budget and its accuracy drop is within the limit.

**The rule is the user's** (``--prefer``, :data:`PREFERENCES`): ``accuracy`` (the default) chooses the most accurate
feasible model (ties: one whose whole latency interval is within the budget, then the faster); ``latency`` the fastest
feasible one, i.e. the fastest within the accuracy limit. Users of peers ask for the latter ("the fastest model that
keeps my accuracy bar"); the former spends the budget's headroom on accuracy.

**"Fastest" within the noise.** The fastest model sits at the edge of the accuracy limit, where one val image decides,
so the latency rule uses both intervals: a candidate whose latency interval reaches the fastest one's figure, and
whose own figure lies within the fastest one's interval, is as fast as far as the measurements can tell; among those
it takes the one whose paired drop interval lies within the accuracy limit, then the more accurate, then the faster.
Tiny example, limit 1 pt: A 0.200 ms [0.195, 0.210] drop 0.84 pt [-0.2, +1.9]; B 0.205 ms [0.198, 0.214] drop 0 pt
[-0.8, +0.8] → B (each figure lies within the other's interval, and B's drop interval is within the limit); a C at
0.260 ms [0.25, 0.27] is not a tie, nor is a D at 0.250 ms [0.15, 0.26]: a wide interval from a noisy phase reaches
A's figure, but A's interval does not reach D's (measured on an AMX Xeon: 0.177 ms [0.110, 0.183] had been taken as a
tie of 0.142 ms [0.095, 0.147] and chosen for one val image, 1.25x slower).

**The choice is a promise.** Before it is called chosen, it is measured again in a fresh process with a longer protocol
(:func:`autocompress.study.session.confirm_choice`); one that is then over the budget is passed over (``exclude``) for
the next. When nothing is feasible, the fallback is the *fastest* model (within the noise, as the latency rule below)
whose measured accuracy drop keeps the limit — labelled infeasible, with its overshoot in ms and the budget that would
make it feasible. A model whose measured drop breaks the limit is never chosen. A layer-refined variant
(``weights_from`` set: its source's weights deployed again with some layers in fp32) is a candidate only where it helped
its source (:func:`refinement_helped`): refinement exists to make the choice faster, so a variant one val image more
accurate but slower does not displace its source (measured: OpenVINO on Zen 4, 0.198 vs 0.173 ms for +0.28 pt val and
the same test accuracy). This module holds the one choice rule; the CLI, the API, the dashboard note and the report all
call :func:`choose`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autocompress.config import PREFERENCES
from autocompress.measure.latency import Latency
from autocompress.scale.storage import hypervolume_2d
from autocompress.study.record import TrialRecord

__all__ = [
    "Choice",
    "PREFERENCES",
    "pareto_front",
    "choose",
    "preferred",
    "stored_rule",
    "refinement_helped",
    "hypervolume",
    "dominates",
    "suggested_budget_ms",
]

_RULES = {
    "accuracy": "the most accurate model within the latency budget and the accuracy limit",
    "latency": "the fastest model within the accuracy limit and the latency budget",
}


@dataclass(frozen=True)
class Choice:
    """The record to export, and whether it meets every constraint.

    Attributes:
        record: the chosen trial.
        feasible: within the budget and the accuracy limit.
        reason: one sentence for the user.
        suggested_budget_ms: when infeasible, a budget the chosen model meets (its latency plus 10 %, rounded up).
        confirmed / confirmed_reference: the fresh-process re-measurement of the chosen artifact and of the teacher
            artifact beside it (the figures that ship in metrics.json).
        passed_over: trials that were feasible in the search but over the budget when re-measured.
        prefer: the rule that chose it (:data:`PREFERENCES`).
    """

    record: TrialRecord
    feasible: bool
    reason: str
    suggested_budget_ms: float | None = None
    confirmed: Latency | None = None
    confirmed_reference: Latency | None = None
    passed_over: tuple[int, ...] = ()
    prefer: str = PREFERENCES[0]

    @property
    def overshoot_ms(self) -> float:
        return self.record.overshoot_ms


def dominates(a: TrialRecord, b: TrialRecord) -> bool:
    """``a`` is at least as accurate and as fast as ``b`` and strictly better in one of the two."""
    assert a.accuracy is not None and b.accuracy is not None and a.latency_ms is not None and b.latency_ms is not None
    at_least = a.accuracy >= b.accuracy and a.latency_ms <= b.latency_ms
    better = a.accuracy > b.accuracy or a.latency_ms < b.latency_ms
    return at_least and better


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Non-dominated complete records, fastest first. O(n²), fine for studies of thousands."""
    scored = [r for r in records if r.outcome == "complete" and r.accuracy is not None and r.latency_ms is not None]
    front = [r for r in scored if not any(dominates(o, r) for o in scored if o is not r)]
    return sorted(front, key=lambda r: (r.latency_ms, -(r.accuracy or 0.0), r.number))


def suggested_budget_ms(latency_ms: float) -> float:
    """A budget a model of ``latency_ms`` meets: +10 % for measurement noise, rounded up to two significant digits
    (0.1122 → 0.1234 → 0.13)."""
    value = latency_ms * 1.1
    if value <= 0:
        return value
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / scale - 1e-9) * scale


def refinement_helped(variant: TrialRecord, source: TrialRecord) -> bool:
    """A layer-refined variant helped its source: within the budget and the accuracy limit, and faster with
    confidence (its whole interval below the source's figure) at no lower accuracy, or more accurate at no higher
    latency (its interval reaches the source's)."""
    if not variant.feasible or variant.latency is None or source.latency is None:
        return False
    accuracy, base = variant.accuracy or 0.0, source.accuracy or 0.0
    faster = variant.latency.high < source.latency.median_ms and accuracy >= base
    better = accuracy > base and variant.latency.low <= source.latency.high
    return faster or better


def _candidate(record: TrialRecord, by_number: Mapping[int, TrialRecord]) -> bool:
    """A feasible record may be chosen; a refined one only where it helped its source (when the source is known)."""
    if not record.feasible:
        return False
    source = by_number.get(record.weights_from) if record.weights_from is not None else None
    return source is None or refinement_helped(record, source)


def preferred(candidates: Sequence[TrialRecord], *, prefer: str = PREFERENCES[0]) -> TrialRecord:
    """The record ``prefer`` picks among feasible ``candidates`` (see the module docstring); ties end at the earlier
    trial."""
    if prefer == "latency":
        fastest = min(candidates, key=lambda r: (r.latency_ms, -(r.accuracy or 0.0), r.number))
        assert fastest.latency is not None
        ms, reach = fastest.latency.median_ms, fastest.latency.high
        ties = [r for r in candidates if r.latency is not None and r.latency.low <= ms and r.latency.median_ms <= reach]
        return min(
            ties or [fastest],
            key=lambda r: (not r.confidently_within_accuracy, -(r.accuracy or 0.0), r.latency_ms, r.number),
        )
    assert prefer == "accuracy", prefer
    return min(candidates, key=lambda r: (-(r.accuracy or 0.0), not r.confidently_within, r.latency_ms, r.number))


def choose(
    records: Sequence[TrialRecord], *, exclude: Sequence[int] = (), prefer: str = PREFERENCES[0]
) -> Choice | None:
    """The feasible record ``prefer`` picks (:func:`preferred`) not in ``exclude``; else the fastest within the
    accuracy limit; else ``None``.

    ``exclude`` (trial numbers over the budget when re-measured) only removes feasible candidates: such a record may
    still be the over-budget fallback. A refined record that did not help its source (:func:`refinement_helped`) is
    not a feasible candidate.
    """
    if prefer not in _RULES:
        raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    by_number = {r.number: r for r in records}
    feasible = [r for r in records if _candidate(r, by_number) and r.number not in set(exclude)]
    if feasible:
        best = preferred(feasible, prefer=prefer)
        return Choice(best, True, _RULES[prefer], passed_over=tuple(exclude), prefer=prefer)
    within = [r for r in records if r.outcome == "complete" and r.within_accuracy and r.latency_ms is not None]
    if not within:
        return None
    fastest = preferred(within, prefer="latency")
    assert fastest.latency_ms is not None
    suggested = suggested_budget_ms(fastest.latency_ms)
    return Choice(
        fastest,
        False,
        f"no policy meets the {fastest.budget_ms:.3f} ms budget; this is the fastest model within the accuracy limit, "
        f"{fastest.overshoot_ms:.3f} ms over the budget",
        suggested_budget_ms=suggested,
        passed_over=tuple(exclude),
        prefer=prefer,
    )


def stored_rule(attrs: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    """The rule and the passed-over trials of a study's choice, from its user attributes: the ``choice`` the last
    finished run recorded, else the ``config`` it was created with (a study still running), else the default rule.
    The report and the dashboard note call :func:`choose` with these, so they show the choice the export made."""
    choice: Mapping[str, Any] = attrs.get("choice") or {}
    config: Mapping[str, Any] = attrs.get("config") or {}
    prefer = str(choice.get("prefer") or config.get("prefer") or PREFERENCES[0])
    return prefer, tuple(int(n) for n in choice.get("passed_over") or ())


def hypervolume(records: Sequence[TrialRecord]) -> float:
    """Area dominated by the feasible records on normalised axes, in ``[0, 1]``.

    Axes (both minimised): ``latency_ms / budget_ms`` and ``max(drop_pt, 0) / max_drop_pt``; reference point
    ``(1, 1)`` — the budget and the accuracy limit. 0 when nothing is feasible; 1 would be a model with no drop and
    no latency. Comparable across samplers and seeds of the same scenario (same budget and limit).
    """
    points = []
    for r in records:
        if not r.feasible:
            continue
        assert r.latency_ms is not None and r.accuracy_drop_pt is not None
        drop_scale = max(r.max_drop_pt, 0.1)
        points.append((r.latency_ms / r.budget_ms, max(r.accuracy_drop_pt, 0.0) / drop_scale))
    return hypervolume_2d(points, (1.0, 1.0))

"""The search's phases around the sampler: near misses fine-tuned longer, the rescue, and the confirmed choice.

- :func:`promote_near_miss`: a trial within the budget whose accuracy drop is just over the limit is queued again with
  :data:`NEAR_MISS_STEPS_SCALE` times the fine-tuning (multi-fidelity style: the structure already proved fast
  enough; only its accuracy is in doubt, and more fine-tuning is what recovers accuracy); one that successive halving
  stopped at a rung gets the whole fine-tuning it was sampled with instead.
- :func:`rescue`: nothing is feasible. Near misses on the accuracy side are finished first; then a bisection over the
  uniform prune level, between the most pruned level known to keep the accuracy limit and the least pruned known to
  break it, at the precision the latency model predicts fastest at each level, with the space's longest fine-tuning;
  last, 3x longer fine-tuning for the structure within the budget with the smallest drop (the only kind that can
  still become feasible) and for the fastest rescued structures that missed the accuracy limit only just. The
  structures are generated, not taken from what the sampler happened to propose.
- :func:`refine_layers` (``quantize.refine_layers: true``): the int8 model the study would choose is deployed again
  from its own fine-tuned weights with one layer in fp32 at a time, then with every layer that helped together; the
  variants are trials like any other, and the choice moves only to one that helped its source
  (:func:`autocompress.study.pareto.refinement_helped`: faster with confidence, or more accurate at no higher latency).
- :func:`confirm_choice`: the chosen model is re-measured in a fresh process with a longer protocol; one that is
  then over the budget is not called chosen and the next candidate is tried.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import optuna

from autocompress.errors import AutocompressError
from autocompress.measure.fresh import remeasure_fresh
from autocompress.measure.latency import Latency, combine
from autocompress.study.events import trial_line
from autocompress.study.pareto import PREFERENCES, Choice, choose, refinement_helped
from autocompress.study.record import TrialRecord, read_records
from autocompress.study.trial import FP32_LAYERS_ATTR, LABEL_ATTR, ROLE_ATTR, STEPS_SCALE_ATTR, WEIGHTS_FROM_ATTR

if TYPE_CHECKING:
    from autocompress.config import SearchConfig
    from autocompress.study.reference import Reference
    from autocompress.study.space import SearchSpace
    from autocompress.study.trial import TrialRunner

__all__ = [
    "NEAR_MISS_STEPS_SCALE",
    "RESCUE_ROUNDS",
    "RESCUE_PER_ROUND",
    "CONFIRM_CANDIDATES",
    "near_misses",
    "promote_near_miss",
    "rescue",
    "refine_layers",
    "confirm_choice",
]

logger = logging.getLogger(__name__)
Say = Callable[[str], None]

NEAR_MISS_STEPS_SCALE = 3
RESCUE_ROUNDS = 3
RESCUE_PER_ROUND = 2
CONFIRM_CANDIDATES = 3  # feasible candidates re-measured in a fresh process before giving up on "chosen"
_NEAR_MISS_MARGIN_PT = 0.5  # "just over": within max(limit, this) points above the limit


def _label(number: int) -> str:
    return f"near miss of trial {number}: {NEAR_MISS_STEPS_SCALE}x fine-tuning"


def _promotion(record: TrialRecord) -> tuple[str, int]:
    """The label and KD scale of ``record``'s promotion: 3x its fine-tuning; a trial that successive halving stopped
    at a rung gets the whole fine-tuning it was sampled with instead (its next rung: it missed the limit after a
    third of it, and 3x the whole length would cost 9x what the rung ranked; measured on the demo, AMX Xeon: three
    halted near misses promoted at 3x took 86 of the study's 214 KD seconds)."""
    if record.halted_at is not None:
        rung = record.halted_at["rung"] + 1
        return f"near miss of trial {record.number}: its whole fine-tuning (halved at rung {rung})", 1
    return _label(record.number), NEAR_MISS_STEPS_SCALE


def _just_over_the_limit(record: TrialRecord) -> bool:
    """The near-miss rule, the one place it is written: a drop over the limit by at most ``max(limit, 0.5 pt)``."""
    drop = record.accuracy_drop_pt
    limit = record.max_drop_pt
    return drop is not None and limit < drop <= limit + max(limit, _NEAR_MISS_MARGIN_PT)


def near_misses(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Fine-tuned trials within the budget whose drop is over the limit by at most ``max(limit, 0.5 pt)``, not yet
    promoted, smallest drop first. Tiny example, limit 1.0 pt: drops 1.1 and 1.9 are near misses, 2.1 is not."""
    promoted = {r.label for r in records if r.role == "promoted"}
    out = []
    for r in records:
        if (
            r.outcome == "complete"
            and r.finetuned
            and r.role in ("sampled", "seed", "rescue")
            and r.within_budget
            and _just_over_the_limit(r)
            and _promotion(r)[0] not in promoted
        ):
            out.append(r)
    return sorted(out, key=lambda r: (r.accuracy_drop_pt, r.number))


def _promotion_attrs(record: TrialRecord) -> dict[str, Any]:
    """The user attributes of ``record``'s promoted trial (see :func:`_promotion`)."""
    label, scale = _promotion(record)
    return {ROLE_ATTR: "promoted", LABEL_ATTR: label, STEPS_SCALE_ATTR: scale}


def _enqueue_promotion(study: optuna.Study, record: TrialRecord) -> str:
    """Queue ``record``'s promotion; returns its label."""
    attrs = _promotion_attrs(record)
    study.enqueue_trial(dict(study.trials[record.number].params), user_attrs=attrs, skip_if_exists=False)
    return str(attrs[LABEL_ATTR])


def promote_near_miss(
    study: optuna.Study, records: Sequence[TrialRecord], *, space: SearchSpace, trials: int
) -> tuple[int, str] | None:
    """Queue the best near miss again with longer fine-tuning; at most ``max(2, trials // 5)`` per study.

    Returns the promoted trial's number and the queued trial's label (what fine-tuning it gets), or ``None``.
    """
    waiting = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if t.user_attrs.get(ROLE_ATTR) == "promoted"
    ]
    done = sum(1 for r in records if r.role == "promoted")
    if done + len(waiting) >= max(2, trials // 5):
        return None
    queued = {t.user_attrs.get(LABEL_ATTR) for t in waiting}
    for record in near_misses(records):
        if _promotion(record)[0] not in queued:
            return record.number, _enqueue_promotion(study, record)
    return None


# ---------------------------------------------------------------------------------------------------- rescue
def _level_of(record: TrialRecord) -> float:
    ratios = list(record.policy.prune.ratios.values()) if record.policy else []
    return sum(ratios) / len(ratios) if ratios else 0.0


def _grid(space: SearchSpace) -> list[float]:
    rng = space.prune_level if space.has_level and space.prune_level else space.prune_ratio
    step = rng.step or 0.05
    count = int(round((rng.high - rng.low) / step))
    return [round(rng.low + i * step, 4) for i in range(count + 1)]


def _fastest_params(runner: TrialRunner, level: float) -> tuple[dict[str, Any], str]:
    """Parameters of uniform ``level`` at the precision (and, under ``--runtime auto``, the runtime) the latency model
    predicts fastest there, and a label of that precision."""
    space = runner.space
    prune = space.uniform_params(runner.groups, level)
    dense = {"prune.sparsity": space.sparsity.clamp(0.0)} if space.sparsity is not None else {}
    best: tuple[float, dict[str, Any], str] | None = None
    for runtime, mode in space.deployments():
        quant = space.quant_params(mode, runner.groups, runtime=runtime)
        policy = space.fixed_policy(
            {**dense, **prune, **quant}, runner.groups, int8_kernel=runner.int8_kernel, train_size=runner.train_size
        )
        _, prediction = runner.predict(policy)
        ms = prediction.ms if prediction is not None else float("inf")
        if best is None or ms < best[0]:
            label = ("fp32" if mode == "none" else mode) + (f" · {runtime}" if runtime else "")
            best = (ms, quant, label)
    assert best is not None
    return {**dense, **prune, **best[1], **space.kd_params(longest=True)}, best[2]


def _bracket(records: Sequence[TrialRecord], *, longest_steps: int) -> tuple[float, float | None]:
    """(most pruned level known to keep the accuracy limit, least pruned level above it known to break it).

    Only a trial fine-tuned at least ``longest_steps`` (what the rescue gives) counts as a failure: a level that lost
    accuracy with a short fine-tuning may keep it with the longest.
    """
    scored = [
        r
        for r in records
        if r.outcome == "complete"
        and r.accuracy is not None
        and r.policy is not None
        and (r.finetuned or r.policy.prune.is_identity)
    ]
    passes = [_level_of(r) for r in scored if r.within_accuracy]
    low = max(passes, default=0.0)
    fails = [
        _level_of(r)
        for r in scored
        if not r.within_accuracy
        and _level_of(r) > low
        and r.policy is not None
        and r.policy.distill.steps >= longest_steps
    ]
    return low, min(fails, default=None)


def rescue(study: optuna.Study, runner: TrialRunner, *, config: SearchConfig, say: Say) -> None:
    """Nothing is feasible: find the fastest model that keeps the accuracy limit (see the module docstring).

    Tiny example, grid 0–85 % in steps of 5: known pass 0 %, no known failure → round 1 tries 85 % and 45 %; 85 %
    breaks the limit and 45 % keeps it → round 2 tries 60 % and 70 % (a third and two thirds of the way from 45 to
    85); and so on, at most :data:`RESCUE_ROUNDS` rounds of :data:`RESCUE_PER_ROUND`.
    """
    space = runner.space
    if space.prune_per == "none" or not runner.groups:
        return

    def run(todo: _Todo) -> None:
        for params, attrs in todo:
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
        study.optimize(
            runner, n_trials=len(todo), catch=(Exception,), callbacks=[lambda s, t: say(_rescue_line(t, runner))]
        )

    say(
        f"no trial is feasible: rescue — near misses fine-tuned longer, then a bisection over the prune level (up to "
        f"{RESCUE_ROUNDS * RESCUE_PER_ROUND} fine-tunings) for the fastest model within the accuracy limit"
    )
    misses = near_misses(read_records(study))[:RESCUE_PER_ROUND]
    if misses:
        run([(dict(study.trials[r.number].params), _promotion_attrs(r)) for r in misses])
        if any(r.feasible for r in read_records(study)):
            return
    _bisect_levels(study, runner, run)
    # Last: the fastest rescued structures that missed the accuracy limit only just, fine-tuned 3x longer (measured:
    # at 0.02x the bisection's 80 % fp32 dropped 1.11 pt against a 1 pt limit; the same level fine-tuned again kept it).
    # A structure that keeps the budget but missed the accuracy limit comes first: fine-tuning cannot change a
    # latency, so only such a structure can still become feasible (near_miss scenario: prune 45 % int8 kept the
    # budget at the space's longest KD, 2.79 pt over a 1 pt limit, while the rescue finished two over-budget ones).
    records = read_records(study)
    finish = list({r.number: r for r in (_budget_side_misses(records)[:1] + _rescue_near_misses(records))}.values())
    finish = finish[:RESCUE_PER_ROUND]
    if finish:
        run(
            [
                (
                    dict(study.trials[r.number].params),
                    {
                        ROLE_ATTR: "rescue",
                        STEPS_SCALE_ATTR: NEAR_MISS_STEPS_SCALE,
                        LABEL_ATTR: f"rescue: {_label(r.number)}",
                    },
                )
                for r in finish
            ]
        )


_Todo = list[tuple[dict[str, Any], dict[str, Any]]]  # (params, user attributes) of trials to enqueue and run


def _bisect_levels(study: optuna.Study, runner: TrialRunner, run: Callable[[_Todo], None]) -> None:
    """The rescue's bisection over the uniform prune level: at most :data:`RESCUE_ROUNDS` rounds of
    :data:`RESCUE_PER_ROUND` levels, each at its fastest precision, fine-tuned with the space's longest KD."""
    space = runner.space
    grid = _grid(space)
    # The KD length the rescue gives (the space's longest; it does not depend on the level or the precision).
    strongest = {
        **space.uniform_params(runner.groups, grid[-1]),
        **space.quant_params(space.quant_modes[0], runner.groups),
        **space.kd_params(longest=True),
    }
    longest = space.fixed_policy(
        strongest, runner.groups, int8_kernel=runner.int8_kernel, train_size=runner.train_size
    ).distill.steps
    tried: set[float] = set()
    for _ in range(RESCUE_ROUNDS):
        low, high = _bracket(read_records(study), longest_steps=longest)
        if high is None:
            picks = [grid[-1], min(grid, key=lambda g: abs(g - (low + grid[-1]) / 2))]
        else:
            inner = [g for g in grid if low < g < high]
            picks = [inner[len(inner) // 3], inner[(2 * len(inner)) // 3]] if inner else []
        picks = [p for p in dict.fromkeys(picks) if p > low and p not in tried][:RESCUE_PER_ROUND]
        if not picks:
            break  # the bracket is closed; finish its near misses below
        todo = []
        for level in picks:
            tried.add(level)
            params, precision = _fastest_params(runner, level)
            todo.append((params, {ROLE_ATTR: "rescue", LABEL_ATTR: f"rescue: uniform {level:.0%} · {precision}"}))
        run(todo)


def _budget_side_misses(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Fine-tuned trials within the budget that missed the accuracy limit and were never fine-tuned longer, smallest
    drop first (however far over: the rescue runs only when nothing is feasible)."""
    retried = {r.label for r in records if r.role in ("promoted", "rescue")}
    out = [
        r
        for r in records
        if r.outcome == "complete"
        and r.finetuned
        and r.role in ("sampled", "seed", "rescue")
        and r.within_budget
        and not r.within_accuracy
        and r.accuracy_drop_pt is not None
        and _label(r.number) not in retried
        and f"rescue: {_label(r.number)}" not in retried
        and not (r.label or "").startswith("rescue: near miss")
    ]  # a retry itself is not fine-tuned a third time
    return sorted(out, key=lambda r: (r.accuracy_drop_pt, r.number))


def _rescue_near_misses(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Rescue trials just over the accuracy limit and faster than the fastest model within it, fastest first."""
    best = min(
        (r.latency_ms for r in records if r.outcome == "complete" and r.within_accuracy and r.latency_ms),
        default=float("inf"),
    )
    done = {r.label for r in records if r.role == "rescue"}
    out = []
    for r in records:
        if (
            r.role == "rescue"
            and r.outcome == "complete"
            and r.finetuned
            and _just_over_the_limit(r)
            and r.latency_ms
            and r.latency_ms < best
            and f"rescue: {_label(r.number)}" not in done
        ):
            out.append(r)
    return sorted(out, key=lambda r: (r.latency_ms or 0.0, r.number))


def _rescue_line(trial: optuna.trial.FrozenTrial, runner: TrialRunner) -> str:
    return trial_line(trial, None, None, runner.budget_ms)


# ---------------------------------------------------------------------------------------------------- layer refinement
def refine_layers(study: optuna.Study, runner: TrialRunner, *, say: Say, prefer: str = PREFERENCES[0]) -> int:
    """Layer refinement of the model the study would choose (see the module docstring); returns the trials run.

    Only an int8 choice is refined (an fp32 model has no int8 layer to leave in fp32). Tiny example, groups a, b, c:
    variants "a fp32", "b fp32", "c fp32"; if "a" and "c" each helped, one more: "a, c fp32". At most one trial per
    prunable group plus one, each a build and a measurement (no fine-tuning).
    """
    records = read_records(study)
    choice = choose(records, prefer=prefer)  # the model the study would choose, by the user's rule
    if choice is None or not choice.feasible or choice.record.policy is None:
        return 0
    source = choice.record
    quant = source.policy.quant  # type: ignore[union-attr]
    if quant.mode != "int8" or not runner.groups or source.role == "refined":  # one round: not a variant's variants
        return 0
    done = {r.label for r in records if r.role == "refined"}
    params = dict(study.trials[source.number].params)
    scale = int(study.trials[source.number].user_attrs.get(STEPS_SCALE_ATTR, 1))  # a promoted source: its longer KD

    def run(layer_sets: list[tuple[str, ...]]) -> list[TrialRecord]:
        todo = []
        for layers in layer_sets:
            label = f"refine of trial {source.number}: {', '.join(layers)} fp32"
            if label in done:
                continue
            study.enqueue_trial(
                params,
                user_attrs={
                    ROLE_ATTR: "refined",
                    LABEL_ATTR: label,
                    WEIGHTS_FROM_ATTR: source.number,
                    FP32_LAYERS_ATTR: list(layers),
                    STEPS_SCALE_ATTR: scale,
                },  # the policy the weights were tuned by
                skip_if_exists=False,
            )
            todo.append(label)
        if todo:
            study.optimize(
                runner, n_trials=len(todo), catch=(Exception,), callbacks=[lambda s, t: say(_rescue_line(t, runner))]
            )
        return [r for r in read_records(study) if r.role == "refined" and r.label in todo]

    say(
        f"layer refinement of trial {source.number} ({source.policy.describe()}): each of its "  # type: ignore[union-attr]
        f"{len(runner.groups)} prunable groups' root layer in fp32 alone, from its fine-tuned weights"
    )
    singles = [(g.name,) for g in runner.groups if g.name not in quant.fp32_layers]
    measured = run(singles)
    helped = sorted(
        {
            layer
            for r in measured
            if refinement_helped(r, source) and r.policy is not None
            for layer in r.policy.quant.fp32_layers
            if layer not in quant.fp32_layers
        }
    )
    extra = run([tuple(helped)]) if len(helped) > 1 else []
    return len(measured) + len(extra)


# ---------------------------------------------------------------------------------------------------- the choice
def confirm_choice(
    records: Sequence[TrialRecord], *, reference: Reference, config: SearchConfig, input_shape: Sequence[int], say: Say
) -> Choice | None:
    """:func:`autocompress.study.pareto.choose`, confirmed by a fresh-process re-measurement (longer protocol).

    A feasible candidate whose re-measured figure is over the budget (after a second fresh process when the first
    was noisy or its interval crossed the budget) is passed over for the next (at most :data:`CONFIRM_CANDIDATES`);
    the figure that ships is the re-measurement. When no candidate holds, the over-budget fallback of :func:`choose`
    is returned (never called chosen).
    """
    protocol = config.protocol.longer(2.5)
    fresh: dict[int, tuple[Latency, Latency] | None] = {}

    def once(record: TrialRecord) -> tuple[Latency, Latency] | None:
        try:
            artifact = record.artifact_in(config.study_dir)
            if artifact is None:
                return None
            return remeasure_fresh(
                artifact,
                reference.artifact,
                input_shape,
                threads=config.threads,
                batch_size=config.batch_size,
                protocol=protocol,
            )
        except (AutocompressError, OSError, ValueError) as exc:
            say(
                f"warning: could not re-measure trial {record.number} in a fresh process ({exc}); its search "
                "figure is kept"
            )
            return None

    def remeasure(record: TrialRecord) -> tuple[Latency, Latency] | None:
        if record.number not in fresh:
            measured = once(record)
            budget = record.budget_ms
            if (
                measured is not None
                and measured[0].median_ms > budget
                and (measured[0].noise != "quiet" or measured[0].straddles(budget))
            ):
                # Over the budget, but not clearly (a noisy window, or an interval across the budget): one more fresh
                # process, blocks pooled, before the candidate is passed over.
                again = once(record)
                if again is not None:
                    measured = (combine(measured[0], again[0]), combine(measured[1], again[1]))
            fresh[record.number] = measured
        return fresh[record.number]

    excluded: list[int] = []
    while True:
        choice = choose(records, exclude=excluded, prefer=config.prefer)
        if choice is None:
            return None
        measured = remeasure(choice.record)
        if measured is None:
            return choice
        latency, teacher = measured
        if not choice.feasible or latency.median_ms <= choice.record.budget_ms:
            search = choice.record.latency
            inside = search is not None and search.low <= latency.median_ms <= search.high
            say(
                f"trial {choice.record.number} re-measured in a fresh process: {latency} "
                f"({'inside' if inside else 'outside'} the search's interval"
                f"{f' [{search.low:.3f}, {search.high:.3f}]' if search else ''})"
            )
            return dataclasses.replace(choice, confirmed=latency, confirmed_reference=teacher)
        say(
            f"trial {choice.record.number} re-measured in a fresh process at {latency}: over the "
            f"{choice.record.budget_ms:.3f} ms budget, so it is not called chosen; trying the next candidate"
        )
        excluded.append(choice.record.number)
        if len(excluded) >= CONFIRM_CANDIDATES:
            feasible_left = [r.number for r in records if r.feasible and r.number not in excluded]
            excluded.extend(feasible_left)

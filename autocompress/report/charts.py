"""The report's charts, drawn from typed values (records, probe, profile, breakdown) into matplotlib figures.

Each function returns a :class:`matplotlib.figure.Figure` bound to the Agg canvas: no pyplot, no global backend, so
drawing never touches the state of a program that imports autocompress. :mod:`autocompress.report.html` saves them as
PNGs and embeds them; they take no study and read nothing from storage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autocompress.report.explain import Breakdown, Sensitivity
from autocompress.study.pareto import Choice, pareto_front
from autocompress.study.probe import Probe
from autocompress.study.record import TrialRecord

__all__ = [
    "new_figure",
    "pareto_chart",
    "hypervolume_chart",
    "importance_chart",
    "probe_chart",
    "sensitivity_chart",
    "breakdown_chart",
]

GREEN, RED, GREY, BLUE, ORANGE = "#2a9d55", "#d1495b", "#8d99ae", "#3a6ea5", "#e08e2b"


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on the Agg canvas (which renders the PNG); nothing global is set."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def pareto_chart(
    records: Sequence[TrialRecord], choice: Choice | None, *, budget: float | None, teacher_accuracy: float | None
) -> Figure:
    """Accuracy against latency of the complete trials, with a strip below for trials stopped over the budget.

    Stopped trials were never fine-tuned, so they have a latency but no accuracy of their policy: they are drawn at
    their latency on the strip rather than at a made-up accuracy.
    """
    complete = [r for r in records if r.outcome == "complete" and r.accuracy is not None and r.latency_ms is not None]
    stopped = [r for r in records if r.outcome == "stopped" and r.latency_ms is not None]
    fig = new_figure(7.5, 5.2)
    top, strip = fig.subplots(2, 1, sharex=True, height_ratios=[5, 1])
    # The drawing order below is the legend's order: trials, front, accuracy lines, budget, chosen.
    _draw_complete(top, complete)
    max_drop = next((r.max_drop_pt for r in records), None)
    if teacher_accuracy is not None:
        _draw_accuracy_lines(top, teacher_accuracy=teacher_accuracy, max_drop=max_drop)
    _draw_stopped_strip(strip, stopped)
    if budget:
        top.axvline(budget, color=BLUE, lw=1.2, label=f"budget {budget:.3g} ms")
        strip.axvline(budget, color=BLUE, lw=1.2)
    xs = [r.latency_ms for r in complete + stopped]
    middle = (min(xs) + max(xs)) / 2 if xs else 0.0
    _label_baselines(top, strip, records, middle=middle)
    if choice is not None and choice.record.accuracy is not None:
        _mark_choice(top, choice)
    top.margins(x=0.12)  # room for the labels of the fastest and slowest points
    top.set_ylabel("val accuracy (%)")
    strip.set_xlabel("latency (ms, median)")
    top.legend(fontsize=7, loc="lower right")
    top.grid(alpha=0.3)
    return fig


def _draw_complete(ax: Axes, complete: Sequence[TrialRecord]) -> None:
    """The complete trials, feasible and not, and the step line of their Pareto front."""
    feasible = [r for r in complete if r.feasible]
    other = [r for r in complete if not r.feasible]
    ax.scatter(
        [r.latency_ms for r in feasible],
        [100 * r.accuracy for r in feasible],
        s=36,
        color=GREEN,
        label="feasible",
        zorder=3,
    )
    ax.scatter(
        [r.latency_ms for r in other],
        [100 * r.accuracy for r in other],
        s=36,
        marker="x",
        color=RED,
        label="infeasible",
        zorder=3,
    )
    front = pareto_front(complete)
    if len(front) > 1:
        ax.step(
            [r.latency_ms for r in front],
            [100 * r.accuracy for r in front],
            where="post",
            color=GREY,
            lw=1,
            zorder=2,
            label="Pareto front",
        )


def _draw_accuracy_lines(ax: Axes, *, teacher_accuracy: float, max_drop: float | None) -> None:
    """The teacher's accuracy and, when the study set one, the accuracy limit below it."""
    ax.axhline(100 * teacher_accuracy, color=GREY, ls=":", lw=1, label="teacher accuracy")
    if max_drop is not None:
        ax.axhline(
            100 * teacher_accuracy - max_drop, color=ORANGE, ls="--", lw=1, label=f"accuracy limit (−{max_drop:g} pt)"
        )


def _draw_stopped_strip(strip: Axes, stopped: Sequence[TrialRecord]) -> None:
    """The strip of trials stopped over the budget: a tick at each one's latency, no accuracy axis."""
    strip.scatter([r.latency_ms for r in stopped], [0] * len(stopped), marker="|", s=200, color=GREY)
    strip.set_yticks([])
    strip.set_ylabel("stopped", rotation=0, ha="right", va="center")
    strip.set_title(
        "stopped over the budget before fine-tuning (no accuracy)" if stopped else "no trial stopped over the budget",
        fontsize=8,
        loc="left",
    )


def _label_baselines(top: Axes, strip: Axes, records: Sequence[TrialRecord], *, middle: float) -> None:
    """Name each baseline at its point: on the chart when it has an accuracy, on the strip when it does not."""
    for r in records:
        if r.role == "baseline" and r.latency_ms is not None:
            ax, y = (top, 100 * r.accuracy) if r.accuracy is not None else (strip, 0)
            right = r.latency_ms > middle  # labels point inwards, so the slowest one is not cut at the edge
            ax.annotate(
                r.label,
                (r.latency_ms, y),
                xytext=(-4 if right else 4, 6),
                textcoords="offset points",
                ha="right" if right else "left",
                fontsize=7,
                color="#333",
            )


def _mark_choice(ax: Axes, choice: Choice) -> None:
    """A star and a bold label on the chosen trial (which has an accuracy)."""
    c = choice.record
    text = f"chosen: trial {c.number}" + ("" if choice.feasible else " (over budget)")
    ax.scatter(
        [c.latency_ms], [100 * c.accuracy], s=220, marker="*", color=ORANGE, edgecolor="black", zorder=4, label=text
    )
    ax.annotate(
        text, (c.latency_ms, 100 * c.accuracy), xytext=(6, -12), textcoords="offset points", fontsize=8, weight="bold"
    )


def hypervolume_chart(trials: Sequence[TrialRecord], values: Sequence[float]) -> Figure:
    """``values[k]`` is the hypervolume of ``trials[:k + 1]``; feasible trials are marked."""
    fig = new_figure(7.0, 3.2)
    ax = fig.subplots()
    ax.step([r.number for r in trials], values, where="post", color=BLUE)
    ax.scatter(
        [r.number for r in trials if r.feasible],
        [v for r, v in zip(trials, values) if r.feasible],
        color=GREEN,
        s=18,
        zorder=3,
        label="feasible trial",
    )
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_ylim(0, max(0.05, max(values, default=0.0) * 1.15))
    ax.grid(alpha=0.3)
    if any(r.feasible for r in trials):
        ax.legend(fontsize=7, loc="lower right")
    return fig


def importance_chart(importances: Mapping[str, Mapping[str, float]]) -> Figure:
    """One horizontal bar chart per objective, most important parameter on top."""
    fig = new_figure(7.5, max(2.0, 0.8 + 0.35 * max(len(v) for v in importances.values())))
    axes = fig.subplots(1, len(importances), squeeze=False)[0]
    for ax, (name, values) in zip(axes, importances.items()):
        params = list(values)[::-1]
        ax.barh(params, [values[p] for p in params], color=BLUE)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
    return fig


def probe_chart(probe: Probe, *, budget: float | None, teacher_ms: float | None) -> Figure:
    """Latency per uniform prune level, one line per quantization mode, against the budget."""
    fig = new_figure(7.0, 3.6)
    ax = fig.subplots()
    for quant in dict.fromkeys(p.quant for p in probe.points):
        points = sorted((p for p in probe.points if p.quant == quant), key=lambda p: p.level)
        label = "fp32" if quant == "none" else f"{quant} {points[0].kernel}"
        ax.errorbar(
            [100 * p.level for p in points],
            [p.latency.median_ms for p in points],
            yerr=[p.latency.iqr_ms / 2 for p in points],
            marker="o",
            capsize=3,
            label=label,
        )
    if budget:
        ax.axhline(budget, color=BLUE, lw=1.2, ls="--", label=f"budget {budget:.3g} ms")
    if teacher_ms:
        ax.axhline(teacher_ms, color=GREY, lw=1, ls=":", label=f"teacher fp32 {teacher_ms:.3g} ms")
    ax.set_xlabel("uniform prune level (% of every group's channels)")
    ax.set_ylabel("latency (ms, median ± IQR/2)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def sensitivity_chart(profile: Sensitivity, choice: Choice | None) -> Figure:
    """Accuracy drop and latency saved per group and ratio, above the chosen policy's ratio of each group."""
    groups = [g for g in profile.groups if any(p.group == g for p in profile.points)]
    chosen = dict(choice.record.policy.prune.ratios) if choice and choice.record.policy else {}
    fig = new_figure(8.0, 6.6)
    drop_ax, saved_ax, chosen_ax = fig.subplots(3, 1, sharex=True, height_ratios=[3, 3, 2])
    width = 0.8 / max(1, len(profile.ratios))
    xs = list(range(len(groups)))
    for j, ratio in enumerate(profile.ratios):
        points = [profile.at(g, ratio) for g in groups]
        offset = [x - 0.4 + width * (j + 0.5) for x in xs]
        drop_ax.bar(offset, [p.drop_pt if p else 0 for p in points], width, label=f"{ratio:.0%} of the group")
        # Half the IQR of the pruned artifact's timing: a bar shorter than its whisker is noise, not a saving.
        saved_ax.bar(
            offset,
            [p.saved_ms if p else 0 for p in points],
            width,
            yerr=[p.latency.iqr_ms / 2 if p else 0 for p in points],
            ecolor="#555",
            capsize=1.5,
        )
    chosen_ax.bar(xs, [100 * chosen.get(g, 0.0) for g in groups], 0.6, color=ORANGE)
    drop_ax.set_ylabel("val drop (pt)")
    saved_ax.set_ylabel("latency saved (ms)")
    chosen_ax.set_ylabel("chosen ratio (%)")
    drop_ax.legend(
        fontsize=7, ncols=len(profile.ratios), loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, title=None
    )
    drop_ax.set_title(
        f"one group pruned alone · teacher: val {profile.teacher_accuracy:.2%}, "
        f"{profile.teacher_latency.median_ms:.3f} ms",
        fontsize=8,
        loc="left",
    )
    chosen_ax.set_title(
        f"chosen: trial {choice.record.number}" if choice else "no chosen model", fontsize=8, loc="left"
    )
    chosen_ax.set_ylim(0, 100)
    if choice and not any(chosen.get(g, 0.0) > 0 for g in groups):
        chosen_ax.text(
            0.5,
            0.5,
            "the chosen model does not prune",
            transform=chosen_ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="#555",
        )
    chosen_ax.set_xticks(xs, groups, rotation=35, ha="right", fontsize=7)
    for ax in (drop_ax, saved_ax, chosen_ax):
        ax.axhline(0, color="black", lw=0.6)
        ax.grid(alpha=0.3, axis="y")
    return fig


def breakdown_chart(breakdown: Breakdown) -> Figure:
    """Latency and val accuracy of each breakdown row; the chosen row highlighted."""
    rows = list(breakdown.rows)[::-1]  # barh draws bottom-up: keep the teacher on top
    fig = new_figure(7.5, max(1.8, 0.9 + 0.45 * len(rows)))
    lat_ax, acc_ax = fig.subplots(1, 2, sharey=True)
    names = [r.name for r in rows]
    colors = [ORANGE if r.chosen else BLUE for r in rows]
    lat_bars = lat_ax.barh(names, [r.latency.median_ms for r in rows], color=colors)
    acc_bars = acc_ax.barh(names, [100 * r.accuracy for r in rows], color=colors)
    lat_ax.bar_label(lat_bars, [f"{r.latency.median_ms:.3f}" for r in rows], padding=2, fontsize=7)
    acc_ax.bar_label(acc_bars, [f"{r.accuracy:.2%}" for r in rows], padding=2, fontsize=7)
    lat_ax.margins(x=0.18)
    acc_ax.set_xlim(0, 118)  # room for the "99.44%" labels right of a full bar
    lat_ax.set_xlabel("latency (ms, median)")
    acc_ax.set_xlabel("val accuracy (%)")
    acc_ax.set_xticks([0, 25, 50, 75, 100])
    lat_ax.tick_params(axis="y", labelsize=7)
    return fig

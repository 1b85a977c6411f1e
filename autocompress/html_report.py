"""``autocompress report``: one self-contained ``report.html`` per study, and its charts as PNGs the README can embed.

Written to ``<output>/<study>/report.html`` with the PNGs in ``<output>/<study>/report/``; the HTML embeds the same
PNGs as ``data:`` URIs and carries its own CSS, so it opens offline and can be mailed as one file. Sections:

1. summary: budget, teacher, the chosen trial (:func:`autocompress.pareto.choose`, the rule the export uses);
2. the Pareto front: complete trials (feasible filled, infeasible crossed), trials stopped over the budget on a strip
   of their own (they were never fine-tuned, so they have a latency but no accuracy), the budget, the baselines and
   the chosen model labelled;
3. hypervolume after each trial (:func:`autocompress.pareto.hypervolume`, rescue trials left out);
4. parameter importance per objective (Optuna's fANOVA on the complete trials);
5. the reachable-range probe: latency per uniform prune level and quantization mode, against the budget;
6. the per-group sensitivity profile next to the chosen ratios, and the technique breakdown of the chosen policy
   (:mod:`autocompress.explain`) — only when the study's model can be rebuilt, or is passed in;
7. every trial, the CPU fingerprint and the search options.

The study is read only through :func:`autocompress.record.read_records` and its user attributes. Charts are drawn on
matplotlib ``Figure`` objects with the Agg canvas, so no global backend or pyplot state is touched.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autocompress.explain import (
    DEFAULT_RATIOS,
    Breakdown,
    MeasureSettings,
    Sensitivity,
    rebuild_workload,
    sensitivity_profile,
    technique_breakdown,
)
from autocompress.pareto import Choice, choose, hypervolume, pareto_front
from autocompress.probe import Probe
from autocompress.record import TrialRecord, read_records
from autocompress.workload import Workload

__all__ = ["Report", "open_study", "write_report", "build_report", "REPORT_FILE", "IMAGES_DIR"]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
REPORT_FILE = "report.html"
IMAGES_DIR = "report"
_MIN_IMPORTANCE_TRIALS = 3  # fANOVA on fewer complete trials says nothing (and Optuna refuses a single one)
_OBJECTIVES = ("accuracy", "latency_ms")
_CHARTS = ("pareto", "hypervolume", "importance", "probe", "sensitivity", "breakdown")  # <name>.png in report/
_DPI = 110
_GREEN, _RED, _GREY, _BLUE, _ORANGE = "#2a9d55", "#d1495b", "#8d99ae", "#3a6ea5", "#e08e2b"


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: the HTML, the PNGs by name, and the sections it skipped and why."""

    html: Path
    images: Mapping[str, Path]
    notes: tuple[str, ...]
    chosen: int | None
    sensitivity: Sensitivity | None = None
    breakdown: Breakdown | None = None
    seconds: float = 0.0


@dataclass
class _Page:
    """The report as it is assembled: HTML sections, PNGs and notes."""

    folder: Path
    sections: list[str] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def figure(self, name: str, fig: Figure, caption: str) -> str:
        """Save ``fig`` as ``<folder>/<name>.png`` and return an ``<img>`` that embeds it as a data URI."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.png"
        fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})  # no URL or version in the file
        self.images[name] = path
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_e(caption)}</figcaption></figure>")

    def note(self, section: str, why: str) -> str:
        self.notes.append(f"{section}: {why}")
        return f'<p class="note">{_e(why)}</p>'

    def add(self, anchor: str, title: str, *body: str) -> None:
        self.sections.append(f'<section id="{anchor}"><h2>{_e(title)}</h2>{"".join(body)}</section>')


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas renders the PNG; nothing global (pyplot, backend) is set
    return fig


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, highlight: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        f'<tr{" class=chosen" if i == highlight else ""}>' + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------------------------------------- opening
def open_study(*, study_name: str | None = None, output: Path = Path("results"),
               storage: str | None = None) -> optuna.Study:
    """Load an existing study from ``--study/--output/--storage`` exactly as ``autocompress dashboard`` does; never
    creates a database or a study (an unknown name lists the studies there)."""
    # The dashboard's helpers are the one place that knows how a study is found without creating anything.
    from autocompress.config import SearchConfig
    from autocompress.dashboard import _SQLITE_PREFIX, _load_study, _raise_missing_default, _storage

    if storage is None:
        config = SearchConfig(study_name=study_name or SearchConfig().study_name, output=output)
        url = config.storage_url
        db = Path(url[len(_SQLITE_PREFIX):])
        if not db.is_file():
            _raise_missing_default(config.study_name, output, db.name)
    else:
        url = storage
    return _load_study(_storage(url), study_name, url=url)


def write_report(*, study_name: str | None = None, output: Path = Path("results"), storage: str | None = None,
                 workload: Workload | None = None, explain: bool = True, ratios: Sequence[float] = DEFAULT_RATIOS,
                 progress: Progress | None = None) -> Report:
    """Open the study and write ``<output>/<study>/report.html`` and its PNGs.

    Args:
        study_name / output / storage: which study (see :func:`open_study`).
        workload: the study's teacher and data; ``None`` rebuilds them from the study's config when it can (the demo,
            CLI models), else the sensitivity and breakdown sections are skipped with a note.
        explain: compute the sensitivity profile and the technique breakdown (they rebuild and measure models).
        ratios: the prune ratios of the sensitivity profile.
        progress: called with one line per step (the CLI prints them).

    Raises:
        ConfigError / StudyNotFoundError: no such storage or study.
    """
    study = open_study(study_name=study_name, output=output, storage=storage)
    return build_report(study, study_dir=Path(output) / study.study_name, cache_dir=Path(output) / "_cache",
                        workload=workload, explain=explain, ratios=ratios, progress=progress)


def build_report(study: optuna.Study, *, study_dir: Path, cache_dir: Path, workload: Workload | None = None,
                 explain: bool = True, ratios: Sequence[float] = DEFAULT_RATIOS,
                 progress: Progress | None = None) -> Report:
    """Write the report of an open ``study`` into ``study_dir`` (see :func:`write_report`)."""
    say = progress or logger.info
    started = time.perf_counter()
    attrs = study.user_attrs
    config: Mapping[str, Any] = attrs.get("config") or {}
    reference: Mapping[str, Any] = attrs.get("reference") or {}
    records = read_records(study)
    choice = choose(records)
    budget = reference.get("budget_ms") or next((r.budget_ms for r in records), None)
    page = _Page(folder=study_dir / IMAGES_DIR)

    page.add("summary", "Summary", _summary(study.study_name, records, choice, config, reference, budget))
    say("report: Pareto front, hypervolume, parameter importance, probe")
    page.add("pareto", "Pareto front", _pareto(page, records, choice, budget, reference))
    page.add("hypervolume", "Hypervolume over trials", _hypervolume(page, records))
    page.add("importance", "Parameter importance", _importance(page, study))
    page.add("probe", "Reachable latency range (probe)", _probe(page, attrs.get("probe"), budget, reference))

    sensitivity = breakdown = None
    why = "skipped (--no-explain)" if not explain else ""
    if explain and workload is None:
        workload, why = rebuild_workload(config, reference, output=cache_dir.parent, progress=say)
    if workload is None:
        body = page.note("sensitivity", f"Not computed: {why}.")
        page.add("sensitivity", "Layer-group sensitivity", body)
        page.add("breakdown", "What each technique gave", page.note("breakdown", f"Not computed: {why}."))
    else:
        settings = MeasureSettings.from_config(config)
        prune = choice.record.policy.prune if choice and choice.record.policy else None
        sensitivity = sensitivity_profile(
            workload, settings=settings, cache_dir=cache_dir, ratios=ratios,
            round_to=prune.round_to if prune else None, importance=prune.importance if prune else "l1",
            cpu=str((attrs.get("fingerprint") or {}).get("cpu", "")), progress=say)
        page.add("sensitivity", "Layer-group sensitivity", _sensitivity(page, sensitivity, choice))
        if choice is None:
            page.add("breakdown", "What each technique gave", page.note("breakdown", "No model was chosen."))
        else:
            breakdown = technique_breakdown(choice.record, workload=workload, study_dir=study_dir, settings=settings,
                                            progress=say)
            page.add("breakdown", "What each technique gave", _breakdown(page, breakdown))
    page.add("trials", "Every trial", _trials(records, choice))
    page.add("machine", "Machine", _mapping_table(_fingerprint_rows(attrs.get("fingerprint")), "not recorded"))
    page.add("config", "Search options", _mapping_table(config, "not recorded"))

    for stale in set(_CHARTS) - set(page.images):  # a chart this run did not draw must not outlive its section
        (page.folder / f"{stale}.png").unlink(missing_ok=True)
    out = study_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(_document(study.study_name, page.sections), encoding="utf-8")
    tmp.replace(out)
    return Report(html=out, images=dict(page.images), notes=tuple(page.notes),
                  chosen=choice.record.number if choice else None, sensitivity=sensitivity, breakdown=breakdown,
                  seconds=round(time.perf_counter() - started, 2))


# ---------------------------------------------------------------------------------------------------- sections
def _summary(name: str, records: Sequence[TrialRecord], choice: Choice | None, config: Mapping[str, Any],
             reference: Mapping[str, Any], budget: float | None) -> str:
    counts = {o: sum(1 for r in records if r.outcome == o) for o in ("complete", "stopped", "failed")}
    teacher = (reference.get("teacher_ort_latency") or {}).get("median_ms")
    rows = [("study", name),
            ("budget", f"{budget:.4g} ms ({config.get('latency_budget', '?')})" if budget else "not recorded"),
            ("max accuracy drop", f"{config['max_accuracy_drop']:g} pt" if "max_accuracy_drop" in config else "?"),
            ("teacher", f"val {reference['teacher_val_accuracy']:.2%}, ONNX Runtime fp32 {teacher:.4g} ms"
             if teacher and "teacher_val_accuracy" in reference else "not recorded"),
            ("trials", f"{counts['complete']} complete ({sum(r.feasible for r in records)} feasible), "
                       f"{counts['stopped']} stopped over budget before fine-tuning, {counts['failed']} failed")]
    if choice is None:
        rows.append(("chosen", "none: no complete trial keeps the accuracy limit"))
    else:
        r = choice.record
        speed = f", {teacher / r.latency_ms:.2f}× vs the teacher's fp32 ONNX" if teacher and r.latency_ms else ""
        rows += [("chosen", f"trial {r.number}: {r.summary}"),
                 ("chosen accuracy", f"{r.accuracy:.2%} (drop {r.accuracy_drop_pt:+.2f} pt)"),
                 ("chosen latency", f"{r.latency_ms:.4g} ms (IQR {r.latency.iqr_ms:.3g}){speed}" if r.latency else "?"),
                 ("feasible", f"{'yes' if choice.feasible else 'no'}: {choice.reason}")]
    return _table(("", ""), rows)


def _pareto(page: _Page, records: Sequence[TrialRecord], choice: Choice | None, budget: float | None,
            reference: Mapping[str, Any]) -> str:
    complete = [r for r in records if r.outcome == "complete" and r.accuracy is not None and r.latency_ms is not None]
    stopped = [r for r in records if r.outcome == "stopped" and r.latency_ms is not None]
    if not complete and not stopped:
        return page.note("pareto", "No trial has finished yet.")
    fig = _new_figure(7.5, 5.2)
    top, strip = fig.subplots(2, 1, sharex=True, height_ratios=[5, 1])
    feasible = [r for r in complete if r.feasible]
    other = [r for r in complete if not r.feasible]
    top.scatter([r.latency_ms for r in feasible], [100 * r.accuracy for r in feasible], s=36, color=_GREEN,
                label="feasible", zorder=3)
    top.scatter([r.latency_ms for r in other], [100 * r.accuracy for r in other], s=36, marker="x", color=_RED,
                label="infeasible", zorder=3)
    front = pareto_front(complete)
    if len(front) > 1:
        top.step([r.latency_ms for r in front], [100 * r.accuracy for r in front], where="post", color=_GREY,
                 lw=1, zorder=2, label="Pareto front")
    teacher_acc = reference.get("teacher_val_accuracy")
    max_drop = next((r.max_drop_pt for r in records), None)
    if teacher_acc is not None:
        top.axhline(100 * teacher_acc, color=_GREY, ls=":", lw=1, label="teacher accuracy")
        if max_drop is not None:
            top.axhline(100 * teacher_acc - max_drop, color=_ORANGE, ls="--", lw=1, label=f"accuracy limit (−{max_drop:g} pt)")
    strip.scatter([r.latency_ms for r in stopped], [0] * len(stopped), marker="|", s=200, color=_GREY)
    strip.set_yticks([])
    strip.set_ylabel("stopped", rotation=0, ha="right", va="center")
    strip.set_title("stopped over the budget before fine-tuning (no accuracy)" if stopped
                    else "no trial stopped over the budget", fontsize=8, loc="left")
    for ax in (top, strip):
        if budget:
            ax.axvline(budget, color=_BLUE, lw=1.2, label=f"budget {budget:.3g} ms" if ax is top else None)
    for r in records:
        if r.role == "baseline" and r.latency_ms is not None:
            ax, y = (top, 100 * r.accuracy) if r.accuracy is not None else (strip, 0)
            ax.annotate(r.label, (r.latency_ms, y), xytext=(4, 6), textcoords="offset points", fontsize=7, color="#333")
    if choice is not None and choice.record.accuracy is not None:
        c = choice.record
        text = f"chosen: trial {c.number}" + ("" if choice.feasible else " (over budget)")
        top.scatter([c.latency_ms], [100 * c.accuracy], s=220, marker="*", color=_ORANGE, edgecolor="black", zorder=4,
                    label=text)
        top.annotate(text, (c.latency_ms, 100 * c.accuracy), xytext=(6, -12), textcoords="offset points", fontsize=8,
                     weight="bold")
    top.margins(x=0.12)  # room for the labels of the fastest and slowest points
    top.set_ylabel("val accuracy (%)")
    strip.set_xlabel("latency (ms, median)")
    top.legend(fontsize=7, loc="lower right")
    top.grid(alpha=0.3)
    caption = (f"{len(complete)} complete trials ({len(feasible)} feasible) and {len(stopped)} stopped over the "
               f"budget; the vertical line is the budget" + (f" ({budget:.3g} ms)" if budget else ""))
    return page.figure("pareto", fig, caption)


def _hypervolume(page: _Page, records: Sequence[TrialRecord]) -> str:
    sampled = [r for r in records if r.role != "rescue"]
    if not sampled:
        return page.note("hypervolume", "No trial has finished yet.")
    values = [hypervolume(sampled[: k + 1]) for k in range(len(sampled))]
    fig = _new_figure(7.0, 3.2)
    ax = fig.subplots()
    ax.step([r.number for r in sampled], values, where="post", color=_BLUE)
    ax.scatter([r.number for r in sampled if r.feasible], [v for r, v in zip(sampled, values) if r.feasible],
               color=_GREEN, s=18, zorder=3, label="feasible trial")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_ylim(0, max(0.05, max(values) * 1.15))
    ax.grid(alpha=0.3)
    if any(r.feasible for r in sampled):
        ax.legend(fontsize=7, loc="lower right")
    caption = ("area dominated by the feasible trials on (latency / budget, drop / limit) axes, reference (1, 1); "
               f"final {values[-1]:.3f}" + ("" if values[-1] else " — nothing feasible yet"))
    return page.figure("hypervolume", fig, caption)


def _importance(page: _Page, study: optuna.Study) -> str:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < _MIN_IMPORTANCE_TRIALS:
        return page.note("importance", f"Too few complete trials ({len(complete)}) to estimate parameter importance; "
                                       f"it needs at least {_MIN_IMPORTANCE_TRIALS}.")
    found: dict[str, dict[str, float]] = {}
    failed = []
    for i, name in enumerate(_OBJECTIVES):
        try:
            found[name] = optuna.importance.get_param_importances(
                study, target=lambda t, i=i: t.values[i],
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except Exception as exc:  # fANOVA refuses degenerate inputs (one distinct value, no shared parameter)
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    found = {k: v for k, v in found.items() if v}
    if not found:
        return page.note("importance", "Parameter importance could not be estimated "
                                       f"({'; '.join(failed) or 'no parameter is shared by the complete trials'}).")
    fig = _new_figure(7.5, max(2.0, 0.8 + 0.35 * max(len(v) for v in found.values())))
    axes = fig.subplots(1, len(found), squeeze=False)[0]
    for ax, (name, values) in zip(axes, found.items()):
        params = list(values)[::-1]
        ax.barh(params, [values[p] for p in params], color=_BLUE)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
    caption = (f"fANOVA importance on {len(complete)} complete trials (parameters every complete trial has; "
               "fine-tuning parameters exist only where a trial prunes)")
    extra = page.note("importance", "; ".join(failed)) if failed else ""
    return page.figure("importance", fig, caption) + extra


def _probe(page: _Page, data: Mapping[str, Any] | None, budget: float | None, reference: Mapping[str, Any]) -> str:
    if not data:
        return page.note("probe", "The study has no probe (the space does not prune, or the study predates it).")
    probe = Probe.from_dict(data)
    fig = _new_figure(7.0, 3.6)
    ax = fig.subplots()
    for quant in dict.fromkeys(p.quant for p in probe.points):
        points = sorted((p for p in probe.points if p.quant == quant), key=lambda p: p.level)
        label = "fp32" if quant == "none" else f"{quant} {points[0].kernel}"
        ax.errorbar([100 * p.level for p in points], [p.latency.median_ms for p in points],
                    yerr=[p.latency.iqr_ms / 2 for p in points], marker="o", capsize=3, label=label)
    if budget:
        ax.axhline(budget, color=_BLUE, lw=1.2, ls="--", label=f"budget {budget:.3g} ms")
    teacher = (reference.get("teacher_ort_latency") or {}).get("median_ms")
    if teacher:
        ax.axhline(teacher, color=_GREY, lw=1, ls=":", label=f"teacher fp32 {teacher:.3g} ms")
    ax.set_xlabel("uniform prune level (% of every group's channels)")
    ax.set_ylabel("latency (ms, median ± IQR/2)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    caption = (f"{probe.describe()}; no fine-tuning, so this is the latency range only"
               + ("" if not budget else "; reachable" if probe.reachable(budget) else "; the budget is below it"))
    rows = [(p.label, f"{p.latency.median_ms:.4g}", f"{p.latency.iqr_ms:.3g}") for p in probe.points]
    return page.figure("probe", fig, caption) + _table(("structure", "latency ms", "IQR ms"), rows)


def _sensitivity(page: _Page, profile: Sensitivity, choice: Choice | None) -> str:
    groups = [g for g in profile.groups if any(p.group == g for p in profile.points)]
    ratios = profile.ratios
    chosen = dict(choice.record.policy.prune.ratios) if choice and choice.record.policy else {}
    fig = _new_figure(8.0, 6.6)
    drop_ax, saved_ax, chosen_ax = fig.subplots(3, 1, sharex=True, height_ratios=[3, 3, 2])
    width = 0.8 / max(1, len(ratios))
    xs = range(len(groups))
    for j, ratio in enumerate(ratios):
        points = [profile.at(g, ratio) for g in groups]
        offset = [x - 0.4 + width * (j + 0.5) for x in xs]
        drop_ax.bar(offset, [p.drop_pt if p else 0 for p in points], width, label=f"{ratio:.0%} of the group")
        saved_ax.bar(offset, [p.saved_ms if p else 0 for p in points], width)
    chosen_ax.bar(list(xs), [100 * chosen.get(g, 0.0) for g in groups], 0.6, color=_ORANGE)
    drop_ax.set_ylabel("val drop (pt)")
    saved_ax.set_ylabel("latency saved (ms)")
    chosen_ax.set_ylabel("chosen ratio (%)")
    drop_ax.legend(fontsize=7, title="pruned alone", title_fontsize=7)
    drop_ax.set_title(f"teacher: val {profile.teacher_accuracy:.2%}, {profile.teacher_latency.median_ms:.3f} ms "
                      f"(fp32, no fine-tuning)", fontsize=8, loc="left")
    chosen_ax.set_title(f"chosen: trial {choice.record.number}" if choice else "no chosen model", fontsize=8, loc="left")
    chosen_ax.set_ylim(0, 100)
    if choice and not any(chosen.get(g, 0.0) > 0 for g in groups):
        chosen_ax.text(0.5, 0.5, "the chosen model does not prune", transform=chosen_ax.transAxes, ha="center",
                       va="center", fontsize=9, color="#555")
    chosen_ax.set_xticks(list(xs), groups, rotation=35, ha="right", fontsize=7)
    for ax in (drop_ax, saved_ax, chosen_ax):
        ax.axhline(0, color="black", lw=0.6)
        ax.grid(alpha=0.3, axis="y")
    caption = (f"each group pruned alone, deployed fp32 and measured without fine-tuning "
               f"({len(profile.points)} points, {profile.seconds:.0f} s, cached); bottom: the chosen policy's ratios")
    rows = [(p.group, f"{p.ratio:.0%}", f"{p.kept}/{p.channels}", f"{p.accuracy:.2%}", f"{p.drop_pt:+.2f}",
             f"{p.latency.median_ms:.4g}", f"{p.saved_ms:+.4f}") for p in profile.points]
    skipped = page.note("sensitivity", "; ".join(profile.skipped)) if profile.skipped else ""
    return (page.figure("sensitivity", fig, caption) + skipped +
            _table(("group", "ratio", "channels kept", "val accuracy", "drop pt", "latency ms", "saved ms"), rows))


def _breakdown(page: _Page, breakdown: Breakdown) -> str:
    table = breakdown.table()
    rows = [list(row.values()) for row in table]
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in breakdown.notes)
    fig = _new_figure(7.5, max(1.8, 0.9 + 0.45 * len(breakdown.rows)))
    lat_ax, acc_ax = fig.subplots(1, 2, sharey=True)
    names = [r.name for r in breakdown.rows][::-1]
    colors = [_ORANGE if r.chosen else _BLUE for r in breakdown.rows][::-1]
    lat_ax.barh(names, [r.latency.median_ms for r in breakdown.rows][::-1],
                xerr=[r.latency.iqr_ms / 2 for r in breakdown.rows][::-1], color=colors)
    acc_ax.barh(names, [100 * r.accuracy for r in breakdown.rows][::-1], color=colors)
    lat_ax.set_xlabel("latency (ms, median ± IQR/2)")
    acc_ax.set_xlabel("val accuracy (%)")
    lat_ax.tick_params(axis="y", labelsize=7)
    caption = f"trial {breakdown.trial} ({breakdown.policy}) rebuilt step by step and measured in this run"
    intro = (f"<p>Trial {breakdown.trial} ({_e(breakdown.policy)}), rebuilt one technique at a time; every row was "
             "deployed and measured in this run with the study's latency protocol. The last row is the chosen model, "
             "deployed again from the trial's fine-tuned weights.</p>")
    return intro + _table(list(table[0]), rows, highlight=len(rows) - 1) + notes + page.figure("breakdown", fig, caption)


def _trials(records: Sequence[TrialRecord], choice: Choice | None) -> str:
    chosen = choice.record.number if choice else None
    rows = [(r.number, r.outcome, r.role, r.label or "—", r.summary,
             f"{r.accuracy:.2%}" if r.accuracy is not None else "—",
             f"{r.accuracy_drop_pt:+.2f}" if r.accuracy_drop_pt is not None else "—",
             f"{r.latency_ms:.4g}" if r.latency_ms is not None else "—", "yes" if r.feasible else "no",
             "chosen" if r.number == chosen else "") for r in records]
    return _table(("trial", "outcome", "role", "label", "policy", "val accuracy", "drop pt", "latency ms", "feasible",
                   ""), rows, highlight=next((i for i, r in enumerate(records) if r.number == chosen), None))


def _fingerprint_rows(fingerprint: Mapping[str, Any] | None) -> dict[str, Any]:
    if not fingerprint:
        return {}
    rows = {k: v for k, v in fingerprint.items() if k not in ("versions", "cpu_flags")}
    rows["cpu_flags"] = " ".join(fingerprint.get("cpu_flags") or [])
    rows.update({f"version: {k}": v for k, v in (fingerprint.get("versions") or {}).items()})
    return rows


def _mapping_table(data: Mapping[str, Any], missing: str) -> str:
    if not data:
        return f'<p class="note">{_e(missing)}</p>'
    return _table(("", ""), [(k, "—" if v is None else v) for k, v in data.items()])


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em
.5em;text-align:left;vertical-align:top}th{background:#f4f4f4}tr.chosen td{background:#fff4e0;font-weight:600}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}.note{color:#8a5a00;background:#fff8e8;
padding:.4em .7em;border-left:3px solid #e0a030}nav a{margin-right:.8em}
"""


def _document(name: str, sections: Sequence[str]) -> str:
    titles = [("summary", "summary"), ("pareto", "Pareto"), ("hypervolume", "hypervolume"),
              ("importance", "importance"), ("probe", "probe"), ("sensitivity", "sensitivity"),
              ("breakdown", "breakdown"), ("trials", "trials"), ("machine", "machine"), ("config", "options")]
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in titles)
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>autocompress report: {_e(name)}'
            f"</title><style>{_CSS}</style></head><body><h1>autocompress study <code>{_e(name)}</code></h1>"
            f"<p>Generated {_e(generated)} by <code>autocompress report</code>.</p><nav>{nav}</nav>"
            + "".join(sections) + "</body></html>\n")

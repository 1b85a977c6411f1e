"""``autocompress report``: one self-contained ``report.html`` per study, and its charts as PNGs the README can embed.

Written to ``<output>/<study>/report.html`` with the PNGs (and the breakdown as ``breakdown.md``) in
``<output>/<study>/report/``; the HTML embeds the same PNGs as ``data:`` URIs and carries its own CSS, so it opens
offline and can be mailed as one file. Sections:

1. summary: budget, teacher, the chosen trial (:func:`autocompress.study.pareto.choose`, the rule the export uses);
2. the Pareto front: complete trials (feasible filled, infeasible crossed), trials stopped over the budget on a strip
   of their own (they were never fine-tuned, so they have a latency but no accuracy), the budget, the baselines and
   the chosen model labelled;
3. hypervolume after each trial (:func:`autocompress.study.pareto.hypervolume`, rescue trials left out);
4. parameter importance per objective (Optuna's fANOVA on the complete trials);
5. the reachable-range probe: latency per uniform prune level and quantization mode, against the budget;
6. the per-group sensitivity profile next to the chosen ratios, and the technique breakdown of the chosen policy
   (:mod:`autocompress.report.explain`) — only when the study's model can be rebuilt, or is passed in;
7. every trial (latency with its interval), how far to trust the latencies (machine noise, the latency model's
   held-out error, the chosen model's fresh re-measurement), the CPU fingerprint and the search options.

The study is read only through :func:`autocompress.study.record.read_records` and its user attributes. Charts are drawn
on matplotlib ``Figure`` objects with the Agg canvas (:mod:`autocompress.report.charts`), so no global backend or pyplot
state is touched.
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
from matplotlib.figure import Figure

from autocompress.errors import AutocompressError
from autocompress.hardware.cpu import detect_cpu
from autocompress.report import charts
from autocompress.report.explain import (
    DEFAULT_RATIOS,
    Breakdown,
    MeasureSettings,
    Sensitivity,
    rebuild_workload,
    sensitivity_profile,
    technique_breakdown,
)
from autocompress.runtimes import AUTO
from autocompress.sources.workload import Workload
from autocompress.study.pareto import Choice, choose, hypervolume, stored_rule
from autocompress.study.probe import Probe
from autocompress.study.record import AFTER_SEARCH_ROLES, TrialRecord, read_records

__all__ = ["Report", "open_study", "write_report", "build_report", "REPORT_FILE", "IMAGES_DIR", "BREAKDOWN_TABLE"]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
REPORT_FILE = "report.html"
IMAGES_DIR = "report"
BREAKDOWN_TABLE = "breakdown.md"  # in IMAGES_DIR, next to the PNGs
_MIN_IMPORTANCE_TRIALS = 3  # fANOVA on fewer complete trials says nothing (and Optuna refuses a single one)
_OBJECTIVES = ("accuracy", "latency_ms")
_CHARTS = ("pareto", "hypervolume", "importance", "probe", "sensitivity", "breakdown")  # <name>.png in report/
_DPI = 110


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
        return (
            f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )

    def note(self, section: str, why: str) -> str:
        self.notes.append(f"{section}: {why}")
        return f'<p class="note">{_e(why)}</p>'

    def add(self, anchor: str, title: str, *body: str) -> None:
        self.sections.append(f'<section id="{anchor}"><h2>{_e(title)}</h2>{"".join(body)}</section>')


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, highlight: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=chosen' if i == highlight else ''}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------------------------------------- opening
def open_study(
    *, study_name: str | None = None, output: Path = Path("results"), storage: str | None = None
) -> optuna.Study:
    """Load an existing study from ``--study/--output/--storage`` exactly as ``autocompress dashboard`` does; never
    creates a database or a study (an unknown name lists the studies there)."""
    from autocompress.scale.storage import open_existing_study

    return open_existing_study(study_name=study_name, output=output, storage=storage).study


def write_report(
    *,
    study_name: str | None = None,
    output: Path = Path("results"),
    storage: str | None = None,
    workload: Workload | None = None,
    explain: bool = True,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    progress: Progress | None = None,
) -> Report:
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
    return build_report(
        study,
        study_dir=Path(output) / study.study_name,
        cache_dir=Path(output) / "_cache",
        workload=workload,
        explain=explain,
        ratios=ratios,
        progress=progress,
    )


def build_report(
    study: optuna.Study,
    *,
    study_dir: Path,
    cache_dir: Path,
    workload: Workload | None = None,
    explain: bool = True,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    progress: Progress | None = None,
) -> Report:
    """Write the report of an open ``study`` into ``study_dir`` (see :func:`write_report`)."""
    say = progress or logger.info
    started = time.perf_counter()
    attrs = study.user_attrs
    config: Mapping[str, Any] = attrs.get("config") or {}
    reference: Mapping[str, Any] = attrs.get("reference") or {}
    records = read_records(study)
    prefer, passed_over = stored_rule(attrs)
    choice = choose(records, exclude=passed_over, prefer=prefer)
    budget = reference.get("budget_ms") or next((r.budget_ms for r in records), None)
    page = _Page(folder=study_dir / IMAGES_DIR)

    page.add("summary", "Summary", _summary(study.study_name, records, choice, config, reference, budget))
    say("report: Pareto front, hypervolume, parameter importance, probe")
    page.add("pareto", "Pareto front", _pareto(page, records, choice, budget, reference))
    page.add("hypervolume", "Hypervolume over trials", _hypervolume(page, records))
    page.add("importance", "Parameter importance", _importance(page, study))
    page.add("probe", "Reachable latency range (probe)", _probe(page, attrs.get("probe"), budget, reference))

    sensitivity, breakdown = _explain(
        page,
        workload,
        choice=choice,
        config=config,
        reference=reference,
        fingerprint=attrs.get("fingerprint") or {},
        study_dir=study_dir,
        cache_dir=cache_dir,
        explain=explain,
        ratios=ratios,
        say=say,
    )
    page.add("trials", "Every trial", _trials(records, choice))
    page.add("measurement", "How far to trust the latencies", _measurement(attrs, choice))
    page.add("machine", "Machine", _mapping_table(_fingerprint_rows(attrs.get("fingerprint")), "not recorded"))
    page.add("config", "Search options", _mapping_table(config, "not recorded"))

    for stale in set(_CHARTS) - set(page.images):  # a chart this run did not draw must not outlive its section
        (page.folder / f"{stale}.png").unlink(missing_ok=True)
    table = page.folder / BREAKDOWN_TABLE
    if breakdown is not None:  # the same table as markdown, for a README or a pull request
        table.write_text(f"Trial {breakdown.trial}: {breakdown.policy}\n\n{breakdown.to_markdown()}", encoding="utf-8")
    else:
        table.unlink(missing_ok=True)
    out = study_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(_document(study.study_name, page.sections), encoding="utf-8")
    tmp.replace(out)
    return Report(
        html=out,
        images=dict(page.images),
        notes=tuple(page.notes),
        chosen=choice.record.number if choice else None,
        sensitivity=sensitivity,
        breakdown=breakdown,
        seconds=round(time.perf_counter() - started, 2),
    )


def _explain(
    page: _Page,
    workload: Workload | None,
    *,
    choice: Choice | None,
    config: Mapping[str, Any],
    reference: Mapping[str, Any],
    fingerprint: Mapping[str, Any],
    study_dir: Path,
    cache_dir: Path,
    explain: bool,
    ratios: Sequence[float],
    say: Progress,
) -> tuple[Sensitivity | None, Breakdown | None]:
    """The two sections that rebuild and measure models; each becomes a note when it cannot be computed."""
    titles = {"sensitivity": "Layer-group sensitivity", "breakdown": "What each technique gave"}
    why = "skipped (--no-explain)"
    if explain and workload is None:
        workload, why = rebuild_workload(config, reference, output=cache_dir.parent, progress=say)
    if not explain or workload is None:
        for anchor, title in titles.items():
            page.add(anchor, title, page.note(anchor, f"Not computed: {why}."))
        return None, None
    runtime = config.get("runtime")
    if runtime == AUTO:  # the sections build and time on the chosen model's runtime (else the yardstick's)
        runtime = choice.record.runtime if choice else (reference.get("target") or {}).get("runtime")
    settings = MeasureSettings.from_config({**config, "runtime": runtime})
    here = detect_cpu().model
    caveats = []  # said above both sections
    if fingerprint.get("cpu") not in (None, here):  # both sections are measured now, on this machine
        caveats.append(
            f"Measured on this machine ({here}); the study's trials were timed on {fingerprint['cpu']}, so "
            "latencies are comparable within this section only."
        )
    sensitivity = breakdown = None
    prune = choice.record.policy.prune if choice and choice.record.policy else None
    try:
        sensitivity = sensitivity_profile(
            workload,
            settings=settings,
            cache_dir=cache_dir,
            ratios=ratios,
            cpu=here,
            progress=say,
            round_to=prune.round_to if prune else None,
            importance=prune.importance if prune else "l1",
        )
        recorded = reference.get("teacher_val_accuracy")
        one_image = 1 / len(workload.val) + 1e-9  # type: ignore[arg-type]
        if recorded is not None and abs(sensitivity.teacher_accuracy - recorded) > one_image:
            # Same model and data score the same (deterministic export, fixed val split): a gap means they are not.
            caveats.append(
                f"The teacher rebuilt here scores {sensitivity.teacher_accuracy:.2%} on val, the study "
                f"recorded {recorded:.2%}: this is not the study's model or data."
            )
        body = "".join(page.note("sensitivity", c) for c in caveats) + _sensitivity(page, sensitivity, choice)
    except AutocompressError as exc:  # e.g. a model torch-pruning cannot trace: the rest of the report still stands
        body = page.note("sensitivity", f"Not computed: {exc}")
    page.add("sensitivity", titles["sensitivity"], body)
    if choice is None:
        body = page.note("breakdown", "Not computed: no model was chosen.")
    else:
        try:
            breakdown = technique_breakdown(
                choice.record, workload=workload, study_dir=study_dir, settings=settings, progress=say
            )
            body = "".join(page.note("breakdown", c) for c in caveats) + _breakdown(page, breakdown)
        except AutocompressError as exc:  # e.g. the trial's weights file is missing
            body = page.note("breakdown", f"Not computed: {exc}")
    page.add("breakdown", titles["breakdown"], body)
    return sensitivity, breakdown


# ---------------------------------------------------------------------------------------------------- sections
def _summary(
    name: str,
    records: Sequence[TrialRecord],
    choice: Choice | None,
    config: Mapping[str, Any],
    reference: Mapping[str, Any],
    budget: float | None,
) -> str:
    counts = {o: sum(1 for r in records if r.outcome == o) for o in ("complete", "stopped", "failed")}
    teacher = (reference.get("teacher_runtime_latency") or reference.get("teacher_ort_latency") or {}).get("median_ms")
    runtime = (reference.get("target") or {}).get("runtime", "onnxruntime")
    rows = [
        ("study", name),
        ("budget", f"{budget:.4g} ms ({config.get('latency_budget', '?')})" if budget else "not recorded"),
        ("max accuracy drop", f"{config['max_accuracy_drop']:g} pt" if "max_accuracy_drop" in config else "?"),
        (
            "teacher",
            f"val {reference['teacher_val_accuracy']:.2%}, {runtime} fp32 {teacher:.4g} ms"
            if teacher and "teacher_val_accuracy" in reference
            else "not recorded",
        ),
        (
            "trials",
            f"{counts['complete']} complete ({sum(r.feasible for r in records)} feasible), "
            f"{counts['stopped']} stopped over budget before fine-tuning, "
            f"{sum(r.outcome == 'skipped' for r in records)} skipped as predicted over budget, "
            f"{counts['failed']} failed; {sum(bool(r.quant_ruled_out) for r in records)} sampled as fp32 "
            "because the latency model predicted int8 no faster there",
        ),
    ]
    if choice is None:
        rows.append(("chosen", "none: no complete trial keeps the accuracy limit"))
    else:
        r = choice.record
        speed = f", {teacher / r.latency_ms:.2f}× vs the teacher's fp32 {runtime}" if teacher and r.latency_ms else ""
        rows += [
            ("chosen", f"trial {r.number}: {r.summary}"),
            ("chosen accuracy", f"{r.accuracy:.2%} on val (drop {r.accuracy_drop_pt:+.2f} pt{_interval(r)})"),
            ("chosen latency", f"{r.latency_ms:.4g} ms (IQR {r.latency.iqr_ms:.3g}){speed}" if r.latency else "?"),
            ("feasible", f"{'yes' if choice.feasible else 'no'}: {choice.reason} (--prefer {choice.prefer})"),
        ]
    return _table(("", ""), rows)


def _interval(record: TrialRecord) -> str:
    """ ", 95 % interval [a, b]" of a record's val drop, from its paired predictions; "" when unknown."""
    interval = record.drop_interval_pt
    return f", 95 % interval [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else ""


def _pareto(
    page: _Page,
    records: Sequence[TrialRecord],
    choice: Choice | None,
    budget: float | None,
    reference: Mapping[str, Any],
) -> str:
    complete = [r for r in records if r.outcome == "complete" and r.accuracy is not None and r.latency_ms is not None]
    stopped = [r for r in records if r.outcome == "stopped" and r.latency_ms is not None]
    if not complete and not stopped:
        return page.note("pareto", "No trial has finished yet.")
    fig = charts.pareto_chart(records, choice, budget=budget, teacher_accuracy=reference.get("teacher_val_accuracy"))
    caption = (
        f"{len(complete)} complete trials ({sum(r.feasible for r in complete)} feasible) and {len(stopped)} "
        "stopped over the budget; the vertical line is the budget" + (f" ({budget:.3g} ms)" if budget else "")
    )
    return page.figure("pareto", fig, caption)


def _hypervolume(page: _Page, records: Sequence[TrialRecord]) -> str:
    sampled = [r for r in records if r.role not in AFTER_SEARCH_ROLES]
    if not sampled:
        return page.note("hypervolume", "No trial has finished yet.")
    values = [hypervolume(sampled[: k + 1]) for k in range(len(sampled))]
    caption = (
        "area dominated by the feasible trials on (latency / budget, drop / limit) axes, reference (1, 1); "
        f"final {values[-1]:.3f}" + ("" if values[-1] else " — nothing feasible yet")
    )
    return page.figure("hypervolume", charts.hypervolume_chart(sampled, values), caption)


def _importance(page: _Page, study: optuna.Study) -> str:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < _MIN_IMPORTANCE_TRIALS:
        return page.note(
            "importance",
            f"Too few complete trials ({len(complete)}) to estimate parameter importance; "
            f"it needs at least {_MIN_IMPORTANCE_TRIALS}.",
        )
    found: dict[str, dict[str, float]] = {}
    failed = []
    for i, name in enumerate(_OBJECTIVES):
        try:
            found[name] = optuna.importance.get_param_importances(
                study, target=lambda t, i=i: t.values[i], evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
        except Exception as exc:  # fANOVA refuses degenerate inputs (one distinct value, no shared parameter)
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    found = {k: v for k, v in found.items() if v}
    if not found:
        return page.note(
            "importance",
            "Parameter importance could not be estimated "
            f"({'; '.join(failed) or 'no parameter is shared by the complete trials'}).",
        )
    caption = (
        f"fANOVA importance on {len(complete)} complete trials (parameters every complete trial has; "
        "fine-tuning parameters exist only where a trial prunes)"
    )
    extra = page.note("importance", "; ".join(failed)) if failed else ""
    return page.figure("importance", charts.importance_chart(found), caption) + extra


def _probe(page: _Page, data: Mapping[str, Any] | None, budget: float | None, reference: Mapping[str, Any]) -> str:
    if not data:
        return page.note("probe", "The study has no probe (the space does not prune, or the study predates it).")
    probe = Probe.from_dict(data)
    teacher = (reference.get("teacher_runtime_latency") or reference.get("teacher_ort_latency") or {}).get("median_ms")
    caption = f"{probe.describe()}; no fine-tuning, so this is the latency range only" + (
        "" if not budget else "; reachable" if probe.reachable(budget) else "; the budget is below it"
    )
    rows = [(p.label, f"{p.latency.median_ms:.4g}", f"{p.latency.iqr_ms:.3g}") for p in probe.points]
    return page.figure("probe", charts.probe_chart(probe, budget=budget, teacher_ms=teacher), caption) + _table(
        ("structure", "latency ms", "IQR ms"), rows
    )


def _sensitivity(page: _Page, profile: Sensitivity, choice: Choice | None) -> str:
    caption = (
        f"each group pruned alone, deployed fp32 and measured without fine-tuning "
        f"({len(profile.points)} points, {profile.seconds:.0f} s, cached); bottom: the chosen policy's ratios"
    )
    rows = [
        (
            p.group,
            f"{p.ratio:.0%}",
            f"{p.kept}/{p.channels}",
            f"{p.accuracy:.2%}",
            f"{p.drop_pt:+.2f}",
            f"{p.latency.median_ms:.4g}",
            f"{p.saved_ms:+.4f}",
        )
        for p in profile.points
    ]
    skipped = page.note("sensitivity", "; ".join(profile.skipped)) if profile.skipped else ""
    return (
        page.figure("sensitivity", charts.sensitivity_chart(profile, choice), caption)
        + skipped
        + _table(("group", "ratio", "channels kept", "val accuracy", "drop pt", "latency ms", "saved ms"), rows)
    )


def _breakdown(page: _Page, breakdown: Breakdown) -> str:
    table = breakdown.table()
    rows = [list(row.values()) for row in table]
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in breakdown.notes)
    caption = f"trial {breakdown.trial} ({breakdown.policy}) rebuilt step by step and measured in this run"
    intro = (
        f"<p>Trial {breakdown.trial} ({_e(breakdown.policy)}), rebuilt one technique at a time; every row was "
        "deployed and measured in this run with the study's latency protocol. The last row is the chosen model, "
        "deployed again from the trial's fine-tuned weights.</p>"
    )
    return (
        intro
        + _table(list(table[0]), rows, highlight=len(rows) - 1)
        + notes
        + page.figure("breakdown", charts.breakdown_chart(breakdown), caption)
    )


def _latency_cell(r: TrialRecord) -> str:
    if r.latency is not None:
        interval = f" [{r.latency.low:.4g}, {r.latency.high:.4g}]" if r.latency.low_ms is not None else ""
        noise = f" {r.latency.noise}" if r.latency.noise != "quiet" else ""
        return f"{r.latency.median_ms:.4g}{interval}{noise}"
    if r.predicted:
        return f"predicted {float(r.predicted['ms']):.4g}"
    return "—"


def _trials(records: Sequence[TrialRecord], choice: Choice | None) -> str:
    chosen = choice.record.number if choice else None
    rows = [
        (
            r.number,
            r.outcome,
            r.role,
            r.label or "—",
            r.summary,
            f"{r.accuracy:.2%}" if r.accuracy is not None else "—",
            f"{r.accuracy_drop_pt:+.2f}" if r.accuracy_drop_pt is not None else "—",
            _latency_cell(r),
            "yes" if r.feasible else "no",
            "chosen" if r.number == chosen else "",
        )
        for r in records
    ]
    return _table(
        (
            "trial",
            "outcome",
            "role",
            "label",
            "policy",
            "val accuracy",
            "drop pt",
            "latency ms [interval]",
            "feasible",
            "",
        ),
        rows,
        highlight=next((i for i, r in enumerate(records) if r.number == chosen), None),
    )


def _measurement(attrs: Mapping[str, Any], choice: Choice | None) -> str:
    """How noisy the machine was, how well the latency model predicted, and the chosen model's re-measurement."""
    noise = attrs.get("noise") or {}
    model = attrs.get("latency_model_summary") or {}
    confirmed = (attrs.get("choice") or {}).get("confirmed") or {}
    rows: dict[str, Any] = {
        "latency figures taken": noise.get("figures", "—"),
        "figures not quiet (noisy or busy machine)": (
            f"{noise.get('not_quiet')} ({100 * noise.get('not_quiet_fraction', 0):.0f} %)" if noise else "—"
        ),
        "teacher anchor (undisturbed) ms": noise.get("reference_anchor_ms", "—"),
        "latency model: held-out points": model.get("held_out", "—"),
        "latency model: median abs error %": model.get("median_abs_pct_error", "—"),
        "latency model: p90 abs error %": model.get("p90_abs_pct_error", "—"),
        "latency model: interval half-width %": model.get("interval_half_width_pct", "—"),
    }
    if confirmed:
        rows["chosen: fresh-process re-measurement ms"] = (
            f"{confirmed['median_ms']:.4g} [{confirmed.get('low_ms') or 0:.4g}, "
            f"{confirmed.get('high_ms') or 0:.4g}] {confirmed.get('noise', '')}"
        )
    passed = (attrs.get("choice") or {}).get("passed_over") or []
    if passed:
        rows["passed over (over the budget when re-measured)"] = ", ".join(map(str, passed))
    return _mapping_table(rows, "not recorded")


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
    titles = [
        ("summary", "summary"),
        ("pareto", "Pareto"),
        ("hypervolume", "hypervolume"),
        ("importance", "importance"),
        ("probe", "probe"),
        ("sensitivity", "sensitivity"),
        ("breakdown", "breakdown"),
        ("trials", "trials"),
        ("measurement", "latency trust"),
        ("machine", "machine"),
        ("config", "options"),
    ]
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in titles)
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>autocompress report: {_e(name)}'
        f"</title><style>{_CSS}</style></head><body><h1>autocompress study <code>{_e(name)}</code></h1>"
        f"<p>Generated {_e(generated)} by <code>autocompress report</code>.</p><nav>{nav}</nav>"
        + "".join(sections)
        + "</body></html>\n"
    )

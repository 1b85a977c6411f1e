"""Benchmark: does the search find the feasible region, how fast, and how good is the front? Per sampler and seed.

Scenarios on the demo workload (DemoResNet on 32x32 digits, the README's command 1):

- ``default``: the default space and budget (0.25x the teacher's fp32 ONNX Runtime latency);
- ``prune_only``: ``--space prune_only`` — int8 does not pay, so only pruning can meet the budget;
- ``tight``: ``--latency-budget 0.15x``;
- ``near_miss``: ``benchmarks/near_miss.yaml``, the default space with its KD cut to 3-4 epochs (51-67 steps), so
  that trials within the budget end just over the accuracy limit unless near misses are fine-tuned longer.

``trials`` counts what ``--trials`` counts (fully measured or failed); skipped (predicted over the budget, never built)
and stopped (built, over the budget, never fine-tuned) proposals are reported beside it. ``confirmed_ms`` is the
chosen model's fresh-process re-measurement and ``confirmed_inside`` whether it lies in the search's interval.

For every (scenario, sampler, seed) it runs a fresh study of ``--trials`` trials in-process (the demo teacher is
trained once and cached) and records: whether the probe said the budget is reachable, whether a feasible model was
found, the 1-based index of the first feasible trial, the best feasible latency, the chosen model's val drop, the
hypervolume after 10/20/30 trials and the wall time. Hypervolume: feasible trials only, axes latency/budget and
max(drop, 0)/max_drop (both minimised), reference point (1, 1) — the budget and the accuracy limit — so 0 means
nothing feasible and the value is comparable across samplers of one scenario.

**The chosen model on the test split** (issue 27, "Accuracy with confidence"). After each study the benchmark runs
the post-search step of ``autocompress search`` (:func:`autocompress.report.publish.publish`, without the HTML report):
the choice is exported (``chosen/``, or ``over_budget/`` when nothing met the budget) and its shipped artifact is
scored on ``workload.test`` beside the teacher's fp32 artifact, paired. The row takes its figures from that
``metrics.json``: ``test_drop_pt`` and its paired 95 % interval ``test_drop_low_pt``/``test_drop_high_pt``
(Bonett-Price, :class:`autocompress.measure.accuracy.PairedDrop`), ``test_breaks_limit`` (test drop over the
``--max-accuracy-drop`` limit, 1.0 pt by default) and ``interval_warned`` (``test_drop_may_exceed_limit``: the
interval's upper end is over the limit, which the CLI's summary line prints as "it may exceed the ... limit");
``n_test`` is the number of test images. Empty when the study chose no model. The report counts, per scenario, the
runs with a chosen model, those whose test drop broke the limit and how many of those the interval had warned about.

    python benchmarks/search_quality.py                       # everything: 3 scenarios x 4 samplers x 3 seeds
    python benchmarks/search_quality.py --scenarios default --samplers tpe random --seeds 0
    python benchmarks/search_quality.py --report-only         # rewrite search_quality.md from the CSV

Rows are appended to ``search_quality.csv`` as each run ends, and runs already in the CSV are skipped, so an
interrupted benchmark resumes. A row written before the test columns existed (a chosen model, no ``test_drop_pt``)
does not count as done: the run is made again and its new row is appended; the old row stays in the per-run table,
and where one run has several rows of the current rules the summary table takes the one with the most counted trials
(a shorter run made for the test figures never hides a longer one) and the test table the last with test figures.
Run it on an otherwise idle machine: the search measures latency. Notes written by hand at the end of
``search_quality.md``, after ``NOTES_MARKER``, are kept when the report is rewritten.
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.config import SearchConfig, parse_budget  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.report.publish import publish  # noqa: E402
from autocompress.sources.workload import Workload, load_workload  # noqa: E402
from autocompress.study.pareto import hypervolume  # noqa: E402
from autocompress.study.record import AFTER_SEARCH_ROLES  # noqa: E402
from autocompress.study.session import run_study  # noqa: E402
from autocompress.study.space import load_space  # noqa: E402

SCENARIOS = {
    "default": {"space": "default", "budget": "0.25x"},
    "prune_only": {"space": "prune_only", "budget": "0.25x"},
    "tight": {"space": "default", "budget": "0.15x"},
    # The KD range is too short for the model (3-4 epochs): trials within the budget end just over the accuracy
    # limit unless the search fine-tunes its near misses longer.
    "near_miss": {"space": str(HERE / "near_miss.yaml"), "budget": "0.25x"},
}
SAMPLERS = ("tpe", "nsga2", "gp", "random")
FIELDS = (
    "scenario",
    "sampler",
    "seed",
    "trials",
    "budget_ms",
    "probe_floor_ms",
    "reachable",
    "feasible_found",
    "first_feasible",
    "n_feasible",
    "n_stopped",
    "n_skipped",
    "n_int8_ruled_out",
    "n_promoted",
    "stopped_pct",
    "best_feasible_ms",
    "chosen_val_drop_pt",
    "chosen_ms",
    "chosen_feasible",
    "confirmed_ms",
    "confirmed_inside",
    # the exported choice on the test split (metrics.json, "accuracy"): empty when no model was chosen
    "test_drop_pt",
    "test_drop_low_pt",
    "test_drop_high_pt",
    "test_breaks_limit",
    "interval_warned",
    "n_test",
    "lm_mdape_pct",
    "hv10",
    "hv20",
    "hv30",
    "wall_s",
    "code",
    "cpu",
    "isa",
)


_WORKLOAD: list[Workload] = []


def demo_workload() -> Workload:
    """The demo workload, with the teacher cached where ``python -m autocompress search`` caches it."""
    if not _WORKLOAD:
        _WORKLOAD.append(load_workload(SearchConfig()))
    return _WORKLOAD[0]


def run_one(scenario: str, sampler: str, seed: int, *, trials: int, output: Path) -> dict[str, object]:
    spec = SCENARIOS[scenario]
    config = SearchConfig(
        space=spec["space"],
        latency_budget=parse_budget(spec["budget"]),
        sampler=sampler,
        seed=seed,
        trials=trials,
        output=output,
        study_name=f"{scenario}-{sampler}-s{seed}",
    )
    workload = demo_workload()
    started = time.perf_counter()
    result = run_study(workload, load_space(config.space), config, say=lambda _: None)
    wall = time.perf_counter() - started
    searched = [r for r in result.records if r.role not in AFTER_SEARCH_ROLES]  # rescue and refinement: after it
    counted = [r for r in searched if r.outcome in ("complete", "failed")]  # what --trials counts
    feasible = [r for r in counted if r.feasible]
    first = next((i + 1 for i, r in enumerate(counted) if r.feasible), None)
    choice = result.choice  # confirmed in a fresh process by run_study
    probe = result.probe
    stopped = sum(1 for r in searched if r.outcome == "stopped")
    confirmed = choice.confirmed if choice else None
    search_latency = choice.record.latency if choice else None
    test: dict[str, object] = dict.fromkeys(TEST_FIELDS, "")
    if choice is not None:  # what `autocompress search` does next: export the choice and score it on test, paired
        published = publish(result, config=config, workload=workload, report=False, say=lambda _: None)
        assert published.metrics is not None
        test = columns_from_metrics(published.metrics["accuracy"])
    return {
        "scenario": scenario,
        "sampler": sampler,
        "seed": seed,
        "trials": len(counted),
        "budget_ms": round(result.reference.budget_ms, 4),
        "probe_floor_ms": round(probe.floor.latency.median_ms, 4) if probe else "",
        "reachable": probe.reachable(result.reference.budget_ms) if probe else "",
        "feasible_found": bool(feasible),
        "first_feasible": first or "",
        "n_feasible": len(feasible),
        "n_stopped": stopped,
        "n_skipped": sum(1 for r in searched if r.outcome == "skipped"),
        # sampled trials built fp32 because the latency model predicted int8 no faster there (int8 not offered)
        "n_int8_ruled_out": sum(1 for r in searched if r.quant_ruled_out),
        "n_promoted": sum(1 for r in searched if r.role == "promoted"),
        "stopped_pct": round(100 * stopped / max(1, len(counted)), 1),
        "best_feasible_ms": round(min(r.latency_ms for r in feasible), 4) if feasible else "",  # type: ignore[type-var]
        "chosen_val_drop_pt": round(choice.record.accuracy_drop_pt or 0.0, 3) if choice else "",
        "chosen_ms": round(choice.record.latency_ms or 0.0, 4) if choice else "",
        "chosen_feasible": choice.feasible if choice else "",
        "confirmed_ms": round(confirmed.median_ms, 4) if confirmed else "",
        "confirmed_inside": (search_latency.low <= confirmed.median_ms <= search_latency.high)
        if confirmed and search_latency
        else "",
        **test,
        "lm_mdape_pct": result.latency_model.get("median_abs_pct_error", ""),
        "hv10": round(hypervolume(counted[:10]), 4),
        "hv20": round(hypervolume(counted[:20]), 4),
        "hv30": round(hypervolume(counted[:30]), 4),
        "wall_s": round(wall, 1),
        "code": _code_version(),
        "cpu": result.cpu.model,
        "isa": result.cpu.isa,
    }


TEST_FIELDS = FIELDS[FIELDS.index("test_drop_pt") : FIELDS.index("n_test") + 1]  # the columns from metrics.json


def columns_from_metrics(accuracy: dict[str, Any]) -> dict[str, object]:
    """The row's test columns from the ``accuracy`` block of the export's ``metrics.json``.

    ``test_breaks_limit``: the test drop is over the limit (``max_drop_pt``); ``interval_warned``: the export said the
    drop may exceed the limit (``test_drop_may_exceed_limit``, the paired interval's upper end over the limit).
    """
    low, high = accuracy["test_drop_interval_pt"]
    return {
        "test_drop_pt": round(accuracy["test_drop_pt"], 3),
        "test_drop_low_pt": round(low, 3),
        "test_drop_high_pt": round(high, 3),
        "test_breaks_limit": accuracy["test_drop_pt"] > accuracy["max_drop_pt"],
        "interval_warned": bool(accuracy["test_drop_may_exceed_limit"]),
        "n_test": accuracy["n_test"],
    }


def has_test_figures(row: dict[str, str]) -> bool:
    """Whether a CSV row says what its chosen model does on test: it has the test columns, or it chose no model."""
    return bool(row.get("test_drop_pt")) or not row.get("chosen_val_drop_pt")


def latest_per_run(rows: list[dict[str, str]], *, fullest: bool = False) -> list[dict[str, str]]:
    """One row per run (:func:`_run_key`), kept at the place of the first: the last in CSV order, or with ``fullest``
    the one with the most counted trials (the last among equals)."""
    last: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for r in rows:
        key = _run_key(r)
        if not fullest or key not in last or int(r["trials"] or 0) >= int(last[key]["trials"] or 0):
            last[key] = r
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for r in rows:
        key = _run_key(r)
        if key not in seen:
            seen.add(key)
            out.append(last[key])
    return out


def count_test_breaks(rows: list[dict[str, str]]) -> dict[str, int]:
    """Over rows with test figures: runs with a chosen model, of those over budget, runs whose test drop broke the
    limit, breaking runs the interval had warned about, and runs the interval warned about in all."""
    chosen = [r for r in rows if r.get("test_drop_pt")]
    breaks = [r for r in chosen if r["test_breaks_limit"] == "True"]
    return {
        "chosen": len(chosen),
        "over_budget": sum(r.get("chosen_feasible") != "True" for r in chosen),
        "breaks": len(breaks),
        "breaks_warned": sum(r["interval_warned"] == "True" for r in breaks),
        "warned": sum(r["interval_warned"] == "True" for r in chosen),
    }


def _code_version() -> str:
    """The commit the run measured (with ``+dirty`` when the tree had uncommitted changes)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "+dirty" if git("status", "--porcelain", "--", "autocompress") else ""
    )


# The last commit that changed the search's decisions (the latency-model skip rule, Prediction.likely_over).
DECISIONS_SINCE = "237ecbc"  # int8 not offered where the latency model predicts it no faster than fp32
# The last commit that changed how the samplers that read constraints (all but random) rank trials: the budget as
# the hard constraint (autocompress.study.record.LATENCY_OVER_BUDGET_OFFSET). The random sampler ignores constraints.
CONSTRAINTS_SINCE = "43c4492"


def _decides_as_now(code: str, sampler: str = "random") -> bool:
    """Whether a run of ``sampler`` on commit ``code`` decides as the current code does: the commit is
    ``DECISIONS_SINCE`` (``CONSTRAINTS_SINCE`` for a sampler that reads constraints) or a descendant of it
    (``+dirty`` runs count as their base)."""
    import subprocess

    commit = code.split("+")[0]
    if not commit:
        return False
    since = DECISIONS_SINCE if sampler == "random" else CONSTRAINTS_SINCE
    done = subprocess.run(["git", "merge-base", "--is-ancestor", since, commit], cwd=HERE.parent, capture_output=True)
    return done.returncode == 0


def _cpu_label(row: dict[str, str]) -> str:
    """The CPU a run measured on, as the tables name it: model and ISA level (runs of two CPUs are never pooled)."""
    return f"{row.get('cpu') or '?'} ({row.get('isa') or '?'})"


def _run_key(row: dict[str, str]) -> tuple[str, str, str, str]:
    """A run's identity: the CPU, the scenario, the sampler and the seed.

    The same run on another CPU is another run.
    """
    return _cpu_label(row), row["scenario"], row["sampler"], str(row["seed"])


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# Hand-written notes at the end of the report (how a batch was run, on what): kept when the report is rewritten.
NOTES_MARKER = "<!-- notes: written by hand, kept by search_quality.py when it rewrites this file -->"


def write_report(rows: list[dict[str, str]], path: Path) -> None:
    """Per scenario x sampler: feasible runs, median first-feasible trial, median best latency, median HV; per
    scenario, the chosen model's test drop against the limit; every run. Notes after ``NOTES_MARKER`` are kept."""
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES_MARKER) :].rstrip("\n") if NOTES_MARKER in old else ""
    lines = [
        "# Search quality: does the search find the feasible region?",
        "",
        "Generated by `python benchmarks/search_quality.py` from `search_quality.csv` (one row per run).",
        "",
    ]
    if rows:
        cpus = sorted({f"{r['cpu']} ({r['isa']})" for r in rows})
        lines += [
            f"CPU: {', '.join(cpus)}; 1 thread, batch 1; demo workload (DemoResNet, 32x32 digits); "
            f"{' or '.join(sorted({r['trials'] for r in rows}))} counted trials per run; max val drop 1.0 pt.",
            "",
            "Hypervolume (HV): feasible trials only, axes latency/budget and max(drop, 0)/max_drop (both "
            "minimised), reference point (1, 1) = (the budget, the accuracy limit); 0 = nothing feasible. "
            "Medians over seeds.",
            "",
        ]
    # The summary is over the runs of code that decides as the current code does: commits at or after
    # DECISIONS_SINCE (the last commit that changed what the search samples, skips, stops or promotes). Later commits
    # (e.g. several workers) leave a one-process study's decisions as they were. Older runs stay in the per-run table.
    # A run made again (its row had no test figures, maybe with fewer --trials) has several rows of the current rules:
    # the one with the most counted trials counts (the last among equals), so a shorter run never hides a longer one.
    current = [r for r in rows if _decides_as_now(r.get("code", ""), r["sampler"])]
    summary_rows, rows_all = latest_per_run(current, fullest=True), rows
    if len(summary_rows) < len(rows_all):
        superseded = len(current) - len(summary_rows)
        lines += [
            f"The summary is over the {len(summary_rows)} runs of code that decides as the current code does "
            f"(commit {DECISIONS_SINCE} or later; {CONSTRAINTS_SINCE} or later for samplers that read "
            "constraints; where a run was made again, its row with the most counted trials); the per-run table "
            "below also lists "
            f"{len(rows_all) - len(current)} runs of earlier rules"
            + (f" and {superseded} other rows of runs made more than once" if superseded else "")
            + ".",
            "",
        ]
    rows = summary_rows
    lines += [
        "| CPU | scenario | sampler | runs | probe: reachable | feasible found | median first feasible trial | "
        "median best feasible ms | median budget ms | median HV@10 | median HV@20 | median HV@30 | HV@30 vs random | "
        "median wall s | stopped % (max) | skipped | int8 ruled out | promoted | median feasible | "
        "LM median abs % error | confirm inside | ends chosen (incl. rescue) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # One CPU at a time: latencies, budgets and what int8 pays differ per CPU, so runs of two CPUs never share a
    # median, and TPE is compared with random on the same CPU.
    for cpu, scenario in [(c, sc) for c in sorted({_cpu_label(r) for r in rows}) for sc in SCENARIOS]:
        here = [r for r in rows if _cpu_label(r) == cpu and r["scenario"] == scenario]
        random_hv = _median([float(r["hv30"]) for r in here if r["sampler"] == "random"])
        for sampler in SAMPLERS:
            runs = [r for r in here if r["sampler"] == sampler]
            if not runs:
                continue
            firsts = [float(r["first_feasible"]) for r in runs if r["first_feasible"]]
            best = [float(r["best_feasible_ms"]) for r in runs if r["best_feasible_ms"]]
            hv = {k: _median([float(r[k]) for r in runs]) for k in ("hv10", "hv20", "hv30")}
            ratio = f"{hv['hv30'] / random_hv:.2f}x" if random_hv and hv["hv30"] is not None else "—"
            fmt = lambda v, d=3: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
            reachable = sum(r["reachable"] == "True" for r in runs)
            lines.append(
                f"| {cpu} | {scenario} | {sampler} | {len(runs)} | {reachable}/{len(runs)} | "
                f"{sum(r['feasible_found'] == 'True' for r in runs)}/{len(runs)} | {fmt(_median(firsts), 1)} | "
                f"{fmt(_median(best))} | {fmt(_median([float(r['budget_ms']) for r in runs]))} | {fmt(hv['hv10'])} | "
                f"{fmt(hv['hv20'])} | {fmt(hv['hv30'])} | {ratio} | "
                f"{fmt(_median([float(r['wall_s']) for r in runs]), 0)} | "
                f"{max(float(r['stopped_pct']) for r in runs):.0f} | "
                f"{fmt(_median([float(r['n_skipped']) for r in runs]), 0)} | "
                f"{fmt(_median([float(r['n_int8_ruled_out']) for r in runs if r.get('n_int8_ruled_out')]), 0)} | "
                f"{fmt(_median([float(r['n_promoted']) for r in runs]), 0)} | "
                f"{fmt(_median([float(r['n_feasible']) for r in runs]), 0)} | "
                f"{fmt(_median([float(r['lm_mdape_pct']) for r in runs if r['lm_mdape_pct']]), 1)} | "
                f"{sum(r['confirmed_inside'] == 'True' for r in runs)}/{len(runs)} | "
                f"{sum(r['chosen_feasible'] == 'True' for r in runs)}/{len(runs)} |"
            )
    lines += _test_section(latest_per_run([r for r in current if r.get("test_drop_pt")]))
    lines += ["", "Per run:", "", "| CPU | " + " | ".join(FIELDS[:-2]) + " |", "|" + "---|" * (len(FIELDS) - 1)]
    for r in rows_all:
        lines.append(f"| {_cpu_label(r)} | " + " | ".join(str(r.get(f) or "") for f in FIELDS[:-2]) + " |")
    if notes:
        lines += ["", notes]
    path.write_text("\n".join(lines) + "\n")


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f} %)" if whole else "—"


def _test_section(rows: list[dict[str, str]]) -> list[str]:
    """Per CPU and scenario (samplers pooled): how often the chosen model's test drop breaks the accuracy limit, and
    whether the paired interval printed with it had said it could."""
    scored = [r for r in rows if r.get("test_drop_pt")]
    lines = [
        "",
        "## The chosen model on the test split (issue 27: accuracy with confidence)",
        "",
        "Each run's choice exported as `autocompress search` exports it (`chosen/`, or `over_budget/` when nothing "
        "met the budget) and scored on the test split beside the teacher's fp32 artifact, paired: figures from its "
        "`metrics.json`. *Breaks*: test drop over the accuracy limit (`--max-accuracy-drop`, "
        f"{SearchConfig().max_accuracy_drop:g} pt). *Warned*: the paired 95 % interval's upper end is over the limit "
        "(`test_drop_may_exceed_limit`; the CLI's summary line then says the drop may exceed the limit on new data). "
        "Rows written before these columns existed are not counted here (such a run is made again for its test "
        "figures, maybe with fewer `--trials`: see the per-run table).",
        "",
    ]
    if not scored:
        return [*lines, "No run with test figures yet."]
    lines += [
        f"{len(scored)} runs with test figures: code {', '.join(sorted({r.get('code') or '?' for r in scored}))}; "
        f"{' or '.join(sorted({r['trials'] for r in scored}, key=int))} counted trials per run; studies "
        f"{sum(float(r['wall_s']) for r in scored) / 60:.0f} min of wall time in all (export and test scoring "
        "not included).",
        "",
    ]
    lines += [
        "| CPU | scenario | samplers | runs with a chosen model (over budget) | test drop > limit | "
        "of those, interval warned | interval warned (all runs) | median test drop pt | median interval pt | "
        "test images |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for cpu in sorted({_cpu_label(r) for r in scored}):
        mine = [r for r in scored if _cpu_label(r) == cpu]
        groups = [(sc, [r for r in mine if r["scenario"] == sc]) for sc in SCENARIOS]
        for scenario, runs in [*[g for g in groups if g[1]], ("all", mine)]:
            c = count_test_breaks(runs)
            samplers = ", ".join(sa for sa in SAMPLERS if any(r["sampler"] == sa for r in runs))
            low = _median([float(r["test_drop_low_pt"]) for r in runs])
            high = _median([float(r["test_drop_high_pt"]) for r in runs])
            lines.append(
                f"| {cpu} | {scenario} | {samplers} | {c['chosen']} ({c['over_budget']}) | "
                f"{_pct(c['breaks'], c['chosen'])} | {c['breaks_warned']}/{c['breaks']} | "
                f"{_pct(c['warned'], c['chosen'])} | {_median([float(r['test_drop_pt']) for r in runs]):+.2f} | "
                f"[{low:+.2f}, {high:+.2f}] | {'/'.join(sorted({r['n_test'] for r in runs}))} |"
            )
        c = count_test_breaks(mine)
        rate_ok = c["breaks"] <= 0.05 * c["chosen"]
        warned_ok = c["breaks_warned"] == c["breaks"]
        verdicts.append(
            f"- {cpu}: the test drop broke the limit in {_pct(c['breaks'], c['chosen'])} runs "
            f"({'at most' if rate_ok else 'over'} 5 %); "
            + (
                f"the interval had warned about {c['breaks_warned']} of the {c['breaks']}"
                if c["breaks"]
                else "no break to warn about"
            )
            + f": acceptance {'met' if rate_ok or warned_ok else 'NOT met'}."
        )
    return [
        *lines,
        "",
        "Acceptance (issue 27): the chosen model's test drop exceeds the limit in at most 5 % of runs, or the "
        "interval shown (summary line, metrics.json) says it could.",
        "",
        *verdicts,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--output", type=Path, default=HERE.parent / "results" / "_bench_search_quality")
    parser.add_argument("--csv", type=Path, default=HERE / "search_quality.csv")
    parser.add_argument("--output-note", default="", help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run the planned runs again (new code): their old rows and study folders are replaced",
    )
    args = parser.parse_args()
    logging.getLogger("optuna").setLevel(logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = list(csv.DictReader(args.csv.open())) if args.csv.exists() else []
    if rows and list(rows[0]) != list(FIELDS):  # a column was added since: rewrite the file with every column
        rows = [{f: r.get(f) or "" for f in FIELDS} for r in rows]
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    if not args.report_only:
        cpu = detect_cpu()
        here = _cpu_label({"cpu": cpu.model, "isa": cpu.isa})
        if args.rerun:  # only this CPU's runs are replaced
            planned = {(here, sc, sa, str(se)) for se in args.seeds for sc in args.scenarios for sa in args.samplers}
            rows = [r for r in rows if _run_key(r) not in planned]
            with args.csv.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            for _, scenario, sampler, seed in planned:
                shutil.rmtree(args.output / f"{scenario}-{sampler}-s{seed}", ignore_errors=True)
        # A run of an earlier rule, or without the test figures, stays in the CSV (the per-run table) and is run
        # again on the current rule.
        done = {_run_key(r) for r in rows if _decides_as_now(r.get("code", ""), r["sampler"]) and has_test_figures(r)}
        print(f"CPU: {here}", flush=True)
        # Seeds outermost: an interrupted benchmark has every scenario and sampler at the first seeds.
        plan = [(sc, sa, se) for se in args.seeds for sc in args.scenarios for sa in args.samplers]
        for scenario, sampler, seed in plan:
            if (here, scenario, sampler, str(seed)) in done:
                continue
            # The study folder of an earlier run (another rule) would be resumed: start afresh.
            shutil.rmtree(args.output / f"{scenario}-{sampler}-s{seed}", ignore_errors=True)
            row = run_one(scenario, sampler, seed, trials=args.trials, output=args.output)
            new = not args.csv.exists()
            with args.csv.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
            rows.append({k: str(v) for k, v in row.items()})
            print(" ".join(f"{k}={row[k]}" for k in FIELDS[:-2]), flush=True)
    write_report(rows, args.csv.with_suffix(".md"))
    print(f"wrote {args.csv.with_suffix('.md')}")


if __name__ == "__main__":
    main()

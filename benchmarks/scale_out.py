"""Benchmark: several workers on one study. Wall time of the same study with 1 vs N workers, and the latency interval
of the same artifact measured alone vs beside another worker's fine-tuning (with and without the core guard).

**Part 1: the same artifact beside a neighbour.** The demo teacher's fp32 ONNX is the meter's reference and a uniform
65 % pruned fp32 student the candidate (as a trial builds it). The student is measured ``--figures`` times by the
study's :class:`~autocompress.measure.latency.LatencyMeter` in three conditions:

- ``alone``: nothing else of ours runs;
- ``beside KD, guard on``: a second process fine-tunes a pruned student (knowledge distillation, torch 1 thread) in
  chunks of 10 steps, each chunk inside the core guard's shared hold, as a second worker's trial does; our figures
  take the guard exclusively, so they wait for the chunk in progress;
- ``beside KD, guard off``: the same neighbour with ``AUTOCOMPRESS_CORE_LOCK=off`` (what two workers would do without
  the guard);
- ``beside KD, disjoint cores``: the same neighbour pinned to every core but the last, our figures pinned to the last
  (as ``taskset`` splits a GPU host between build workers and a measure worker); the guard is on but locks per core,
  so neither waits for the other.

Reported: median and spread (CV, max/min) of the figure and of its ratio to the teacher, the mean interval width, the
share of figures the protocol flagged not quiet, and the seconds each figure waited for the guard.

**Part 2: the same study with 1 and N workers.** ``python -m autocompress search`` on the demo (default space, budget
and ``--trials``), once with ``--workers 1`` and once with ``--workers N``, each a new study: wall time, counted
trials, median fine-tuning seconds per trial, and the chosen model's test accuracy and latency.

    python benchmarks/scale_out.py                     # → scale_out.md / scale_out.csv
    python benchmarks/scale_out.py --parts 1 --figures 10

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402

_NEIGHBOUR = """
import os, sys, time
import torch
sys.path.insert(0, sys.argv[3])
from autocompress.compress.distill import distill
from autocompress.compress.prune import prunable_groups, prune_model
from autocompress.config import SearchConfig
from autocompress.policy import DistillPolicy, PrunePolicy
from autocompress.compress.training import predict_logits
from autocompress.measure.guard import core_guard
from autocompress.sources.workload import load_workload

torch.set_num_threads(1)
if os.environ.get("SCALE_OUT_CORES"):
    os.sched_setaffinity(0, {int(c) for c in os.environ["SCALE_OUT_CORES"].split(",")})
wl = load_workload(SearchConfig())
x = wl.example_input()
groups = prunable_groups(wl.model, x, num_classes=wl.num_classes)
student = prune_model(wl.model, PrunePolicy(ratios={g.name: 0.3 for g in groups}), x, num_classes=wl.num_classes)
logits = predict_logits(wl.model, wl.train)
end = time.time() + float(sys.argv[1])
open(sys.argv[2], "w").write("ready")
chunks = 0
while time.time() < end:
    with core_guard().heavy():
        distill(student, logits, wl.train, DistillPolicy(steps=10), seed=chunks)
    chunks += 1
print(chunks)
"""


def _cv(values: list[float]) -> float:
    return 100 * statistics.pstdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def part_same_artifact(figures: int, workdir: Path) -> list[dict[str, Any]]:
    from autocompress.compress.prune import prunable_groups, prune_model
    from autocompress.measure.guard import CoreGuard
    from autocompress.measure.latency import LatencyMeter
    from autocompress.policy import PrunePolicy, QuantPolicy
    from autocompress.runtimes import get_runtime
    from autocompress.sources.workload import load_workload

    runtime = get_runtime("onnxruntime")
    workload = load_workload(SearchConfig())
    x = workload.example_input()
    groups = prunable_groups(workload.model, x, num_classes=workload.num_classes)
    teacher = runtime.build(
        workload.model,
        QuantPolicy(mode="none"),
        example_input=x,
        calibration=workload.train,
        workdir=workdir / "teacher",
    )
    prune = PrunePolicy(ratios={g.name: 0.65 for g in groups})
    student = prune_model(workload.model, prune, x, num_classes=workload.num_classes)
    artifact = runtime.build(
        student, QuantPolicy(mode="none"), example_input=x, calibration=workload.train, workdir=workdir / "student"
    )
    rows = []
    every = sorted(os.sched_getaffinity(0))
    conditions = ["alone", "beside KD, guard on", "beside KD, guard off"]
    conditions += ["beside KD, disjoint cores"] if len(every) > 1 else []
    for condition in conditions:
        lock = workdir / f"cores-{len(rows)}.lock"
        guard_on = condition != "beside KD, guard off"
        disjoint = condition == "beside KD, disjoint cores"
        os.sched_setaffinity(0, every[-1:] if disjoint else every)  # this thread: ORT runs 1-thread sessions in it
        meter = LatencyMeter(runtime, teacher, workload.input_shape, threads=1, batch_size=1)
        meter.cores = CoreGuard(lock if guard_on else None)
        meter.calibrate()
        neighbour = None
        if condition != "alone":
            ready = workdir / f"ready-{len(rows)}"
            env = {**os.environ, "AUTOCOMPRESS_CORE_LOCK": str(lock) if guard_on else "off"}
            env["SCALE_OUT_CORES"] = ",".join(str(c) for c in every[:-1]) if disjoint else ""
            neighbour = subprocess.Popen(
                [sys.executable, "-c", _NEIGHBOUR, str(figures * 60 + 300), str(ready), str(HERE.parent)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            deadline = time.time() + 300
            while not ready.exists() and time.time() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)  # fine-tuning under way
        values, ratios, widths, noisy, waits, seconds = [], [], [], 0, [], []
        try:
            for _ in range(figures):
                waited = meter.cores.waited_s
                started = time.perf_counter()
                lat = meter.measure(artifact)
                seconds.append(time.perf_counter() - started)
                waits.append(meter.cores.waited_s - waited)
                values.append(lat.median_ms)
                ratios.append(lat.ratio or float("nan"))
                widths.append((lat.high_ms or lat.median_ms) - (lat.low_ms or lat.median_ms))
                noisy += lat.noise != "quiet"
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
            os.sched_setaffinity(0, every)
        rows.append(
            {
                "part": "same artifact",
                "condition": condition,
                "figures": figures,
                "median_ms": round(statistics.median(values), 4),
                "cv_pct": round(_cv(values), 2),
                "max_over_min": round(max(values) / min(values), 3),
                "ratio_median": round(statistics.median(ratios), 4),
                "ratio_cv_pct": round(_cv(ratios), 2),
                "mean_interval_ms": round(statistics.mean(widths), 4),
                "not_quiet": noisy,
                "guard_wait_s_per_figure": round(statistics.mean(waits), 2),
                "s_per_figure": round(statistics.mean(seconds), 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


def part_workers(workers: list[int], trials: int, output: Path) -> list[dict[str, Any]]:
    import optuna

    from autocompress.study.record import AFTER_SEARCH_ROLES, read_records

    rows = []
    cache = HERE.parent / "results" / "_cache"
    if cache.is_dir() and not (output / "_cache").is_dir():
        import shutil

        # The trained demo teacher: without it the first run's wall time would include training it.
        shutil.copytree(cache, output / "_cache")
    for n in workers:
        name = f"scale-w{n}"
        study_dir = output / name
        if study_dir.exists():
            import shutil

            shutil.rmtree(study_dir)
        command = [
            sys.executable,
            "-m",
            "autocompress",
            "search",
            "--trials",
            str(trials),
            "--workers",
            str(n),
            "--study-name",
            name,
            "--output",
            str(output),
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir}/study.db")
        records = read_records(study)
        counted = [r for r in records if r.role not in AFTER_SEARCH_ROLES and r.outcome in ("complete", "failed")]
        distill_s = [r.timings["distill_s"] for r in records if "distill_s" in r.timings]
        metrics = json.loads(
            next(
                (study_dir / d / "metrics.json").read_text()
                for d in ("chosen", "over_budget")
                if (study_dir / d / "metrics.json").exists()
            )
        )
        pids = {r.stages["worker"]["pid"] for r in records if r.stages.get("worker")}
        # The trial phase (first trial started → last trial ended): what the workers share; the set-up (teacher,
        # probe) and the finish (fresh-process confirmation, export, report) run once either way.
        starts = [t.datetime_start for t in study.trials if t.datetime_start]
        ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
        trial_phase = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
        rows.append(
            {
                "part": "workers",
                "condition": f"--workers {n}",
                "workers": n,
                "processes_with_trials": len(pids),
                "wall_s": round(wall, 1),
                "trial_phase_s": round(trial_phase, 1),
                "counted_trials": len(counted),
                "all_trials": len(records),
                "median_finetune_s": round(statistics.median(distill_s), 2) if distill_s else "",
                "chosen_trial": metrics["trial"],
                "chosen_test_top1": metrics["accuracy"]["test_top1"],
                "chosen_ms": metrics["latency"]["chosen_ms"]["median_ms"],
                "budget_ms": metrics["latency"]["budget_ms"],
                "feasible": metrics["feasible"],
                "core_guard_wait_s": study.user_attrs.get("noise", {}).get("core_guard_wait_s", ""),
            }
        )
        print(rows[-1], flush=True)
    return rows


def write_report(rows: list[dict[str, Any]], path: Path) -> None:
    cpu = detect_cpu()
    lines = [
        "# Scale out: several workers on one study",
        "",
        f"Generated by `python benchmarks/scale_out.py`. CPU: {cpu.model} ({cpu.isa}), {os.cpu_count()} cores; "
        "demo workload; ONNX Runtime, 1 thread, batch 1.",
        "",
    ]
    same = [r for r in rows if r["part"] == "same artifact"]
    if same:
        lines += [
            "## The same artifact, alone and beside another worker's fine-tuning",
            "",
            "Uniform 65 % pruned fp32 student, timed side by side with the teacher by the study's meter; the neighbour "
            "fine-tunes in chunks of 10 KD steps (1 torch thread), each chunk inside the core guard's shared hold.",
            "",
            "| condition | figures | median ms | CV % | max/min | ratio to teacher (median) | ratio CV % | "
            "mean interval width ms | not quiet | guard wait s / figure | s / figure |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['condition']} | {r['figures']} | {r['median_ms']} | {r['cv_pct']} | {r['max_over_min']} | "
            f"{r['ratio_median']} | {r['ratio_cv_pct']} | {r['mean_interval_ms']} | {r['not_quiet']} | "
            f"{r['guard_wait_s_per_figure']} | {r['s_per_figure']} |"
            for r in same
        ]
        lines.append("")
    work = [r for r in rows if r["part"] == "workers"]
    if work:
        lines += [
            "## The same study with 1 and N workers",
            "",
            "`python -m autocompress search --trials T --workers N` (demo, default space and budget), "
            "a new study each.",
            "",
            "| workers | processes that ran trials | wall s | trial phase s | counted trials | all trials | "
            "median fine-tuning s / trial | core guard wait s (main process) | chosen trial | test top-1 | "
            "chosen ms (budget) | feasible |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['workers']} | {r['processes_with_trials']} | {r['wall_s']} | {r['trial_phase_s']} | "
            f"{r['counted_trials']} | "
            f"{r['all_trials']} | {r['median_finetune_s']} | {r['core_guard_wait_s']} | {r['chosen_trial']} | "
            f"{float(r['chosen_test_top1']):.2%} | {float(r['chosen_ms']):.3f} ({float(r['budget_ms']):.3f}) | "
            f"{r['feasible']} |"
            for r in work
        ]
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    parser.add_argument("--figures", type=int, default=15)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--trials", type=int, default=SearchConfig().trials)
    parser.add_argument("--output", type=Path, default=HERE.parent / "results" / "_bench_scale_out")
    parser.add_argument("--csv", type=Path, default=HERE / "scale_out.csv")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    if 1 in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            rows += part_same_artifact(args.figures, Path(tmp))
    if 2 in args.parts:
        rows += part_workers(args.workers, args.trials, args.output)
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("part", "condition"), k))
    with args.csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_report(rows, args.csv.with_suffix(".md"))
    print(f"wrote {args.csv.with_suffix('.md')}")


if __name__ == "__main__":
    main()

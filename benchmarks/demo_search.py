"""Benchmark: the default demo search, end to end, as a user runs it.

Runs ``python -m autocompress search`` (fresh output folder each time, so teacher training is included in the first
run's wall time) for each sampler/seed asked for, and writes a markdown table and a CSV of what the chosen model
reached: test accuracy and its drop vs the teacher's fp32 ONNX export, latency, speed-up vs the PyTorch teacher
measured in the same run, wall time.

    python benchmarks/demo_search.py                        # TPE, seed 0 (the README's command 1)
    python benchmarks/demo_search.py --samplers tpe random --seeds 0 1
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_once(output: Path, *, sampler: str, seed: int, trials: int, extra: list[str]) -> dict[str, object]:
    name = f"demo-{sampler}-s{seed}"
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autocompress",
            "search",
            "--output",
            str(output),
            "--study-name",
            name,
            "--sampler",
            sampler,
            "--seed",
            str(seed),
            "--trials",
            str(trials),
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {
            "sampler": sampler,
            "seed": seed,
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed",
        }
    m = json.loads((output / name / "chosen" / "metrics.json").read_text())
    study_rows = list(csv.DictReader((output / name / "trials.csv").open()))
    stopped = sum(1 for r in study_rows if r["finetuned"] == "False" and r["policy"].startswith("prune"))
    return {
        "sampler": sampler,
        "seed": seed,
        "trials": trials,
        "wall_s": round(wall, 1),
        "chosen_policy": m["policy_summary"],
        "feasible": m["feasible"],
        "val_acc": round(m["accuracy"]["val_top1"] * 100, 2),
        "test_acc": round(m["accuracy"]["test_top1"] * 100, 2),
        "teacher_test_acc": round(m["accuracy"]["teacher_test_top1"] * 100, 2),
        "test_drop_pt": round(m["accuracy"]["test_drop_pt"], 2),
        "latency_ms": round(m["latency"]["chosen_ms"]["median_ms"], 3),
        "latency_iqr_ms": round(m["latency"]["chosen_ms"]["iqr_ms"], 3),
        "budget_ms": round(m["latency"]["budget_ms"], 3),
        "teacher_torch_ms": round(m["latency"]["teacher_torch_fp32_ms"]["median_ms"], 3),
        "teacher_ort_ms": round(m["latency"]["teacher_fp32_ms"]["median_ms"], 3),
        "speedup_vs_torch": round(m["latency"]["speedup_vs_teacher_torch"], 2),
        "speedup_vs_ort": round(m["latency"]["speedup_vs_teacher_fp32"], 2),
        "size_mb": round(m["model"]["artifact_size_mb"], 3),
        "stopped_before_finetune": stopped,
        "cpu": m["machine"]["cpu"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", nargs="+", default=["tpe"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "demo_search")
    args, extra = parser.parse_known_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in args.samplers:
            for seed in args.seeds:
                row = run_once(Path(tmp), sampler=sampler, seed=seed, trials=args.trials, extra=extra)
                print(row, flush=True)
                rows.append(row)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with args.out.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    cols = [
        "sampler",
        "seed",
        "trials",
        "wall_s",
        "chosen_policy",
        "test_acc",
        "teacher_test_acc",
        "test_drop_pt",
        "latency_ms",
        "latency_iqr_ms",
        "budget_ms",
        "teacher_torch_ms",
        "speedup_vs_torch",
        "speedup_vs_ort",
        "stopped_before_finetune",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, r.get("error", ""))) for c in cols) + " |" for r in rows]
    cpu = rows[0].get("cpu", "?") if rows else "?"
    args.out.with_suffix(".md").write_text(
        f"# Demo search benchmark\n\nCPU: {cpu}; 1 thread, batch 1; `python benchmarks/demo_search.py "
        f"--samplers {' '.join(args.samplers)} --seeds {' '.join(map(str, args.seeds))} --trials {args.trials}`; "
        "wall time includes teacher training for the first run only when its cache is empty (fresh folder: always).\n\n"
        + "\n".join(lines)
        + "\n"
    )


if __name__ == "__main__":
    main()

"""Benchmark: is a latency figure repeatable on this machine? The old protocol beside the new, quiet and loaded.

Artifacts: the demo teacher's fp32 ONNX (the reference) and two students built the way a trial builds them (no
fine-tuning; latency does not depend on the weights): uniform 50 % prune + int8 (the CPU's own kernel) and uniform 65 %
prune fp32. Each artifact is measured ``--repeats`` times in a row, in one process, by

- **old**: 20 warm-up runs + 100 timed runs, median (the protocol before this benchmark);
- **new**: :class:`autocompress.measure.latency.LatencyMeter` — blocks alternating with the teacher, fastest block,
  the teacher as a canary with its anchor taken once per condition (what a study does).

Conditions: ``quiet`` (nothing else of ours running) and ``load``: a neighbour process the benchmark starts and stops
itself, burning one core with a 384x384 float32 matmul loop plus strided writes over a 32 MB array (compute and
memory traffic, like a training job), bounded in time. Reported per (condition, artifact, protocol): CV and max/min of
the figure, CV and max/min of the ratio to the teacher (new protocol: the side-by-side ratio; old: the ratio of two
figures taken one after the other), the share of figures flagged not quiet, and the seconds per figure.

    python benchmarks/latency_noise.py                 # 30 repeats, both conditions → latency_noise.md / .csv
    python benchmarks/latency_noise.py --repeats 10 --conditions quiet

Run it on an otherwise idle machine (the ``quiet`` rows are only quiet if nothing else runs).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.compress.prune import prunable_groups, prune_model  # noqa: E402
from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu, int8_kernel_for  # noqa: E402
from autocompress.measure.latency import LatencyMeter, onnx_runner  # noqa: E402
from autocompress.policy import PrunePolicy, QuantPolicy  # noqa: E402
from autocompress.runtimes import Artifact, get_runtime  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402

deploy = get_runtime("onnxruntime").build  # the ONNX Runtime artifact of a model and a precision plan

_BURNER = """
import os, sys, time
import numpy as np
end = time.time() + float(sys.argv[1])
a = np.random.rand(384, 384).astype(np.float32); b = np.zeros(8_000_000, dtype=np.float32)
i = 0
while time.time() < end:
    a = (a @ a) / 384.0 + 0.5
    b[(i * 997) % 1000::16] += 1.0
    i += 1
"""


def old_protocol(run) -> float:  # type: ignore[no-untyped-def]
    for _ in range(20):
        run()
    samples = []
    for _ in range(100):
        t0 = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(samples))


def artifacts(workdir: Path) -> tuple[Artifact, dict[str, Artifact], tuple[int, ...]]:
    workload = load_workload(SearchConfig())
    x = workload.example_input()
    kernel = int8_kernel_for(detect_cpu())
    groups = prunable_groups(workload.model, x, num_classes=workload.num_classes)
    teacher = deploy(
        workload.model,
        QuantPolicy(mode="none"),
        example_input=x,
        calibration=workload.train,
        workdir=workdir / "teacher",
    )
    out = {}
    for name, level, quant in (
        (
            "prune50_int8",
            0.5,
            QuantPolicy(mode="int8", activation_type=kernel.activation_type, reduce_range=kernel.reduce_range),
        ),
        ("prune65_fp32", 0.65, QuantPolicy(mode="none")),
    ):
        student = prune_model(
            workload.model,
            PrunePolicy(ratios={g.name: level for g in groups}, round_to=4),
            x,
            num_classes=workload.num_classes,
        )
        out[name] = deploy(student, quant, example_input=x, calibration=workload.train, workdir=workdir / name)
    return teacher, {"teacher_fp32": teacher, **out}, workload.input_shape


def _cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values) * 100


def run_condition(
    condition: str, teacher: Artifact, paths: dict[str, Artifact], shape: tuple[int, ...], repeats: int
) -> list[dict[str, object]]:
    burner = None
    if condition == "load":
        burner = subprocess.Popen(
            [sys.executable, "-c", _BURNER, str(repeats * 20 + 120)],
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        time.sleep(1.0)
    rows = []
    try:
        meter = LatencyMeter(get_runtime("onnxruntime"), teacher, shape, threads=1, batch_size=1)
        anchor = meter.calibrate()
        print(f"[{condition}] teacher anchor {anchor}", flush=True)
        teacher_run = onnx_runner(teacher.path, shape, threads=1, batch_size=1)
        for name, path in paths.items():
            run = onnx_runner(path.path, shape, threads=1, batch_size=1)
            old, old_ratio, old_s, new, new_ratio, new_s, flagged, load = [], [], [], [], [], [], 0, []
            for _ in range(repeats):
                t0 = time.perf_counter()
                figure = old_protocol(run)
                old_s.append(time.perf_counter() - t0)
                old.append(figure)
                old_ratio.append(figure / old_protocol(teacher_run))
                t0 = time.perf_counter()
                lat = meter.measure(path)
                new_s.append(time.perf_counter() - t0)
                new.append(lat.median_ms)
                new_ratio.append(lat.ratio or float("nan"))
                flagged += lat.noise != "quiet"
                load.append(lat.load_cores)
            for protocol, figures, ratios, seconds, flags in (
                ("old", old, old_ratio, old_s, None),
                ("new", new, new_ratio, new_s, flagged),
            ):
                row = {
                    "condition": condition,
                    "artifact": name,
                    "protocol": protocol,
                    "repeats": repeats,
                    "mean_ms": round(statistics.mean(figures), 4),
                    "cv_pct": round(_cv(figures), 2),
                    "max_min": round(max(figures) / min(figures), 3),
                    "ratio_mean": round(statistics.mean(ratios), 4),
                    "ratio_cv_pct": round(_cv(ratios), 2),
                    "ratio_max_min": round(max(ratios) / min(ratios), 3),
                    "s_per_figure": round(statistics.mean(seconds), 2),
                    "flagged_pct": "" if flags is None else round(100 * flags / repeats, 1),
                    "other_load_cores": "" if protocol == "old" else round(statistics.mean(load), 2),
                }
                rows.append(row)
                print(row, flush=True)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return rows


def write_report(rows: list[dict[str, object]], path: Path, cpu: str) -> None:
    lines = [
        "# Latency noise: the same artifacts measured again and again",
        "",
        f"CPU: **{cpu}**, 1 thread, batch 1, demo workload (DemoResNet, 32x32 digits). Written by "
        "`benchmarks/latency_noise.py`; `ratio` is the figure over the teacher's (new: measured side by side in one "
        "window; old: two figures one after the other). `flagged` = figures the new protocol marked `noisy` or `busy`.",
        "",
        "| condition | artifact | protocol | repeats | mean ms | CV % | max/min | ratio | ratio CV % | ratio max/min | "
        "s / figure | flagged % | other load (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                str(r[k])
                for k in (
                    "condition",
                    "artifact",
                    "protocol",
                    "repeats",
                    "mean_ms",
                    "cv_pct",
                    "max_min",
                    "ratio_mean",
                    "ratio_cv_pct",
                    "ratio_max_min",
                    "s_per_figure",
                    "flagged_pct",
                    "other_load_cores",
                )
            )
            + " |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--conditions", nargs="+", default=["quiet", "load"], choices=["quiet", "load"])
    parser.add_argument("--out", type=Path, default=HERE / "latency_noise")
    args = parser.parse_args()
    cpu = detect_cpu()
    cpu_text = f"{cpu.model}, {cpu.isa}, {cpu.logical_cores} cores"
    with tempfile.TemporaryDirectory() as tmp:
        teacher, paths, shape = artifacts(Path(tmp))
        rows = []
        for condition in args.conditions:
            rows += run_condition(condition, teacher, paths, shape, args.repeats)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_report(rows, args.out.with_suffix(".md"), cpu_text)
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

"""Benchmark: what does the machine's noise look like run by run, and which block length finds the undisturbed figure?

``benchmarks/latency_noise.py`` measures the protocol as a whole; this script explains its block length. It times
every single run of the teacher's fp32 ONNX and of the two students of ``latency_noise.py`` (uniform 50 % prune +
int8, uniform 65 % prune fp32), interleaved in 2 ms slices for ``--seconds`` seconds, and keeps each run's start time
and duration. It then

1. summarises the trace per second (median and 5th percentile of the runs, share of runs near the fastest), which
   shows whether a slow phase is a steady state or a mixture of undisturbed and disturbed runs, and
2. replays the protocol of :mod:`autocompress.measure.latency` on the trace: 30 windows of ``window`` seconds
   (extended up to ``max_window`` while the teacher's fastest block is more than 5 % above its anchor, as the canary
   does), each figure the median of the fastest block, for blocks of 3 runs, 6 runs and 20 ms; reported: CV and
   max/min of the 30 figures per artifact, seconds per figure.

The trace interleaves four artifacts, the protocol two (candidate and teacher): one second of protocol time is two
seconds of trace.

    python benchmarks/latency_trace.py  # 150 s trace → latency_trace.md (the raw trace: latency_trace.npz, git-ignored)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import latency_noise  # noqa: E402

from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.measure.guard import core_guard  # noqa: E402
from autocompress.measure.latency import artifact_run  # noqa: E402
from autocompress.runtimes import get_runtime  # noqa: E402

SLICE_S = 0.002
BLOCKS: tuple[tuple[str, int | None, float], ...] = (("3 runs", 3, 0.0), ("6 runs", 6, 0.0), ("20 ms", None, 0.02))
WINDOWS = ((1.2, 3.0), (1.5, 3.0))
CANARY = 0.05


def trace(seconds: float) -> dict[str, np.ndarray]:
    """``{artifact: array of (start s, duration ms)}`` for every run, artifacts interleaved in 2 ms slices."""
    runtime = get_runtime("onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        teacher, students, shape = latency_noise.artifacts(Path(tmp))
        runs = {"teacher_fp32": artifact_run(runtime.runner(teacher, threads=1, batch_size=1), shape, 1)}
        runs.update(
            {k: artifact_run(runtime.runner(a, threads=1, batch_size=1), shape, 1) for k, a in students.items()}
        )
        for run in runs.values():
            for _ in range(50):
                run()
        records: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        with core_guard().timing():
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                for name, run in runs.items():
                    slice_end = time.perf_counter() + SLICE_S
                    count = 0
                    while count < 2 or time.perf_counter() < slice_end:
                        t0 = time.perf_counter_ns()
                        run()
                        t1 = time.perf_counter_ns()
                        records[name].append((t0 / 1e9 - start, (t1 - t0) / 1e6))
                        count += 1
    return {k: np.asarray(v) for k, v in records.items()}


def _blocks(runs: np.ndarray, runs_per_block: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(runs) // runs_per_block
    starts = runs[: n * runs_per_block : runs_per_block, 0]
    medians = np.median(runs[: n * runs_per_block, 1].reshape(n, runs_per_block), axis=1)
    return starts, medians


def replay(
    data: dict[str, np.ndarray],
    *,
    runs_per_block: int | None,
    block_s: float,
    window: float,
    max_window: float,
    figures: int = 30,
) -> dict[str, dict[str, float]]:
    """The protocol replayed on the trace (see the module docstring): per artifact CV %, max/min, s per figure."""
    reference = data["teacher_fp32"]

    def per_block(runs: np.ndarray) -> int:
        return runs_per_block or max(3, int(round(block_s * 1e3 / float(np.median(runs[:, 1])))))

    ref_t, ref_b = _blocks(reference, per_block(reference))
    anchor = float(ref_b[ref_t < 20.0].min())  # the study's anchor: a long window at the start
    out = {}
    for name, runs in data.items():
        t, b = _blocks(runs, per_block(runs))
        start, values, seconds = 0.0, [], []
        horizon = float(reference[:, 0].max())
        while start + 2 * max_window < horizon and len(values) < figures:
            end = start + 2 * window
            while (
                float(ref_b[(ref_t >= start) & (ref_t < end)].min()) > anchor * (1 + CANARY)
                and end < start + 2 * max_window
            ):
                end += 0.1
            values.append(float(b[(t >= start) & (t < end)].min()))
            seconds.append((end - start) / 2)
            start = end + 0.5
        x = np.asarray(values)
        out[name] = {
            "figures": len(x),
            "mean_ms": float(x.mean()),
            "cv_pct": float(100 * x.std() / x.mean()),
            "max_min": float(x.max() / x.min()),
            "s_per_figure": float(np.mean(seconds)),
        }
    return out


def per_second(runs: np.ndarray) -> list[tuple[float, float, float]]:
    """Per whole second of the trace: (median ms, p5 ms, share of runs within 10 % of the trace's p1)."""
    fast = float(np.percentile(runs[:, 1], 1)) * 1.10
    seconds = np.floor(runs[:, 0]).astype(int)
    rows = []
    for s in range(int(seconds.max()) + 1):
        v = runs[seconds == s, 1]
        if len(v):
            rows.append((float(np.median(v)), float(np.percentile(v, 5)), float(np.mean(v <= fast))))
    return rows


def write(data: dict[str, np.ndarray], path: Path, seconds: float) -> None:
    cpu = detect_cpu()
    lines = [
        "# Latency trace: the machine's noise run by run, and the protocol's block length",
        "",
        f"Written by `python benchmarks/latency_trace.py --seconds {seconds:g}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"CPU: **{cpu.model}, {cpu.isa}, {cpu.logical_cores} cores**; ONNX Runtime, 1 thread, batch 1; artifacts of "
        "`latency_noise.py` interleaved in 2 ms slices; nothing else of ours running.",
        "",
        "## The trace",
        "",
        "| artifact | runs | p1 ms | median ms | seconds whose median is > 1.3x p1 | "
        "median share of runs within 10 % of p1, per second |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in data.items():
        rows = per_second(runs)
        p1 = float(np.percentile(runs[:, 1], 1))
        slow = sum(m > 1.3 * p1 for m, _, _ in rows)
        lines.append(
            f"| {name} | {len(runs)} | {p1:.3f} | {float(np.median(runs[:, 1])):.3f} | {slow} of {len(rows)} | "
            f"{100 * float(np.median([f for _, _, f in rows])):.0f} % |"
        )
    int8 = per_second(data["prune50_int8"])
    lines += [
        "",
        "prune50_int8, per second of the first 60: median ms / p5 ms",
        "",
        "```",
        " ".join(f"{m:.2f}" for m, _, _ in int8[:60]),
        " ".join(f"{p:.2f}" for _, p, _ in int8[:60]),
        "```",
        "",
        "## The protocol replayed on the trace (30 windows per setting; canary on the teacher, 5 %)",
        "",
        "| block | window s (max) | artifact | figures | mean ms | CV % | max/min | s / figure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, runs_per_block, block_s in BLOCKS:
        for window, max_window in WINDOWS:
            for name, r in replay(
                data, runs_per_block=runs_per_block, block_s=block_s, window=window, max_window=max_window
            ).items():
                lines.append(
                    f"| {label} | {window} ({max_window}) | {name} | {r['figures']} | {r['mean_ms']:.4f} | "
                    f"{r['cv_pct']:.1f} | {r['max_min']:.3f} | {r['s_per_figure']:.2f} |"
                )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--out", type=Path, default=HERE / "latency_trace")
    args = parser.parse_args()
    data = trace(args.seconds)
    np.savez(args.out.with_suffix(".npz"), **data)
    write(data, args.out.with_suffix(".md"), args.seconds)
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

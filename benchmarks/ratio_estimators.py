"""Benchmark: which summary of a side-by-side window gives the steadiest ratio to the teacher, quiet and under load?

The study's protocol (:func:`autocompress.measure.latency.measure_blocks`) times a candidate and the teacher in 3-run
blocks, in 20 ms turns, over one window. Its figure is the fastest block, and its ratio the candidate's fastest block
over the teacher's. Under a steady neighbour load there is no undisturbed state for a fastest block to find, and the
ratio's noise is the teacher's (``latency_noise.md``, run 6). This benchmark takes ``--repeats`` windows per artifact
with the protocol's own code and computes, **from the same windows**, several ratios:

- ``min``: fastest block / fastest block (the protocol's ratio);
- ``q10`` / ``q25`` / ``median``: that quantile of the candidate's block medians over the teacher's;
- ``third``: the third-fastest block of each (the interval's upper end);
- ``paired``: the median over turns of the candidate's fastest block in a turn over the teacher's in the next turn.

Conditions as in ``latency_noise.py``: ``quiet`` and ``load`` (a neighbour process burning the other core with a
matmul loop and strided writes, started and stopped by the benchmark). Reported: CV and max/min of each ratio, and
its mean (a quantile ratio need not equal the fastest-block ratio).

    python benchmarks/ratio_estimators.py                  # 30 windows per artifact and condition → ratio_estimators.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from latency_noise import _BURNER, artifacts  # noqa: E402

from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.measure.latency import Protocol, artifact_run, measure_blocks  # noqa: E402
from autocompress.runtimes import get_runtime  # noqa: E402

ESTIMATORS = ("min", "q10", "q25", "median", "third", "paired")


def _turns(blocks: list[float], per_turn: list[int]) -> list[float]:
    out, start = [], 0
    for count in per_turn:
        out.append(min(blocks[start : start + count]))
        start += count
    return out


def ratios(
    candidate: list[float], reference: list[float], cand_turns: list[float], ref_turns: list[float]
) -> dict[str, float]:
    c, r = np.asarray(candidate), np.asarray(reference)
    third = lambda v: sorted(v)[min(2, len(v) - 1)]  # noqa: E731
    pairs = [a / b for a, b in zip(cand_turns, ref_turns)]
    return {
        "min": float(c.min() / r.min()),
        "q10": float(np.quantile(c, 0.1) / np.quantile(r, 0.1)),
        "q25": float(np.quantile(c, 0.25) / np.quantile(r, 0.25)),
        "median": float(np.median(c) / np.median(r)),
        "third": third(list(c)) / third(list(r)),
        "paired": float(statistics.median(pairs)) if pairs else float("nan"),
    }


class TurnCounter:
    """Wraps a run so that the blocks of each turn can be told apart afterwards (a turn = consecutive calls)."""

    def __init__(self, run, log: list[str], name: str) -> None:  # type: ignore[no-untyped-def]
        self.run, self.log, self.name = run, log, name

    def __call__(self) -> object:
        self.log.append(self.name)
        return self.run()


def per_turn_blocks(log: list[str], name: str, protocol: Protocol) -> list[int]:
    """Timed blocks per turn of ``name`` from the call log (each turn: ``rewarm_runs`` untimed calls, then blocks)."""
    counts, streak, previous = [], 0, None
    for who in log + [None]:  # type: ignore[list-item]
        if who != previous and previous == name:
            counts.append((streak - protocol.rewarm_runs) // protocol.block_runs)
        streak = streak + 1 if who == previous else 1
        previous = who
    return counts


def run_condition(condition: str, repeats: int) -> list[dict[str, object]]:
    runtime = get_runtime("onnxruntime")
    protocol = Protocol()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        teacher, paths, shape = artifacts(Path(tmp))
        burner = None
        if condition == "load":
            burner = subprocess.Popen(
                [sys.executable, "-c", _BURNER, str(repeats * 10 + 120)],
                env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
            )
            time.sleep(1.0)
        try:
            ref_runner = runtime.runner(teacher, threads=1, batch_size=1)
            with ref_runner.session():
                ref_run = artifact_run(ref_runner, shape, 1)
                for name, artifact in paths.items():
                    if name == "teacher_fp32":
                        continue
                    runner = runtime.runner(artifact, threads=1, batch_size=1)
                    with runner.session():
                        run = artifact_run(runner, shape, 1)
                        values: dict[str, list[float]] = {e: [] for e in ESTIMATORS}
                        for _ in range(repeats):
                            log: list[str] = []
                            cand, ref = measure_blocks(
                                [TurnCounter(run, log, "c"), TurnCounter(ref_run, log, "r")],
                                protocol=protocol,
                                threads=1,
                                batch_size=1,
                            )
                            window = _window_log(log)
                            cand_turns = _turns(list(cand.block_medians), per_turn_blocks(window, "c", protocol))
                            ref_turns = _turns(list(ref.block_medians), per_turn_blocks(window, "r", protocol))
                            for key, value in ratios(
                                list(cand.block_medians), list(ref.block_medians), cand_turns, ref_turns
                            ).items():
                                values[key].append(value)
                        for key in ESTIMATORS:
                            v = values[key]
                            rows.append(
                                {
                                    "condition": condition,
                                    "artifact": name,
                                    "estimator": key,
                                    "repeats": repeats,
                                    "mean": round(float(statistics.mean(v)), 4),
                                    "cv_pct": round(float(statistics.pstdev(v) / statistics.mean(v) * 100), 2),
                                    "max_min": round(float(max(v) / min(v)), 3),
                                }
                            )
                            print(rows[-1], flush=True)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    return rows


def _window_log(log: list[str]) -> list[str]:
    """The calls of the window: the warm-up runs all of the candidate's calls, then all of the teacher's; the window
    starts at the next candidate call."""
    start = 0
    while start < len(log) and log[start] == "c":
        start += 1
    while start < len(log) and log[start] == "r":
        start += 1
    return log[start:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--conditions", nargs="+", default=["quiet", "load"], choices=["quiet", "load"])
    parser.add_argument("--output", type=Path, default=HERE / "ratio_estimators.md")
    args = parser.parse_args()
    cpu = detect_cpu()
    rows = []
    for condition in args.conditions:
        rows += run_condition(condition, args.repeats)
    lines = [
        "# Which ratio to the teacher holds still? Estimators from the same side-by-side windows",
        "",
        f"CPU: **{cpu.model}, {cpu.isa}, {cpu.logical_cores} cores**; 1 thread, batch 1; demo students vs the "
        f"demo teacher's fp32 ONNX; {args.repeats} windows per artifact and condition, the study's protocol "
        "(3-run blocks in 20 ms turns, 1.2 s). Written by `benchmarks/ratio_estimators.py`.",
        "",
        "| condition | artifact | estimator | mean ratio | CV % | max/min |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['condition']} | {r['artifact']} | {r['estimator']} | {r['mean']} | {r['cv_pct']} | {r['max_min']} |"
        for r in rows
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

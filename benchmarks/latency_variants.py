"""Benchmark: the latency protocol's block layout, variants measured side by side in rotation.

The artifacts of ``benchmarks/latency_noise.py`` (teacher fp32, 50 % prune + int8, 65 % prune fp32), each measured
``--repeats`` times by every variant of :class:`autocompress.measure.latency.Protocol` below, in rotation (variant A,
B, C, ... for one artifact, then the next artifact, then again), so that every variant sees the same minutes of the
machine. Each variant has its own :class:`LatencyMeter` on the teacher (its own anchor), as a study would. Reported:
CV and max/min of the figure and CV of the side-by-side ratio to the teacher, seconds per figure, figures flagged not
quiet.

    python benchmarks/latency_variants.py --repeats 10     # → latency_variants.md
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
from autocompress.measure.latency import LatencyMeter, Protocol  # noqa: E402
from autocompress.runtimes import get_runtime  # noqa: E402

VARIANTS = {
    "20 ms blocks, alternating every block (before 6f60701)": Protocol(block_s=0.02, switch_s=0.0, rewarm_runs=0),
    "3-run blocks, alternating every block (6f60701)": Protocol(switch_s=0.0, rewarm_runs=0),
    "3-run blocks, 1 re-warm run per turn, alternating every block": Protocol(switch_s=0.0, rewarm_runs=1),
    "3-run blocks in 20 ms turns, no re-warm run": Protocol(rewarm_runs=0),
    "3-run blocks in 20 ms turns, 1 re-warm run (default)": Protocol(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    runtime = get_runtime("onnxruntime")
    cpu = detect_cpu()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        teacher, students, shape = latency_noise.artifacts(Path(tmp))
        meters = {
            k: LatencyMeter(runtime, teacher, shape, threads=1, batch_size=1, protocol=p) for k, p in VARIANTS.items()
        }
        for meter in meters.values():
            meter.calibrate()
        figures: dict[tuple[str, str], list] = {(a, v): [] for a in students for v in VARIANTS}
        for _ in range(args.repeats):
            for name, artifact in students.items():
                for variant, meter in meters.items():
                    figures[(name, variant)].append(meter.measure(artifact))
    lines = [
        "# Latency protocol: block layouts side by side",
        "",
        f"Written by `python benchmarks/latency_variants.py --repeats {args.repeats}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.perf_counter() - started:.0f} s). CPU: "
        f"**{cpu.model}, {cpu.isa}, {cpu.logical_cores} cores**; ONNX Runtime, 1 thread, batch 1; window 1.2 s "
        "(up to 3 s while the teacher canary is slow); variants in rotation, nothing else of ours running.",
        "",
        "| artifact | variant | mean ms | CV % | max/min | ratio CV % | s / figure | not quiet |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, variant), lats in figures.items():
        x = np.array([lat.median_ms for lat in lats])
        q = np.array([lat.ratio for lat in lats])
        lines.append(
            f"| {name} | {variant} | {x.mean():.4f} | {100 * x.std() / x.mean():.2f} | {x.max() / x.min():.3f} | "
            f"{100 * q.std() / q.mean():.2f} | {np.mean([lat.seconds for lat in lats]):.2f} | "
            f"{sum(lat.noise != 'quiet' for lat in lats)}/{len(lats)} |"
        )
    (HERE / "latency_variants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Benchmark: accuracy scoring with every core vs one thread — same predictions, less wall time.

Latency keeps ``--threads`` (the deployment's setting); accuracy is scored with
:func:`autocompress.measure.accuracy.scoring_threads` threads (every core of this process, shared among ``--workers``).
For each runtime and precision, on real held-out images, this script scores the same artifact with 1 thread and with
``scoring_threads()`` threads, interleaved ``--rounds`` times (a noisy burst hits both), checks that every prediction
is the same, and reports the wall-time ratio per round (several = 1 thread's time / several threads' time).

Workloads: the demo teacher on the 359 val digits (32 px, 1 channel), and torchvision resnet18 (weights as
initialised: scoring time does not depend on their values) on the same digits resized to ``--size`` px, 3 channels.

    python benchmarks/scoring_threads.py                     # → scoring_threads.md
    python benchmarks/scoring_threads.py --size 112 --rounds 5

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.measure.accuracy import scoring_threads  # noqa: E402
from autocompress.policy import QuantPolicy  # noqa: E402
from autocompress.runtimes import get_runtime, list_runtimes  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """Digits (N, 1, 32, 32) as (N, 3, size, size), the way a user's 3-channel folder would arrive."""
    up = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return up.repeat(1, 3, 1, 1)


def _score(runtime_name: str, artifact: object, images: np.ndarray, *, threads: int) -> tuple[np.ndarray, float]:
    runner = get_runtime(runtime_name).runner(artifact, threads=threads)  # type: ignore[arg-type]
    with runner.session():
        runner.run(images[:8])  # warm-up: first-run allocations are not scoring
        started = time.perf_counter()
        logits = np.concatenate([runner.run(images[i : i + 64]) for i in range(0, len(images), 64)])
    return logits.argmax(1), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="resnet18 input size in px (default 96)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved 1-thread / several-thread rounds")
    parser.add_argument("--output", type=Path, default=HERE / "scoring_threads.md")
    args = parser.parse_args()

    demo = load_workload(SearchConfig())
    val = torch.stack([demo.val[i][0] for i in range(len(demo.val))])
    import torchvision

    workloads = {
        "demo teacher, 32 px": (demo.model.eval(), val),
        f"resnet18, {args.size} px": (torchvision.models.resnet18(num_classes=10).eval(), _resized(val, args.size)),
    }
    cpu, several = detect_cpu(), scoring_threads()
    rows = []
    for label, (model, images) in workloads.items():
        example = images[:1]
        for name in list_runtimes():
            runtime = get_runtime(name)
            for mode in [m for m in ("none", "int8") if m in runtime.modes(cpu)]:
                with tempfile.TemporaryDirectory() as tmp:
                    calibration = torch.utils.data.TensorDataset(images[:64], torch.zeros(64, dtype=torch.long))
                    artifact = runtime.build(
                        model, QuantPolicy(mode=mode), example_input=example, calibration=calibration, workdir=Path(tmp)
                    )
                    ratios, same = [], True
                    for _ in range(args.rounds):
                        one, t1 = _score(name, artifact, images.numpy(), threads=1)
                        many, tn = _score(name, artifact, images.numpy(), threads=several)
                        same = same and bool((one == many).all())
                        ratios.append(t1 / tn)
                    rows.append((label, name, "fp32" if mode == "none" else mode, len(images), t1, tn, ratios, same))
                    print(rows[-1][:6], f"{statistics.median(ratios):.2f}x", "same" if same else "DIFFER", flush=True)
    lines = [
        "# Accuracy scoring: every core vs one thread",
        "",
        f"Written by `python benchmarks/scoring_threads.py --size {args.size} --rounds {args.rounds}`. CPU: "
        f"{cpu.model}, int8 ISA {cpu.isa}, {several} scoring threads (this process's cores). Real images: the "
        "359 val digits (resnet18: resized, 3 channels). Ratio = 1-thread wall time / several-thread wall time, per "
        "round, interleaved; `same` = every top-1 prediction identical in every round.",
        "",
        "| workload | runtime | precision | images | last 1-thread s | last several s | ratio median [min, max] "
        "| same |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, name, mode, n, t1, tn, ratios, same in rows:
        lines.append(
            f"| {label} | {name} | {mode} | {n} | {t1:.3f} | {tn:.3f} | {statistics.median(ratios):.2f}x "
            f"[{min(ratios):.2f}, {max(ratios):.2f}] | {'yes' if same else '**no**'} |"
        )
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

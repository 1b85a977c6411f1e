"""Benchmark: does a feasible model exist in the near-miss scenario? A uniform sweep, prune level x longer KD.

The near-miss scenario of ``benchmarks/search_quality.py`` (``benchmarks/near_miss.yaml``: the default space with KD
cut to 3-4 epochs) claims that short fine-tuning leaves pruned students within the budget just over the accuracy limit,
and that fine-tuning them longer makes them feasible. This sweep checks that claim without any search: uniform prune
levels 50-80 % in steps of 5, each distilled with the scenario's longest KD (4 epochs) and with 3x that (what a
promoted near miss gets), with the scenario's middle KD settings (T=4, alpha=0.7, lr=1e-3), deployed in fp32 and in
int8 (the CPU's kernel, per-channel, minmax), timed side by side with the teacher (the search's protocol) and scored
on val. Feasible: latency <= 0.25x the teacher (the scenario's budget, on the side-by-side ratio) and val drop <= 1 pt.

The acceptance reads both together: whenever this sweep shows a feasible model, the default search in the near-miss
scenario ends feasible within 20 trials (``search_quality.md``, first feasible trial).

    python benchmarks/near_miss_sweep.py         # → near_miss_sweep.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.compress.distill import distill  # noqa: E402
from autocompress.compress.prune import prunable_groups, prune_model  # noqa: E402
from autocompress.compress.training import predict_logits  # noqa: E402
from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.measure.accuracy import evaluate  # noqa: E402
from autocompress.measure.latency import LatencyMeter  # noqa: E402
from autocompress.policy import DistillPolicy, PrunePolicy, QuantPolicy  # noqa: E402
from autocompress.runtimes import get_runtime  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402
from autocompress.study.phases import NEAR_MISS_STEPS_SCALE as PROMOTION  # noqa: E402
from autocompress.study.space import load_space  # noqa: E402

LEVELS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
BUDGET_RATIO = 0.25  # the near-miss scenario's --latency-budget 0.25x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=HERE / "near_miss_sweep.md", help="the report to write")
    args = parser.parse_args()
    cpu = detect_cpu()
    config = SearchConfig()
    workload = load_workload(config)
    space = load_space(str(HERE / "near_miss.yaml"))
    assert space.epochs is not None
    short = int(round(space.epochs.high * len(workload.train) / space.batch_size))  # type: ignore[arg-type]
    runtime = get_runtime("onnxruntime")
    kernel = runtime.int8_kernel(cpu)
    x = workload.example_input()
    groups = prunable_groups(workload.model, x, num_classes=workload.num_classes)
    logits = predict_logits(workload.model, workload.train)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        teacher = runtime.build(
            workload.model, QuantPolicy(), example_input=x, calibration=workload.train, workdir=Path(tmp) / "teacher"
        )
        teacher_acc = evaluate(runtime.runner(teacher, threads=1), workload.val).top1
        meter = LatencyMeter(runtime, teacher, workload.input_shape, threads=1, batch_size=1, protocol=config.protocol)
        meter.calibrate()
        for level in LEVELS:
            for steps in (short, PROMOTION * short):
                student = prune_model(
                    workload.model,
                    PrunePolicy(ratios={g.name: level for g in groups}, round_to=4),
                    x,
                    num_classes=workload.num_classes,
                )
                distill(
                    student,
                    logits,
                    workload.train,
                    DistillPolicy(steps=steps, temperature=4.0, alpha=0.7, lr=1e-3),
                    seed=0,
                )
                for name, quant in (
                    ("fp32", QuantPolicy()),
                    (
                        "int8",
                        QuantPolicy(
                            mode="int8",
                            granularity="per_channel",
                            activation_type=kernel.activation_type,
                            reduce_range=kernel.reduce_range,
                        ),
                    ),
                ):
                    artifact = runtime.build(
                        student,
                        quant,
                        example_input=x,
                        calibration=workload.train,
                        workdir=Path(tmp) / f"{level}_{steps}_{name}",
                    )
                    latency = meter.measure(artifact)
                    accuracy = evaluate(runtime.runner(artifact, threads=1), workload.val).top1
                    drop = (teacher_acc - accuracy) * 100
                    ratio = latency.ratio or float("nan")
                    feasible = ratio <= BUDGET_RATIO and drop <= config.max_accuracy_drop
                    rows.append((level, steps, name, latency, ratio, drop, feasible))
                    print(
                        f"{level:.0%} {steps} steps {name}: {latency} ({ratio:.3f}x teacher) drop {drop:.2f} pt"
                        f"{' FEASIBLE' if feasible else ''}",
                        flush=True,
                    )
    wall = time.perf_counter() - started
    feasible = [r for r in rows if r[6]]
    at_short = [r for r in feasible if r[1] == short]
    out = [
        "# Near-miss scenario: does a feasible model exist? (uniform sweep, prune level x longer KD)",
        "",
        f"CPU: **{cpu.model}, {cpu.isa}, {cpu.logical_cores} cores**; 1 thread, batch 1; demo workload; written by "
        f"`benchmarks/near_miss_sweep.py` in {wall:.0f} s. KD {short} steps (the scenario's longest: "
        f"{space.epochs.high:g} epochs of {len(workload.train)} images, batch {space.batch_size}) and "
        f"{PROMOTION * short} (a promoted near miss), T=4, alpha=0.7, lr=1e-3. Feasible: <= {BUDGET_RATIO}x the "
        f"teacher side by side and val drop <= {config.max_accuracy_drop:g} pt (teacher val {teacher_acc:.2%}).",
        "",
        f"- **feasible models: {len(feasible)} of {len(rows)}**, of which {len(at_short)} at the scenario's own "
        f"longest KD ({short} steps) and {len(feasible) - len(at_short)} only with {PROMOTION}x the steps",
        "",
        "| level | KD steps | precision | latency ms [interval] | x teacher | noise | val drop pt | feasible |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, steps, name, lat, ratio, drop, ok in rows:
        out.append(
            f"| {level:.0%} | {steps} | {name} | {lat.median_ms:.3f} [{lat.low:.3f}, {lat.high:.3f}] | "
            f"{ratio:.3f} | {lat.noise} | {drop:.2f} | {'yes' if ok else 'no'} |"
        )
    args.output.write_text("\n".join(out) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

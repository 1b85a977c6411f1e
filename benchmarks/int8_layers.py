"""Benchmark: on which layers does int8 pay, on this CPU? One layer left in fp32 at a time.

Per-layer int8 (``quantize.per_layer: true``) can only beat all-or-nothing int8 if leaving some layer in fp32 makes a
model faster (int8's quantize/dequantize steps cost more than the layer's int8 kernel saves) or keeps accuracy that
int8 loses there. This measures both directly, without a search: for the demo teacher (unpruned) and for a uniform
prune of it (``--prune``, no fine-tuning: its latency is what matters, its accuracy is not scored), it builds the
all-fp32 artifact, the all-int8 artifact (the CPU's own kernel, per-channel, minmax: the space's preferred settings)
and, for every prunable group, the all-int8 artifact with that group's root layer left in fp32 (ONNX Runtime
``nodes_to_exclude``, OpenVINO NNCF ``ignored_scope``, the same mapping a trial uses). Each artifact is timed side by
side with the runtime's fp32 teacher (the study's :class:`~autocompress.measure.latency.LatencyMeter`); the teacher's
variants are also scored on val.

``vs all-int8`` > 1 means that layer in fp32 is slower than all-int8 (int8 pays on it); < 1 means int8 costs time
there. Intervals overlap for most single layers: read the column together with the intervals.

    python benchmarks/int8_layers.py                               # ONNX Runtime → int8_layers.md
    python benchmarks/int8_layers.py --runtimes onnxruntime openvino --prune 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.compress.prune import prunable_groups, prune_model  # noqa: E402
from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.measure.accuracy import evaluate_artifact  # noqa: E402
from autocompress.measure.latency import LatencyMeter  # noqa: E402
from autocompress.policy import PrunePolicy, QuantPolicy  # noqa: E402
from autocompress.runtimes import get_runtime, list_runtimes  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime"])
    parser.add_argument("--prune", type=float, default=0.5, help="uniform prune level of the second model [0.5]")
    parser.add_argument("--output", type=Path, default=HERE / "int8_layers.md")
    args = parser.parse_args()
    cpu = detect_cpu()
    workload = load_workload(SearchConfig())
    x = workload.example_input()
    groups = prunable_groups(workload.model, x, num_classes=workload.num_classes)
    pruned = prune_model(
        workload.model,
        PrunePolicy(ratios={g.name: args.prune for g in groups}, round_to=4),
        x,
        num_classes=workload.num_classes,
    )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# On which layers does int8 pay? One layer left in fp32 at a time",
        "",
        f"CPU: **{cpu.model}, {cpu.isa}** (flags {', '.join(sorted(cpu.flags))}), {cpu.logical_cores} cores; 1 "
        f"thread, batch 1; demo teacher (DemoResNet, 32x32 digits) and its uniform {args.prune:.0%} prune (not "
        f"fine-tuned: latency only). Written by `benchmarks/int8_layers.py`, {started}. Each artifact timed side "
        "by side with the runtime's fp32 teacher (the study's protocol); `vs all-int8` = its figure over the "
        "all-int8 artifact's (> 1: int8 pays on that layer). Val accuracy for the teacher's variants (359 images).",
        "",
    ]
    for name in args.runtimes:
        if name not in list_runtimes():
            print(f"skipping {name}: not installed", flush=True)
            continue
        runtime = get_runtime(name)
        kernel = runtime.int8_kernel(cpu)
        int8 = QuantPolicy(
            mode="int8",
            granularity="per_channel",
            calibration="minmax",
            activation_type=kernel.activation_type,
            reduce_range=kernel.reduce_range,
        )
        lines += [
            f"## {name} {runtime.version()} (int8 kernel {kernel.name})",
            "",
            "| model | plan | ms [interval] | noise | vs all-int8 | val top-1 |",
            "|---|---|---|---|---|---|",
        ]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            teacher = runtime.build(
                workload.model,
                QuantPolicy(mode="none"),
                example_input=x,
                calibration=workload.train,
                workdir=work / "teacher",
            )
            meter = LatencyMeter(runtime, teacher, workload.input_shape, threads=1, batch_size=1)
            meter.calibrate()
            for label, model, scored in (("teacher", workload.model, True), (f"prune {args.prune:.0%}", pruned, False)):
                plans = [("fp32", QuantPolicy(mode="none")), ("all int8", int8)]
                plans += [(f"int8, {g.name} fp32", dataclasses.replace(int8, fp32_layers=(g.name,))) for g in groups]
                base = None
                for i, (plan, quant) in enumerate(plans):
                    artifact = runtime.build(
                        model, quant, example_input=x, calibration=workload.train, workdir=work / f"{label}-{i}"
                    )
                    latency = meter.measure(artifact)
                    if plan == "all int8":
                        base = latency.median_ms
                    ratio = f"{latency.median_ms / base:.3f}" if base and plan != "fp32" and plan != "all int8" else "—"
                    top1 = ""
                    if scored:
                        top1 = f"{evaluate_artifact(runtime, artifact, workload.val, threads=1).top1:.2%}"
                    row = (
                        f"| {label} | {plan} | {latency.median_ms:.4f} [{latency.low:.4f}, {latency.high:.4f}] | "
                        f"{latency.noise} | {ratio} | {top1} |"
                    )
                    lines.append(row)
                    print(row, flush=True)
        lines.append("")
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

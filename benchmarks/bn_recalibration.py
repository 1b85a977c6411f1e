"""Benchmark: what re-estimating the BatchNorm statistics after distillation is worth on the demo workload.

For each uniform prune ratio and KD length, one student is pruned from the demo teacher and distilled once
(``recalibrate_bn=False``); its val accuracy is read as it is (the statistics the teacher left, moved only by the KD
steps) and again on a copy whose statistics :func:`recalibrate_batchnorm` re-estimated as :func:`distill` does by
default (``min(len(train), BN_IMAGES)`` images in batches of the KD batch size, the KD seed), side by side in one
process, with the seconds each part took. A row with 0 KD steps shows what the re-estimation alone does to a pruned
student (``distill`` itself does not re-estimate without a step).

    python benchmarks/bn_recalibration.py                            # → bn_recalibration.md
    python benchmarks/bn_recalibration.py --output /tmp/bn.md        # another CPU's run, kept apart
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from autocompress.compress import distill, prunable_groups, prune_model, recalibrate_batchnorm  # noqa: E402
from autocompress.compress.batchnorm import BN_IMAGES  # noqa: E402
from autocompress.compress.training import predict_logits  # noqa: E402
from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import CpuInfo, detect_cpu  # noqa: E402
from autocompress.measure import evaluate_torch  # noqa: E402
from autocompress.policy import DistillPolicy, PrunePolicy  # noqa: E402
from autocompress.sources.workload import Workload, load_workload  # noqa: E402

RATIOS = (0.3, 0.5, 0.7)
STEPS = (0, 20, 100)


def _lscpu() -> str:
    """lscpu's model name, family and model (the name alone says only "AMD EPYC" in some VMs)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu not available"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    keys = ("Model name", "CPU family", "Model", "CPU(s)")
    return ", ".join(f"{key} {fields[key].strip()}" for key in keys if key in fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=HERE / "bn_recalibration.md", help="the report to write")
    parser.add_argument("--seed", type=int, default=0, help="KD shuffling and re-estimation seed")
    args = parser.parse_args()
    cpu = detect_cpu()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    workload = load_workload(SearchConfig())
    teacher_acc = evaluate_torch(workload.model, workload.val).top1
    x = workload.example_input()
    groups = prunable_groups(workload.model, x, num_classes=workload.num_classes)
    logits = predict_logits(workload.model, workload.train)
    images = min(len(workload.train), BN_IMAGES)  # type: ignore[arg-type]
    rows: list[Row] = []
    for ratio in RATIOS:
        for steps in STEPS:
            policy = DistillPolicy(steps=steps)
            student = prune_model(
                workload.model, PrunePolicy(ratios={g.name: ratio for g in groups}, round_to=4), x, num_classes=10
            )
            cpu_t = time.process_time()
            kd = distill(student, logits, workload.train, policy, seed=args.seed, recalibrate_bn=False)
            kd_cpu = time.process_time() - cpu_t
            stale = evaluate_torch(student, workload.val).top1
            fresh = copy.deepcopy(student)
            t, cpu_t = time.perf_counter(), time.process_time()
            used = recalibrate_batchnorm(
                fresh, workload.train, images=images, batch_size=policy.batch_size, seed=args.seed
            )
            bn_s, bn_cpu = time.perf_counter() - t, time.process_time() - cpu_t
            recalibrated = evaluate_torch(fresh, workload.val).top1
            rows.append((ratio, steps, kd.seconds, kd_cpu, stale, recalibrated, used, bn_s, bn_cpu))
            print(
                f"{ratio:.0%} {steps:3d} steps ({kd.seconds:5.1f} s, CPU {kd_cpu:5.1f} s): val {stale:.2%} → "
                f"{recalibrated:.2%} re-estimated on {used} images in {bn_s:.2f} s (CPU {bn_cpu:.2f} s)",
                flush=True,
            )
    total_s, load = time.perf_counter() - started, (load_before, os.getloadavg()[0])
    _write(
        args.output,
        rows,
        cpu=cpu,
        teacher_acc=teacher_acc,
        workload=workload,
        seed=args.seed,
        total_s=total_s,
        load=load,
    )


Row = tuple[float, int, float, float, float, float, int, float, float]
"""(prune ratio, KD steps, KD wall s, KD CPU s, val stale, val re-estimated, BN images, BN wall s, BN CPU s)"""


def _write(
    path: Path,
    rows: list[Row],
    *,
    cpu: CpuInfo,
    teacher_acc: float,
    workload: Workload,
    seed: int,
    total_s: float,
    load: tuple[float, float],
) -> None:
    out = [
        "# BatchNorm statistics re-estimation after distillation (demo workload)",
        "",
        f"CPU: **{cpu.model}, {cpu.isa}, {cpu.logical_cores} cores** (lscpu: {_lscpu()}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, no GPU; written by "
        "`benchmarks/bn_recalibration.py`.",
        "",
        f"Demo teacher (DemoResNet on digits 32x32, {len(workload.train)} train / {len(workload.val)} val images): "
        f"val {teacher_acc:.2%}. Each row: one student pruned uniformly (round_to 4), distilled once "
        f"(`DistillPolicy(steps=N)`: T 4, alpha 0.7, lr 1e-3, batch 64, seed {seed}) without re-estimation; val "
        "accuracy as it is and after `recalibrate_batchnorm` (the images and batches `distill()` now uses by "
        "default) on a copy of the same weights. 0 steps: the pruned student without fine-tuning (`distill()` "
        "does not re-estimate there; the row shows the re-estimation alone). One run, one seed; one val image "
        f"is {100 / len(workload.val):.2f} pt.",
        "",
        "Seconds: wall time, and in brackets this process's CPU time (both threads). The machine is shared: "
        f"1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end on these "
        f"{cpu.logical_cores} cores; under others' load both figures grow (waiting threads spin), so the seconds "
        "are upper bounds and the ratio of BN to KD seconds within a row is the figure to read.",
        "",
        "| pruned | KD steps | KD s | val, stale BN | val, re-estimated BN | change (pt) | BN images | BN s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ratio, steps, kd_s, kd_cpu, stale, fresh, used, bn_s, bn_cpu in rows:
        out.append(
            f"| {ratio:.0%} | {steps} | {kd_s:.1f} ({kd_cpu:.1f}) | {stale:.2%} | {fresh:.2%} | "
            f"{100 * (fresh - stale):+.2f} | {used} | {bn_s:.2f} ({bn_cpu:.2f}) |"
        )
    out += ["", f"Whole run: {total_s:.0f} s (loading the cached teacher, teacher logits, all rows).", ""]
    path.write_text("\n".join(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

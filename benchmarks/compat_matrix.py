"""Compatibility matrix: does structural pruning + int8 deployment work on each torchvision classifier?

For every architecture: build it untrained (``weights=None``, 10 classes, eval), prune 30 % of every prunable group
(``round_to=8`` where the channels allow), export to ONNX and quantize to static int8 QDQ with per-channel weight
scales (calibrated on 16 random images), run it once with ONNX Runtime and check the output shape, then time the
unpruned fp32 ONNX model against the pruned int8 one (1 thread, batch 1). A failure is recorded with its stage and
error line; it never stops the run.

Usage::

    python benchmarks/compat_matrix.py [--input-size 64] [--arch NAME ...] [--out benchmarks/compat_matrix.md]

The CSV goes next to the markdown file (same name, ``.csv``). ``tests/test_compat.py`` imports
:func:`check_architecture` from this file, so the test and the table measure the same thing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch.utils.data import TensorDataset

from autocompress.compress.prune import count_macs_params, prunable_groups, prune_model
from autocompress.measure.latency import Latency, Protocol, measure_onnx
from autocompress.policy import PrunePolicy, QuantPolicy
from autocompress.runtimes import get_runtime, ort_session

deploy = get_runtime("onnxruntime").build  # the ONNX Runtime artifact of a model and a precision plan

__all__ = ["ARCHITECTURES", "ArchSpec", "CompatResult", "build", "check_architecture", "main"]

NUM_CLASSES = 10


@dataclass(frozen=True)
class ArchSpec:
    """How to build one architecture for the matrix.

    Attributes:
        kwargs: constructor keyword arguments beyond ``weights=None, num_classes=10``.
        input_size: a fixed input size for architectures that cannot be exported at the requested one.
        note: why the architecture is special, shown under the table.
    """

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    note: str = ""


ARCHITECTURES: dict[str, ArchSpec] = {
    "resnet18": ArchSpec(),
    "resnet50": ArchSpec(),
    "mobilenet_v2": ArchSpec(),
    "mobilenet_v3_small": ArchSpec(),
    "mobilenet_v3_large": ArchSpec(),
    "efficientnet_b0": ArchSpec(),
    "shufflenet_v2_x1_0": ArchSpec(
        note="torch-pruning cannot trace the channel shuffle; prune.py swaps it for a barrier while tracing, so only "
        "the stem, the branch interiors and conv5 are pruned (the shuffled block outputs keep their width)"
    ),
    "squeezenet1_1": ArchSpec(),
    "densenet121": ArchSpec(),
    "mnasnet1_0": ArchSpec(),
    "convnext_tiny": ArchSpec(note="ConvNeXt's `layer_scale` parameters are registered with torch-pruning explicitly"),
    "vgg11_bn": ArchSpec(
        input_size=224,
        note="run at 224×224: the TorchScript ONNX exporter refuses VGG's `AdaptiveAvgPool2d(7)` unless the feature "
        "map is a multiple of 7×7 (at 64×64 it is 2×2 and export fails)",
    ),
    "googlenet": ArchSpec(kwargs={"aux_logits": False, "init_weights": False}),
    "resnext50_32x4d": ArchSpec(
        note="grouped convs: all 32 conv groups keep the same width; `round_to` applies to that width where it fits "
        "(4 → 2, 8 → 5, 16 → 8 per group)"
    ),
    "regnet_x_400mf": ArchSpec(
        note="grouped convs of width 16 keep 8 per group with `round_to=8`: 11 per group (the exact 30 %) measured "
        "slower than the unpruned model"
    ),
    "wide_resnet50_2": ArchSpec(),
    "vit_b_16": ArchSpec(
        note="built with `image_size` = input size; `class_token` and `pos_embedding` are registered with "
        "torch-pruning, the hidden size is pruned in steps of lcm(12 heads, `round_to`) = 24 and `hidden_dim` follows"
    ),
}


@dataclass
class CompatResult:
    """One row of the matrix. Latencies are medians in ms; ``None`` where the run stopped earlier."""

    arch: str
    input_size: int
    works: bool = False
    stage: str = "build"  # the last stage reached: build, prune, export, quantize, run, measure, done
    error: str = ""
    groups: int = 0
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    output_shape: tuple[int, ...] = ()
    fp32_ms: float | None = None
    fp32_iqr_ms: float | None = None
    pruned_fp32_ms: float | None = None
    pruned_fp32_iqr_ms: float | None = None
    pruned_int8_ms: float | None = None
    pruned_int8_iqr_ms: float | None = None
    seconds: float = 0.0

    @property
    def speedup(self) -> float | None:
        """Unpruned fp32 latency over pruned int8 latency (> 1 means the compressed model is faster)."""
        if self.fp32_ms is None or not self.pruned_int8_ms:
            return None
        return self.fp32_ms / self.pruned_int8_ms


def build(arch: str, *, input_size: int) -> torch.nn.Module:
    """The untrained torchvision model ``arch`` with 10 classes, in eval mode."""
    kwargs = dict(ARCHITECTURES[arch].kwargs)
    if arch.startswith("vit_"):
        kwargs["image_size"] = input_size  # ViT's position embedding is sized for one input resolution
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None, num_classes=NUM_CLASSES, **kwargs).eval()


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Silence stdout and stderr at the file-descriptor level for the block.

    A failing TorchScript export prints the whole graph (thousands of lines) from C++, which Python's
    ``contextlib.redirect_stdout`` cannot catch; the matrix keeps the exception's one line instead.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _error_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= 300 else text[:297] + "..."


def check_architecture(
    arch: str,
    *,
    input_size: int = 64,
    ratio: float = 0.3,
    round_to: int | None = 8,
    workdir: Path,
    warmup: int = 5,
    repeats: int = 30,
    rounds: int = 2,
    window_s: float = 0.3,
) -> CompatResult:
    """Prune, quantize, run and time one architecture; every failure is caught and recorded in the result.

    Args:
        arch: a key of :data:`ARCHITECTURES`.
        input_size: height and width of the square RGB input (an architecture's own ``input_size`` wins).
        ratio: the prune ratio given to every prunable group.
        round_to: kept channel counts are rounded to a multiple of this where the channels allow.
        workdir: folder for the ONNX files (three subfolders are created).
        warmup: untimed runs before each latency measurement.
        repeats: timed runs of each latency measurement.
        rounds: the three models are timed in turn this many times and each keeps its lowest figure, so a burst
            of load from other processes on a shared host does not land on one model only.
        window_s: seconds of timed blocks per figure (the protocol of :mod:`autocompress.measure.latency`).
    """
    input_size = ARCHITECTURES[arch].input_size or input_size
    result = CompatResult(arch=arch, input_size=input_size)
    start = time.perf_counter()
    shape = (3, input_size, input_size)
    try:
        torch.manual_seed(0)
        x = torch.randn(1, *shape)
        images = torch.rand(16, *shape)
        calibration = TensorDataset(images, torch.randint(0, NUM_CLASSES, (16,)))
        model = build(arch, input_size=input_size)
        result.macs_before, result.params_before = count_macs_params(model, x)

        result.stage = "prune"
        groups = prunable_groups(model, x, num_classes=NUM_CLASSES)
        result.groups = len(groups)
        policy = PrunePolicy(ratios={g.name: ratio for g in groups}, round_to=round_to)
        pruned = prune_model(model, policy, x, num_classes=NUM_CLASSES)
        result.macs_after, result.params_after = count_macs_params(pruned, x)

        with _quiet_native_output():
            result.stage = "export"
            fp32_policy = QuantPolicy(mode="none")
            fp32 = deploy(model, fp32_policy, example_input=x, calibration=calibration, workdir=workdir / "fp32")
            pruned_fp32 = deploy(pruned, fp32_policy, example_input=x, calibration=calibration, workdir=workdir / "p32")
            result.stage = "quantize"
            int8_policy = QuantPolicy(mode="int8", granularity="per_channel", calibration_samples=len(images))
            int8 = deploy(pruned, int8_policy, example_input=x, calibration=calibration, workdir=workdir / "p8")

        result.stage = "run"
        session = ort_session(int8.path, threads=1)
        (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        result.output_shape = tuple(int(d) for d in logits.shape)
        if result.output_shape != (1, NUM_CLASSES):
            raise RuntimeError(f"int8 model output shape {result.output_shape}, expected (1, {NUM_CLASSES})")
        if not np.isfinite(logits).all():
            raise RuntimeError("int8 model output contains NaN or inf")

        result.stage = "measure"
        timings: dict[Path, list[Latency]] = {fp32.path: [], pruned_fp32.path: [], int8.path: []}
        for _ in range(rounds):
            for path, runs in timings.items():
                runs.append(
                    measure_onnx(
                        path,
                        shape,
                        threads=1,
                        batch_size=1,
                        warmup=warmup,
                        repeats=repeats,
                        protocol=Protocol(window_s=window_s, max_window_s=window_s),
                    )
                )
        best = {path: min(runs, key=lambda lat: lat.median_ms) for path, runs in timings.items()}
        result.fp32_ms, result.fp32_iqr_ms = best[fp32.path].median_ms, best[fp32.path].iqr_ms
        result.pruned_fp32_ms = best[pruned_fp32.path].median_ms
        result.pruned_fp32_iqr_ms = best[pruned_fp32.path].iqr_ms
        result.pruned_int8_ms, result.pruned_int8_iqr_ms = best[int8.path].median_ms, best[int8.path].iqr_ms
        result.stage, result.works = "done", True
    except Exception as exc:  # noqa: BLE001 - one architecture's failure must be recorded, not end the matrix
        result.error = _error_line(exc)
        if "--debug" in sys.argv:
            traceback.print_exc()
    result.seconds = time.perf_counter() - start
    return result


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n else "–"


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "–"


def to_markdown(
    results: Sequence[CompatResult], *, input_size: int, ratio: float, round_to: int | None, rounds: int
) -> str:
    """The matrix as a markdown document with the measurement conditions on top and notes below."""
    conditions = (
        f"Generated by `python benchmarks/compat_matrix.py --input-size {input_size}`. Untrained models "
        f"(`weights=None`, 10 classes), input 1×3×{input_size}×{input_size} unless the row says otherwise (ViT: "
        f"`image_size` = input size). Every prunable group loses {ratio:.0%} of its channels (`round_to={round_to}` "
        "where the channels allow). Latency: ONNX Runtime CPU, 1 thread, batch 1, median (IQR) of 30 runs after 5 "
        f"warm-up runs, the models timed in turn {rounds}× and each keeping its best median: unpruned fp32 "
        "(`deploy(mode='none')`), pruned fp32 (to separate pruning from int8) and pruned static int8 QDQ "
        "(`deploy(mode='int8', per_channel)`, 16 random calibration images). Speed-up = unpruned fp32 / pruned int8."
    )
    machine = (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs shared with other "
        f"jobs, torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {_ort_version()}. "
        "Differences below ~10 % are within this host's noise."
    )
    header = (
        "| architecture | input | works | groups | params before → after | MACs before → after | fp32 ms (IQR) | "
        "pruned fp32 ms | pruned int8 ms (IQR) | speed-up | error |"
    )
    lines = [
        "# Compatibility matrix: structural pruning + int8 on torchvision classifiers",
        "",
        conditions,
        "",
        machine,
        "",
        header,
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        speedup = f"{r.speedup:.2f}×" if r.speedup is not None else "–"
        fp32 = f"{_ms(r.fp32_ms)} ({_ms(r.fp32_iqr_ms)})" if r.fp32_ms is not None else "–"
        int8 = f"{_ms(r.pruned_int8_ms)} ({_ms(r.pruned_int8_iqr_ms)})" if r.pruned_int8_ms is not None else "–"
        error = f"at {r.stage}: {r.error}" if r.error else ""
        lines.append(
            f"| {r.arch} | {r.input_size} | {'yes' if r.works else 'no'} | {r.groups or '–'} | "
            f"{_millions(r.params_before)} → {_millions(r.params_after)} | "
            f"{_millions(r.macs_before)} → {_millions(r.macs_after)} | {fp32} | {_ms(r.pruned_fp32_ms)} | {int8} | "
            f"{speedup} | {error} |"
        )
    measured = [r for r in results if r.works]
    faster = sum(1 for r in measured if r.pruned_int8_ms < r.fp32_ms)
    pruning_helps = sum(1 for r in measured if r.pruned_fp32_ms < r.fp32_ms)
    int8_hurts = sum(1 for r in measured if r.pruned_int8_ms > r.pruned_fp32_ms)
    summary = (
        f"{len(measured)} of {len(results)} architectures work end to end. The pruned int8 model is faster than the "
        f"unpruned fp32 one on {faster}; pruning alone (pruned fp32) is faster on {pruning_helps}; int8 is slower "
        f"than the pruned fp32 model it was made from on {int8_hurts}: measure, never assume int8 helps."
    )
    lines += ["", summary]
    notes = [f"- **{r.arch}**: {ARCHITECTURES[r.arch].note}" for r in results if ARCHITECTURES[r.arch].note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def write_csv(results: Sequence[CompatResult], path: Path) -> None:
    fields = [f.name for f in dataclasses.fields(CompatResult)] + ["speedup"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in results:
            row = dataclasses.asdict(r)
            row["output_shape"] = "x".join(str(d) for d in r.output_shape)
            row["speedup"] = f"{r.speedup:.3f}" if r.speedup is not None else ""
            writer.writerow(row)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=64, help="square input size (ViT needs a multiple of 16)")
    parser.add_argument("--arch", nargs="+", choices=sorted(ARCHITECTURES), help="architectures (default: all)")
    parser.add_argument("--ratio", type=float, default=0.3, help="prune ratio of every group")
    parser.add_argument("--round-to", type=int, default=8, help="kept channels rounded to this multiple")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per latency measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds per model (best median kept)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("compat_matrix.md"))
    parser.add_argument("--debug", action="store_true", help="print the traceback of each failure")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # like the measurements, and kind to the other users of a shared host
    results = []
    for arch in args.arch or list(ARCHITECTURES):
        with tempfile.TemporaryDirectory(prefix=f"compat_{arch}_") as tmp:
            r = check_architecture(
                arch,
                input_size=args.input_size,
                ratio=args.ratio,
                round_to=args.round_to,
                workdir=Path(tmp),
                repeats=args.repeats,
                rounds=args.rounds,
            )
        results.append(r)
        status = f"{_ms(r.fp32_ms)} → {_ms(r.pruned_int8_ms)} ms" if r.works else f"FAILED at {r.stage}: {r.error}"
        print(
            f"{arch:20s} {_millions(r.params_before)} → {_millions(r.params_after)} params, {status} "
            f"({r.seconds:.0f} s)",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        to_markdown(results, input_size=args.input_size, ratio=args.ratio, round_to=args.round_to, rounds=args.rounds)
    )
    write_csv(results, args.out.with_suffix(".csv"))
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: this tool against one-click peers of every runtime, side by side in one process.

Workloads: the demo (DemoResNet, 32x32 digits) and torchvision resnet18 with a small stem (3x3 stride-1 stem, no max
pool, 1 input channel), trained on the same digits here (``--resnet-epochs``, cached under
``results/_bench_peers/``). Rows, per workload:

- PyTorch fp32 (eager), ONNX Runtime fp32, OpenVINO f32 (precision hint set, read back);
- **one-click peers**: ONNX Runtime int8 (``quant_pre_process`` + ``quantize_static`` with its defaults: QDQ, S8S8,
  per-tensor, MinMax), OpenVINO with *its default precision* (no hint; what it ran is read back — bf16 on CPUs with
  AVX512_BF16/AMX), NNCF + OpenVINO int8 (``nncf.quantize`` with its defaults);
- uniform prune 30/50/70 % + KD + int8 (this tool's building blocks without the search; ONNX Runtime, the CPU's
  kernel);
- the **chosen model per runtime** at the default budget (0.25x the teacher on that runtime), from a search of
  ``--trials`` trials (demo only: a resnet18 search fine-tunes for hours on 2 cores; say so rather than guess);
- ``--runtime auto`` (``--searches auto``): one search over every installed runtime (0.25x the fastest fp32 teacher
  among them), and the same study's choice under ``--prefer latency`` (the study resumed with the other rule: no
  new trial, its own fresh-process confirmation), two rows.

Under the table: each chosen model against the **best one-click peer** (the fastest of ORT int8, OpenVINO default
precision and NNCF int8 at test accuracy within one image of the PyTorch teacher), as a side-by-side ratio.

Latency: every row is timed with the study's protocol (:class:`~autocompress.measure.latency.LatencyMeter`) side by
side with the teacher's fp32 artifact *on the same runtime*, all rows in one process after everything is built, so
"vs fp32 same runtime" is a side-by-side ratio; "vs PyTorch" divides by the eager teacher's figure taken in the same
process. Test accuracy of each artifact on its runtime (360 digits the search never saw). ``build s``: wall time to
produce the row (quantization, fine-tuning, or the whole search).

    python benchmarks/peers.py                   # → peers.md, peers.csv
    python benchmarks/peers.py --workloads demo --trials 20
    python benchmarks/peers.py --workloads demo --searches auto --stem peers_zen4_auto   # → peers_zen4_auto.md/.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.compress.distill import distill  # noqa: E402
from autocompress.compress.prune import prunable_groups, prune_model  # noqa: E402
from autocompress.compress.training import fit, predict_logits  # noqa: E402
from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.measure.accuracy import evaluate, evaluate_torch  # noqa: E402
from autocompress.measure.latency import LatencyMeter, measure_torch  # noqa: E402
from autocompress.policy import DistillPolicy, PrunePolicy, QuantPolicy  # noqa: E402
from autocompress.runtimes import Artifact, Runner, calibration_images, export_onnx, get_runtime  # noqa: E402
from autocompress.runtimes._openvino import _OvRunner  # noqa: E402
from autocompress.sources._tvmodels import _build_torchvision  # noqa: E402
from autocompress.sources.weights import load_weights, save_weights  # noqa: E402
from autocompress.sources.workload import Workload, load_digits_splits, load_workload  # noqa: E402
from autocompress.study.session import run_study  # noqa: E402
from autocompress.study.space import load_space  # noqa: E402

OUT = HERE.parent / "results" / "_bench_peers"
PRUNE_LEVELS = (0.3, 0.5, 0.7)


# ---------------------------------------------------------------------------------------------------- workloads
def resnet18_workload(epochs: int) -> Workload:
    """torchvision resnet18, small stem, 1 input channel, trained on 32x32 digits (cached)."""
    train, val, test = load_digits_splits()
    model = _build_torchvision("torchvision:resnet18", num_classes=10, small_input=True)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    torch.manual_seed(0)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    weights = OUT / f"resnet18_digits_e{epochs}.npz"
    if weights.exists():
        load_weights(model, weights)
    else:
        print(f"training resnet18 on digits ({epochs} epochs)", flush=True)
        fit(
            model,
            train,
            lambda logits, labels, _: nn.functional.cross_entropy(logits, labels, label_smoothing=0.05),
            steps=epochs * (len(train) // 64),
            lr=1e-3,
            seed=0,
        )
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_weights(model, weights)
    model.eval()
    return Workload(
        name="resnet18",
        model=model,
        train=train,
        val=val,
        test=test,
        input_shape=(1, 32, 32),
        num_classes=10,
        info={"model": "torchvision resnet18, small stem", "data": "digits 32x32"},
    )


# ---------------------------------------------------------------------------------------------------- one-click peers
def ort_one_click_int8(model: nn.Module, wl: Workload, workdir: Path) -> Artifact:
    """ONNX Runtime's documented flow with its defaults: pre-process, then ``quantize_static`` (QDQ, S8S8, MinMax)."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = export_onnx(model, wl.example_input(), workdir / "fp32.onnx")
    prepared = workdir / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    images = calibration_images(wl.train, count=100)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": images[i : i + 1]} for i in range(len(images))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    out = workdir / "ort_default_int8.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(prepared), str(out), Reader())
    return Artifact(out, QuantPolicy(mode="int8"), runtime="onnxruntime")


def nncf_one_click_int8(model: nn.Module, wl: Workload, workdir: Path) -> Artifact:
    """``nncf.quantize`` with its defaults (300 calibration images, mixed preset) on the OpenVINO model."""
    import nncf
    import openvino as ov

    ov_model = ov.convert_model(str(export_onnx(model, wl.example_input(), workdir / "fp32.onnx")))
    images = calibration_images(wl.train, count=300)
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(ov_model, nncf.Dataset([images[i : i + 1] for i in range(len(images))]))
    xml = workdir / "nncf_default.xml"
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return Artifact(xml, QuantPolicy(mode="int8"), runtime="openvino", files=(xml, xml.with_suffix(".bin")))


def _ov_default_runner(artifact: Artifact, *, threads: int, batch_size: int | None) -> Runner:
    """OpenVINO with its own default precision (no INFERENCE_PRECISION_HINT): the one-click user's setting."""
    return _OvRunner(artifact, threads=threads, batch_size=batch_size, explicit_precision=False)


@dataclasses.dataclass
class _Engine:
    """A runtime whose runner can be swapped (OpenVINO at its default precision)."""

    name: str
    make: Callable[..., Runner]

    def runner(self, artifact: Artifact, *, threads: int, batch_size: int | None = None) -> Runner:
        return self.make(artifact, threads=threads, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------------- rows
@dataclasses.dataclass
class Row:
    workload: str
    name: str
    runtime: str
    artifact: Artifact | None  # None: PyTorch eager
    build_s: float
    engine: Any = None
    note: str = ""
    values: dict[str, Any] = dataclasses.field(default_factory=dict)


ONE_CLICK = ("ORT one-click int8", "OpenVINO default precision", "NNCF + OpenVINO one-click int8")
SEARCHES = ("onnxruntime", "openvino", "torch", "auto")


def search_rows(wl: Workload, runtime: str, *, trials: int) -> list[Row]:
    """The chosen model of a ``--runtime runtime`` search at 0.25x (``auto``: and the same study under ``--prefer
    latency``), as rows to time beside the peers."""
    rows = []
    for prefer in ("accuracy", "latency") if runtime == "auto" else ("accuracy",):
        t = time.perf_counter()
        config = SearchConfig(
            runtime=runtime, trials=trials, study_name=f"peers-{wl.name}-{runtime}", output=OUT, prefer=prefer
        )
        result = run_study(wl, load_space("default"), config, say=lambda line: None)
        seconds = time.perf_counter() - t
        choice = result.choice
        rule = f", --prefer {prefer}" if runtime == "auto" else ""
        if choice is None or choice.record.artifact_in(config.study_dir) is None:
            note = "nothing within the accuracy limit"
            rows.append(Row(wl.name, f"chosen ({runtime}{rule}, 0.25x)", runtime, None, seconds, note=note))
            continue
        status = "chosen" if choice.feasible else "over budget"
        record = choice.record
        rows.append(
            Row(
                wl.name,
                f"{status} by autocompress ({runtime}{rule}, 0.25x): {record.summary}",
                record.runtime,
                record.artifact_in(config.study_dir),
                seconds,
                note=f"budget {result.reference.budget_ms:.3f} ms ({result.reference.runtime} fp32 teacher x 0.25), "
                f"{trials} trials" + (", same study, other rule" if prefer == "latency" else ""),
            )
        )
    return rows


def build_rows(
    wl: Workload, workdir: Path, *, kd_epochs: float, trials: int, search: bool, searches: tuple[str, ...] = SEARCHES
) -> list[Row]:
    cpu = detect_cpu()
    ort, ov = (get_runtime(n) for n in ("onnxruntime", "openvino"))
    x = wl.example_input()
    rows: list[Row] = [Row(wl.name, "PyTorch fp32 (eager)", "torch-eager", None, 0.0)]
    for runtime, label in ((ort, "ONNX Runtime fp32"), (ov, "OpenVINO f32 (hint f32)")):
        t = time.perf_counter()
        artifact = runtime.build(
            wl.model, QuantPolicy(), example_input=x, calibration=wl.train, workdir=workdir / f"fp32_{runtime.name}"
        )
        rows.append(Row(wl.name, label, runtime.name, artifact, time.perf_counter() - t))
    t = time.perf_counter()
    rows.append(
        Row(
            wl.name,
            "ORT one-click int8 (quantize_static defaults)",
            "onnxruntime",
            ort_one_click_int8(wl.model, wl, workdir / "ort_default"),
            time.perf_counter() - t,
        )
    )
    ov_fp32 = next(r.artifact for r in rows if r.runtime == "openvino")
    rows.append(
        Row(
            wl.name,
            "OpenVINO default precision (no hint)",
            "openvino",
            ov_fp32,
            0.0,
            engine=_Engine("openvino", _ov_default_runner),
        )
    )
    t = time.perf_counter()
    rows.append(
        Row(
            wl.name,
            "NNCF + OpenVINO one-click int8 (defaults)",
            "openvino",
            nncf_one_click_int8(wl.model, wl, workdir / "nncf_default"),
            time.perf_counter() - t,
        )
    )
    groups = prunable_groups(wl.model, x, num_classes=wl.num_classes)
    logits = predict_logits(wl.model, wl.train)
    kernel = ort.int8_kernel(cpu)
    steps = max(1, int(round(kd_epochs * len(wl.train) / 64)))  # type: ignore[arg-type]
    for level in PRUNE_LEVELS:
        t = time.perf_counter()
        student = prune_model(
            wl.model, PrunePolicy(ratios={g.name: level for g in groups}, round_to=4), x, num_classes=wl.num_classes
        )
        distill(student, logits, wl.train, DistillPolicy(steps=steps), seed=0)
        quant = QuantPolicy(mode="int8", activation_type=kernel.activation_type, reduce_range=kernel.reduce_range)
        artifact = ort.build(student, quant, example_input=x, calibration=wl.train, workdir=workdir / f"u{level}")
        rows.append(
            Row(
                wl.name,
                f"uniform prune {level:.0%} + KD ({steps} steps) + int8 {kernel.name}",
                "onnxruntime",
                artifact,
                time.perf_counter() - t,
            )
        )
    for name in searches:
        if search:
            rows += search_rows(wl, name, trials=trials)
        else:
            note = "not run: a search fine-tunes resnet18 for hours on 2 cores"
            rows.append(Row(wl.name, f"chosen ({name}, 0.25x)", name, None, 0.0, note=note))
    return rows


def measure_rows(wl: Workload, rows: list[Row], workdir: Path) -> None:
    """Every row timed side by side with the teacher on its own runtime, in this one process; test accuracy."""
    config = SearchConfig()
    torch_ms = measure_torch(wl.model, wl.input_shape, protocol=config.protocol.longer(2.5))
    torch_acc = evaluate_torch(wl.model, wl.test).top1
    meters: dict[str, LatencyMeter] = {}
    teachers = {r.runtime: r.artifact for r in rows if r.name.endswith("fp32") or r.name.startswith("OpenVINO f32")}
    teacher_pt = get_runtime("torch").build(
        wl.model, QuantPolicy(), example_input=wl.example_input(), calibration=wl.train, workdir=workdir / "fp32_torch"
    )
    teachers["torch"] = teacher_pt
    for r in rows:
        if r.runtime == "torch-eager":
            r.values = {
                "test_top1": torch_acc,
                "ms": torch_ms.median_ms,
                "low": torch_ms.low,
                "high": torch_ms.high,
                "noise": torch_ms.noise,
                "vs_fp32_same_runtime": 1.0,
                "precision": "fp32",
            }
            continue
        if r.artifact is None:
            continue
        engine = r.engine or get_runtime(r.runtime)
        meter = meters.get(r.runtime)
        if meter is None:
            meter = meters[r.runtime] = LatencyMeter(
                get_runtime(r.runtime),
                teachers[r.runtime],
                wl.input_shape,
                threads=1,
                batch_size=1,
                protocol=config.protocol,
            )
            meter.calibrate()
        lat = meter.measure(r.artifact, runner=engine.runner(r.artifact, threads=1, batch_size=1))
        scorer = engine.runner(r.artifact, threads=1)
        r.values = {
            "test_top1": evaluate(scorer, wl.test).top1,
            "ms": lat.median_ms,
            "low": lat.low,
            "high": lat.high,
            "noise": lat.noise,
            "vs_fp32_same_runtime": 1.0 / lat.ratio if lat.ratio else None,
            "precision": ", ".join(f"{k} {v}" for k, v in sorted(scorer.precision().items())),
        }
        if r.engine is not None and isinstance(scorer, _OvRunner):
            r.values["precision"] += f" (hint read back: {scorer.precision_hint})"
    for r in rows:
        if r.values:
            r.values["vs_pytorch"] = torch_ms.median_ms / r.values["ms"]
            r.values["test_drop_images"] = round((torch_acc - r.values["test_top1"]) * len(wl.test))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- report
COLUMNS = (
    "workload",
    "row",
    "runtime",
    "precision (read back)",
    "test top-1",
    "drop (images)",
    "ms",
    "interval",
    "noise",
    "x vs PyTorch",
    "x vs fp32 same runtime",
    "build s",
    "note",
)


def write(rows: list[Row], md: Path, csv_path: Path, *, cpu: str) -> None:
    table = []
    for r in rows:
        v = r.values
        table.append(
            [
                r.workload,
                r.name,
                r.runtime,
                v.get("precision", "—"),
                f"{v['test_top1']:.2%}" if v else "—",
                v.get("test_drop_images", "—"),
                f"{v['ms']:.3f}" if v else "—",
                f"[{v['low']:.3f}, {v['high']:.3f}]" if v else "—",
                v.get("noise", "—"),
                f"{v['vs_pytorch']:.2f}" if v else "—",
                f"{v['vs_fp32_same_runtime']:.2f}" if v.get("vs_fp32_same_runtime") else "—",
                f"{r.build_s:.0f}",
                r.note,
            ]
        )
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(table)
    lines = [
        "# Peers, side by side",
        "",
        f"Generated by `python benchmarks/peers.py`. CPU: **{cpu}**; 1 thread, batch 1; every latency taken in one "
        "process with the study's protocol, side by side with the teacher's fp32 artifact on the same runtime "
        "(see the script's docstring). Test split: 360 digits no search saw; `drop (images)` is against the "
        "PyTorch teacher (negative = more images right).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    lines += ["", *against_peers(rows)]
    md.write_text("\n".join(lines) + "\n")


def against_peers(rows: list[Row]) -> list[str]:
    """Each chosen model against the best one-click peer of its workload (fastest within one test image of the
    PyTorch teacher), as a side-by-side ratio of the figures above."""
    out = []
    for workload in dict.fromkeys(r.workload for r in rows):
        mine = [r for r in rows if r.workload == workload and r.values]
        peers = [r for r in mine if r.name.startswith(ONE_CLICK) and abs(r.values["test_drop_images"]) <= 1]
        chosen = [r for r in mine if "by autocompress" in r.name]
        if not peers or not chosen:
            continue
        best = min(peers, key=lambda r: r.values["ms"])
        out.append(
            f"**{workload}**: best one-click peer {best.name} at {best.values['ms']:.3f} ms "
            f"({best.values['test_top1']:.2%} test)."
        )
        for r in chosen:
            ratio = best.values["ms"] / r.values["ms"]
            within = abs(r.values["test_drop_images"] - best.values["test_drop_images"]) <= 1
            out.append(
                f"- {r.name}: {r.values['ms']:.3f} ms on {r.runtime}, **{ratio:.2f}x** the best peer's speed, "
                f"test {r.values['test_top1']:.2%} ({'within' if within else 'not within'} one image of the peer)"
            )
        out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["demo", "resnet18"], choices=["demo", "resnet18"])
    parser.add_argument("--trials", type=int, default=20, help="trials of each per-runtime search (demo)")
    parser.add_argument("--resnet-epochs", type=int, default=6)
    parser.add_argument("--resnet-kd-epochs", type=float, default=1.0)
    parser.add_argument(
        "--searches", nargs="+", default=list(SEARCHES), choices=SEARCHES, help="the --runtime of each search row"
    )
    parser.add_argument("--stem", default="peers", help="write benchmarks/STEM.md and STEM.csv")
    args = parser.parse_args()
    cpu = detect_cpu()
    cpu_text = f"{cpu.model} ({cpu.isa}; flags {', '.join(sorted(cpu.flags))})"
    all_rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        for name in args.workloads:
            if name == "demo":
                wl = load_workload(SearchConfig(output=OUT))
                rows = build_rows(
                    wl, Path(tmp) / name, kd_epochs=9, trials=args.trials, search=True, searches=tuple(args.searches)
                )
            else:
                wl = resnet18_workload(args.resnet_epochs)
                rows = build_rows(
                    wl,
                    Path(tmp) / name,
                    kd_epochs=args.resnet_kd_epochs,
                    trials=args.trials,
                    search=False,
                    searches=tuple(args.searches),
                )
            print(f"{name}: {len(rows)} rows built; timing them side by side", flush=True)
            measure_rows(wl, rows, Path(tmp) / name)
            all_rows += rows
            write(all_rows, HERE / f"{args.stem}.md", HERE / f"{args.stem}.csv", cpu=cpu_text)
            for r in rows:
                print(f"  {r.name}: {r.values}", flush=True)


if __name__ == "__main__":
    main()

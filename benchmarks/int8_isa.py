"""Benchmark: int8 accuracy per int8 kernel setting, on this CPU and on an AVX2-only CPU (emulated), and latency here.

The demo teacher is quantized with ONNX Runtime static QDQ (int8-only, no pruning) in each kernel setting:
``u8s8`` (full-range weights), ``u8s8_reduce`` (7-bit weights, ``reduce_range=True``) and ``s8s8``; per-channel and
per-tensor. Each artifact's val and test top-1 is measured

- natively, on this machine's CPU, and
- on the **AVX2-without-VNNI code path**: the same ONNX Runtime wheel run under ``qemu-x86_64 -cpu Haswell``
  (qemu-user, TCG). ONNX Runtime picks its int8 kernels from CPUID, so under the emulated Haswell it runs the
  AVX2 U8S8 kernel (``vpmaddubsw``, pairs of products summed in a saturating int16) that an AVX2-only CPU runs;
  TCG emulates that saturation exactly. Latency under emulation means nothing, so only accuracy is taken there.

Latency (1 thread, batch 1, median of 200 after 50 warm-up) is measured natively only.

    apt-get install -y qemu-user          # provides qemu-x86_64
    python benchmarks/int8_isa.py         # writes int8_isa.md and int8_isa.csv

Needs the demo teacher (``python -m autocompress search`` trains and caches it).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu, int8_kernel_for  # noqa: E402
from autocompress.measure.latency import measure_onnx  # noqa: E402
from autocompress.policy import QuantPolicy  # noqa: E402
from autocompress.runtimes import get_runtime  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402

deploy = get_runtime("onnxruntime").build  # the ONNX Runtime artifact of a model and a precision plan

KERNELS = {"u8s8": ("uint8", False), "u8s8_reduce": ("uint8", True), "s8s8": ("int8", False)}
EMULATED_CPU = "Haswell"  # AVX2 + FMA, no AVX-512, no VNNI

# Runs inside the emulator: only numpy and onnxruntime, no torch (fast to start under TCG).
_EVALUATOR = r"""
import json, sys
import numpy as np, onnxruntime as ort
folder = sys.argv[1]
names = sys.argv[2].split(",") if len(sys.argv) > 2 else json.loads(open(folder + "/models.json").read())
splits = sys.argv[3].split(",") if len(sys.argv) > 3 else ["val", "test"]
out = {}
for name in names:
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.log_severity_level = 3
    s = ort.InferenceSession(f"{folder}/{name}.onnx", opts, providers=["CPUExecutionProvider"])
    for split in splits:
        x = np.load(f"{folder}/{split}_x.npy"); y = np.load(f"{folder}/{split}_y.npy")
        pred = np.concatenate([s.run(None, {"input": x[i:i + 64]})[0].argmax(1) for i in range(0, len(x), 64)])
        out[f"{name}/{split}"] = float((pred == y).mean())
print(json.dumps(out))
"""


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return np.stack([x.numpy() for x in xs]).astype(np.float32), np.array([int(y) for y in ys])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=HERE / "int8_isa.md", help="the report to write")
    args = parser.parse_args()
    qemu = shutil.which("qemu-x86_64")
    workload = load_workload(SearchConfig())
    cpu = detect_cpu()
    folder = Path(tempfile.mkdtemp(prefix="int8_isa_"))
    for split in ("val", "test"):
        x, y = _arrays(getattr(workload, split))
        np.save(folder / f"{split}_x.npy", x)
        np.save(folder / f"{split}_y.npy", y)
    models = {"fp32": QuantPolicy(mode="none")}
    for kernel, (act, reduce) in KERNELS.items():
        for gran in ("per_channel", "per_tensor"):
            models[f"{kernel}_{gran}"] = QuantPolicy(
                mode="int8", granularity=gran, activation_type=act, reduce_range=reduce
            )
    latency = {}
    for name, quant in models.items():
        artifact = deploy(
            workload.model,
            quant,
            example_input=workload.example_input(),
            calibration=workload.train,
            workdir=folder / name,
        )
        shutil.copyfile(artifact.path, folder / f"{name}.onnx")
        latency[name] = measure_onnx(folder / f"{name}.onnx", workload.input_shape, threads=1, warmup=50, repeats=200)
    (folder / "models.json").write_text(json.dumps(list(models)))
    (folder / "evaluate.py").write_text(_EVALUATOR)
    native = json.loads(
        subprocess.run(
            [sys.executable, str(folder / "evaluate.py"), str(folder)], check=True, capture_output=True, text=True
        ).stdout
    )
    emulated: dict[str, float] = {}
    if qemu:
        # Emulation is slow (TCG): only the int8 per-channel artifacts, on the val split. fp32 accuracy does not
        # depend on the int8 kernels, so the native fp32 figure is the reference.
        wanted = ",".join(f"{k}_per_channel" for k in KERNELS)
        proc = subprocess.run(
            [qemu, "-cpu", EMULATED_CPU, sys.executable, str(folder / "evaluate.py"), str(folder), wanted, "val"],
            capture_output=True,
            text=True,
            check=True,
        )
        emulated = json.loads(proc.stdout)
    rows = []
    for name in models:
        rows.append(
            {
                "model": name,
                "latency_ms": round(latency[name].median_ms, 4),
                "latency_iqr_ms": round(latency[name].iqr_ms, 4),
                "val_native": round(native[f"{name}/val"] * 100, 2),
                "test_native": round(native[f"{name}/test"] * 100, 2),
                "val_avx2_emulated": round(emulated[f"{name}/val"] * 100, 2) if f"{name}/val" in emulated else "",
            }
        )
    with (HERE / "int8_isa.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    base_val = native["fp32/val"] * 100
    lines = [
        "# int8 kernel settings: accuracy on this CPU and on the AVX2-only code path",
        "",
        f"Generated by `python benchmarks/int8_isa.py`. Demo teacher (DemoResNet, 32x32 digits), int8-only "
        f"(no pruning), ONNX Runtime static QDQ, 64 calibration images. Native CPU: **{cpu.model}**, "
        f"int8 ISA `{cpu.isa}` → "
        f"autocompress picks `{int8_kernel_for(cpu).name}` here. The AVX2 columns run the same files under "
        f"`qemu-x86_64 -cpu {EMULATED_CPU}` (AVX2, no AVX-512, no VNNI), where ONNX Runtime takes its AVX2 U8S8 "
        "kernel; autocompress picks `u8s8_reduce` on such a CPU. Latency: native, 1 thread, batch 1, median of 200.",
        "",
        "| model | native latency ms (IQR) | val % native | test % native | val % AVX2 (emulated) | "
        "val drop AVX2 vs native fp32 (pt) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        drop = f"{base_val - float(r['val_avx2_emulated']):+.2f}" if r["val_avx2_emulated"] != "" else "—"
        lines.append(
            f"| {r['model']} | {r['latency_ms']:.3f} ({r['latency_iqr_ms']:.3f}) | {r['val_native']:.2f} | "
            f"{r['test_native']:.2f} | {r['val_avx2_emulated'] if r['val_avx2_emulated'] != '' else '—'} | {drop} |"
        )
    if not qemu:
        lines += ["", "qemu-x86_64 was not found, so the AVX2 columns are empty (`apt-get install -y qemu-user`)."]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

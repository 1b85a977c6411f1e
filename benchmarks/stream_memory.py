"""Benchmark: peak memory of a search on a large image folder at 224 px, with images streamed from image stores.

Fashion-MNIST (Debian's ``dataset-fashion-mnist``: real 28x28 images, 10 classes, under
``/usr/share/datasets/fashion-mnist/``) is written out as image folders of ``--sizes`` images (PNG, one subfolder per
class, taken from the official train set) and searched with ``--input-size 224 --channels 3``: 0.6 MB per image as
float32, 18 GB for 30,000 images, which the loader refused before image stores. For each size this script runs the
real CLI (``python -m autocompress search``) in a child process and samples the whole process tree every 0.2 s: the
sum of resident set sizes (RSS, what ``top`` shows; pages shared between a parent and its forked decode workers count
once per process) and of proportional set sizes (PSS, shared pages split among their sharers), and reports the peaks,
the wall time, the decode time per image and the image stores' size on disk.

The teacher is a small CNN behind ``AdaptiveAvgPool2d(28)`` (at 224 px it averages 8x8 blocks back to 28x28), trained
for three epochs on the official *test* set (disjoint from the folders); the memory measured is the tool's own (data,
trial pipeline), which is what grows with the dataset, while the model stays small enough for 2 cores.

It also checks, on the smallest folder, that the store's tensors equal the eager pipeline's (decode, resize, crop,
normalise every image in RAM, as before image stores) bit for bit on every image of every split.

    apt-get install dataset-fashion-mnist
    python benchmarks/stream_memory.py                       # 5,000 and 30,000 images → stream_memory.md
    python benchmarks/stream_memory.py --sizes 2000 --trials 2 --output /tmp/smoke.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.sources._splits import _prepare  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
# Numbered so that the folders' sorted order (which gives the labels) is Fashion-MNIST's label order.
CLASSES = tuple(
    f"{i}_{name}"
    for i, name in enumerate(
        ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
    )
)

MODEL_MODULE = '''
"""The benchmark's teacher: a small CNN that first pools any input to 28x28 (written by stream_memory.py)."""
import torch
from torch import nn


def pooled_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(28),
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes),
    )
'''

SPACE = """
# stream_memory.py: short trials; the benchmark measures memory, not compression quality
prune:
  per: uniform
  level: {low: 0.1, high: 0.6, step: 0.1}
quantize:
  mode: [none, int8]
  granularity: [per_tensor]
  calibration: [minmax]
  calibration_samples: 64
distill:
  temperature: {low: 2.0, high: 4.0}
  alpha: {low: 0.5, high: 0.9}
  lr: {low: 1.0e-3, high: 3.0e-3, log: true}
  steps: {low: 40, high: 80, step: 40}
  batch_size: 64
"""


def _idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    if not FASHION.is_dir():
        raise SystemExit(f"{FASHION} not found: apt-get install dataset-fashion-mnist")
    return _idx(FASHION / f"{prefix}-images-idx3-ubyte.gz"), _idx(FASHION / f"{prefix}-labels-idx1-ubyte.gz")


def write_folder(root: Path, count: int) -> Path:
    """The first ``count`` official train images as ``root/CLASS/i.png`` (kept when already complete)."""
    from PIL import Image

    done = root / ".complete"
    if done.exists():
        return root
    images, labels = _fashion("train")
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(images[i], mode="L").save(root / CLASSES[labels[i]] / f"{i:05d}.png")
    done.write_text(str(count))
    return root


def train_teacher(workdir: Path) -> Path:
    """Three epochs on the official test set (3 channels, ImageNet normalisation: the folder pipeline's default)."""
    path = workdir / "teacher.pt"
    if path.exists():
        return path
    (workdir / "bench_models.py").write_text(textwrap.dedent(MODEL_MODULE))
    sys.path.insert(0, str(workdir))
    from bench_models import pooled_cnn  # type: ignore[import-not-found]

    images, labels = _fashion("test")
    # The search's own pipeline (upscale to 224, 3 channels, ImageNet normalisation), then the model's parameter-free
    # pooling, computed once in chunks: the layers after it train on what they will see at 224 px.
    pixels = torch.as_tensor(images.copy()).unsqueeze(1)
    x = torch.cat(
        [
            torch.nn.functional.adaptive_avg_pool2d(_prepare(chunk, size=224, channels=3), 28)
            for chunk in pixels.split(500)
        ]
    )
    y = torch.as_tensor(labels.astype(np.int64))
    torch.manual_seed(0)
    model = pooled_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(3):
        for idx in torch.randperm(len(y)).split(128):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.save(model.eval().state_dict(), path)
    return path


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return pids


def _memory(pid: int) -> tuple[int, int, int]:
    """(sum of RSS, sum of PSS, processes) of the tree under ``pid``, in bytes."""
    rss = pss = count = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
            count += 1
        except OSError:
            pass
    return rss, pss, count


def run_search(workdir: Path, folder: Path, *, trials: int, name: str) -> dict[str, object]:
    space = workdir / "space.yaml"
    space.write_text(SPACE)
    cmd = [
        sys.executable, "-m", "autocompress", "search", "--quiet", "--no-explain",
        "--model", "bench_models:pooled_cnn", "--weights", str(workdir / "teacher.pt"),
        "--data", f"imagefolder:{folder}", "--input-size", "224", "--channels", "3",
        "--space", str(space), "--trials", str(trials), "--latency-budget", "0.9x",
        "--output", str(workdir / "results"), "--study-name", name,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{workdir}:{HERE.parent}"}
    started = time.perf_counter()
    log = open(workdir / f"{name}.log", "w")  # noqa: SIM115
    child = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    peak_rss = peak_pss = peak_procs = 0
    while child.poll() is None:
        rss, pss, procs = _memory(child.pid)
        peak_rss, peak_pss, peak_procs = max(peak_rss, rss), max(peak_pss, pss), max(peak_procs, procs)
        time.sleep(0.2)
    wall = time.perf_counter() - started
    log.close()
    found = [workdir / "results" / name / d / "metrics.json" for d in ("chosen", "over_budget")]
    metrics = next((json.loads(p.read_text()) for p in found if p.exists()), {})
    return {
        "rc": child.returncode,
        "wall_s": wall,
        "peak_rss_gb": peak_rss / 1e9,
        "peak_pss_gb": peak_pss / 1e9,
        "processes": peak_procs,
        "metrics": metrics,
    }


def check_exact(folder: Path, workdir: Path) -> str:
    """Every image of every split from the store equals the eager pipeline's tensor (bit for bit)."""
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    from autocompress.sources import load_data

    splits = load_data(f"imagefolder:{folder}", input_size=224, channels=3, cache_dir=workdir / "exact_cache")
    from autocompress.sources._data_imagefolder import _split_samples

    _, parts, _ = _split_samples(folder, "bench", 0)
    checked = 0
    for store, samples in zip((splits.train, splits.val, splits.test), parts):
        for i, (path, label) in enumerate(samples):
            with Image.open(path) as img:
                eager = _prepare(pil_to_tensor(img.convert("RGB")).unsqueeze(0), size=224, channels=3)[0]
            image, got_label = store[i]
            if not torch.equal(image, eager) or got_label != label:
                return f"image {path} differs from the eager pipeline"
            checked += 1
    return f"all {checked} images equal the eager pipeline's tensors bit for bit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 30000])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stream_memory"))
    parser.add_argument("--output", type=Path, default=HERE / "stream_memory.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    train_teacher(args.workdir)
    rows, exact = [], ""
    for size in args.sizes:
        folder = write_folder(args.workdir / f"fashion_{size}", size)
        if not exact:
            exact = check_exact(folder, args.workdir)
            print(exact, flush=True)
        result = run_search(args.workdir, folder, trials=args.trials, name=f"n{size}")
        print(size, {k: v for k, v in result.items() if k != "metrics"}, flush=True)
        rows.append((size, result))
    write_markdown(args.output, rows, exact=exact, trials=args.trials)


def write_markdown(path: Path, rows: list[tuple[int, dict[str, object]]], *, exact: str, trials: int) -> None:
    cpu = detect_cpu()
    lines = [
        "# Streamed data: peak memory of a search at 224 px",
        "",
        f"Generated by `python benchmarks/stream_memory.py` on {cpu.model} ({os.cpu_count()} logical CPUs, "
        f"ISA {cpu.isa}), Python {platform.python_version()}, torch {torch.__version__}; no GPU.",
        "",
        "Fashion-MNIST image folders (PNG, 28x28 gray, from the official train set) searched with `--input-size 224 "
        f"--channels 3` ({trials} trials, a short KD space, `--no-explain`). Peak memory of the whole process tree "
        "(the CLI and any decode workers), sampled every 0.2 s. As float32 in RAM the images would need "
        "0.602 MB each.",
        "",
        "| images | float32 in RAM would be | rc | peak RSS (sum) | peak PSS (sum) | processes | stores on disk "
        "| decode ms/image | wall s | teacher test top-1 | chosen | chosen test top-1 | trial stages (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, r in rows:
        store = (r["metrics"].get("workload", {}) or {}).get("image_store", {})  # type: ignore[union-attr]
        metrics = r["metrics"]
        acc = metrics.get("accuracy", {})  # type: ignore[union-attr]
        stages = (metrics.get("record", {}) or {}).get("timings", {})  # type: ignore[union-attr]
        stage_text = ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in stages.items() if k != "total_s")
        lines.append(
            f"| {size:,} | {size * 3 * 224 * 224 * 4 / 1e9:.1f} GB | {r['rc']} | {r['peak_rss_gb']:.2f} GB "
            f"| {r['peak_pss_gb']:.2f} GB | {r['processes']} | {store.get('gb', '?')} GB "
            f"| {store.get('decode_ms_per_image', '?')} | {r['wall_s']:.0f} "
            f"| {acc.get('teacher_test_top1', float('nan')):.2%} | {metrics.get('policy_summary', '-')} "
            f"| {acc.get('test_top1', float('nan')):.2%} | {stage_text} |"
        )
    lines += ["", f"Same preprocessing: {exact} (smallest folder, every split).", ""]
    path.write_text("\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()

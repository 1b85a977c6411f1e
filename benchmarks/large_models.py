"""Benchmark: torchvision architectures on real data, searched end to end through the CLI, against one-click peers.

Per architecture (resnet18, mobilenet_v3_large, resnet50, efficientnet_b0, convnext_tiny, vit_b_16):

1. **Data**: Fashion-MNIST (Debian's ``dataset-fashion-mnist``: real 28x28 images, 10 classes, under
   ``/usr/share/datasets/fashion-mnist/``) written out as an image folder with ``train/``, ``val/`` and ``test/``
   (PNG, one class folder each, numbered so their sorted order is the label order): train and val are disjoint slices
   of the official train set, test is the official test set (no search, teacher or calibration ever sees it).
2. **Teacher**: ``torchvision.models.<arch>(weights=None, num_classes=10)`` trained here on the train split with the
   search's own pipeline (``--input-size`` px, 3 channels, ImageNet normalisation: what ``imagefolder:`` gives),
   ``--teacher-epochs`` passes (AdamW, one-cycle), on ``--device``; saved as a plain ``state_dict``.
3. **Search**: the real CLI in a child process, ``python -m autocompress search --model torchvision:<arch> --weights
   teacher.pt --data imagefolder:DIR --input-size N --channels 3 --space <short KD space> --trials T`` (ViT at a size
   other than 224 goes through a factory module written into the work dir, since its patch grid is fixed at build
   time). Wall time of the whole command (set-up, probe, trials, fresh-process re-measure, export) is the time to the
   chosen model; the chosen trial's stage timings come from ``chosen/metrics.json`` and every trial's from the study
   (``study.db``; ``trials.csv`` has only each trial's total).
4. **Side by side**, in this one process, with :mod:`benchmarks.peers`' own functions (imported, not copied):
   PyTorch eager fp32, ONNX Runtime fp32, ORT one-click int8 (``quantize_static`` defaults), OpenVINO f32 (hint set),
   OpenVINO at its default precision (no hint), NNCF + OpenVINO int8 (defaults) and the chosen model; every latency
   taken with the study's protocol beside the teacher's fp32 artifact on the same runtime (1 thread, batch 1), with the
   protocol's interval; test accuracy of every artifact on the held-out test split, and the drop vs the teacher.

An architecture not in ``--run`` gets a row with the measured reason: one training step (forward, backward, update;
batch 64 at ``--input-size``) is timed here, and the teacher plus search it would need is estimated from it.

    apt-get install dataset-fashion-mnist
    python benchmarks/large_models.py                          # CPU: resnet18 + mobilenet_v3_large at 64 px
    python benchmarks/large_models.py --device cuda --input-size 224 --train 20000 --teacher-epochs 5 \\
        --run resnet18 mobilenet_v3_large resnet50 efficientnet_b0 convnext_tiny vit_b_16 --trials 20   # a GPU host
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from stream_memory import CLASSES, _fashion  # noqa: E402  (benchmarks/: the Fashion-MNIST reader and class folders)

from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.policy import Policy, QuantPolicy  # noqa: E402
from autocompress.runtimes import Artifact, get_runtime  # noqa: E402
from autocompress.sources.data import load_data  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402

ARCHS = ("resnet18", "mobilenet_v3_large", "resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16")
# Short KD on purpose (a 2-core CPU): one global prune level, int8 or not, a few dozen KD steps of 32 images.
# Depthwise nets (MobileNet, EfficientNet) get the gentler range and per-channel int8 only, as search_spaces/mobilenet.
SPACE = """
# large_models.py ({kind}): one global prune level, int8 or fp32, short KD (a 2-core CPU)
prune:
  per: uniform
  level: {{low: 0.0, high: {high}, step: 0.1}}
  round_to: 8
quantize:
  mode: [none, int8]
  granularity: {granularity}
  calibration: [minmax, percentile]
  calibration_samples: 64
distill:
  temperature: {{low: 2.0, high: 6.0, log: true}}
  alpha: {{low: 0.5, high: 0.9}}
  lr: {{low: 5.0e-4, high: 3.0e-3, log: true}}
  steps: {{low: {kd_low}, high: {kd_high}, step: {kd_step}}}
  batch_size: {kd_batch}
"""
DEPTHWISE = ("mobilenet_v3_large", "efficientnet_b0")
BOX = set("│┃┏┡└┗┌├╭╰ ")  # the terminal table's lines (the Pareto front is in pareto.csv)
# Budgets (x the teacher's ORT fp32 latency) that int8 alone does not meet, so the search has to prune too. Measured in
# smoke runs on the Zen 4 CPU at 64 px (1 thread): int8 alone reached 0.18x on resnet18 (VNNI) but only 0.75x on
# mobilenet_v3_large, whose space reaches 0.45x (40 % pruned). Other architectures: the tool's default.
BUDGETS = {"resnet18": "0.16x", "mobilenet_v3_large": "0.6x"}
# Teacher epochs where 2 are too few: MobileNetV3 from scratch reached 49 % val after 2 epochs (resnet18: 80 %); 75 %
# after 5. EfficientNet (depthwise, also from scratch) gets the same.
TEACHER_EPOCHS = {"mobilenet_v3_large": 5.0, "efficientnet_b0": 5.0}

FACTORY = '''
"""ViT-B/16 for a size other than 224 (its patch grid is fixed when it is built; written by large_models.py)."""
import torchvision


def vit_b_16(num_classes: int = 10):
    return torchvision.models.vit_b_16(weights=None, num_classes=num_classes, image_size={size})
'''


# ---------------------------------------------------------------------------------------------------- data
def write_folder(root: Path, *, train: int, val: int, test: int) -> Path:
    """``root/{train,val,test}/CLASS/i.png``: train = official train[:train], val = the next ``val``, test = official
    test[:test] (kept when already complete with the same sizes)."""
    from PIL import Image

    done = root / ".complete"
    sizes = json.dumps({"train": train, "val": val, "test": test})
    if done.exists() and done.read_text() == sizes:
        return root
    train_x, train_y = _fashion("train")
    test_x, test_y = _fashion("test")
    parts = {
        "train": (train_x[:train], train_y[:train]),
        "val": (train_x[train : train + val], train_y[train : train + val]),
        "test": (test_x[:test], test_y[:test]),
    }
    for split, (images, labels) in parts.items():
        for name in CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image, mode="L").save(root / split / CLASSES[label] / f"{i:05d}.png")
    done.write_text(sizes)
    return root


# ---------------------------------------------------------------------------------------------------- models
def model_spec(arch: str, size: int) -> str:
    """The ``--model`` the CLI gets: torchvision's own source, or the factory for a ViT at a size other than 224."""
    return f"lm_models:{arch}" if arch == "vit_b_16" and size != 224 else f"torchvision:{arch}"


def build_model(arch: str, size: int) -> nn.Module:
    """The same architecture the CLI builds for :func:`model_spec` (so the teacher's state_dict loads strictly)."""
    import torchvision

    extra = {"image_size": size} if arch == "vit_b_16" else {}
    return torchvision.models.get_model(arch, weights=None, num_classes=10, **extra)


def step_seconds(arch: str, size: int, device: str, *, batch: int = 64, repeats: int = 3) -> float:
    """Fastest wall time (the least disturbed on a shared machine) of one training step (forward, backward, AdamW
    update) at ``batch`` x 3 x size x size."""
    torch.manual_seed(0)
    model = build_model(arch, size).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for i in range(repeats + 1):  # the first step warms up (allocations, kernel choice) and is not counted
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    return float(min(times))


def recalibrate_bn(model: nn.Module, images: torch.Tensor, *, device: str, count: int = 1024) -> None:
    """BatchNorm running statistics as the plain average over ``count`` train images, in train mode without grad.

    A short schedule leaves them half-way from their initial values (MobileNetV3's BatchNorm has momentum 0.01: after
    60 steps 45 % of the initial mean 0 / variance 1 remains), and the eval-mode model scores far below the training
    loss; re-estimating them is standard after a short run and changes no weight.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for chunk in images[:count].split(128):
            model(chunk.to(device))


def bn_check(arch: str, folder: Path, workdir: Path, *, size: int) -> dict[str, float]:
    """Val top-1 of the teacher pruned uniformly (the package's prune_model, no fine-tuning) with its BatchNorm running
    statistics as pruning leaves them, and re-estimated on 1,024 train images: how stale they are after pruning."""
    from autocompress.compress.prune import prunable_groups, prune_model
    from autocompress.policy import PrunePolicy

    splits = load_data(f"imagefolder:{folder}", input_size=size, channels=3, seed=0, cache_dir=workdir / "_data")
    n_val = len(splits.val)  # type: ignore[arg-type]
    val_x = torch.stack([splits.val[i][0] for i in range(n_val)])
    val_y = torch.as_tensor([int(splits.val[i][1]) for i in range(n_val)])
    train_x = torch.stack([splits.train[i][0] for i in range(min(1024, len(splits.train)))])  # type: ignore[arg-type]
    teacher = build_model(arch, size)
    teacher.load_state_dict(torch.load(workdir / "teacher.pt", weights_only=True))
    teacher.eval()

    def top1(model: nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            return float(torch.cat([model(c).argmax(1) for c in val_x.split(256)]).eq(val_y).float().mean())

    x = torch.zeros(1, 3, size, size)
    groups = prunable_groups(teacher, x, num_classes=10)
    out = {"teacher": top1(teacher)}
    for level in (0.1, 0.2, 0.4):
        student = prune_model(
            teacher, PrunePolicy(ratios={g.name: level for g in groups}, round_to=8), x, num_classes=10
        )
        out[f"{level:.0%} as pruned"] = top1(student)
        recalibrate_bn(student, train_x, device="cpu")
        out[f"{level:.0%} BN re-estimated"] = top1(student)
    return out


def train_teacher(
    arch: str, folder: Path, workdir: Path, *, size: int, device: str, epochs: float, batch: int, lr: float
) -> dict[str, Any]:
    """Train ``arch`` on the train split as the search will read it; saves ``teacher.pt`` (a state_dict)."""
    path = workdir / "teacher.pt"
    info_path = workdir / "teacher.json"
    if path.exists() and info_path.exists():
        return json.loads(info_path.read_text())
    t0 = time.perf_counter()
    splits = load_data(f"imagefolder:{folder}", input_size=size, channels=3, seed=0, cache_dir=workdir / "_data")
    x = torch.stack([splits.train[i][0] for i in range(len(splits.train))])  # type: ignore[arg-type]
    y = torch.as_tensor([int(splits.train[i][1]) for i in range(len(splits.train))])  # type: ignore[arg-type]
    val_x = torch.stack([splits.val[i][0] for i in range(len(splits.val))])  # type: ignore[arg-type]
    val_y = torch.as_tensor([int(splits.val[i][1]) for i in range(len(splits.val))])  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = build_model(arch, size).to(device)
    steps = max(1, int(round(epochs * len(y) / batch)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    t1 = time.perf_counter()
    order = torch.cat([torch.randperm(len(y)) for _ in range(int(np.ceil(steps * batch / len(y))) + 1)])
    for step in range(steps):
        idx = order[step * batch : (step + 1) * batch]
        loss = nn.functional.cross_entropy(model(x[idx].to(device)), y[idx].to(device), label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"  {arch} teacher step {step + 1}/{steps} loss {loss.item():.3f}", flush=True)
    train_s = time.perf_counter() - t1
    recalibrate_bn(model, x, device=device)
    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(chunk.to(device)).argmax(1).cpu() for chunk in val_x.split(256)])
    info = {
        "steps": steps,
        "batch": batch,
        "epochs": epochs,
        "train_images": len(y),
        "train_s": train_s,
        "data_s": load_s,
        "device": device,
        "val_top1": float((preds == val_y).float().mean()),
    }
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
    info_path.write_text(json.dumps(info, indent=2))
    return info


# ---------------------------------------------------------------------------------------------------- search
def run_search(arch: str, folder: Path, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The real CLI in a child process (its output in ``workdir/search.log``); the chosen model's figures back."""
    depthwise = arch in DEPTHWISE
    space = workdir / "space.yaml"
    space.write_text(
        SPACE.format(
            kind="depthwise" if depthwise else "dense",
            high=0.4 if depthwise else 0.6,
            granularity="[per_channel]" if depthwise else "[per_channel, per_tensor]",
            kd_low=args.kd_steps[0],
            kd_high=args.kd_steps[1],
            kd_step=args.kd_steps[2],
            kd_batch=args.kd_batch,
        )
    )
    (workdir / "lm_models.py").write_text(textwrap.dedent(FACTORY.format(size=args.input_size)))
    cmd = [
        sys.executable, "-m", "autocompress", "search", "--no-explain",
        "--model", model_spec(arch, args.input_size), "--weights", str(workdir / "teacher.pt"),
        "--data", f"imagefolder:{folder}", "--input-size", str(args.input_size), "--channels", "3",
        "--space", str(space), "--trials", str(args.trials),
        "--latency-budget", args.budget or BUDGETS.get(arch, "0.25x"), "--max-accuracy-drop", str(args.max_drop),
        "--device", args.device, "--output", str(workdir / "results"), "--study-name", arch,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{workdir}:{HERE.parent}"}
    started = time.perf_counter()
    with (workdir / "search.log").open("w") as log:
        rc = subprocess.run(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.perf_counter() - started
    study_dir = workdir / "results" / arch
    folder_out = next(
        (study_dir / d for d in ("chosen", "over_budget") if (study_dir / d / "metrics.json").exists()), None
    )
    metrics = json.loads((folder_out / "metrics.json").read_text()) if folder_out else {}
    return {
        "rc": rc,
        "wall_s": wall,
        "folder": folder_out,
        "metrics": metrics,
        "stages": stage_totals(study_dir, arch),
        "command": "python " + " ".join(c if " " not in c else repr(c) for c in cmd[1:]),
        "log_tail": [
            line.rstrip() for line in (workdir / "search.log").read_text().splitlines() if line[:1] not in BOX
        ][-12:],
    }


def stage_totals(study_dir: Path, name: str) -> dict[str, Any]:
    """Seconds per stage summed over every trial of the study (from each trial's record in study.db)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = study_dir / "study.db"
    if not db.exists():
        return {}
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    totals: dict[str, float] = {}
    outcomes: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        record = trial.user_attrs.get("record") or {}
        outcome = str(record.get("outcome", trial.state.name.lower()))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for key, value in (record.get("timings") or {}).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return {"totals": totals, "outcomes": outcomes}


# ---------------------------------------------------------------------------------------------------- peers
def load_peers() -> ModuleType:
    """benchmarks/peers.py as a module (the way tests/test_compat.py imports benchmarks/compat_matrix.py)."""
    spec = importlib.util.spec_from_file_location("peers", HERE / "peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def side_by_side(job: dict[str, Any]) -> list[dict[str, Any]]:
    """peers.py's one-click rows and the chosen model, timed side by side in this process; test accuracy each.

    ``job``: ``arch``, ``folder``, ``workdir``, ``input_size``, ``chosen`` (the exported folder or None) with its
    ``trial``, ``summary``, ``feasible``, and the search's ``wall_s``. Rows come back as plain dicts.
    """
    peers = load_peers()
    arch, folder, workdir = job["arch"], Path(job["folder"]), Path(job["workdir"])
    config = SearchConfig(
        model=model_spec(arch, job["input_size"]),
        weights=workdir / "teacher.pt",
        data=f"imagefolder:{folder}",
        input_size=job["input_size"],
        channels=3,
        output=workdir / "results",
        study_name=arch,
    )
    sys.path.insert(0, str(workdir))  # lm_models (the ViT factory)
    wl = load_workload(config)  # the CLI's own workload: same model source, image store and splits
    out = workdir / "peers"
    Row = peers.Row
    x = wl.example_input()
    rows = [Row(arch, "PyTorch fp32 (eager)", "torch-eager", None, 0.0)]
    for runtime, label in (("onnxruntime", "ONNX Runtime fp32"), ("openvino", "OpenVINO f32 (hint f32)")):
        t = time.perf_counter()
        artifact = get_runtime(runtime).build(
            wl.model, QuantPolicy(), example_input=x, calibration=wl.train, workdir=out / f"fp32_{runtime}"
        )
        rows.append(Row(arch, label, runtime, artifact, time.perf_counter() - t))
    t = time.perf_counter()
    ort_int8 = peers.ort_one_click_int8(wl.model, wl, out / "ort_default")
    rows.append(
        Row(arch, "ORT one-click int8 (quantize_static defaults)", "onnxruntime", ort_int8, time.perf_counter() - t)
    )
    engine = peers._Engine("openvino", peers._ov_default_runner)
    rows.append(Row(arch, "OpenVINO default precision (no hint)", "openvino", rows[2].artifact, 0.0, engine=engine))
    t = time.perf_counter()
    nncf_int8 = peers.nncf_one_click_int8(wl.model, wl, out / "nncf_default")
    rows.append(Row(arch, "NNCF + OpenVINO one-click int8 (defaults)", "openvino", nncf_int8, time.perf_counter() - t))
    chosen = Path(job["chosen"]) if job.get("chosen") else None
    if chosen is not None and (chosen / "model.onnx").exists():
        quant = Policy.from_json((chosen / "policy.json").read_text()).quant
        status = "chosen" if job["feasible"] else "over budget"
        rows.append(
            Row(
                arch,
                f"**autocompress {status}** (trial {job['trial']}: {job['summary']}; ORT)",
                "onnxruntime",
                Artifact(chosen / "model.onnx", quant, runtime="onnxruntime"),
                job["wall_s"],
                note="build s = the whole search",
            )
        )
    print(f"{arch}: {len(rows)} rows built; timing them side by side", flush=True)
    peers.measure_rows(wl, rows, out)
    teacher = rows[0].values["test_top1"]
    for r in rows:
        if r.values:
            r.values["test_drop_pt"] = (teacher - r.values["test_top1"]) * 100
            r.values["n_test"] = len(wl.test)  # type: ignore[arg-type]
    return [{"name": r.name, "runtime": r.runtime, "build_s": r.build_s, "values": r.values} for r in rows]


def run_side_by_side(arch: str, folder: Path, workdir: Path, search: dict[str, Any], args: argparse.Namespace) -> Any:
    """:func:`side_by_side` in a child process (a clean process for timing, away from the training's thread pools;
    a crash of a runtime there is reported, not fatal); tried twice."""
    metrics = search["metrics"]
    job = {
        "arch": arch,
        "folder": str(folder),
        "workdir": str(workdir),
        "input_size": args.input_size,
        "chosen": str(search["folder"]) if search["folder"] else None,
        "trial": metrics.get("trial"),
        "summary": metrics.get("policy_summary"),
        "feasible": metrics.get("feasible"),
        "wall_s": search["wall_s"],
    }
    (workdir / "side_by_side.json").write_text(json.dumps(job))
    result = workdir / "rows.json"
    errors = []
    for attempt in (1, 2):
        result.unlink(missing_ok=True)
        t = time.perf_counter()
        with (workdir / f"side_by_side_{attempt}.log").open("w") as log:
            rc = subprocess.run(
                [sys.executable, "-X", "faulthandler", __file__, "--side-by-side-of", str(workdir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        print(f"{arch}: side by side rc {rc} in {time.perf_counter() - t:.0f} s", flush=True)
        if rc == 0 and result.exists():
            return {"rows": json.loads(result.read_text()), "errors": errors}
        errors.append(f"attempt {attempt}: rc {rc} (log side_by_side_{attempt}.log)")
    return {"rows": [], "errors": errors}


# ---------------------------------------------------------------------------------------------------- machine
def machine_text(device: str) -> list[str]:
    cpu = detect_cpu()
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    family = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("CPU family")), "?")
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx512_vnni", "avx512_bf16", "amx_int8"))
    versions = []
    for package in ("torch", "torchvision", "torch-pruning", "onnxruntime", "openvino", "nncf", "optuna"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    gpu = (
        f"GPU: {torch.cuda.get_device_name(0)} (fine-tuning and teacher training on `{device}`)"
        if device.startswith("cuda") and torch.cuda.is_available()
        else "**no GPU in this run**: teacher training and fine-tuning ran on the CPU"
    )
    return [
        f"- CPU: `lscpu` model name **{model}** (family {family}; autocompress names it {cpu.model}, int8 ISA "
        f"{cpu.isa}), {os.cpu_count()} logical CPUs; flags: {have}.",
        f"- {gpu}.",
        f"- Python {platform.python_version()}, {', '.join(versions)}.",
    ]


def others_running() -> list[str]:
    """Other Python processes (benchmarks, tests, searches) not started by this script: the machine was shared."""
    mine = {os.getpid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent in mine or "python" not in cmd or "large_models" in cmd:
            continue
        if any(k in cmd for k in ("autocompress", "pytest", "benchmarks/")):
            found.append(cmd[:140])
    return found


# ---------------------------------------------------------------------------------------------------- report
def _num(value: float | None) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


def _ms(v: dict[str, Any]) -> str:
    return f"{v['ms']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"


def write_markdown(path: Path, results: dict[str, Any], args: argparse.Namespace) -> None:
    lines = [
        "# Large models: torchvision architectures on Fashion-MNIST, searched end to end",
        "",
        f"Generated by `{' '.join(['python benchmarks/large_models.py', *args.argv])}`.",
        "",
        *machine_text(args.device),
        f"- Machine shared: {results['shared']}",
        f"- Total run time of the script: {results['total_s'] / 60:.1f} min.",
        "",
        f"**Data.** Fashion-MNIST (real 28x28 gray images, 10 classes) as an image folder: train {args.train} and val "
        f"{args.val} images (disjoint slices of the official train set), test {args.test} images (the official test "
        f"set: held out from the teacher, the search and every calibration). Read by the CLI's `imagefolder:` source "
        f"at "
        f"`--input-size {args.input_size} --channels 3` (upscaled, ImageNet normalisation).",
        "",
        f"**Teacher.** `torchvision.models.<arch>(weights=None, num_classes=10)` (torchvision's 224-px stem, no "
        f"`--small-input`), trained here on the train split (AdamW, one-cycle, max lr "
        f"{args.teacher_lr}, batch {args.teacher_batch}, BatchNorm statistics re-estimated on 1,024 train images at "
        f"the end) on `{args.device}`, for the epochs given per architecture below: a short schedule, so the teacher "
        "is weaker than a converged one and the drops below are against it.",
        "",
        f"**Search.** `python -m autocompress search --model torchvision:<arch> --weights teacher.pt --data "
        f"imagefolder:DIR --input-size {args.input_size} --channels 3 --space space.yaml --trials {args.trials} "
        f"--latency-budget B --max-accuracy-drop {args.max_drop} --device {args.device} --no-explain` "
        "(ONNX Runtime, 1 thread, batch 1: the defaults). B, per architecture, "
        + (f"{args.budget} for all" if args.budget else ", ".join(f"{k} {v}" for k, v in BUDGETS.items()))
        + ": budgets int8 alone does not meet, so the search must prune (in smoke runs int8 alone reached 0.18x on "
        "resnet18 and 0.75x on mobilenet_v3_large at 64 px). The space (written by the script): one global prune level "
        "(0-60 %, depthwise nets 0-40 %, widths multiple of 8), fp32 or static int8 (per-channel/per-tensor; "
        f"depthwise "
        f"nets per-channel only), KD {args.kd_steps[0]}-{args.kd_steps[1]} steps of {args.kd_batch} images. "
        "`wall` is the whole command: set-up (teacher scoring, preprocessing check, reachable-range probe), trials, "
        "the chosen model re-measured in a fresh process, export and report.",
        "",
        "**Side by side.** Every row below was built, then timed in one process with the study's protocol beside the "
        "teacher's fp32 artifact on the same runtime (1 thread, batch 1), reusing `benchmarks/peers.py` "
        "(`ort_one_click_int8`, `nncf_one_click_int8`, `_ov_default_runner`, `measure_rows`). `ms [interval]`: the "
        "median of the fastest block and the interval the measure code trusts it to. Test accuracy of each artifact on "
        "its own runtime; drop in points against the PyTorch teacher on the same test images.",
        "",
        "## Summary per architecture",
        "",
        "| architecture | status | teacher test top-1 | wall to chosen model | chosen policy "
        "| chosen test top-1 (drop) | chosen ms [interval] (fresh process) | x vs teacher ORT fp32 "
        "| one training step (batch 64) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tail = [
        "",
        f"`one training step`: the fastest of 3 timed steps (after a warm-up) at the start of the run, on "
        f"`{args.device}`; "
        "on a machine shared with other jobs single steps vary severalfold between runs. Architectures outside "
        f"`--run` ({', '.join(args.run)}) run only when their cost, scaled from an architecture this run completed, "
        f"fits in what is left of `--minutes {args.minutes:.0f}`.",
    ]
    for arch in args.archs:
        r = results["archs"].get(arch, {})
        step = r.get("step_s")
        step_text = f"{step:.2f} s" if step is not None else "—"
        if "skipped" in r:
            lines.append(f"| {arch} | {r['skipped']} | — | — | — | — | — | — | {step_text} |")
            continue
        search = r["search"]
        m = search["metrics"]
        acc = m.get("accuracy", {})
        lat = m.get("latency", {})
        chosen_ms = lat.get("chosen_ms") or {}
        status = f"run end to end (rc {search['rc']}, {m.get('status', 'nothing exported')})"
        interval = (
            f"{chosen_ms['median_ms']:.3f} [{_num(chosen_ms.get('low_ms'))}, {_num(chosen_ms.get('high_ms'))}], "
            f"IQR {_num(chosen_ms.get('iqr_ms'))}"
            if chosen_ms
            else "—"
        )
        speedup = lat.get("speedup_vs_teacher_fp32")
        lines.append(
            f"| {arch} | {status} | {acc.get('teacher_test_top1', float('nan')):.2%} | {search['wall_s'] / 60:.1f} min "
            f"| {m.get('policy_summary', '—')} | {acc.get('test_top1', float('nan')):.2%} "
            f"({acc.get('test_drop_pt', float('nan')):+.2f} pt) | {interval} "
            f"| {f'{speedup:.2f}' if isinstance(speedup, (int, float)) else '—'} | {step_text} |"
        )
    lines += tail
    for arch in args.archs:
        r = results["archs"].get(arch, {})
        if "search" not in r:
            continue
        teacher, search = r["teacher"], r["search"]
        m = search["metrics"]
        lines += [
            "",
            f"## {arch}",
            "",
            f"Teacher: {teacher['steps']} steps of {teacher['batch']} images ({teacher['epochs']} epochs of "
            f"{teacher['train_images']}) in {teacher['train_s']:.0f} s on `{teacher['device']}` (data decode "
            f"{teacher['data_s']:.0f} s), val top-1 {teacher['val_top1']:.2%}.",
            "",
            f"Search: `{search['command']}` — rc {search['rc']}, wall **{search['wall_s']:.0f} s** "
            f"({search['wall_s'] / 60:.1f} min) to the chosen model.",
            "",
        ]
        bn = r.get("bn") or {}
        if bn:
            lines += [
                "BatchNorm after pruning (the teacher pruned uniformly by the package's `prune_model`, no fine-tuning; "
                "val top-1 with the running statistics as pruning leaves them → re-estimated on 1,024 train images, "
                "no weight changed): "
                + ", ".join(
                    f"{lvl} {bn[f'{lvl} as pruned']:.1%} → {bn[f'{lvl} BN re-estimated']:.1%}"
                    for lvl in ("10%", "20%", "40%")
                )
                + f" (teacher {bn['teacher']:.1%}). The search's KD does not re-estimate them: with BatchNorm momentum "
                "m, n KD steps keep (1 - m)^n of the stale statistics in eval mode (MobileNetV3: m = 0.01).",
                "",
            ]
        timings = (m.get("record") or {}).get("timings") or {}
        if timings:
            lines.append(
                f"Chosen trial {m.get('trial')} ({m.get('policy_summary')}), its stages (s, from chosen/metrics.json): "
                + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in timings.items())
                + "."
            )
        stages = search["stages"]
        if stages:
            total = stages["totals"].get("total_s", 0.0)
            lines += [
                "",
                f"All {sum(stages['outcomes'].values())} trials ("
                + ", ".join(f"{n} {k}" for k, n in stages["outcomes"].items())
                + ("; waiting: enqueued by the search and never run" if "waiting" in stages["outcomes"] else "")
                + "), stage seconds summed (from each trial's record in study.db; trials.csv gives `total_s` per "
                "trial): "
                + ", ".join(f"{k.removesuffix('_s')} {v:.0f}" for k, v in stages["totals"].items())
                + f". Outside the trials (set-up, probe, fresh re-measure, export, report): "
                f"{search['wall_s'] - total:.0f} s.",
            ]
        lines += [
            "",
            "| row | runtime | precision (read back) | test top-1 | drop vs teacher (pt) | ms [interval] | noise "
            "| x vs PyTorch | x vs fp32 same runtime | build s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in r["side"]["rows"]:
            v = row["values"]
            if not v:
                lines.append(f"| {row['name']} | {row['runtime']} | — | — | — | — | — | — | — | {row['build_s']:.0f} |")
                continue
            same = v.get("vs_fp32_same_runtime")
            lines.append(
                f"| {row['name']} | {row['runtime']} | {v.get('precision', '—')} | {v['test_top1']:.2%} "
                f"| {v['test_drop_pt']:+.2f} | {_ms(v)} | {v.get('noise', '—')} | {v['vs_pytorch']:.2f} "
                f"| {f'{same:.2f}' if same else '—'} | {row['build_s']:.0f} |"
            )
        if r["side"]["errors"]:
            lines += ["", f"Side-by-side process failures: {'; '.join(r['side']['errors'])}."]
        lines += ["", "Last lines of the search's output:", "", "```", *search["log_tail"], "```"]
    lines.append("")
    path.write_text("\n".join(lines))
    print(path.read_text())


# ---------------------------------------------------------------------------------------------------- main
def fits(arch: str, done: dict[str, Any], *, elapsed: float, args: argparse.Namespace) -> str:
    """Empty when ``arch`` fits in what is left of ``--minutes``; else the measured reason it is not run.

    Its cost is estimated from an architecture this run completed (a depthwise one for a depthwise net, if any): that
    one's whole wall time (teacher, search, side by side) scaled by the ratio of their training-step times and of their
    teacher epochs' share. A rough figure on a shared machine, said as such.
    """
    ran = [a for a, e in done.items() if "wall_s" in e]
    where = "CPU" if args.device == "cpu" else args.device
    step = done[arch]["step_s"]
    head = f"not run on this {where}: one training step (batch 64, {args.input_size} px) takes {step:.1f} s"
    if not ran:
        return f"{head}; nothing ran to scale an estimate from"
    same_kind = [a for a in ran if (a in DEPTHWISE) == (arch in DEPTHWISE)]
    ref = (same_kind or ran)[0]
    ref_entry = done[ref]
    epochs = (args.teacher_epochs or TEACHER_EPOCHS.get(arch, 2.0)) / ref_entry["teacher"]["epochs"]
    teacher_s = ref_entry["teacher"]["train_s"] * epochs
    estimate = (ref_entry["wall_s"] - ref_entry["teacher"]["train_s"] + teacher_s) * step / ref_entry["step_s"]
    left = args.minutes * 60 - elapsed
    if estimate <= left:
        return ""
    return (
        f"{head} ({ref}: {ref_entry['step_s']:.1f} s); scaled from {ref}'s {ref_entry['wall_s'] / 60:.1f} min end to "
        f"end here, teacher + search + side by side would take ≈ {estimate / 60:.0f} min, and {left / 60:.0f} of the "
        f"run's {args.minutes:.0f} min were left"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS, help="rows of the table")
    parser.add_argument(
        "--run", nargs="+", default=["resnet18", "mobilenet_v3_large"], choices=ARCHS, help="run end to end"
    )
    parser.add_argument("--device", default="cpu", help="teacher training and fine-tuning (cpu | cuda)")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=600)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--teacher-epochs", type=float, help="default: TEACHER_EPOCHS, else 2")
    parser.add_argument("--teacher-batch", type=int, default=64)
    parser.add_argument("--teacher-lr", type=float, default=2e-3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--kd-steps", type=int, nargs=3, default=[10, 40, 10], metavar=("LOW", "HIGH", "STEP"))
    parser.add_argument("--kd-batch", type=int, default=32)
    parser.add_argument("--budget", help="--latency-budget for every architecture (default: BUDGETS, else 0.25x)")
    parser.add_argument("--max-drop", type=float, default=2.0)
    parser.add_argument("--minutes", type=float, default=35.0, help="time budget: other --archs run if they fit")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/large_models"))
    parser.add_argument("--output", type=Path, default=HERE / "large_models.md")
    parser.add_argument("--side-by-side-of", type=Path, help=argparse.SUPPRESS)  # the child of run_side_by_side
    args = parser.parse_args()
    if args.side_by_side_of is not None:
        job = json.loads((args.side_by_side_of / "side_by_side.json").read_text())
        (args.side_by_side_of / "rows.json").write_text(json.dumps(side_by_side(job), indent=2))
        return
    args.argv = sys.argv[1:]
    started = time.perf_counter()
    shared = set(others_running())
    loads = [os.getloadavg()[0]]
    folder = write_folder(
        args.workdir / f"fashion_{args.train}_{args.val}_{args.test}", train=args.train, val=args.val, test=args.test
    )
    results: dict[str, Any] = {"archs": {}}
    for arch in args.archs:
        step = step_seconds(arch, args.input_size, args.device)
        results["archs"][arch] = {"step_s": step}
        print(f"{arch}: one training step (batch 64, {args.input_size} px) {step:.2f} s", flush=True)
    # The required rows first, then any other architecture whose estimated cost still fits the run's time budget.
    for arch in [a for a in args.archs if a in args.run] + [a for a in args.archs if a not in args.run]:
        entry = results["archs"][arch]
        if arch not in args.run:
            reason = fits(arch, results["archs"], elapsed=time.perf_counter() - started, args=args)
            if reason:
                entry["skipped"] = reason
                print(f"{arch}: {reason}", flush=True)
                continue
        arch_started = time.perf_counter()
        workdir = args.workdir / f"{arch}_{args.input_size}px_{args.device.replace(':', '')}"
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"{arch}: training the teacher", flush=True)
        entry["teacher"] = train_teacher(
            arch,
            folder,
            workdir,
            size=args.input_size,
            device=args.device,
            epochs=args.teacher_epochs or TEACHER_EPOCHS.get(arch, 2.0),
            batch=args.teacher_batch,
            lr=args.teacher_lr,
        )
        print(f"{arch}: teacher {entry['teacher']}; searching", flush=True)
        entry["search"] = run_search(arch, folder, workdir, args)
        print(f"{arch}: search rc {entry['search']['rc']} in {entry['search']['wall_s']:.0f} s", flush=True)
        entry["side"] = run_side_by_side(arch, folder, workdir, entry["search"], args)
        entry["bn"] = bn_check(arch, folder, workdir, size=args.input_size)
        entry["wall_s"] = time.perf_counter() - arch_started
        shared |= set(others_running())
        loads.append(os.getloadavg()[0])
    results["total_s"] = time.perf_counter() - started
    results["shared"] = (
        f"yes: other processes ran on the same 2 cores during this run ({'; '.join(sorted(shared)[:4])}); "
        f"1-min load average {min(loads):.1f}-{max(loads):.1f} at the checkpoints. Latencies are side by side with "
        "the teacher (ratios hold better than absolute figures), training times are inflated."
        if shared
        else f"no other benchmark or test process seen (1-min load average {min(loads):.1f}-{max(loads):.1f})."
    )
    write_markdown(args.output, results, args)


if __name__ == "__main__":
    main()

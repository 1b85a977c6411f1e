"""Benchmark: the PyTorch runtime's program — plain trace vs frozen trace (fp32) vs frozen bf16 — on the demo.

For the demo teacher and uniform 30/50/70 % pruned students (torch-pruning, no fine-tuning: latency does not depend on
the weights' values, and the bf16 fidelity check compares predictions with the same model in fp32), three TorchScript
programs:

- **trace**: ``torch.jit.trace`` of the module, what ``--runtime torch`` built before freezing;
- **frozen fp32**: the runtime's fp32 artifact (``TorchRuntime.build``, mode ``none``: a frozen trace);
- **frozen bf16**: the runtime's bf16 artifact (bf16 weights, float32 in and out).

Each program is timed with the study's protocol side by side with the plain trace of the same model
(:class:`~autocompress.measure.latency.LatencyMeter`: the ratio is measured in one run, with its interval), three
times in a row; the table gives every ratio. ``agree``: share of the 359 val digits on which the program's top-1
equals the fp32 module's. bf16 is measured even where the CPU would emulate it (the runtime does not offer it there):
the CPU line says which.

    python benchmarks/torch_program.py                       # → torch_program.md, torch_program.csv
    python benchmarks/torch_program.py --threads 2 --output /tmp/torch_2t.md

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.compress.prune import prunable_groups, prune_model  # noqa: E402
from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu, native_bf16  # noqa: E402
from autocompress.measure.latency import LatencyMeter  # noqa: E402
from autocompress.policy import PrunePolicy, QuantPolicy  # noqa: E402
from autocompress.runtimes import Artifact, get_runtime  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402

OUT = HERE.parent / "results" / "_bench_torch_program"
COLUMNS = ("model", "program", "precision read back", "agree", "ms", "interval", "ratio to trace (3 runs)")


def plain_trace(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Artifact:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model.eval(), example[:1], check_trace=False), str(path))
    return Artifact(path=path, quant=QuantPolicy(mode="none"), runtime="torch")


def predictions(runner: Any, images: np.ndarray) -> np.ndarray:
    with runner.session():
        return np.concatenate([runner.run(images[i : i + 1]).argmax(1) for i in range(len(images))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7])
    parser.add_argument("--output", type=Path, default=HERE / "torch_program.md")
    args = parser.parse_args()
    cache = HERE.parent / "results" / "_cache"  # the demo teacher the README's command 1 trained, if it is there
    workload = load_workload(SearchConfig(output=cache.parent if cache.is_dir() else OUT))
    runtime = get_runtime("torch")
    cpu = detect_cpu()
    example = workload.example_input()
    groups = prunable_groups(workload.model, example, num_classes=workload.num_classes)
    images = torch.stack([workload.val[i][0] for i in range(len(workload.val))]).numpy()
    rows: list[dict[str, Any]] = []
    for level in args.levels:
        name = "teacher" if level == 0 else f"uniform prune {level:.0%}"
        model = (
            workload.model
            if level == 0
            else prune_model(
                workload.model,
                PrunePolicy(ratios={g.name: level for g in groups}, round_to=4),
                example,
                num_classes=workload.num_classes,
            )
        )
        base = OUT / f"{int(level * 100):02d}"
        trace = plain_trace(model, example, base / "trace" / "model.pt")
        programs = {"trace": trace}
        for mode, label in (("none", "frozen fp32"), ("bf16", "frozen bf16")):
            programs[label] = runtime.build(
                model, QuantPolicy(mode=mode), example_input=example, calibration=workload.train, workdir=base / mode
            )
        with torch.no_grad():
            reference = model.eval()(torch.from_numpy(images)).argmax(1).numpy()
        meter = LatencyMeter(runtime, trace, workload.input_shape, threads=args.threads, batch_size=1)
        meter.calibrate()
        for label, artifact in programs.items():
            runner = runtime.runner(artifact, threads=args.threads, batch_size=1)
            agree = float((predictions(runner, images) == reference).mean())
            figures = [meter.measure(artifact, runner=runner) for _ in range(3)]
            last = figures[-1]
            rows.append(
                {
                    "model": name,
                    "program": label,
                    "precision read back": " ".join(f"{k} {v}" for k, v in sorted(runner.precision().items())),
                    "agree": f"{agree:.1%}",
                    "ms": f"{last.median_ms:.3f}",
                    "interval": f"[{last.low_ms:.3f}, {last.high_ms:.3f}]" if last.low_ms is not None else "",
                    "ratio to trace (3 runs)": " / ".join(f"{f.ratio:.2f}" for f in figures if f.ratio is not None),
                }
            )
            print(" · ".join(str(rows[-1][c]) for c in COLUMNS), flush=True)
    cpu_text = (
        f"{cpu.model} ({cpu.isa}; flags {', '.join(sorted(cpu.flags))}; bf16 "
        f"{'native' if native_bf16(cpu) else 'emulated: the runtime does not offer it here'})"
    )
    lines = [
        "# PyTorch runtime: plain trace vs frozen fp32 vs frozen bf16",
        "",
        f"Generated by `python benchmarks/torch_program.py`. CPU: **{cpu_text}**; torch {torch.__version__}, "
        f"{args.threads} thread(s), batch 1; demo workload. `ratio to trace`: the program's latency over the "
        "plain trace of the same model, timed side by side with the study's protocol, three figures in a row. "
        "`agree`: top-1 equal to the fp32 module's on the val split.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    args.output.write_text("\n".join(lines) + "\n")
    with args.output.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

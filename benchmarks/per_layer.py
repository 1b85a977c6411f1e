"""Benchmark: per-layer int8 (mixed precision) against all-or-nothing int8, per runtime, on the demo.

For each runtime that has an int8 path (ONNX Runtime: ``nodes_to_exclude``; OpenVINO: NNCF ``ignored_scope``) it runs
two searches of the demo workload at the default budget (0.25x the teacher on that runtime), same sampler and seed:

- **all-or-nothing**: the default space (an int8 trial quantizes every layer);
- **per-layer**: ``benchmarks/per_layer.yaml``, the default space with ``quantize.per_layer: true`` (an int8 trial also
  chooses, for every prunable group's root layer, to keep it in fp32);
- **refine**: ``benchmarks/per_layer_refine.yaml``, the default space with ``quantize.refine_layers: true`` (the
  sampler's space is the default one; after the search the int8 choice is deployed again from its fine-tuned weights
  with one layer in fp32 at a time, then with the layers that helped together).

Then both chosen artifacts of a runtime are timed **side by side in one process** with the study's protocol, next to
the teacher's fp32 artifact on that runtime (:class:`~autocompress.measure.latency.LatencyMeter`), and scored on the
test split (360 digits no search saw). The figure the acceptance asks for is the per-layer chosen model's latency
over the all-or-nothing one's, at equal accuracy (test drop within one image). Search figures (feasible trials,
int8 trials, mixed ones, the fresh-process re-measurement) come from each study's records.

    python benchmarks/per_layer.py                          # → per_layer.md, per_layer.csv
    python benchmarks/per_layer.py --runtimes onnxruntime --trials 20
    python benchmarks/per_layer.py --plans all-or-nothing refine --output /tmp/per_layer_zen4.md

Run it on an otherwise idle machine: the searches measure latency.
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autocompress.config import SearchConfig  # noqa: E402
from autocompress.hardware.cpu import detect_cpu  # noqa: E402
from autocompress.measure.accuracy import evaluate  # noqa: E402
from autocompress.measure.latency import LatencyMeter  # noqa: E402
from autocompress.policy import QuantPolicy  # noqa: E402
from autocompress.runtimes import get_runtime  # noqa: E402
from autocompress.sources.workload import load_workload  # noqa: E402
from autocompress.study.pareto import hypervolume  # noqa: E402
from autocompress.study.record import AFTER_SEARCH_ROLES  # noqa: E402
from autocompress.study.session import run_study  # noqa: E402
from autocompress.study.space import load_space  # noqa: E402

OUT = HERE.parent / "results" / "_bench_per_layer"
PLANS = {
    "all-or-nothing": "default",
    "per-layer": str(HERE / "per_layer.yaml"),
    "refine": str(HERE / "per_layer_refine.yaml"),
}
COLUMNS = (
    "runtime",
    "plan",
    "trials",
    "feasible",
    "int8 trials",
    "mixed int8 trials",
    "refined",
    "HV",
    "chosen",
    "val drop pt",
    "search ms",
    "fresh re-measure ms",
    "side-by-side ms",
    "interval",
    "vs teacher",
    "test top-1",
    "test drop (images)",
    "budget ms",
    "wall s",
)


def search(runtime: str, plan: str, *, trials: int, seed: int) -> dict[str, Any]:
    name = f"perlayer-{runtime}-{plan}-s{seed}"
    shutil.rmtree(OUT / name, ignore_errors=True)  # a fresh study each run (a resume would keep old figures)
    config = SearchConfig(runtime=runtime, space=PLANS[plan], trials=trials, seed=seed, study_name=name, output=OUT)
    workload = load_workload(config)
    started = time.perf_counter()
    result = run_study(workload, load_space(config.space), config, say=lambda _: None)
    wall = time.perf_counter() - started
    counted = [r for r in result.records if r.role not in AFTER_SEARCH_ROLES and r.outcome in ("complete", "failed")]
    refined = [r for r in result.records if r.role == "refined"]
    int8 = [r for r in counted if r.policy is not None and r.policy.quant.mode == "int8"]
    choice = result.choice
    row: dict[str, Any] = {
        "runtime": runtime,
        "plan": plan,
        "trials": len(counted),
        "feasible": sum(r.feasible for r in counted),
        "int8 trials": len(int8),
        "mixed int8 trials": sum(bool(r.policy.quant.fp32_layers) for r in int8),  # type: ignore[union-attr]
        "refined": f"{len(refined)} ({sum(r.feasible for r in refined)} feasible)" if refined else "",
        "HV": round(hypervolume(counted), 4),
        "budget ms": round(result.reference.budget_ms, 4),
        "wall s": round(wall),
        "chosen": "none",
        "_artifact": None,
        "_workload": workload,
    }
    if choice is not None:
        record = choice.record
        fp32_layers = record.policy.quant.fp32_layers if record.policy else ()
        row.update(
            {
                "chosen": ("chosen: " if choice.feasible else "over budget: ")
                + record.summary
                + (f" (fp32: {', '.join(fp32_layers)})" if fp32_layers else ""),
                "val drop pt": round(record.accuracy_drop_pt or 0.0, 2),
                "search ms": round(record.latency_ms or 0.0, 4),
                "fresh re-measure ms": round(choice.confirmed.median_ms, 4) if choice.confirmed else "",
                "_artifact": record.artifact_in(config.study_dir),
            }
        )
    return row


def side_by_side(rows: list[dict[str, Any]]) -> None:
    """Time every chosen artifact of one runtime in this one process, beside that runtime's fp32 teacher."""
    workload = rows[0]["_workload"]
    runtime = get_runtime(rows[0]["runtime"])
    config = SearchConfig()
    teacher = runtime.build(
        workload.model,
        QuantPolicy(),
        example_input=workload.example_input(),
        calibration=workload.train,
        workdir=OUT / f"teacher-{runtime.name}",
    )
    meter = LatencyMeter(runtime, teacher, workload.input_shape, threads=1, batch_size=1, protocol=config.protocol)
    meter.calibrate()
    teacher_acc = evaluate(runtime.runner(teacher, threads=1), workload.test).top1
    for row in rows:
        artifact = row["_artifact"]
        if artifact is None:
            continue
        latency = meter.measure(artifact)
        top1 = evaluate(runtime.runner(artifact, threads=1), workload.test).top1
        row.update(
            {
                "side-by-side ms": round(latency.median_ms, 4),
                "interval": f"[{latency.low:.3f}, {latency.high:.3f}]",
                "vs teacher": f"{1.0 / latency.ratio:.2f}x" if latency.ratio else "",
                "test top-1": f"{top1:.2%}",
                "test drop (images)": round((teacher_acc - top1) * len(workload.test)),
            }
        )


def write(rows: list[dict[str, Any]], *, cpu: str, trials: int, seed: int, output: Path) -> None:
    with output.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    intro = (
        f"Generated by `python benchmarks/per_layer.py`. CPU: **{cpu}**; 1 thread, batch 1; demo workload, "
        f"default budget (0.25x the teacher on each runtime), {trials} trials, TPE seed {seed} per search. "
        "`side-by-side ms`: both chosen artifacts of a runtime timed in one process next to that runtime's fp32 "
        "teacher (`vs teacher` is that ratio); `test drop (images)` against the teacher on the same runtime, "
        "360 test digits."
    )
    lines = [
        "# Per-layer int8 vs all-or-nothing int8, per runtime",
        "",
        intro,
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    lines += ["", "Each plan's chosen / all-or-nothing chosen, side by side:", ""]
    for runtime in dict.fromkeys(r["runtime"] for r in rows):
        pair = {r["plan"]: r for r in rows if r["runtime"] == runtime}
        a = pair.get("all-or-nothing", {})
        for plan in [p for p in pair if p != "all-or-nothing"]:
            b = pair[plan]
            if a.get("side-by-side ms") and b.get("side-by-side ms"):
                lines.append(
                    f"- {runtime}, {plan}: {b['side-by-side ms'] / a['side-by-side ms']:.2f}x the latency "
                    f"({b['side-by-side ms']:.3f} vs {a['side-by-side ms']:.3f} ms), test drop "
                    f"{b['test drop (images)']} vs {a['test drop (images)']} images"
                )
            else:
                lines.append(f"- {runtime}, {plan}: a search chose nothing (or all-or-nothing was not run)")
    output.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runtimes", nargs="+", default=["onnxruntime", "openvino"], choices=["onnxruntime", "openvino"]
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plans", nargs="+", default=list(PLANS), choices=list(PLANS))
    parser.add_argument("--output", type=Path, default=HERE / "per_layer.md", help="the report (and .csv beside it)")
    args = parser.parse_args()
    logging.getLogger("optuna").setLevel(logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache = HERE.parent / "results" / "_cache"  # the demo teacher the README's command 1 trained, not a new one
    if cache.is_dir() and not (OUT / "_cache").is_dir():
        shutil.copytree(cache, OUT / "_cache")
    cpu = detect_cpu()
    cpu_text = f"{cpu.model} ({cpu.isa}; flags {', '.join(sorted(cpu.flags))})"
    rows: list[dict[str, Any]] = []
    for runtime in args.runtimes:
        pair = [search(runtime, plan, trials=args.trials, seed=args.seed) for plan in args.plans]
        side_by_side(pair)
        rows += pair
        for row in pair:
            print(" · ".join(f"{c}={row.get(c, '')}" for c in COLUMNS), flush=True)
        write(rows, cpu=cpu_text, trials=args.trials, seed=args.seed, output=args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

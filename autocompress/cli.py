"""Command line: argument parsing and error mapping only — the work happens in :mod:`autocompress.search`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from autocompress.config import SAMPLERS, SearchConfig, parse_budget
from autocompress.errors import AutocompressError

__all__ = ["main", "build_parser"]

_DEFAULTS = SearchConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autocompress",
        description="Find the best pruning + distillation + int8 policy for a PyTorch image classifier under a CPU latency budget.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser(
        "search",
        help="run (or resume) a compression-policy search",
        description="Run an Optuna study: every trial prunes, fine-tunes with distillation, quantizes with ONNX Runtime "
        "and measures the artifact's latency and accuracy. With no options it compresses the embedded demo "
        "(a small ResNet trained on scikit-learn digits).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--model", default=_DEFAULTS.model, help="model to compress: 'demo' (embedded small ResNet)")
    s.add_argument("--data", default=_DEFAULTS.data, help="dataset: 'digits' (scikit-learn load_digits, 32x32)")
    s.add_argument("--trials", type=int, default=_DEFAULTS.trials, help="total finished trials the study should have; a rerun resumes up to this number")
    s.add_argument("--timeout", type=float, default=None, help="stop starting new trials after this many seconds")
    s.add_argument("--latency-budget", default=str(_DEFAULTS.latency_budget),
                   help="latency limit: milliseconds (2.5 or 2.5ms) or a fraction of the teacher's fp32 ONNX Runtime latency (0.5x)")
    s.add_argument("--max-accuracy-drop", type=float, default=_DEFAULTS.max_accuracy_drop,
                   help="allowed top-1 drop on the validation split, in percentage points")
    s.add_argument("--space", default=_DEFAULTS.space, help="search space: a name in search_spaces/ or a path to a YAML file")
    s.add_argument("--study-name", default=_DEFAULTS.study_name, help="study name; also the folder under --output")
    s.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///OUTPUT/STUDY/study.db)")
    s.add_argument("--output", type=Path, default=_DEFAULTS.output, help="results folder")
    s.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of the sampler, calibration and fine-tuning")
    s.add_argument("--threads", type=int, default=_DEFAULTS.threads, help="intra-op threads latency is measured with")
    s.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="batch size latency is measured at")
    s.add_argument("--sampler", choices=SAMPLERS, default=_DEFAULTS.sampler, help="Optuna sampler")
    s.add_argument("--repeats", type=int, default=_DEFAULTS.repeats, help="timed runs per latency measurement (after warm-up)")
    s.add_argument("--warmup", type=int, default=_DEFAULTS.warmup, help="untimed warm-up runs per latency measurement")
    s.add_argument("--quiet", action="store_true", help="print only the final table and the chosen model's path")
    s.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    return parser


def _config(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(
        model=args.model, data=args.data, trials=args.trials, timeout=args.timeout,
        latency_budget=parse_budget(args.latency_budget), max_accuracy_drop=args.max_accuracy_drop,
        space=args.space, study_name=args.study_name, storage=args.storage, output=args.output, seed=args.seed,
        threads=args.threads, batch_size=args.batch_size, sampler=args.sampler, warmup=args.warmup, repeats=args.repeats,
    )


def _search(args: argparse.Namespace, console: Console) -> int:
    import optuna

    from autocompress.export import export_chosen
    from autocompress.report import pareto_table, write_csv
    from autocompress.search import run_study
    from autocompress.space import load_space
    from autocompress.workload import load_workload

    config = _config(args)
    space = load_space(config.space)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    started = time.perf_counter()

    def say(message: str) -> None:
        if not args.quiet:
            console.print(message, highlight=False, markup=False)

    workload = load_workload(config.model, config.data, cache_dir=config.cache_dir, progress=say)
    result = run_study(workload, space, config, say=say)
    study_dir = config.study_dir
    write_csv(study_dir / "trials.csv", result.candidates, result.choice)
    write_csv(study_dir / "pareto.csv", result.front, result.choice)
    pareto_table(result.front, result.choice, budget_ms=result.reference.budget_ms, console=console)
    if result.choice is None:
        console.print("no finished trial to choose from")
        return 1
    if not result.choice.feasible:
        console.print(f"[bold yellow]warning:[/] {result.choice.reason}; saving it anyway")
    chosen = export_chosen(result.choice, workload=workload, reference=result.reference, config=config)
    import json

    m = json.loads((chosen / "metrics.json").read_text())
    console.print(
        f"chosen: trial {m['trial']} ({m['policy_summary']}) — test accuracy {m['accuracy']['test_top1']:.2%} "
        f"(teacher {m['accuracy']['teacher_test_top1']:.2%}, drop {m['accuracy']['test_drop_pt']:+.2f} pt), "
        f"{m['latency']['chosen_ms']['median_ms']:.3f} ms = {m['latency']['speedup_vs_teacher_torch']:.1f}× faster than the "
        f"PyTorch teacher ({m['latency']['teacher_torch_fp32_ms']['median_ms']:.3f} ms), "
        f"{m['latency']['speedup_vs_teacher_ort']:.1f}× vs its fp32 ONNX export",
        highlight=False,
    )
    console.print(f"chosen model: {chosen}", highlight=False)
    console.print(f"study: {config.storage_url} · {len(result.candidates)} finished, {result.failed} failed · "
                  f"{time.perf_counter() - started:.0f} s", highlight=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autocompress`` and ``python -m autocompress``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Wide enough for the Pareto table when output goes to a file or CI log (rich assumes 80 columns there).
    console = Console(width=None if sys.stdout.isatty() else 160)
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _search(args, console)
    except AutocompressError as exc:
        if args.debug:
            raise
        print(f"autocompress: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autocompress: interrupted; the study is saved and resumes when you run the same command again", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

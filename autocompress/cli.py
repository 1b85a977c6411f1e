"""Command line: argument parsing, config files and error mapping only.

The work happens in :mod:`autocompress.study.session`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from autocompress.config import LatencyBudget, SearchConfig, first_missing, parse_budget, read_yaml
from autocompress.errors import AutocompressError, ConfigError, WorkloadError

__all__ = ["main", "build_parser", "load_config_file"]

_DEFAULTS = SearchConfig()
# Options that only steer this process' output; they cannot be set from a config file.
_NOT_IN_CONFIG = {"config", "quiet", "debug", "command", "worker_only"}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are ConfigErrors: one line on stderr and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see {self.prog} --help")


def _add_study_options(parser: argparse.ArgumentParser, *, output_help: str) -> None:
    """``--study``, ``--output`` and ``--storage``: which existing study a command reads (dashboard, report)."""
    parser.add_argument("--study", default=None, help="study name (default: demo, or the only study in --storage)")
    parser.add_argument(
        "--output",
        type=Path,
        default=_DEFAULTS.output,
        help=f"results folder of the search; {output_help} (default: {_DEFAULTS.output})",
    )
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///OUTPUT/STUDY/study.db)")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`SearchConfig` field, from the field's metadata (help, group, argparse keywords):
    the config file's keys and :func:`config_from_args` follow from the same fields."""
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(SearchConfig):
        if f.metadata["group"] not in groups:
            groups[f.metadata["group"]] = parser.add_argument_group(f.metadata["group"])
        group = groups[f.metadata["group"]]
        flag = "--" + f.name.replace("_", "-")
        default = getattr(_DEFAULTS, f.name)
        if isinstance(default, bool):
            group.add_argument(flag, action="store_true", help=f.metadata["help"])
            continue
        if isinstance(default, LatencyBudget):
            default = str(default)  # parsed by config_from_args, like a value from the command line
        group.add_argument(flag, default=default, help=f.metadata["help"], **f.metadata["cli"])


def build_parser() -> argparse.ArgumentParser:
    """The ``autocompress`` parser: one subcommand each for search, measure-worker, dashboard and report."""
    parser = _Parser(
        prog="autocompress",
        description="Find the best pruning + distillation + int8 policy for a PyTorch image classifier "
        "under a CPU latency budget.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_search_parser(sub)
    _add_measure_worker_parser(sub)
    _add_dashboard_parser(sub)
    _add_report_parser(sub)
    return parser


def _add_run_output_options(parser: argparse.ArgumentParser) -> None:
    """``--no-explain``, ``--quiet`` and ``--debug`` of the commands that run a study (search, measure-worker)."""
    parser.add_argument(
        "--no-explain",
        action="store_true",
        help="write report.html without the per-group sensitivity profile and the technique breakdown "
        "(they rebuild and time some 30 models: about a minute on the demo); `autocompress report` "
        "adds them later",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final table and the chosen model's path")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")


def _add_search_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``autocompress search``: every SearchConfig option, a config file, and the output switches."""
    s = sub.add_parser(
        "search",
        help="run (or resume) a compression-policy search",
        description="Run an Optuna study: every trial prunes, fine-tunes with distillation, builds the artifact for "
        "--runtime (int8 where it pays) and measures the artifact's latency and accuracy. With no options it "
        "compresses the embedded demo (a small ResNet trained on scikit-learn digits).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file whose keys are these options (dashes or underscores); options given on the command line win",
    )
    _add_config_options(s)
    s.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)  # a process started by --workers
    _add_run_output_options(s)


def _add_measure_worker_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``autocompress measure-worker``: the search's options, run on the deploy target for --build-only hosts."""
    m = sub.add_parser(
        "measure-worker",
        help="on the deploy target: set a study up, time and score what --build-only hosts build, finish it",
        description="Run on the machine the model will be deployed on, with the same options as `search` (model, data, "
        "--storage, --study-name, --output, --trials). It measures the teacher and probes the reachable range on this "
        "CPU (the budget is this machine's), then answers every latency and accuracy request of `search --build-only` "
        "processes on other hosts (e.g. a GPU host fine-tuning), and finishes the study as `search` does: rescue, the "
        "fresh-process confirmation of the choice, export. --output must be a folder the build hosts see at the same "
        "path (a shared filesystem).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m.add_argument("--config", type=Path, default=None, help="YAML file whose keys are the search options")
    _add_config_options(m)
    _add_run_output_options(m)


def _add_dashboard_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``autocompress dashboard``: which study to serve, and where."""
    d = sub.add_parser(
        "dashboard",
        help="inspect a study in optuna-dashboard",
        description="Serve a study with optuna-dashboard: trials, Pareto front, feasibility, each trial's ONNX model "
        "and policy.json to download, and a note with the config, CPU, budget and chosen trial. Needs "
        'pip install "autocompress[dashboard]".',
    )
    _add_study_options(d, output_help="the study and its artifacts are in OUTPUT/STUDY/")
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 opens the study to the network (default: 127.0.0.1)",
    )
    d.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    d.add_argument("--debug", action="store_true", help="show tracebacks and every request")


def _add_report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``autocompress report``: which study to explain, and whether to rebuild models for the explanation."""
    r = sub.add_parser(
        "report",
        help="write report.html and PNGs that explain a study",
        description="Write OUTPUT/STUDY/report.html (self-contained, opens offline) and its charts as PNGs in "
        "OUTPUT/STUDY/report/: Pareto front, hypervolume, parameter importance, reachable latency range, per-group "
        "sensitivity and what each technique (pruning, KD, int8) gave the chosen model, measured on this machine.",
    )
    _add_study_options(r, output_help="the report is written to OUTPUT/STUDY/")
    r.add_argument(
        "--no-explain",
        action="store_true",
        help="skip the sensitivity profile and the technique breakdown (they rebuild and measure models)",
    )
    r.add_argument("--quiet", action="store_true", help="print only the report's path")
    r.add_argument("--debug", action="store_true", help="show tracebacks and library logs")


def load_config_file(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read a YAML config whose keys are ``search`` options; unknown keys are an error naming file and key."""
    data = read_yaml(path, option="--config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    search = _search_parser(parser)
    actions = {a.dest: a for a in search._actions if a.dest not in _NOT_IN_CONFIG and a.dest != "help"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest in values:  # e.g. study-name and study_name: one option given twice
            given = next(k for k in data if str(k).replace("-", "_") == dest)
            raise ConfigError(f"--config {path}: {given!r} and {key!r} are the same option; keep one of them")
        if dest not in actions:
            raise ConfigError(
                f"{path}: unknown key {key!r}; valid keys are the search options: "
                f"{', '.join(sorted(k.replace('_', '-') for k in actions))}"
            )
        action = actions[dest]
        if value is not None and action.type is not None and not isinstance(action, argparse._StoreTrueAction):
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{path}: {key}: expected {getattr(action.type, '__name__', action.type)}, got {value!r}"
                ) from None
        if value is not None and action.choices is not None and value not in action.choices:
            raise ConfigError(f"{path}: {key}: expected one of {', '.join(map(str, action.choices))}, got {value!r}")
        if isinstance(action, argparse._StoreTrueAction) and not isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected true or false, got {value!r}")
        values[dest] = value
    return values


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _search_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return _subparser(parser, "search")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; values from ``--config`` become defaults, so explicit options override them."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is not None:
        _subparser(parser, args.command).set_defaults(**load_config_file(args.config, parser))  # search, measure-worker
        args = parser.parse_args(argv)
    return args


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The :class:`SearchConfig` of parsed ``search`` options (one option per field)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SearchConfig)}
    values["latency_budget"] = parse_budget(values["latency_budget"])
    values["output"] = Path(values["output"])
    return SearchConfig(**values)


# The module SQLAlchemy imports for a storage URL → what to pip install for it.
def _search(args: argparse.Namespace, console: Console) -> int:
    import optuna

    from autocompress.scale.storage import check_connection, check_existing_study
    from autocompress.sources.workload import load_workload
    from autocompress.study.session import Mode, run_study
    from autocompress.study.space import load_space

    config = config_from_args(args)
    measure_worker = args.command == "measure-worker"
    if measure_worker and (config.build_only or config.workers > 1):
        raise ConfigError(
            "measure-worker: --build-only and --workers are for build hosts (`search`); the measure "
            "worker times one artifact at a time on this machine"
        )
    space = load_space(config.space)  # SearchConfig checked --output and --storage's URL (config.check_output)
    check_connection(config)
    check_existing_study(config)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    started = time.perf_counter()

    def say(message: str) -> None:
        if not args.quiet:
            console.print(message, highlight=False, markup=False, soft_wrap=True)

    created = {first_missing(config.study_dir), first_missing(config.cache_dir)} - {None}
    with _undone_on_bad_input(config, created):
        workload = load_workload(config, progress=say)
    if config.workers > 1:
        import torch

        from autocompress.hardware.cpu import process_cores

        # N processes share the cores for fine-tuning (timing is serialised by the core guard): the cores this process
        # may run on (`taskset -c 0-11` on a GPU host that times on other cores), not every core of the host.
        torch.set_num_threads(max(1, len(process_cores()) // config.workers))
    mode = Mode.of(config, worker=getattr(args, "worker_only", False), measure_worker=measure_worker)
    if not mode.finishes:
        result = run_study(workload, space, config, say=say, mode=mode)
        say(
            f"worker done: {sum(1 for r in result.records if r.stages.get('worker', {}).get('pid') == os.getpid())} "
            f"trials of study {config.study_name!r} ran in this process"
        )
        return 0
    live = console.is_terminal and not args.quiet  # in logs and pipes the per-trial lines are the progress
    with _undone_on_bad_input(config, created), _workers(config, args, say) as workers:
        if live:
            from autocompress.report.progress import RichProgress

            with RichProgress(console, total=config.trials) as bar:
                result = run_study(workload, space, config, say=say, progress=bar, mode=mode)
        else:
            result = run_study(workload, space, config, say=say, mode=mode)
        workers.join()
    return _publish(
        result, config=config, workload=workload, console=console, say=say, started=started, explain=not args.no_explain
    )


@contextlib.contextmanager
def _undone_on_bad_input(config: SearchConfig, created: set[Path | None]) -> Iterator[None]:
    """Bad input found while the data was decoded or the study set up (e.g. a teacher at chance): remove the folders
    this run created (``created``: the study's, the image stores'), unless a trial already ran."""
    try:
        yield
    except (ConfigError, WorkloadError):
        if not (config.study_dir / "trials").exists():
            for folder in created:
                shutil.rmtree(folder, ignore_errors=True)  # type: ignore[arg-type]
        raise


def _publish(
    result: Any,
    *,
    config: SearchConfig,
    workload: Any,
    console: Console,
    say: Any,
    started: float,
    explain: bool = True,
) -> int:
    """The post-search step (:func:`autocompress.report.publish.publish`: CSVs, export, report), told in the
    terminal: the Pareto table, the chosen model's line and the study's counts."""
    from autocompress.report.publish import publish
    from autocompress.report.table import pareto_table

    pareto_table(
        result.front,
        result.choice,
        budget_ms=result.reference.budget_ms,
        teacher_torch_ms=result.reference.torch_latency.median_ms,
        console=console,
    )
    choice = result.choice
    if choice is not None and not choice.feasible:
        assert choice.suggested_budget_ms is not None
        ratio = choice.suggested_budget_ms / result.reference.runtime_latency.median_ms
        console.print(
            f"[bold yellow]infeasible:[/] {choice.reason}; exporting it as over_budget/, not as chosen/; "
            f"it meets --latency-budget {choice.suggested_budget_ms:g}ms ({ratio:.2f}x)",
            highlight=False,
            soft_wrap=True,
        )
    published = publish(result, config=config, workload=workload, report=choice is not None, explain=explain, say=say)
    if published.folder is None or published.metrics is None:
        console.print(
            f"no trial keeps the accuracy limit of {config.max_accuracy_drop:g} pt, so nothing is exported; "
            "run more --trials or allow a larger --max-accuracy-drop",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    _print_chosen(published.metrics, published.folder, choice=choice, config=config, console=console)
    if published.report is not None:
        console.print(f"report: {published.report}", highlight=False, soft_wrap=True)
    else:
        console.print(
            f"[yellow]report not written:[/] {published.report_error} (run `autocompress report` to retry)",
            highlight=False,
            soft_wrap=True,
        )
    _print_counts(result, config=config, console=console, started=started)
    return 0


def _print_chosen(m: dict[str, Any], folder: Path, *, choice: Any, config: SearchConfig, console: Console) -> None:
    """The closing line on the exported model, from its metrics.json."""
    acc = m["accuracy"]
    drop, (low, high) = acc["test_drop_pt"], acc["test_drop_interval_pt"]
    if drop > 0.005:
        drop_text = f"drop {drop:.2f} pt"
    elif drop < -0.005:  # the interval printed below says whether it is more than noise
        drop_text = f"{-drop:.2f} pt above the teacher on test"
    else:
        drop_text = "no drop on test"
    drop_text += f", 95 % interval [{low:+.2f}, {high:+.2f}] pt"
    if acc["test_drop_may_exceed_limit"]:
        drop_text += f": it may exceed the {acc['max_drop_pt']:g} pt limit on new data (more test images resolve it)"
    feasible = bool(m["feasible"])  # the export re-measures; a model over the budget then is not called chosen
    if choice.feasible and not feasible:
        console.print(f"[bold yellow]infeasible after all:[/] {m['choice_reason']}", highlight=False, soft_wrap=True)
    head = f"chosen (--prefer {m['prefer']})" if feasible else f"over budget by {m['latency']['overshoot_ms']:.3f} ms"
    console.print(
        f"{head}: trial {m['trial']} ({m['policy_summary']}) — test accuracy {m['accuracy']['test_top1']:.2%} "
        f"(teacher {m['accuracy']['teacher_test_top1']:.2%}, {drop_text}), "
        f"{m['latency']['chosen_ms']['median_ms']:.3f} ms (budget {m['latency']['budget_ms']:.3f}) = "
        f"{m['latency']['speedup_vs_teacher_torch']:.1f}× faster than the PyTorch teacher "
        f"({m['latency']['teacher_torch_fp32_ms']['median_ms']:.3f} ms), "
        f"{m['latency']['speedup_vs_teacher_fp32']:.1f}× vs its fp32 export on {m['latency']['runtime']['runtime']}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"{'chosen model' if feasible else 'over-budget model'}: {folder}", highlight=False, soft_wrap=True)


def _print_counts(result: Any, *, config: SearchConfig, console: Console, started: float) -> None:
    counts = {o: sum(1 for r in result.records if r.outcome == o) for o in ("complete", "stopped", "skipped", "failed")}
    noise = result.noise
    console.print(
        f"study: {config.storage_url} · {counts['complete']} complete, {counts['stopped']} stopped over budget "
        f"before fine-tuning, {counts['skipped']} skipped as predicted over budget (never built), "
        f"{counts['failed']} failed, {sum(bool(r.quant_ruled_out) for r in result.records)} built fp32 "
        f"where int8 was predicted no faster · latency figures not quiet: {noise.get('not_quiet', 0)} of "
        f"{noise.get('figures', 0)} · latency model median abs error "
        f"{result.latency_model.get('median_abs_pct_error', '—')} % · {time.perf_counter() - started:.0f} s",
        highlight=False,
        soft_wrap=True,
    )


def _dashboard(args: argparse.Namespace) -> int:
    from autocompress.report.dashboard import serve

    try:
        serve(
            study_name=args.study,
            output=args.output,
            storage=args.storage,
            host=args.host,
            port=args.port,
            say=lambda message: print(message, flush=True),
        )
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace, console: Console) -> int:
    from autocompress.report.html import write_report

    def say(message: str) -> None:
        if not args.quiet:
            console.print(message, highlight=False, markup=False, soft_wrap=True)

    report = write_report(
        study_name=args.study, output=args.output, storage=args.storage, explain=not args.no_explain, progress=say
    )
    for note in report.notes:
        say(f"note: {note}")
    console.print(
        f"report: {report.html} ({len(report.images)} charts in {report.html.parent / 'report'})",
        highlight=False,
        soft_wrap=True,
    )
    return 0


class _Workers:
    """The extra processes of ``--workers N`` (each runs ``search ... --worker-only``, logging to a file)."""

    def __init__(self, config: SearchConfig, argv: Sequence[str], say: Any) -> None:
        import subprocess

        self.say = say
        self.logs: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        folder = config.study_dir / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(1, config.workers):
            log = folder / f"worker-{k}.log"
            with log.open("wb") as fh:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "autocompress", *argv, "--worker-only"],
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                    )
                )
            self.logs.append(log)
        if self.procs:
            say(
                f"started {len(self.procs)} more worker process(es) on this study (pids "
                f"{', '.join(str(p.pid) for p in self.procs)}; logs in {folder})"
            )

    def join(self) -> None:
        for proc, log in zip(self.procs, self.logs):
            rc = proc.wait()
            if rc != 0:
                tail = (log.read_text(errors="replace").strip().splitlines() or ["(empty log)"])[-1]
                self.say(f"warning: worker pid {proc.pid} exited with code {rc}: {tail} (log: {log})")

    def stop(self) -> None:
        import signal

        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # each queues its trial again, as a Ctrl-C does
        for proc in self.procs:
            try:
                proc.wait(timeout=120)
            except Exception:
                proc.kill()


@contextlib.contextmanager
def _workers(config: SearchConfig, args: argparse.Namespace, say: Any) -> Iterator[_Workers]:
    workers = _Workers(config, getattr(args, "argv", []), say)
    try:
        yield workers
    except BaseException:
        workers.stop()
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autocompress`` and ``python -m autocompress``; returns the exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        args = parse_args(argv)
        args.argv = list(argv if argv is not None else sys.argv[1:])
        if args.command is None:
            build_parser().print_help()
            return 2
        # Wide enough for the Pareto table when output goes to a file or CI log (rich assumes 80 columns there).
        console = Console(width=None if sys.stdout.isatty() else 160)
        logging.basicConfig(
            level=logging.INFO if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
        if args.command == "report":
            return _report(args, console)
        return _dashboard(args) if args.command == "dashboard" else _search(args, console)  # search, measure-worker
    except AutocompressError as exc:
        if debug:
            raise
        print(f"autocompress: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"autocompress: interrupted; finished trials are saved — resume with: {_resume_command(argv)}",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        from autocompress.study.session import SearchInterrupted

        if not isinstance(exc, SearchInterrupted):
            raise
        print(
            f"autocompress: {exc}; the trial in progress is queued again — resume with: {_resume_command(argv)}",
            file=sys.stderr,
        )
        return 130


def _resume_command(argv: Sequence[str] | None) -> str:
    """The command line that resumes this run (the same command: a study resumes by name)."""
    import shlex

    args = list(argv if argv is not None else sys.argv[1:])
    return shlex.join(["python", "-m", "autocompress", *args])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

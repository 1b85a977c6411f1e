"""Open a study in optuna-dashboard: its storage, its artifacts and a note that says what the study was about.

``autocompress dashboard`` serves the study's storage with optuna-dashboard (an optional dependency:
``pip install "autocompress[dashboard]"``), bound to 127.0.0.1 unless told otherwise. Each trial's ONNX model and
``policy.json`` are in the study's artifact store (``<output>/<study>/artifacts``) and download from the trial's page.
At start the study gets a markdown note (the dashboard's "Note" panel): the budget, the teacher, the chosen trial,
the CPU/ISA fingerprint and the config, read from the study's user attributes and :class:`TrialRecord` s, so a
study that misses some of them (older, or still running) still opens.

Feasibility shows because :func:`autocompress.study.record.write_record` also writes the ``constraints`` list that
optuna-dashboard 0.21 reads (it ignores Optuna 5's ``constraints:<name>`` keys).

Example:
    >>> board = open_dashboard(study_name="demo", output=Path("results"))  # doctest: +SKIP
    >>> server = make_server(board, host="127.0.0.1", port=8080)  # doctest: +SKIP
    >>> server.serve_forever()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import optuna

from autocompress.config import PREFERENCES
from autocompress.errors import ConfigError, MissingDependencyError, StudyNotFoundError
from autocompress.scale.storage import open_existing_study
from autocompress.study.record import ARTIFACTS_DIR, TrialRecord, read_records

__all__ = [
    "Dashboard",
    "StudyNotFoundError",
    "open_dashboard",
    "make_server",
    "serve",
    "study_note",
    "chosen_record",
    "DEFAULT_PORT",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
_INSTALL = 'pip install "autocompress[dashboard]"'
_METRIC_NAMES = ["accuracy", "latency_ms"]


def _import_dashboard() -> Any:
    try:
        import optuna_dashboard
    except ImportError:
        raise MissingDependencyError(f"optuna-dashboard is not installed; run: {_INSTALL}") from None
    return optuna_dashboard


@dataclass(frozen=True)
class Dashboard:
    """A study ready to serve.

    Attributes:
        study: the study the note was written to (the server shows every study of its storage).
        study_id: its id in the storage (the dashboard's URLs use it).
        storage_url: where the study lives.
        artifact_dir: the study's artifact store, or ``None`` when the study has none.
        app: the optuna-dashboard WSGI application.
    """

    study: optuna.Study
    study_id: int
    storage_url: str
    artifact_dir: Path | None
    app: Callable[..., Any]

    def url(self, host: str, port: int) -> str:
        """The study's page; a wildcard bind address is shown as ``127.0.0.1`` (the one a browser here can open)."""
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/dashboard/studies/{self.study_id}"


# ---------------------------------------------------------------------------------------------------- the note
def chosen_record(
    records: Sequence[TrialRecord], *, passed_over: Sequence[int] = (), prefer: str = PREFERENCES[0]
) -> TrialRecord | None:
    """The trial the search chooses (:func:`autocompress.study.pareto.choose`, the one rule, with the study's
    ``prefer``) once the trials in ``passed_over`` (over the budget when re-measured in a fresh process; the study's
    ``choice`` attribute) are left out; ``None`` when nothing is feasible yet."""
    from autocompress.study.pareto import choose

    choice = choose(records, exclude=passed_over, prefer=prefer)
    return choice.record if choice is not None and choice.feasible else None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value, sort_keys=True)}`"
    return "—" if value is None or value == "" else str(value).replace("|", "\\|")


def _table(rows: Mapping[str, Any], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows.items()]
    return lines


def study_note(study: optuna.Study) -> str:
    """The markdown note: budget, teacher, chosen trial, trial counts, CPU fingerprint and config.

    Every part is optional: a study without ``reference``, ``fingerprint`` or ``config`` user attributes, or without
    records, gets a note that says what is missing instead of failing.
    """
    attrs = study.user_attrs
    records = read_records(study)
    config = attrs.get("config") or {}
    reference = attrs.get("reference") or {}
    fingerprint = attrs.get("fingerprint") or next((dict(r.fingerprint) for r in records if r.fingerprint), {})
    lines = [f"## autocompress study `{study.study_name}`", ""]

    budget_ms = reference.get("budget_ms") or next((r.budget_ms for r in records), None)
    max_drop = config.get("max_accuracy_drop", next((r.max_drop_pt for r in records), None))
    if budget_ms is not None:
        asked = f" (asked: {config['latency_budget']})" if config.get("latency_budget") is not None else ""
        drop = f"; max accuracy drop **{max_drop:g} pt**" if max_drop is not None else ""
        lines.append(f"- **Budget:** {budget_ms:.4g} ms{asked}{drop}")
    else:
        lines.append("- **Budget:** not recorded yet")
    teacher_ort = (reference.get("teacher_runtime_latency") or reference.get("teacher_ort_latency") or {}).get(
        "median_ms"
    )
    teacher_torch = (reference.get("teacher_torch_latency") or {}).get("median_ms")
    if reference:
        parts = [f"val accuracy {reference['teacher_val_accuracy']:.2%}"] if "teacher_val_accuracy" in reference else []
        runtime = (reference.get("target") or {}).get("runtime", "onnxruntime")
        parts += [f"{runtime} fp32 {teacher_ort:.4g} ms"] if teacher_ort is not None else []
        parts += [f"PyTorch fp32 {teacher_torch:.4g} ms"] if teacher_torch is not None else []
        lines.append(f"- **Teacher:** {', '.join(parts) or 'not recorded'}")

    from autocompress.study.pareto import stored_rule

    prefer, passed_over = stored_rule(attrs)
    chosen = chosen_record(records, passed_over=passed_over, prefer=prefer)
    if chosen is not None:
        lines.append(
            f"- **Chosen:** trial {chosen.number} — {chosen.summary} — accuracy {chosen.accuracy:.2%} "
            f"(drop {chosen.accuracy_drop_pt:+.2f} pt), {chosen.latency_ms:.4g} ms (--prefer {prefer})"
        )
    else:
        lines.append("- **Chosen:** no feasible trial yet")
    counts = {o: sum(1 for r in records if r.outcome == o) for o in ("complete", "stopped", "failed")}
    feasible = sum(1 for r in records if r.feasible)
    lines.append(
        f"- **Trials:** {counts['complete']} complete ({feasible} feasible), {counts['stopped']} stopped "
        f"over budget (pruned, not fine-tuned), {counts['failed']} failed"
    )
    lines += [
        "- **Feasible** means every constraint is <= 0: `latency = latency_ms / budget - 1` within the budget and "
        "`100 + latency_ms / budget - 1` over it (so the samplers rank any trial over the budget behind any trial "
        "within it), `accuracy = (drop_pt - max_drop_pt) / max_drop_pt`.",
        "- Each trial's `model.onnx` and `policy.json` download from its trial page (Artifacts); its full record is "
        "the user attribute `record`.",
        "",
        "### CPU",
    ]
    if fingerprint:
        versions = fingerprint.get("versions") or {}
        cpu_rows = {
            "CPU": fingerprint.get("cpu"),
            "int8 ISA": fingerprint.get("isa"),
            "int8 kernel": fingerprint.get("int8_kernel"),
            "logical cores": fingerprint.get("logical_cores"),
            "host": fingerprint.get("host"),
            "platform": fingerprint.get("platform"),
            "python": fingerprint.get("python"),
        }
        cpu_rows.update(versions)
        lines += _table({k: v for k, v in cpu_rows.items() if v not in (None, "")}, ("machine", "value")) + [""]
        if fingerprint.get("cpu_flags"):
            lines += [f"flags: {' '.join(fingerprint['cpu_flags'])}", ""]
    else:
        lines += ["not recorded (the study predates CPU fingerprints)", ""]
    lines.append("### Config")
    lines += _table(config, ("option", "value")) if config else ["not recorded"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- serving
def open_dashboard(
    *, study_name: str | None = None, output: Path | None = None, storage: str | None = None, write_note: bool = True
) -> Dashboard:
    """Open the study, write its note and build the optuna-dashboard app (does not listen yet).

    Args:
        study_name: the study; ``None`` = ``demo`` under ``output``, or the only study in ``storage``.
        output: the results folder the search wrote (default ``results``); the artifacts are in
            ``<output>/<study>/artifacts``.
        storage: an Optuna storage URL (default ``sqlite:///<output>/<study>/study.db``), or a journal file.
        write_note: write the study note (:func:`study_note`) into the study.

    Raises:
        MissingDependencyError: optuna-dashboard is not installed.
        ConfigError: the storage file is missing or is not an Optuna storage.
        StudyNotFoundError: no study of that name (the message lists the studies in the storage).
    """
    dashboard = _import_dashboard()
    existing = open_existing_study(study_name=study_name, output=output, storage=storage)
    study, url, opened = existing.study, existing.url, existing.storage
    if study.metric_names is None and len(study.directions) == len(_METRIC_NAMES) and read_records(study):
        with warnings.catch_warnings():  # older autocompress studies did not name their objectives
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(_METRIC_NAMES)
    if write_note:
        dashboard.save_note(study, study_note(study))

    artifact_dir = existing.study_dir / ARTIFACTS_DIR
    store = None
    if artifact_dir.is_dir():
        store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    else:
        logger.info("no artifact store at %s: models and policies cannot be downloaded", artifact_dir)
        artifact_dir = None
    app = dashboard.wsgi(opened, artifact_store=store)
    return Dashboard(
        study=study,
        study_id=opened.get_study_id_from_name(study.study_name),
        storage_url=url,
        artifact_dir=artifact_dir,
        app=app,
    )


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the logger (shown with ``--debug``), not to stderr line by line."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        logger.info("%s " + format, self.address_string(), *args)


class _Server(WSGIServer):
    # The stdlib server is single-threaded, like optuna-dashboard's own run_server; that keeps storage access serial.
    allow_reuse_address = True


def make_server(board: Dashboard, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> WSGIServer:
    """A stdlib WSGI server for ``board`` (``port=0`` picks a free port: read ``server.server_port``).

    Call ``serve_forever()``; ``shutdown()`` from another thread stops it, ``server_close()`` frees the port.
    """
    from wsgiref.simple_server import make_server as _make

    try:
        server = _make(host, port, board.app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host"
        ) from None
    return server


def serve(
    *,
    study_name: str | None = None,
    output: Path | None = None,
    storage: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    say: Callable[[str], None] = print,
) -> None:
    """Open the study and serve it until interrupted (Ctrl-C); ``say`` prints the URL to open."""
    board = open_dashboard(study_name=study_name, output=output, storage=storage)
    server = make_server(board, host=host, port=port)
    say(f"optuna-dashboard for study {board.study.study_name!r} ({board.storage_url})")
    if board.artifact_dir is not None:
        say(f"artifacts (ONNX models, policy.json): {board.artifact_dir}")
    else:
        say("no artifact store found next to the study: models and policies cannot be downloaded")
    say(f"open {board.url(host, server.server_port)}   (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"warning: listening on {host}: anyone who can reach this machine can read and edit the study")
    try:
        server.serve_forever()
    finally:
        server.server_close()

"""The one step after a search: the study's CSVs, the chosen model's folder and ``report.html``.

The CLI (``autocompress search``) and the Python API (:meth:`autocompress.api.SearchOutcome.export`) both call
:func:`publish`, so a search leaves the same files whichever way it was started. The export runs under the study's
``export`` storage lock: another process of the same study may be exporting into the same folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocompress.config import SearchConfig
from autocompress.report.export import export_chosen
from autocompress.report.table import write_csv
from autocompress.scale.storage import GRACE_S
from autocompress.scale.workers import StorageLock
from autocompress.sources.workload import Workload
from autocompress.study.session import SearchResult

__all__ = ["Published", "publish"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """What :func:`publish` wrote.

    Attributes:
        csvs: ``trials.csv`` and ``pareto.csv`` in the study folder.
        folder: the exported model's folder (``chosen/`` or ``over_budget/``, or the caller's destination); ``None``
            when no trial keeps the accuracy limit.
        metrics: that folder's ``metrics.json``.
        report: ``report.html``; ``None`` when it was not asked for or could not be drawn (``report_error`` says why:
            a failure to draw the report never loses the search).
    """

    csvs: tuple[Path, ...]
    folder: Path | None
    metrics: dict[str, Any] | None
    report: Path | None
    report_error: str | None = None


def publish(
    result: SearchResult,
    *,
    config: SearchConfig,
    workload: Workload,
    destination: Path | None = None,
    report: bool = True,
    explain: bool = True,
    say: Callable[[str], None] = logger.info,
) -> Published:
    """Write the study's CSVs, export the choice (measured again on the test split) and draw the report.

    Args:
        result: the finished search.
        destination: the export folder (default: ``chosen/`` or ``over_budget/`` in the study folder).
        report: draw ``report.html``; ``explain`` adds the sensitivity profile and technique breakdown (they rebuild
            and time some 30 models).
    """
    # Another process of the same study may be publishing into the same folder: one at a time.
    with StorageLock(
        result.study,
        "export",
        stale_s=GRACE_S,
        on_wait=lambda line: say(f"{line}: another process is exporting this study"),
    ):
        return _publish(
            result, config=config, workload=workload, destination=destination, report=report, explain=explain, say=say
        )


def _publish(
    result: SearchResult,
    *,
    config: SearchConfig,
    workload: Workload,
    destination: Path | None,
    report: bool,
    explain: bool,
    say: Callable[[str], None],
) -> Published:
    study_dir = config.study_dir
    csvs = (study_dir / "trials.csv", study_dir / "pareto.csv")
    write_csv(csvs[0], result.records, result.choice)
    write_csv(csvs[1], result.front, result.choice)
    folder = metrics = None
    if result.choice is not None:
        say("exporting the model and measuring it on the test split")
        folder = export_chosen(
            result.choice, workload=workload, reference=result.reference, config=config, destination=destination
        )
        metrics = json.loads((folder / "metrics.json").read_text())
    if not report:
        return Published(csvs=csvs, folder=folder, metrics=metrics, report=None)
    try:  # the report explains the result; a failure to draw it must not lose the search
        from autocompress.report.html import build_report

        drawn = build_report(
            result.study,
            study_dir=study_dir,
            cache_dir=config.cache_dir,
            workload=workload,
            explain=explain,
            progress=say,
        )
    except Exception as exc:  # pragma: no cover - reported, never fatal
        return Published(
            csvs=csvs, folder=folder, metrics=metrics, report=None, report_error=f"{type(exc).__name__}: {exc}"
        )
    return Published(csvs=csvs, folder=folder, metrics=metrics, report=drawn.html)

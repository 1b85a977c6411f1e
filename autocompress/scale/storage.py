"""A study's storage: the one place it is opened, checked and created, and the only module that touches Optuna's
private API.

Every process of a study meets here: the search (:mod:`autocompress.study.session`), its workers and measure worker
(:mod:`autocompress.scale.workers`, :mod:`autocompress.scale.remote`), the dashboard and the report. Three openers
cover them:

- :func:`open_storage` (read-write): an RDB storage with heartbeats, so a trial whose process died on another host is
  failed and retried by Optuna; SQLite waits for another process's write instead of failing. Journal and gRPC URLs
  go to Optuna as they are.
- :func:`open_storage` with ``read_only=True`` (dashboard, report): never creates a database, a journal or a table.
- :func:`check_connection`: before anything is loaded or written, a bad URL, a missing driver or an unreachable
  server is one line, not a traceback after the teacher was measured.

Optuna's private names (``study._storage``, ``trial._trial_id``, ``optuna._hypervolume``) are reached through
:func:`storage_of`, :func:`trial_id` and :func:`hypervolume_2d` only, so an Optuna upgrade that moves them breaks one
module (``tests/test_architecture.py`` checks that no other module uses them).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from autocompress.config import SearchConfig
from autocompress.errors import ConfigError, MissingDependencyError, StudyNotFoundError

__all__ = [
    "DIRECTIONS",
    "GRACE_S",
    "HEARTBEAT_S",
    "LOCK_INFIX",
    "QUEUE_INFIX",
    "ExistingStudy",
    "is_lock",
    "open_existing_study",
    "METRIC_NAMES",
    "SQLITE_PREFIX",
    "check_connection",
    "check_directions",
    "check_existing_study",
    "fail_stale_trials",
    "fail_trial",
    "hypervolume_2d",
    "open_storage",
    "open_study",
    "set_live_trial_system_attr",
    "set_trial_user_attr",
    "storage_of",
    "trial_id",
]

DIRECTIONS = (optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE)
METRIC_NAMES = ("accuracy", "latency_ms")
SQLITE_PREFIX = "sqlite:///"
HEARTBEAT_S = 60  # a RUNNING trial's process proves it is alive this often ...
GRACE_S = 300  # ... and is failed and retried (once) by the next process to start trials after this long without
LOCK_INFIX = ".lock."  # a lock is a study named <study>.lock.<purpose> (listings leave them out)
QUEUE_INFIX = ".queue."  # a request queue (autocompress.scale.remote) is a study named <study>.queue.<purpose>
_OPEN_ATTEMPTS = 5  # opening a storage another process is creating at the same moment (see open_storage)
_RDB_PREFIXES = ("sqlite:", "postgresql", "mysql", "oracle", "mssql")
# The import name of a missing database driver → what to pip install.
_DB_DRIVERS = {
    "psycopg": '"psycopg[binary]"',
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "mysql": "mysql-connector-python",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}


# ---------------------------------------------------------------------------------------------------- opening
def open_storage(url: str, *, read_only: bool = False) -> optuna.storages.BaseStorage | str:
    """The storage at ``url``.

    Args:
        url: an RDB URL (``sqlite:///path/study.db``, ``postgresql://...``), a journal file path or an Optuna URL.
        read_only: open what is there and create nothing (dashboard, report); a missing database or journal file is a
            :class:`ConfigError`.

    Returns:
        The storage; for a URL the read-write opener leaves to Optuna (journal, gRPC), the URL itself.
    """
    if read_only:
        return _open_existing(url)
    if not url.startswith(_RDB_PREFIXES):
        return url
    return _open_rdb(url)


def _open_rdb(url: str) -> optuna.storages.RDBStorage:
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {"pool_pre_ping": True}
    )
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
            # Several processes opened a new database at the same moment: each creates the tables and stamps the
            # schema version, and the later ones fail ("table studies already exists", "UNIQUE constraint failed:
            # alembic_version"). The first one's tables are there now: open again. Anything else is raised.
            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if not racing or attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _open_existing(url: str) -> optuna.storages.BaseStorage:
    """Open ``url`` read-mostly: never create a database or journal that is not there."""
    if url.startswith(SQLITE_PREFIX):
        path = Path(url[len(SQLITE_PREFIX) :])
        if not path.is_file():
            raise ConfigError(
                f"no study database at {path}; run `autocompress search` first, or point --output / "
                "--storage at the folder or URL the search used"
            )
    elif "://" not in url:  # a JournalFileBackend log file, as optuna-dashboard accepts it
        path = Path(url)
        if not path.is_file():
            raise ConfigError(
                f"no journal file at {path}; pass the journal the search wrote, or an RDB URL "
                "such as sqlite:///results/demo/study.db"
            )
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(path)))
    try:
        # Like optuna-dashboard's own CLI: no table creation (a wrong URL must not grow an empty study database).
        return optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    except Exception as exc:  # SQLAlchemy raises many types (bad URL, no driver, connection refused)
        raise ConfigError(f"--storage {url!r} cannot be opened: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def is_lock(study_name: str) -> bool:
    """Whether a study of this name is one of our auxiliary studies (a lock or a request queue), not a user's."""
    return LOCK_INFIX in study_name or QUEUE_INFIX in study_name


@dataclass(frozen=True)
class ExistingStudy:
    """A study opened for reading (dashboard, report): the study, its URL, the storage it was loaded from and its
    folder under ``--output`` (``<output>/<study>``: the artifact store, the report)."""

    study: optuna.Study
    url: str
    storage: optuna.storages.BaseStorage
    study_dir: Path


def open_existing_study(
    *, study_name: str | None = None, output: Path | None = None, storage: str | None = None
) -> ExistingStudy:
    """Load an existing study from ``--study/--output/--storage``; never creates a database or a study.

    With no ``storage``, the study's SQLite file under ``output`` (as ``autocompress search`` writes it). With no
    ``study_name``, the one study the storage holds.

    Raises:
        ConfigError: the storage file is missing or is not an Optuna storage.
        StudyNotFoundError: no study of that name (the message lists the studies there).
    """
    defaults = SearchConfig()
    output = Path(output) if output is not None else defaults.output
    if storage is None:
        url = SearchConfig(study_name=study_name or defaults.study_name, output=output).storage_url
        db = Path(url[len(SQLITE_PREFIX) :])
        if url.startswith(SQLITE_PREFIX) and not db.is_file():
            _raise_missing_default(study_name or defaults.study_name, output, db.name)
    else:
        url = storage
    opened = _open_existing(url)
    study = _load_study(opened, study_name, url=url)
    return ExistingStudy(study=study, url=url, storage=opened, study_dir=output / study.study_name)


def _raise_missing_default(name: str, output: Path, db_file: str) -> None:
    """No ``<output>/<name>/<db_file>``: list the studies ``output`` does hold (one database per study folder), or
    say how to make one."""
    others = sorted(p.parent.name for p in output.glob(f"*/{db_file}"))
    if others:
        raise StudyNotFoundError(
            f"no study named {name!r} in {output}; studies there: {', '.join(others)} (pick one with --study NAME)"
        )
    raise ConfigError(
        f"no study database at {output / name / db_file}; run `autocompress search` first, or point "
        "--output / --storage at the folder or URL the search used"
    )


def _load_study(storage: optuna.storages.BaseStorage, name: str | None, *, url: str) -> optuna.Study:
    try:
        names = [s.study_name for s in storage.get_all_studies() if not is_lock(s.study_name)]
    except Exception as exc:  # e.g. an SQLite file that is not an Optuna database
        raise ConfigError(f"{url} is not an Optuna storage: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if name is None:
        if len(names) != 1:
            listed = ", ".join(sorted(names)) or "none"
            raise StudyNotFoundError(f"{url} holds {len(names)} studies ({listed}); pick one with --study NAME")
        name = names[0]
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise StudyNotFoundError(f"no study named {name!r} in {url}; studies there: {listed}")
    return optuna.load_study(study_name=name, storage=storage)


def check_connection(config: SearchConfig) -> None:
    """Reach ``config.storage`` before anything is loaded or written (``None``, SQLite in the study folder: nothing
    to reach). A bad URL, a missing driver or an unreachable server is one :class:`ConfigError` line."""
    if config.storage is None:
        return
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        url = make_url(config.storage)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError(
            f"--storage: not a valid database URL ({exc}); expected e.g. sqlite:///path/study.db or "
            "postgresql://user:password@host:5432/db"
        ) from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        # SearchConfig refused in-memory URLs (config.check_storage_url): a file path is named here
        folder = Path(url.database).expanduser().parent
        if not folder.is_dir() and folder.resolve() != config.study_dir.resolve():
            raise ConfigError(
                f"--storage {shown}: folder {folder} does not exist; create it or drop --storage to keep "
                "the study in --output"
            )
        return
    try:
        opened = open_storage(config.storage)  # connects, creates the tables if needed (two workers at once: retried)
        if isinstance(opened, str):  # a URL open_storage leaves to Optuna: let SQLAlchemy say what it is
            opened = optuna.storages.RDBStorage(config.storage)
        opened.engine.dispose()
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError as ImportError
        cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
        module = (getattr(cause, "name", None) or "").split(".")[0]
        package = _DB_DRIVERS.get(module, module or "the database driver")
        raise MissingDependencyError(
            f"--storage {shown}: the database driver {module or '?'} is not installed; pip install {package}"
        ) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(
            f"--storage {shown}: SQLAlchemy knows no database {url.drivername!r}; expected e.g. "
            "sqlite:///path/study.db, postgresql://user@host/db or mysql+pymysql://user@host/db"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, RuntimeError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise ConfigError(
            f"--storage {shown}: cannot use the database ({type(exc).__name__}: "
            f"{reason[0] if reason else '?'}); check that the server is running and reachable and that "
            "user, host, port and database in the URL are right, or drop --storage to use SQLite in "
            "--output"
        ) from None


# ---------------------------------------------------------------------------------------------------- studies
def check_directions(study_name: str, directions: Sequence[optuna.study.StudyDirection]) -> None:
    """Refuse a study of that name whose objectives are not autocompress's (maximize accuracy, minimize latency):
    Optuna loads an existing study whatever its directions."""
    if tuple(directions) != DIRECTIONS:
        found = ", ".join(d.name.lower() for d in directions)
        raise ConfigError(
            f"--study-name {study_name!r}: the storage already holds a study of that name with "
            f"directions [{found}], not autocompress's [maximize accuracy, minimize latency_ms]; "
            "pick another --study-name or --storage"
        )


def check_existing_study(config: SearchConfig) -> None:
    """Refuse, before anything is loaded or written, a study name the storage already uses for another kind of study."""
    if config.storage is None and not (config.study_dir / "study.db").exists():
        return
    try:
        summaries = optuna.get_all_study_summaries(config.storage_url, include_best_trial=False)
    except Exception:  # unreachable storage: reported with its own message where the study is created
        return
    for summary in summaries:
        if summary.study_name == config.study_name:
            check_directions(config.study_name, summary.directions)


def open_study(config: SearchConfig, *, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or load the study named in ``config`` (multi-objective: accuracy up, latency down)."""
    config.study_dir.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            study_name=config.study_name,
            storage=open_storage(config.storage_url),
            sampler=sampler,
            directions=list(DIRECTIONS),
            load_if_exists=True,
        )
    except ValueError as exc:
        raise ConfigError(f"--study-name {config.study_name!r}: {exc}; pick another --study-name") from None
    check_directions(config.study_name, study.directions)  # before anything is written to it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRIC_NAMES))
    return study


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's heartbeat check (what ``optimize`` runs before each trial), for a process that waits between trials."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# ---------------------------------------------------------------------------------------------------- private API
def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object behind ``study`` (Optuna keeps it private)."""
    return study._storage


def trial_id(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The storage's id of ``trial`` (not its number: ids are unique across the storage's studies)."""
    return trial._trial_id


def set_trial_user_attr(study: optuna.Study, trial: optuna.trial.FrozenTrial, key: str, value: Any) -> None:
    """Write a user attribute on a trial that is still RUNNING in another process's hands (a FrozenTrial has no
    setter)."""
    storage_of(study).set_trial_user_attr(trial_id(trial), key, value)


def set_live_trial_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    """Write a system attribute on the running ``trial`` (Optuna offers no public setter for them)."""
    trial.storage.set_trial_system_attr(trial_id(trial), key, value)


def fail_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Mark a RUNNING trial of ``study`` failed (a process that died with it); raises
    ``optuna.exceptions.UpdateFinishedTrialError`` if it already finished."""
    storage_of(study).set_trial_state_values(trial_id(trial), state=optuna.trial.TrialState.FAIL)


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Hypervolume of minimised 2-D ``points`` against ``reference`` (Optuna's own implementation)."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    if not points:
        return 0.0
    return float(
        compute_hypervolume(np.asarray(points, dtype=float), np.asarray(reference, dtype=float), assume_pareto=False)
    )

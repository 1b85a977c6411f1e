"""Python API for notebooks and scripts: the same engine as ``autocompress search``.

Example:
    >>> import autocompress
    >>> result = autocompress.search(model, train=train_ds, val=val_ds, test=test_ds,
    ...                              latency_budget_ms=2.0, trials=30)            # doctest: +SKIP
    >>> result.chosen.accuracy, result.chosen.latency_ms                          # doctest: +SKIP
    >>> result.export("my_model/")                                                # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from torch import nn
from torch.utils.data import Dataset

from autocompress.config import LatencyBudget, SearchConfig, parse_budget
from autocompress.errors import ConfigError, WorkloadError
from autocompress.report.publish import publish
from autocompress.sources.workload import Workload
from autocompress.study.pareto import Choice
from autocompress.study.record import TrialRecord
from autocompress.study.reference import Reference
from autocompress.study.session import SearchResult, run_study
from autocompress.study.space import SearchSpace, load_space

__all__ = ["SearchOutcome", "search", "API_STUDY_NAME", "API_ONLY_SOURCES", "CLI_ONLY_OPTIONS"]

_D = SearchConfig()  # every default below is SearchConfig's: one source of options
# The one default the API does not share: a Python study lives beside the CLI's demo study, not inside it.
API_STUDY_NAME = "api"
# Options that say where the CLI loads model and data from; the API takes the model and datasets themselves.
API_ONLY_SOURCES = frozenset(
    {
        "model",
        "data",
        "weights",
        "trust_checkpoint",
        "small_input",
        "input_size",
        "channels",
        "download",
        "max_samples",
        "normalize",
        "latency_budget",
    }
)
# ``--workers N`` starts N processes of the same command; the API runs in its caller's process, whose model object
# another process cannot share. Call search() in several processes on one ``storage`` instead: each is a worker.
CLI_ONLY_OPTIONS = frozenset({"workers"})
# Keywords of search() passed to SearchConfig as they are: same name, same meaning (tests/test_options.py checks that
# each reaches the config).
_SAME_NAME_OPTIONS = frozenset(
    "trials timeout max_accuracy_drop prefer study_name storage seed threads batch_size runtime sampler warmup repeats "
    "latency_window device build_only allow_low_teacher_accuracy".split()
)


@dataclass
class SearchOutcome:
    """What :func:`search` returns.

    Attributes:
        pareto: the Pareto front (accuracy up, latency down) of the fully measured trials, fastest first.
        records: every trial's :class:`~autocompress.study.record.TrialRecord` (complete, stopped over budget, failed).
        chosen: the most accurate feasible trial; when none is feasible, the fastest trial within the accuracy
            limit (over the budget: ``feasible`` is False); ``None`` when no trial keeps the accuracy limit.
        feasible: whether ``chosen`` meets the latency budget and the accuracy-drop limit.
        reference: the original model's measured latency and accuracy.
        study: the Optuna study (for plots, optuna-dashboard, further trials).
    """

    pareto: list[TrialRecord]
    records: list[TrialRecord]
    chosen: TrialRecord | None
    feasible: bool
    reference: Reference
    study: object
    _choice: Choice | None
    _workload: Workload
    _config: SearchConfig
    _result: SearchResult

    def export(self, path: str | Path, *, report: bool = True, explain: bool = False) -> Path:
        """Export ``chosen`` into ``path`` (its runtime artifact, ``model.pt2``, ``policy.json``, ``metrics.json``),
        measured again on the test split, with the study's CSVs and ``report.html`` beside the study — the same
        post-search step as ``autocompress search`` (:func:`autocompress.report.publish.publish`). ``explain`` adds
        the report's sensitivity profile and technique breakdown (they rebuild and time some 30 models)."""
        if self._choice is None:
            raise WorkloadError(
                "no trial keeps the accuracy limit, so there is no model to export; run more trials "
                "or allow a larger max_accuracy_drop"
            )
        published = publish(
            self._result,
            config=self._config,
            workload=self._workload,
            destination=Path(path),
            report=report,
            explain=explain,
        )
        assert published.folder is not None  # a choice was exported
        return published.folder


def search(
    model: nn.Module,
    *,
    train: Dataset,
    val: Dataset,
    test: Dataset | None = None,
    latency_budget_ms: float | None = None,
    latency_budget: str | None = None,
    max_accuracy_drop: float = _D.max_accuracy_drop,
    prefer: str = _D.prefer,
    trials: int = _D.trials,
    space: str | SearchSpace = _D.space,
    study_name: str = API_STUDY_NAME,
    output: str | Path = _D.output,
    storage: str | None = _D.storage,
    sampler: str = _D.sampler,
    seed: int = _D.seed,
    threads: int = _D.threads,
    batch_size: int = _D.batch_size,
    runtime: str = _D.runtime,
    warmup: int = _D.warmup,
    repeats: int = _D.repeats,
    latency_window: float = _D.latency_window,
    device: str = _D.device,
    build_only: bool = _D.build_only,
    timeout: float | None = _D.timeout,
    num_classes: int | None = _D.num_classes,
    allow_low_teacher_accuracy: bool = _D.allow_low_teacher_accuracy,
    progress: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Search compression policies for a trained ``model`` on map-style ``(image, label)`` datasets.

    Args:
        model: the trained classifier (the teacher). The search works on a deep copy: ``model``'s parameters,
            buffers and train/eval mode are left as they were.
        train: images for distillation and int8 calibration.
        val: held-out images that drive the search.
        test: held-out images used only for the exported model's final figures (defaults to ``val``, said so in
            ``metrics.json``).
        latency_budget_ms: absolute budget in milliseconds; or ``latency_budget="0.5x"`` for a fraction of the
            model's fp32 latency on ``runtime`` (default ``0.25x``).
        max_accuracy_drop: allowed top-1 drop on ``val`` in percentage points.
        prefer: ``accuracy`` (the most accurate model within the budget) or ``latency`` (the fastest within the
            accuracy limit): which feasible model is chosen.
        trials: total finished trials (a rerun with the same ``study_name`` and ``output`` resumes).
        space: a shipped space name, a YAML path, or a :class:`SearchSpace`.
        allow_low_teacher_accuracy: search even when ``model`` scores near chance on ``val`` (by default that is a
            :class:`~autocompress.errors.WorkloadError`: it usually means the data is preprocessed unlike the
            model's training data).
        runtime: the inference engine to build for, time on and export to (``onnxruntime``, ``openvino``, ``torch``),
            or ``auto``: the runtime is searched too, over every installed one, and the budget is relative to the
            fastest fp32 teacher among them.
        warmup / repeats / latency_window: the latency protocol (as ``--warmup``, ``--repeats``, ``--latency-window``).
        device: where fine-tuning runs (``cpu``, ``cuda``, ``cuda:N``, ``auto``); latency is always this CPU's.
        build_only: fine-tune and export here, and leave every latency and accuracy figure to ``autocompress
            measure-worker`` on the target host (same ``storage``, ``study_name`` and ``output``); returns no choice.
        storage: an Optuna storage URL; several processes calling search() with one storage and study_name share the
            study (set-up once, exactly ``trials`` trials in all).
        progress: called with one line per trial (``print`` to see them); ``None`` logs them.
    """
    same_name = {k: v for k, v in locals().items() if k in _SAME_NAME_OPTIONS}  # before any local is added
    budget = _resolve_budget(latency_budget_ms=latency_budget_ms, latency_budget=latency_budget)
    model, input_shape, classes = _prepare_model(model, train, num_classes=num_classes)
    config = SearchConfig(
        model="python-api",
        data="python-api",
        latency_budget=budget,
        space=space if isinstance(space, str) else space.source,
        output=Path(output),
        **same_name,
    )
    workload = _api_workload(model, train=train, val=val, test=test, input_shape=input_shape, num_classes=classes)
    result = _run_quietly(
        workload, space if isinstance(space, SearchSpace) else load_space(space), config, progress=progress
    )
    return _outcome(result, workload=workload, config=config)


def _resolve_budget(*, latency_budget_ms: float | None, latency_budget: str | None) -> LatencyBudget:
    """The one budget the caller gave (milliseconds or a fraction like ``"0.5x"``); neither: SearchConfig's default."""
    if latency_budget_ms is not None and latency_budget is not None:
        raise ConfigError("give either latency_budget_ms or latency_budget, not both")
    return parse_budget(
        latency_budget_ms if latency_budget_ms is not None else (latency_budget or str(_D.latency_budget))
    )


def _api_workload(
    model: nn.Module,
    *,
    train: Dataset,
    val: Dataset,
    test: Dataset | None,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> Workload:
    """The caller's prepared model and datasets as a :class:`Workload`; without ``test``, ``val`` stands in for it
    and ``info`` says so (``metrics.json`` shows it)."""
    return Workload(
        name="python-api",
        model=model,
        train=train,
        val=val,
        test=test if test is not None else val,
        input_shape=input_shape,
        num_classes=num_classes,
        info={
            "model": type(model).__name__,
            "data": "python datasets",
            "test_split": "test" if test is not None else "val (no test split given)",
        },
    )


def _outcome(result: SearchResult, *, workload: Workload, config: SearchConfig) -> SearchOutcome:
    """The public view of a finished study, keeping what :meth:`SearchOutcome.export` needs to publish the choice."""
    return SearchOutcome(
        pareto=result.front,
        records=result.records,
        chosen=result.choice.record if result.choice else None,
        feasible=bool(result.choice and result.choice.feasible),
        reference=result.reference,
        study=result.study,
        _choice=result.choice,
        _workload=workload,
        _config=config,
        _result=result,
    )


def _run_quietly(
    workload: Workload, space: SearchSpace, config: SearchConfig, *, progress: Callable[[str], None] | None
) -> SearchResult:
    """Run the study; Optuna's per-trial INFO lines would duplicate ``progress``: the caller's verbosity is restored."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return run_study(workload, space, config, say=progress)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _prepare_model(
    model: nn.Module, train: Dataset, *, num_classes: int | None
) -> tuple[nn.Module, tuple[int, ...], int]:
    """A deep copy of ``model`` in eval mode, the input shape of ``train``'s items and the number of classes."""
    sample = train[0]  # type: ignore[index]
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[0], torch.Tensor)):
        raise WorkloadError(
            "train: items must be (image tensor CxHxW, label) pairs, like torchvision datasets with ToTensor()"
        )
    input_shape = tuple(sample[0].shape)
    try:
        model = copy.deepcopy(model).eval()  # the caller's model keeps its mode, weights and BN statistics
    except Exception as exc:  # user objects: say what failed on one line, the traceback stays chained
        reason = (str(exc).strip().splitlines() or ["-"])[0]
        raise WorkloadError(
            f"model: copy.deepcopy failed ({type(exc).__name__}: {reason}); the search works on a copy "
            "so that your model is not modified: make it deep-copyable"
        ) from exc
    if num_classes is None:
        with torch.no_grad():
            num_classes = int(model(sample[0].unsqueeze(0)).shape[1])
    return model, input_shape, num_classes

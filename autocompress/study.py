"""The study: wires ``prune → deploy → measure latency → distill → deploy → measure accuracy`` into an Optuna objective.

One :class:`TrialRunner` is a plain callable ``trial → (accuracy, latency_ms)`` over a workload and a config, with no
process-global state, so the same objective can later run in several worker processes on a shared storage.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from autocompress.compress.distill import distill
from autocompress.compress.prune import (
    PrunableGroup,
    count_macs_params,
    prunable_groups,
    prune_model,
    sparsify_model,
    weight_sparsity,
)
from autocompress.compress.quantize import Artifact, deploy
from autocompress.config import SearchConfig
from autocompress.errors import ConfigError, UnsupportedModelError
from autocompress.measure.accuracy import evaluate_onnx
from autocompress.measure.latency import (
    Latency,
    LatencyCache,
    measure_onnx,
    measure_torch,
    structure_key,
)
from autocompress.pareto import (
    Candidate,
    Choice,
    candidates_from_study,
    choose,
    pareto_front,
)
from autocompress.policy import QuantPolicy
from autocompress.space import SearchSpace
from autocompress.training import predict_logits
from autocompress.workload import Workload

__all__ = ["Reference", "SearchResult", "TrialRunner", "create_study", "measure_reference", "run_study"]

logger = logging.getLogger(__name__)

Say = Callable[[str], None]
_MAX_CONSECUTIVE_FAILURES = 5
# Attributes that must match when a study is resumed: changing them would mix incomparable trials.
_RESUME_KEYS = ("latency_budget", "max_accuracy_drop", "threads", "batch_size", "model", "data", "space")


@dataclass(frozen=True)
class Reference:
    """The teacher measured in this run: the yardstick for budget, accuracy drop and speed-up."""

    torch_latency: Latency
    ort_latency: Latency
    val_accuracy: float
    budget_ms: float
    macs: int
    params: int
    onnx_path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher_torch_latency": self.torch_latency.to_dict(),
            "teacher_ort_latency": self.ort_latency.to_dict(),
            "teacher_val_accuracy": self.val_accuracy,
            "budget_ms": self.budget_ms,
            "teacher_macs": self.macs,
            "teacher_params": self.params,
        }


@dataclass
class SearchResult:
    """What a search returns: the study, its candidates, the Pareto front and the choice."""

    study: optuna.Study
    candidates: list[Candidate]
    front: list[Candidate]
    choice: Choice | None
    reference: Reference
    failed: int


def measure_reference(workload: Workload, config: SearchConfig, workdir: Path) -> Reference:
    """Teacher latency in PyTorch and as an fp32 ONNX artifact, and the artifact's val accuracy."""
    x = workload.example_input()
    torch_latency = measure_torch(workload.model, workload.input_shape, threads=config.threads,
                                  batch_size=config.batch_size, warmup=config.warmup, repeats=config.repeats)
    artifact = deploy(workload.model, QuantPolicy(mode="none"), example_input=x, calibration=workload.train, workdir=workdir)
    ort_latency = measure_onnx(artifact.path, workload.input_shape, threads=config.threads,
                               batch_size=config.batch_size, warmup=config.warmup, repeats=config.repeats)
    macs, params = count_macs_params(workload.model, x)
    return Reference(
        torch_latency=torch_latency,
        ort_latency=ort_latency,
        val_accuracy=evaluate_onnx(artifact.path, workload.val).top1,
        budget_ms=config.latency_budget.resolve(ort_latency.median_ms),
        macs=macs,
        params=params,
        onnx_path=artifact.path,
    )


class TrialRunner:
    """The objective: one trial builds, measures and scores one policy for real."""

    def __init__(self, workload: Workload, space: SearchSpace, config: SearchConfig, *, reference: Reference,
                 groups: list[PrunableGroup]) -> None:
        self.workload = workload
        self.space = space
        self.config = config
        self.reference = reference
        self.groups = groups
        self.cache = LatencyCache()
        self._teacher_logits: torch.Tensor | None = None

    @property
    def teacher_logits(self) -> torch.Tensor:
        """Teacher logits on the train split, computed on first use (trials that stop early never need them)."""
        if self._teacher_logits is None:
            self._teacher_logits = predict_logits(self.workload.model, self.workload.train)
        return self._teacher_logits

    def _latency(self, model: torch.nn.Module, artifact: Artifact, *, cached: bool) -> tuple[Latency, bool]:
        cfg = self.config
        key = structure_key(model, artifact.quant.mode, artifact.quant.granularity, cfg.threads, cfg.batch_size)
        hit = self.cache.get(key) if cached else None
        if hit is not None:
            return hit, True
        latency = measure_onnx(artifact.path, self.workload.input_shape, threads=cfg.threads,
                               batch_size=cfg.batch_size, warmup=cfg.warmup, repeats=cfg.repeats)
        self.cache.put(key, latency)
        return latency, False

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:2000])
            trial.set_user_attr("fail_traceback", traceback.format_exc()[-4000:])
            raise

    def _run(self, trial: optuna.Trial) -> tuple[float, float]:
        cfg, wl, ref = self.config, self.workload, self.reference
        started = time.perf_counter()
        policy = self.space.suggest(trial, self.groups)
        trial.set_user_attr("policy", policy.to_dict())
        trial.set_user_attr("policy_summary", policy.describe())
        workdir = cfg.study_dir / "trials" / f"{trial.number:05d}"
        if workdir.exists():
            shutil.rmtree(workdir)
        x = wl.example_input()
        timings: dict[str, float] = {}

        t = time.perf_counter()
        student = prune_model(wl.model, policy.prune, x, num_classes=wl.num_classes)
        macs, params = count_macs_params(student, x)
        timings["prune_s"] = time.perf_counter() - t
        t = time.perf_counter()
        artifact = deploy(student, policy.quant, example_input=x, calibration=wl.train, workdir=workdir, seed=cfg.seed)
        timings["deploy_s"] = time.perf_counter() - t
        t = time.perf_counter()
        gate, cache_hit = self._latency(student, artifact, cached=True)
        timings["latency_s"] = time.perf_counter() - t
        trial.set_user_attr("macs", macs)
        trial.set_user_attr("params", params)
        trial.set_user_attr("latency_before_finetune", gate.to_dict())
        trial.set_user_attr("latency_cache_hit", cache_hit)

        over_budget = gate.median_ms > ref.budget_ms
        finetuned = False
        if over_budget:
            # Fine-tuning cannot change the architecture, so it cannot make this model fast enough: stop here and
            # record what was measured. The accuracy below is that of the pruned, *not* fine-tuned artifact.
            trial.set_user_attr("stopped", f"over the latency budget before fine-tuning ({gate.median_ms:.3f} > {ref.budget_ms:.3f} ms)")
            latency = gate
        else:
            if policy.distill.steps > 0 and not policy.prune.is_identity:
                result = distill(student, self.teacher_logits, wl.train, policy.distill, seed=cfg.seed + trial.number)
                timings["distill_s"] = result.seconds
                trial.set_user_attr("kd_loss_first", result.first_loss)
                trial.set_user_attr("kd_loss_last", result.last_loss)
                finetuned = True
                if policy.prune.sparsity > 0:
                    # Fine-tuning moves the zeroed weights again: re-apply the magnitude mask so the shipped model
                    # has exactly the sparsity the policy asked for (prune → fine-tune → prune).
                    student = sparsify_model(student, sparsity=policy.prune.sparsity, num_classes=wl.num_classes)
                t = time.perf_counter()
                artifact = deploy(student, policy.quant, example_input=x, calibration=wl.train, workdir=workdir, seed=cfg.seed)
                timings["deploy_s"] += time.perf_counter() - t
            latency = gate
            if finetuned or cache_hit:
                # The objective is a fresh measurement of the artifact that ships; the gate timed another file
                # (before fine-tuning, or a cached trial with the same structure).
                t = time.perf_counter()
                latency, _ = self._latency(student, artifact, cached=False)
                timings["latency_s"] += time.perf_counter() - t
        t = time.perf_counter()
        accuracy = evaluate_onnx(artifact.path, wl.val).top1
        timings["evaluate_s"] = time.perf_counter() - t
        torch.save(student, workdir / "student.pt")
        drop_pt = (ref.val_accuracy - accuracy) * 100.0
        timings["total_s"] = time.perf_counter() - started

        trial.set_user_attr("finetuned", finetuned)
        trial.set_user_attr("weight_sparsity", weight_sparsity(student))
        trial.set_user_attr("latency", latency.to_dict())
        trial.set_user_attr("accuracy_drop_pt", drop_pt)
        trial.set_user_attr("size_mb", artifact.size_mb)
        # Relative to the study folder, so a moved or copied results folder still exports.
        trial.set_user_attr("artifact", artifact.path.relative_to(cfg.study_dir).as_posix())
        trial.set_user_attr("speedup_vs_teacher_torch", ref.torch_latency.median_ms / latency.median_ms)
        trial.set_user_attr("timings", {k: round(v, 3) for k, v in timings.items()})
        trial.set_constraint("latency_ms", latency.median_ms - ref.budget_ms)
        trial.set_constraint("accuracy_drop_pt", drop_pt - cfg.max_accuracy_drop)
        return accuracy, latency.median_ms


def _sampler(config: SearchConfig) -> optuna.samplers.BaseSampler:
    seed = config.seed
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, config.trials // 3)))
    if config.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models correlated ratios jointly and handles the conditional KD parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          n_startup_trials=max(3, min(10, config.trials // 3)))


def create_study(config: SearchConfig) -> optuna.Study:
    """Create or load the study named in ``config`` (multi-objective: accuracy up, latency down)."""
    config.study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=config.study_name,
        storage=config.storage_url,
        sampler=_sampler(config),
        directions=["maximize", "minimize"],
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
    return study


def _check_resume(study: optuna.Study, config: SearchConfig) -> dict[str, Any] | None:
    stored = study.user_attrs.get("config")
    if stored is None:
        return None
    current = config.to_dict()
    changed = [k for k in _RESUME_KEYS if stored.get(k) != current.get(k)]
    if changed:
        diffs = ", ".join(f"{k}: {stored.get(k)!r} → {current.get(k)!r}" for k in changed)
        raise ConfigError(f"study {config.study_name!r} was created with other settings ({diffs}); "
                          "rerun with the original options or pick a new --study-name")
    return study.user_attrs.get("reference")


def run_study(workload: Workload, space: SearchSpace, config: SearchConfig, *, say: Say | None = None) -> SearchResult:
    """Run (or resume) the study until it has ``config.trials`` finished trials or the timeout passes."""
    say = say or logger.info
    x = workload.example_input()
    groups = prunable_groups(workload.model, x, num_classes=workload.num_classes) if space.prune_per != "none" else []
    study = create_study(config)
    stored_reference = _check_resume(study, config)

    say("measuring the teacher (PyTorch fp32 and ONNX Runtime fp32)")
    reference = measure_reference(workload, config, config.study_dir / "teacher")
    if stored_reference is not None:
        # A resumed study keeps the budget and accuracy reference its first trials were scored against.
        reference = dataclasses.replace(reference, budget_ms=stored_reference["budget_ms"],
                                        val_accuracy=stored_reference["teacher_val_accuracy"])
    else:
        study.set_user_attr("config", config.to_dict())
        study.set_user_attr("reference", reference.to_dict())
        study.set_user_attr("groups", [g.name for g in groups])
        for label, params in space.baselines(groups):
            study.enqueue_trial(params, user_attrs={"baseline": label})
    say(f"teacher: PyTorch {reference.torch_latency}; ONNX Runtime {reference.ort_latency}; "
        f"val accuracy {reference.val_accuracy:.2%}; budget {reference.budget_ms:.3f} ms ({config.latency_budget}); "
        f"{len(groups)} prunable groups")

    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    remaining = config.trials - len(finished)
    if finished:
        say(f"resuming study {config.study_name!r}: {len(finished)} of {config.trials} trials already finished")
    runner = TrialRunner(workload, space, config, reference=reference, groups=groups)
    failures = {"consecutive": 0}

    def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
        say(_progress_line(trial, done, config.trials, reference.budget_ms))
        failures["consecutive"] = failures["consecutive"] + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        if failures["consecutive"] >= _MAX_CONSECUTIVE_FAILURES:
            say(f"stopping: {_MAX_CONSECUTIVE_FAILURES} trials in a row failed (see fail_reason above)")
            study.stop()

    if remaining > 0:
        study.optimize(runner, n_trials=remaining, timeout=config.timeout, catch=(Exception,), callbacks=[on_trial_end])
    candidates = candidates_from_study(study)
    failed = sum(1 for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.FAIL)
    if not candidates:
        reasons = {t.user_attrs.get("fail_reason", "unknown") for t in study.get_trials(deepcopy=False)}
        raise UnsupportedModelError(f"every trial failed; first reason: {sorted(reasons)[0]}")
    return SearchResult(study=study, candidates=candidates, front=pareto_front(candidates),
                        choice=choose(candidates), reference=reference, failed=failed)


def _progress_line(trial: optuna.trial.FrozenTrial, done: int, total: int, budget_ms: float) -> str:
    head = f"[trial {trial.number:>3} · {done}/{total}]"
    summary = trial.user_attrs.get("policy_summary", "")
    if trial.state == optuna.trial.TrialState.FAIL:
        return f"{head} FAILED {summary}: {trial.user_attrs.get('fail_reason', 'see logs')}"
    if trial.state != optuna.trial.TrialState.COMPLETE or trial.values is None:
        return f"{head} {trial.state.name.lower()} {summary}"
    acc, lat = trial.values
    timings = trial.user_attrs.get("timings", {})
    status = "feasible" if all(v <= 0 for v in trial.constraints.values()) else "infeasible"
    stopped = " · stopped before fine-tuning (over budget)" if trial.user_attrs.get("stopped") else ""
    baseline = f" [{trial.user_attrs['baseline']}]" if "baseline" in trial.user_attrs else ""
    return (f"{head}{baseline} {summary} → val acc {acc:.2%} (drop {trial.user_attrs.get('accuracy_drop_pt', 0):+.2f} pt) · "
            f"{lat:.3f} ms (budget {budget_ms:.3f}) · {status}{stopped} · {timings.get('total_s', 0):.1f} s")

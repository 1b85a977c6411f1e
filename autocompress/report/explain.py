"""Explain a study's choice: how sensitive each layer group is, and what each technique gave the chosen model.

**Sensitivity profile** (:func:`sensitivity_profile`). For every prunable group of the teacher, prune *only* that
group at a few ratios, deploy it as fp32 ONNX, and measure the artifact's val accuracy and latency — no fine-tuning,
but BatchNorm statistics re-estimated on train images (:func:`~autocompress.compress.recalibrate_batchnorm`): with the
teacher's stale statistics the profile measured the mismatch, not the structure (demo: stem at 25 % fell 29.8 pt).
A group whose accuracy falls off a cliff at 25 % should be pruned gently; a group that costs nothing to prune but saves
no latency either is not worth pruning. The profile depends only on the teacher, the data and the measurement setting,
so it is computed once and cached as JSON under ``<output>/_cache/sensitivity-<key>.json``.

**Technique breakdown** (:func:`technique_breakdown`). The chosen policy rebuilt step by step and measured now, in one
run, with the study's latency protocol and side by side with the teacher's fp32 artifact (as the trials were timed)::

    teacher (fp32) → pruned (teacher's weights, fp32) → pruned + int8
                   → pruned + KD (fine-tuned, fp32) → pruned + KD + int8

The last row is the chosen policy itself, deployed again from the trial's fine-tuned weights (``student_weights.npz``)
with the study's calibration seed, so its accuracy matches the trial's record and its ratio to the teacher matches
up to noise. The profile's points are timed beside the teacher too, and a point's saved time is the teacher's figure
times one minus that ratio.
Nothing here assumes int8 or pruning is faster: each row is a measurement.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from autocompress.compress.batchnorm import BN_IMAGES, recalibrate_batchnorm
from autocompress.compress.prune import PrunableGroup, PruningGraph, count_macs_params, prune_model
from autocompress.config import SearchConfig, parse_budget
from autocompress.errors import AutocompressError, WorkloadError
from autocompress.measure.accuracy import evaluate_artifact, scoring_threads
from autocompress.measure.latency import Latency, LatencyMeter, Protocol
from autocompress.policy import PrunePolicy, QuantPolicy
from autocompress.runtimes import Artifact, Runtime, get_runtime
from autocompress.sources.weights import load_weights
from autocompress.sources.workload import Workload
from autocompress.study.record import TrialRecord
from autocompress.study.trial import WEIGHTS_FILE

__all__ = [
    "MeasureSettings",
    "SensitivityPoint",
    "Sensitivity",
    "BreakdownRow",
    "Breakdown",
    "sensitivity_profile",
    "sensitivity_key",
    "technique_breakdown",
    "rebuild_workload",
    "DEFAULT_RATIOS",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
DEFAULT_RATIOS = (0.25, 0.5, 0.75)
# Bump when the profile's meaning changes, so older cache files are not reused (3: BatchNorm statistics re-estimated).
_CACHE_VERSION = 3


@dataclass(frozen=True)
class MeasureSettings:
    """How latency and int8 calibration are done: the study's settings, so numbers compare with its trials."""

    threads: int = 1
    batch_size: int = 1
    warmup: int = 20
    repeats: int = 30
    seed: int = 0
    latency_window: float = 1.2
    runtime: str = "onnxruntime"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MeasureSettings:
        """The settings stored in a study's ``config`` user attribute (defaults where a key is missing)."""
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        cast: dict[str, Callable[[Any], Any]] = {"latency_window": float, "runtime": str}
        return cls(**{k: cast.get(k, int)(v) for k, v in config.items() if k in known and v is not None})

    @property
    def engine(self) -> Runtime:
        """The study's runtime (its artifacts are built and timed the way the trials' were)."""
        return get_runtime(self.runtime)

    def build(self, model: nn.Module, quant: QuantPolicy, workload: Workload, workdir: Path) -> Artifact:
        return self.engine.build(
            model,
            quant,
            example_input=workload.example_input(),
            calibration=workload.train,
            workdir=workdir,
            seed=self.seed,
        )

    def accuracy(self, artifact: Artifact, workload: Workload) -> float:
        return evaluate_artifact(self.engine, artifact, workload.val, threads=scoring_threads()).top1

    def protocol(self, *, short: bool = False) -> Protocol:
        """The study's latency protocol; ``short`` (the sensitivity profile's dozens of points) takes a 0.3 s window
        and caps warm-up at 10 runs."""
        if short:
            return Protocol(
                warmup=min(self.warmup, 10), min_runs=min(self.repeats, 30), window_s=0.3, max_window_s=0.75
            )
        return Protocol.from_options(warmup=self.warmup, repeats=self.repeats, window_s=self.latency_window)

    def meter(self, reference: Artifact, input_shape: tuple[int, ...], *, short: bool = False) -> LatencyMeter:
        """A calibrated :class:`LatencyMeter` on ``reference`` (the teacher's fp32 artifact): every figure is then taken
        side by side with it, as the study's were, so a burst of machine noise shows in the canary instead of
        passing as a slow row (a 0.3 s figure taken alone was once 1.7x the trial's on a CI VM)."""
        meter = LatencyMeter(
            self.engine,
            reference,
            input_shape,
            threads=self.threads,
            batch_size=self.batch_size,
            protocol=self.protocol(short=short),
        )
        meter.calibrate()
        return meter


# ---------------------------------------------------------------------------------------------------- sensitivity
@dataclass(frozen=True)
class SensitivityPoint:
    """One group pruned alone at one ratio, fp32, not fine-tuned."""

    group: str
    ratio: float
    channels: int
    kept: int
    accuracy: float
    drop_pt: float
    latency: Latency
    saved_ms: float
    params: int

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityPoint:
        return cls(**{**data, "latency": Latency.from_dict(data["latency"])})


@dataclass(frozen=True)
class Sensitivity:
    """The teacher's per-group sensitivity profile (see the module docstring)."""

    key: str
    ratios: tuple[float, ...]
    groups: tuple[str, ...]
    teacher_accuracy: float
    teacher_latency: Latency
    teacher_params: int
    points: tuple[SensitivityPoint, ...]
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0

    def at(self, group: str, ratio: float) -> SensitivityPoint | None:
        return next((p for p in self.points if p.group == group and abs(p.ratio - ratio) < 1e-9), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _CACHE_VERSION,
            "key": self.key,
            "ratios": list(self.ratios),
            "groups": list(self.groups),
            "teacher_accuracy": self.teacher_accuracy,
            "teacher_latency": self.teacher_latency.to_dict(),
            "teacher_params": self.teacher_params,
            "points": [p.to_dict() for p in self.points],
            "skipped": list(self.skipped),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sensitivity:
        return cls(
            key=str(data["key"]),
            ratios=tuple(data["ratios"]),
            groups=tuple(data["groups"]),
            teacher_accuracy=float(data["teacher_accuracy"]),
            teacher_latency=Latency.from_dict(data["teacher_latency"]),
            teacher_params=int(data["teacher_params"]),
            points=tuple(SensitivityPoint.from_dict(p) for p in data["points"]),
            skipped=tuple(data.get("skipped", ())),
            seconds=float(data.get("seconds", 0.0)),
        )


def sensitivity_key(
    workload: Workload,
    *,
    ratios: Sequence[float],
    settings: MeasureSettings,
    round_to: int | None,
    importance: str,
    cpu: str = "",
) -> str:
    """Hash of what the profile depends on: the teacher's weights (sha256 of every state_dict tensor's bytes), the
    input shape, the val split size, the ratios, the pruning rounding and the latency setting (CPU, threads, batch)."""
    digest = hashlib.sha256()
    for name, tensor in workload.model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    facts = {
        "version": _CACHE_VERSION,
        "input_shape": list(workload.input_shape),
        "val": len(workload.val),  # type: ignore[arg-type]
        "ratios": sorted(round(float(r), 6) for r in ratios),
        "round_to": round_to,
        "importance": importance,
        "threads": settings.threads,
        "batch_size": settings.batch_size,
        "cpu": cpu,
    }
    if settings.runtime != "onnxruntime":  # profiles of ONNX Runtime studies keep the keys they had before runtimes
        facts["runtime"] = settings.runtime
    digest.update(json.dumps(facts, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _read_cache(path: Path, key: str) -> Sensitivity | None:
    try:
        data = json.loads(path.read_text())
        if data.get("version") != _CACHE_VERSION or data.get("key") != key:
            return None
        return Sensitivity.from_dict(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged cache file is recomputed, not fatal
        logger.warning("ignoring unreadable sensitivity cache %s (%s)", path, exc)
        return None


def _params(model: nn.Module) -> int:
    # A plain count: torch-pruning's MAC counter traces the model again, which costs as much as pruning it.
    return sum(p.numel() for p in model.parameters())


def _kept(model: nn.Module, group: str) -> int:
    layer = dict(model.named_modules())[group]
    return int(getattr(layer, "out_channels", getattr(layer, "out_features", 0)))


def sensitivity_profile(
    workload: Workload,
    *,
    settings: MeasureSettings,
    cache_dir: Path | None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    round_to: int | None = None,
    importance: str = "l1",
    cpu: str = "",
    progress: Progress | None = None,
) -> Sensitivity:
    """Prune each group alone at each ratio; measure accuracy drop and latency saved (fp32, no fine-tuning).

    Args:
        workload: the teacher and its data (val is what accuracy is measured on).
        settings: threads and batch of the latency measurement (the study's).
        cache_dir: where ``sensitivity-<key>.json`` is read from and written to; ``None`` disables the cache.
        ratios: fractions of one group's channels to remove.
        round_to / importance: the pruning settings of the policies being explained.
        cpu: the CPU model, part of the cache key (a profile timed on another CPU is not reused).
        progress: called with one line per measured point.

    Example:
        >>> settings = MeasureSettings(threads=1, batch_size=1)
        >>> profile = sensitivity_profile(workload, settings=settings, cache_dir=Path("out/_cache"))  # doctest: +SKIP
        >>> profile.at("layer1.0.conv1", 0.5).drop_pt  # doctest: +SKIP
    """
    say = progress or logger.info
    ratios = tuple(sorted({round(float(r), 6) for r in ratios}))
    key = sensitivity_key(workload, ratios=ratios, settings=settings, round_to=round_to, importance=importance, cpu=cpu)
    path = cache_dir / f"sensitivity-{key}.json" if cache_dir is not None else None
    cached = _read_cache(path, key) if path is not None else None
    if cached is not None:
        say(f"sensitivity profile: reusing {path}")
        return cached

    started = time.perf_counter()
    graph = PruningGraph(workload.model, workload.example_input(), num_classes=workload.num_classes)  # traced once
    groups = _groups_in_model_order(graph)
    with tempfile.TemporaryDirectory(prefix="autocompress-sensitivity-") as tmp:
        teacher = settings.build(workload.model, QuantPolicy(mode="none"), workload, Path(tmp) / "teacher")
        meter = settings.meter(teacher, workload.input_shape, short=True)
        teacher_latency = meter.measure(teacher)
        teacher_accuracy = settings.accuracy(teacher, workload)
        say(
            f"sensitivity profile: {len(groups)} groups × {len(ratios)} ratios, fp32, no fine-tuning "
            f"(teacher {teacher_latency.median_ms:.3f} ms, val {teacher_accuracy:.2%}); cached as {path}"
        )
        points, skipped = _measure_grid(
            workload,
            graph,
            groups,
            ratios=ratios,
            settings=settings,
            round_to=round_to,
            importance=importance,
            meter=meter,
            workdir=Path(tmp),
            teacher_accuracy=teacher_accuracy,
            teacher_latency=teacher_latency,
            say=say,
        )
    profile = Sensitivity(
        key=key,
        ratios=ratios,
        groups=tuple(g.name for g in groups),
        teacher_accuracy=teacher_accuracy,
        teacher_latency=teacher_latency,
        teacher_params=_params(workload.model),
        points=tuple(points),
        skipped=tuple(skipped),
        seconds=round(time.perf_counter() - started, 2),
    )
    if path is not None:
        _write_cache(path, profile)
    return profile


def _groups_in_model_order(graph: PruningGraph) -> list[PrunableGroup]:
    """The teacher's prunable groups, in the order their layers appear in the model."""
    # Model order (stem first) reads better than torch-pruning's graph order, which starts wherever tracing did.
    order = {name: i for i, (name, _) in enumerate(graph.model.named_modules())}
    return sorted(graph.groups, key=lambda g: order.get(g.name, len(order)))


def _measure_grid(
    workload: Workload,
    graph: PruningGraph,
    groups: Sequence[PrunableGroup],
    *,
    ratios: Sequence[float],
    settings: MeasureSettings,
    round_to: int | None,
    importance: str,
    meter: LatencyMeter,
    workdir: Path,
    teacher_accuracy: float,
    teacher_latency: Latency,
    say: Progress,
) -> tuple[list[SensitivityPoint], list[str]]:
    """Every group alone at every ratio, each in its own folder under ``workdir``; the points and the skipped."""
    points: list[SensitivityPoint] = []
    skipped: list[str] = []
    total = len(groups) * len(ratios)
    for gi, group in enumerate(groups):
        for ri, ratio in enumerate(ratios):
            done = gi * len(ratios) + ri + 1
            try:
                point = _measure_point(
                    workload,
                    graph,
                    group.name,
                    group.channels,
                    ratio,
                    settings=settings,
                    round_to=round_to,
                    importance=importance,
                    meter=meter,
                    workdir=workdir / f"{gi:03d}_{ri}",
                    teacher_accuracy=teacher_accuracy,
                    teacher_latency=teacher_latency,
                )
            except AutocompressError as exc:  # one group that cannot be cut alone must not sink the profile
                skipped.append(f"{group.name} at {ratio:.0%}: {exc}")
                say(f"  [{done}/{total}] {group.name} at {ratio:.0%}: skipped ({exc})")
                continue
            points.append(point)
            say(
                f"  [{done}/{total}] {group.name} at {ratio:.0%} ({point.kept}/{point.channels} channels kept): "
                f"drop {point.drop_pt:+.2f} pt, saves {point.saved_ms:+.3f} ms"
            )
    return points, skipped


def _write_cache(path: Path, profile: Sensitivity) -> None:
    """Write ``profile`` to ``path`` through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = path.with_name(path.name + ".tmp")
    tmp_file.write_text(json.dumps(profile.to_dict(), indent=1))
    tmp_file.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one


def _measure_point(
    workload: Workload,
    graph: PruningGraph,
    group: str,
    channels: int,
    ratio: float,
    *,
    settings: MeasureSettings,
    round_to: int | None,
    importance: str,
    meter: LatencyMeter,
    workdir: Path,
    teacher_accuracy: float,
    teacher_latency: Latency,
) -> SensitivityPoint:
    model = graph.prune(PrunePolicy(ratios={group: ratio}, round_to=round_to, importance=importance))
    recalibrate_batchnorm(model, workload.train, images=BN_IMAGES, seed=0)
    artifact = settings.build(model, QuantPolicy(mode="none"), workload, workdir)
    latency = meter.measure(artifact)
    accuracy = settings.accuracy(artifact, workload)
    # The time saved, from the ratio taken side by side with the teacher: it holds when the machine's speed moves
    # between two figures (a difference of two figures taken apart does not).
    speed_ratio = latency.ratio if latency.ratio is not None else latency.median_ms / teacher_latency.median_ms
    return SensitivityPoint(
        group=group,
        ratio=ratio,
        channels=channels,
        kept=_kept(model, group),
        accuracy=accuracy,
        drop_pt=(teacher_accuracy - accuracy) * 100.0,
        latency=latency,
        saved_ms=teacher_latency.median_ms * (1.0 - speed_ratio),
        params=_params(model),
    )


# ---------------------------------------------------------------------------------------------------- breakdown
@dataclass(frozen=True)
class BreakdownRow:
    """One step of the breakdown: an artifact built and measured now."""

    name: str
    latency: Latency
    accuracy: float
    drop_pt: float
    params: int
    macs: int
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakdownRow:
        return cls(**{**data, "latency": Latency.from_dict(data["latency"])})


@dataclass(frozen=True)
class Breakdown:
    """The chosen policy rebuilt technique by technique; the last row is the policy itself."""

    trial: int
    policy: str
    rows: tuple[BreakdownRow, ...]
    notes: tuple[str, ...] = ()

    @property
    def teacher(self) -> BreakdownRow:
        return self.rows[0]

    @property
    def final(self) -> BreakdownRow:
        return self.rows[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "policy": self.policy,
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Breakdown:
        return cls(
            trial=int(data["trial"]),
            policy=str(data["policy"]),
            rows=tuple(BreakdownRow.from_dict(r) for r in data["rows"]),
            notes=tuple(data.get("notes", ())),
        )

    def table(self) -> list[dict[str, str]]:
        """The rows as display strings (shared by the markdown and the HTML table)."""
        base = self.teacher.latency.median_ms
        out = []
        for r in self.rows:
            out.append(
                {
                    "step": r.name + (" ← chosen" if r.chosen else ""),
                    "latency ms (IQR)": f"{r.latency.median_ms:.3f} ({r.latency.iqr_ms:.3f})",
                    "vs teacher": _speedup(r.latency, base),
                    "val accuracy": f"{r.accuracy:.2%}",
                    "drop pt": f"{r.drop_pt:+.2f}",
                    "params": f"{r.params:,}",
                    "MACs": f"{r.macs:,}",
                }
            )
        return out

    def to_markdown(self) -> str:
        """A markdown table (and the notes as a list), e.g. for the README."""
        table = self.table()
        header = list(table[0])
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in table]
        lines += [""] + [f"- {n}" for n in self.notes] if self.notes else []
        return "\n".join(lines) + "\n"


def _speedup(latency: Latency, teacher_ms: float) -> str:
    """The teacher's time over this row's, from the side-by-side ratio where the row has one."""
    if latency.ratio:
        return f"{1.0 / latency.ratio:.2f}×"
    return f"{teacher_ms / latency.median_ms:.2f}×" if latency.median_ms > 0 else "—"


def _weights_file(record: TrialRecord, study_dir: Path) -> Path:
    folder = (study_dir / record.artifact).parent if record.artifact else study_dir / "trials" / f"{record.number:05d}"
    return folder / WEIGHTS_FILE


def technique_breakdown(
    record: TrialRecord,
    *,
    workload: Workload,
    study_dir: Path,
    settings: MeasureSettings,
    progress: Progress | None = None,
) -> Breakdown:
    """Rebuild ``record``'s policy step by step and measure every step now (see the module docstring).

    Raises:
        WorkloadError: the record has no policy or is not complete, or its weights file is missing or does not fit.
    """
    say = progress or logger.info
    if record.policy is None or record.outcome != "complete":
        raise WorkloadError(f"trial {record.number} is {record.outcome}: only a complete trial can be broken down")
    policy = record.policy
    x = workload.example_input()
    prunes = not policy.prune.is_identity
    quantized = policy.quant.mode != "none"
    quant_name = "int8" if policy.quant.mode == "int8" else "int8 dynamic"
    structure = prune_model(workload.model, policy.prune, x, num_classes=workload.num_classes)
    tuned = load_weights(
        prune_model(workload.model, policy.prune, x, num_classes=workload.num_classes), _weights_file(record, study_dir)
    )
    teacher_macs, teacher_params = count_macs_params(workload.model, x)
    macs, params = count_macs_params(structure, x)

    fp32 = QuantPolicy(mode="none")
    steps: list[tuple[str, nn.Module, QuantPolicy, int, int]] = [
        ("teacher · fp32", workload.model, fp32, teacher_macs, teacher_params)
    ]
    notes = []
    if prunes:
        steps.append(("pruned · fp32 (teacher's weights, no fine-tuning)", structure, fp32, macs, params))
        if quantized:
            steps.append((f"pruned + {quant_name} (no fine-tuning)", structure, policy.quant, macs, params))
        if record.finetuned:
            steps.append(("pruned + KD · fp32", tuned, fp32, macs, params))
            if quantized:
                steps.append((f"pruned + KD + {quant_name}", tuned, policy.quant, macs, params))
        else:
            notes.append("the policy does not fine-tune (no KD steps), so there are no KD rows")
    else:
        notes.append("the policy does not prune: the pruned rows would equal the teacher and are left out")
        if quantized:
            steps.append((f"teacher + {quant_name}", tuned, policy.quant, macs, params))
    if not quantized:
        notes.append("the policy is fp32: the int8 rows are skipped")
    if len(steps) > 1:
        # The last step is the chosen policy: deploy it from the trial's own weights file, so it is the model the
        # trial scored (without KD those weights are the teacher's, pruned: the same numbers, from the same file).
        name, _, quant, m, p = steps[-1]
        steps[-1] = (name, tuned, quant, m, p)

    rows: list[BreakdownRow] = []
    meter: LatencyMeter | None = None
    with tempfile.TemporaryDirectory(prefix="autocompress-breakdown-") as tmp:
        for i, (name, model, quant, m, p) in enumerate(steps):
            say(f"breakdown [{i + 1}/{len(steps)}]: {name}")
            artifact = settings.build(model, quant, workload, Path(tmp) / str(i))
            if meter is None:  # the first step is the teacher's fp32 artifact: every row is timed beside it
                meter = settings.meter(artifact, workload.input_shape)
            latency = meter.measure(artifact)
            accuracy = settings.accuracy(artifact, workload)
            teacher_acc = rows[0].accuracy if rows else accuracy
            rows.append(
                BreakdownRow(
                    name=name,
                    latency=latency,
                    accuracy=accuracy,
                    drop_pt=(teacher_acc - accuracy) * 100.0,
                    params=p,
                    macs=m,
                    chosen=i == len(steps) - 1,
                )
            )
    return Breakdown(trial=record.number, policy=record.summary, rows=tuple(rows), notes=tuple(notes))


# ---------------------------------------------------------------------------------------------------- workload
def rebuild_workload(
    config: Mapping[str, Any] | None,
    reference: Mapping[str, Any] | None,
    *,
    output: Path,
    progress: Progress | None = None,
) -> tuple[Workload | None, str]:
    """Rebuild a study's teacher and data from its stored ``config``; ``(None, why)`` when that is not possible.

    Studies made through the Python API hold a model only the caller has; a model whose MACs or parameters differ
    from the study's recorded teacher (other weights file, other code) is refused rather than explained wrongly.
    """
    if not config:
        return None, "the study has no stored config, so its model cannot be rebuilt"
    if config.get("model") == "python-api":
        return None, (
            "the study was made through the Python API: its model and data live in the caller's program; "
            "call autocompress.report.html.write_report(..., workload=...) to include them"
        )
    from autocompress.sources.workload import load_workload

    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    values = {k: v for k, v in config.items() if k in fields and k not in ("storage", "output")}
    try:
        if values.get("latency_budget") is not None:
            values["latency_budget"] = parse_budget(values["latency_budget"])
        if values.get("weights"):
            values["weights"] = Path(values["weights"])
        # The demo teacher is cached under the results folder the report reads, not where the search ran from.
        workload = load_workload(SearchConfig(**values, output=output), progress=progress)
    except AutocompressError as exc:
        return None, f"the study's model could not be rebuilt ({exc})"
    if reference:
        macs, params = count_macs_params(workload.model, workload.example_input())
        if (macs, params) != (reference.get("teacher_macs"), reference.get("teacher_params")):
            return None, (
                f"the rebuilt model ({params:,} params, {macs:,} MACs) is not the study's teacher "
                f"({reference.get('teacher_params')} params, {reference.get('teacher_macs')} MACs)"
            )
    return workload, ""

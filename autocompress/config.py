"""Search configuration: one frozen :class:`SearchConfig` built from CLI options (and, later, config files).

Validation happens here, before anything is written to disk, so bad input never leaves a half-made study behind.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autocompress.errors import ConfigError

__all__ = ["SearchConfig", "LatencyBudget", "SAMPLERS", "parse_budget", "read_yaml"]

SAMPLERS = ("tpe", "nsga2", "gp", "random")
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def read_yaml(path: Path, *, option: str) -> Any:
    """Parse the YAML file ``path`` given with ``option``; a missing or malformed file is a one-line ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{option}: file {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


@dataclass(frozen=True)
class LatencyBudget:
    """``value`` milliseconds, or ``value`` x the teacher's fp32 ONNX Runtime latency when ``relative``."""

    value: float
    relative: bool

    def resolve(self, teacher_ort_ms: float) -> float:
        return self.value * teacher_ort_ms if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g} ms"


def parse_budget(text: str | float) -> LatencyBudget:
    """Parse ``--latency-budget``: ``2.5`` / ``2.5ms`` (milliseconds) or ``0.5x`` (fraction of the teacher)."""
    raw = str(text).strip().lower()
    relative = raw.endswith("x")
    number = raw[:-1] if relative else raw.removesuffix("ms")
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"--latency-budget: expected milliseconds like 2.5 or a fraction of the teacher like 0.5x, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--latency-budget must be positive, got {text!r}")
    return LatencyBudget(value, relative)


@dataclass(frozen=True)
class SearchConfig:
    """Everything one ``autocompress search`` run needs.

    Attributes:
        model / data: workload sources (``demo`` / ``digits`` for the embedded demo; see :mod:`autocompress.workload`).
        weights / num_classes / trust_checkpoint / small_input: how to build and load ``model``.
        input_size / download / max_samples: how to load ``data``.
        trials: total number of finished trials the study should have (a rerun resumes up to this count).
        timeout: stop starting new trials after this many seconds (``None`` = no limit).
        latency_budget: see :class:`LatencyBudget`.
        max_accuracy_drop: allowed top-1 drop on val, in percentage points, vs the teacher's fp32 ONNX artifact.
        space: search-space name in ``search_spaces/`` or a YAML path.
        study_name / storage / output: where the study lives (default ``sqlite:///<output>/<study>/study.db``).
        seed: sampler, pruning and fine-tuning seed.
        threads / batch_size: the deployment setting latency is measured at.
        sampler: ``tpe`` | ``nsga2`` | ``gp`` | ``random``.
        warmup / repeats: latency protocol.
    """

    model: str = "demo"
    data: str = "digits"
    weights: Path | None = None
    num_classes: int | None = None
    trust_checkpoint: bool = False
    small_input: bool = False
    input_size: int | None = None
    channels: int | None = None
    download: bool = False
    max_samples: int | None = None
    trials: int = 20
    timeout: float | None = None
    latency_budget: LatencyBudget = LatencyBudget(0.25, True)
    max_accuracy_drop: float = 1.0
    space: str = "default"
    study_name: str = "demo"
    storage: str | None = None
    output: Path = Path("results")
    seed: int = 0
    threads: int = 1
    batch_size: int = 1
    sampler: str = "tpe"
    warmup: int = 20
    repeats: int = 100

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"--num-classes must be at least 2, got {self.num_classes}")
        if self.input_size is not None and self.input_size < 8:
            raise ConfigError(f"--input-size must be at least 8 pixels, got {self.input_size}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.max_samples is not None and self.max_samples < 10:
            raise ConfigError(f"--max-samples must be at least 10, got {self.max_samples}")
        pretrained = self.weights is not None and str(self.weights).startswith("torchvision:")
        if self.weights is not None and not pretrained and not Path(self.weights).is_file():
            raise ConfigError(f"--weights: file {str(self.weights)!r} does not exist; give the path of a saved state_dict or checkpoint, or torchvision:DEFAULT for pretrained torchvision weights")
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive seconds, got {self.timeout}")
        if not (0 <= self.max_accuracy_drop <= 100):
            raise ConfigError(f"--max-accuracy-drop is in percentage points and must lie in [0, 100], got {self.max_accuracy_drop}")
        if not _STUDY_NAME.match(self.study_name):
            raise ConfigError(f"--study-name must be letters, digits, '.', '_' or '-' (it names a folder), got {self.study_name!r}")
        if self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.warmup < 0 or self.repeats < 5:
            raise ConfigError(f"latency protocol needs warmup >= 0 and repeats >= 5, got warmup={self.warmup} repeats={self.repeats}")
        if self.storage is not None and "://" not in self.storage:
            raise ConfigError(f"--storage must be an SQLAlchemy URL such as sqlite:///path/study.db, got {self.storage!r}")

    @property
    def study_dir(self) -> Path:
        return self.output / self.study_name

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.study_dir / 'study.db').as_posix()}"

    @property
    def cache_dir(self) -> Path:
        """Trained demo teachers and other reusable downloads-free caches."""
        return self.output / "_cache"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["latency_budget"] = str(self.latency_budget)
        data["output"] = str(self.output)
        data["weights"] = str(self.weights) if self.weights is not None else None
        return data

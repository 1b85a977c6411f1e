"""Search configuration: one frozen :class:`SearchConfig` built from CLI options (and, later, config files).

Validation happens here, before anything is written to disk, so bad input never leaves a half-made study behind.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autocompress.errors import ConfigError

__all__ = [
    "SearchConfig",
    "LatencyBudget",
    "Normalization",
    "RUNTIMES",
    "PREFERENCES",
    "RegisteredNames",
    "SAMPLERS",
    "default_normalization",
    "parse_budget",
    "parse_normalize",
    "read_yaml",
    "option",
    "first_missing",
    "check_output",
    "check_storage_url",
    "MIN_CLASSES",
    "MIN_INPUT_SIZE",
    "MIN_MAX_SAMPLES",
    "MAX_STUDY_NAME",
]


class RegisteredNames:
    """argparse ``choices`` read from a registry when first needed, so the registry stays the one source of the
    names and ``--help`` imports no engine until it prints them (argparse only tests ``in`` and iterates)."""

    def __init__(self, names: Callable[[], list[str]]) -> None:
        self._names = names

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __repr__(self) -> str:
        return repr(tuple(self._names()))


def _sampler_names() -> list[str]:
    from autocompress.study.samplers import list_samplers

    return list_samplers()


def _runtime_names() -> list[str]:
    from autocompress.runtimes import AUTO, list_runtimes

    return [AUTO, *list_runtimes(installed_only=False)]


SAMPLERS = RegisteredNames(_sampler_names)  # --sampler: autocompress.study.samplers
RUNTIMES = RegisteredNames(_runtime_names)  # --runtime: autocompress.runtimes
# --prefer: which feasible model is chosen (autocompress.study.pareto.choose); the first is the default.
PREFERENCES = ("accuracy", "latency")

# Limits every entry point shares (CLI, config file, Python API, sources.load_model / load_data): one number each.
MIN_CLASSES = 2  # a classifier needs two classes to tell apart
MIN_INPUT_SIZE = 8  # pixels per side: the demo digits are 8x8; smaller images leave no room for a conv stem
MIN_MAX_SAMPLES = 10  # images per split: fewer make one image worth more than 10 points of accuracy
MAX_STUDY_NAME = 100  # characters: the study name is a folder name, well under the usual 255-byte limit
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(key, first, again)
        self.key, self.first, self.again = key, first, again


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping giving the same key twice is an error (PyYAML keeps the last one
    silently: ``trials: 5`` and further down ``trials: 50`` would run 50 trials, unsaid)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: PyYAML's own error says so below
                continue
            if first != line:
                raise _DuplicateKey(key, first, line)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, *, option: str) -> Any:
    """Parse the YAML file ``path`` given with ``option``; a missing, malformed or ambiguous file (one key given twice
    in a mapping) is a one-line ConfigError."""
    if path.is_dir():
        raise ConfigError(
            f"{option} {str(path)!r} is a folder; a YAML file is expected (e.g. {option} "
            f"{(path / 'config.yaml').as_posix() if option == '--config' else 'my_space.yaml'})"
        )
    if not path.is_file():
        raise ConfigError(f"{option}: file {str(path)!r} does not exist")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{option} {path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 YAML"
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError(
            f"{option} {path}: key {exc.key!r} is given twice (lines {exc.first} and {exc.again}); keep one of them"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {str(path)!r} ({exc.strerror or exc})") from None


def first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (what creating ``path`` would add), or ``None``.

    Tiny example: with ``results/`` present, ``first_missing(Path("results/demo/chosen"))`` is ``results/demo``.
    """
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def check_output(output: Path, study_name: str) -> None:
    """The study folder ``output/study_name`` exists as a folder or can be created: checked before anything runs, by
    creating and removing a scratch folder in its nearest existing ancestor (permission bits do not tell root's story,
    nor a read-only or virtual file system's).

    Tiny example: ``--output /etc/passwd/results`` → the nearest existing ancestor is a file, not a folder.
    """
    study_dir = (Path(output) / study_name).absolute()
    missing = first_missing(study_dir)
    ancestor = missing.parent if missing is not None else study_dir
    if not ancestor.is_dir():
        raise ConfigError(
            f"--output {str(output)!r}: {str(ancestor)!r} is a file, not a folder, so the study folder "
            f"cannot be made there; pass another --output (or --study-name)"
        )
    try:
        tempfile.TemporaryDirectory(dir=ancestor, prefix=".autocompress-write-check-").cleanup()
    except OSError as exc:
        if missing is None:
            problem = f"--output {str(output)!r}: cannot write into the study folder {str(study_dir)!r}"
        elif missing == study_dir:
            problem = (
                f"--output {str(output)!r}: the study folder {study_name!r} cannot be created in {str(ancestor)!r}"
            )
        else:
            problem = f"--output {str(output)!r} cannot be created in {str(ancestor)!r}"
        raise ConfigError(
            f"{problem} ({exc.strerror or exc}); pass another --output, a folder you can write to"
        ) from None


def check_storage_url(storage: str) -> None:
    """``--storage`` is a URL of a database that outlives the process: an in-memory SQLite database (``sqlite://``,
    ``sqlite:///``, ``sqlite:///:memory:``) would lose every trial when the search ends, with no resume, so it is
    refused. Whether the database can be reached is checked when it is opened."""
    if "://" not in storage:
        raise ConfigError(f"--storage must be an SQLAlchemy URL such as sqlite:///path/study.db, got {storage!r}")
    scheme, rest = storage.split("://", 1)
    if scheme.split("+", 1)[0].lower() != "sqlite":
        return
    database, _, query = rest.partition("?")
    database = database.removeprefix("/")
    if database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in query:
        raise ConfigError(
            f"--storage {storage}: an in-memory SQLite database keeps nothing once the search ends (no "
            "results, no resume); give a file path such as sqlite:///results/study.db, or omit --storage "
            "to keep the study in --output"
        )


@dataclass(frozen=True)
class LatencyBudget:
    """``value`` milliseconds, or ``value`` x the teacher's fp32 latency on the study's runtime when ``relative``."""

    value: float
    relative: bool

    def resolve(self, teacher_ms: float) -> float:
        return self.value * teacher_ms if self.relative else self.value

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
        raise ConfigError(
            f"--latency-budget: expected milliseconds like 2.5 or a fraction of the teacher like 0.5x, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(
            f"--latency-budget must be a finite number: milliseconds like 2.5 or a fraction of the "
            f"teacher like 0.5x, got {text!r}"
        )
    if value <= 0:
        raise ConfigError(f"--latency-budget must be positive, got {text!r}")
    return LatencyBudget(value, relative)


_NORMALIZE_FORMS = (
    "imagenet, none, or MEAN/STD in units of pixels scaled to [0, 1] with one number or 3 comma-separated "
    "per-channel numbers on each side (e.g. 0.5/0.25 or 0.485,0.456,0.406/0.229,0.224,0.225)"
)


@dataclass(frozen=True)
class Normalization:
    """How image folders and torchvision datasets become model input: ``(pixel - mean) / std`` per channel.

    Pixels are first scaled to [0, 1] (as ``ToTensor()`` does). ``mean`` and ``std`` hold one value for every
    channel or one value per channel; ``name`` is ``imagenet``, ``none`` or empty for user values.

    Example:
        >>> str(parse_normalize("0.5,0.5"))  # two numbers without a slash: one mean and one std
        '0.5/0.5'
        >>> parse_normalize("imagenet").for_channels(3)
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""

    def for_channels(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` with one value per channel; a per-channel list of another length is a ConfigError."""
        for values in (self.mean, self.std):
            if len(values) not in (1, channels):
                raise ConfigError(
                    f"--normalize {self} has {len(values)} per-channel values but the data has {channels} "
                    f"channel{'s' if channels > 1 else ''}; pass --channels {len(values)}, or one value per channel "
                    f"such as --normalize {'0.5/0.5' if channels == 1 else '0.5,0.5,0.5/0.25,0.25,0.25'}"
                )
        return (
            self.mean * channels if len(self.mean) == 1 else self.mean,
            self.std * channels if len(self.std) == 1 else self.std,
        )

    def __str__(self) -> str:
        """The ``--normalize`` value that reproduces this normalisation."""
        if self.name:
            return self.name
        return f"{','.join(f'{v:g}' for v in self.mean)}/{','.join(f'{v:g}' for v in self.std)}"

    def describe(self) -> str:
        """One line for reports, e.g. ``imagenet mean/std (0.485,0.456,0.406 / 0.229,0.224,0.225)``."""
        if self.name == "none":
            return "no normalisation (pixels in [0, 1])"
        numbers = f"{','.join(f'{v:g}' for v in self.mean)} / {','.join(f'{v:g}' for v in self.std)}"
        return f"{self.name} mean/std ({numbers})" if self.name else f"mean/std ({numbers})"


_NORMALIZE_PRESETS = {
    "imagenet": Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet"),
    "none": Normalization((0.0,), (1.0,), "none"),
}


def default_normalization(channels: int) -> Normalization:
    """What ``--normalize`` means when it is not given: ImageNet mean/std for 3 channels, 0.5/0.5 for 1 channel."""
    return _NORMALIZE_PRESETS["imagenet"] if channels == 3 else Normalization((0.5,), (0.5,))


def parse_normalize(text: str | Normalization) -> Normalization:
    """Parse ``--normalize``.

    Accepted: ``imagenet``, ``none``, ``MEAN/STD`` (each one number or 3 comma-separated), or ``M,S``.
    """
    if isinstance(text, Normalization):
        return text
    raw = str(text).strip().lower()
    if raw in _NORMALIZE_PRESETS:
        return _NORMALIZE_PRESETS[raw]
    if "/" in raw:
        sides = raw.split("/")
    elif raw.count(",") == 1:  # "0.5,0.25": one mean and one std
        sides = raw.split(",")
    else:
        sides = []
    try:
        mean, std = (tuple(float(v) for v in side.split(",")) for side in sides) if len(sides) == 2 else ((), ())
    except ValueError:
        mean, std = (), ()
    if not mean or len(mean) not in (1, 3) or len(std) not in (1, 3):
        raise ConfigError(f"--normalize: expected {_NORMALIZE_FORMS}, got {text!r}")
    if not all(math.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
        raise ConfigError(
            f"--normalize {text}: every mean must be a finite number and every std a positive one, e.g. 0.5/0.25"
        )
    if max(abs(v) for v in mean) > 1:
        raise ConfigError(
            f"--normalize {text}: mean and std are in units of pixels scaled to [0, 1] (as after ToTensor()); "
            "divide 0..255 values by 255 (e.g. 127.5/127.5 is 0.5/0.5)"
        )
    return Normalization(mean, std)


def option(default: Any, group: str, help: str, **cli: Any) -> Any:
    """A :class:`SearchConfig` field and what its CLI option needs: ``group`` (the ``--help`` section), ``help``, and
    argparse keywords (``type``, ``choices``, ``metavar``); a ``bool`` field is a flag."""
    return dataclasses.field(default=default, metadata={"group": group, "help": help, "cli": cli})


@dataclass(frozen=True)
class SearchConfig:
    """Everything one ``autocompress search`` run needs.

    Attributes:
        model / data: workload sources (``demo`` / ``digits`` for the embedded demo; see
            :mod:`autocompress.sources.workload`).
        weights / num_classes / trust_checkpoint / small_input: how to build and load ``model``.
        input_size / download / max_samples: how to load ``data``.
        normalize: ``imagenet`` | ``none`` | ``MEAN/STD`` for image folders and torchvision datasets (see
            :func:`parse_normalize`); ``None`` keeps the default (ImageNet for 3 channels, 0.5/0.5 for 1 channel).
        allow_low_teacher_accuracy: search even when the teacher's val accuracy is near chance (see
            :func:`autocompress.sources.workload.check_teacher_accuracy`).
        trials: total number of finished trials the study should have (a rerun resumes up to this count).
        timeout: stop starting new trials after this many seconds (``None`` = no limit).
        latency_budget: see :class:`LatencyBudget`.
        max_accuracy_drop: allowed top-1 drop on val, in percentage points, vs the teacher's fp32 artifact on --runtime.
        prefer: the choice rule (:data:`PREFERENCES`, applied by :func:`autocompress.study.pareto.choose`): the most
            accurate feasible model, or the fastest.
        space: search-space name in ``search_spaces/`` or a YAML path.
        study_name / storage / output: where the study lives (default ``sqlite:///<output>/<study>/study.db``).
        seed: sampler, pruning and fine-tuning seed.
        threads / batch_size: the deployment setting latency is measured at (accuracy is scored with every core:
            :func:`autocompress.measure.accuracy.scoring_threads`).
        runtime: the inference engine artifacts are built for, timed on and exported to (``onnxruntime``,
            ``openvino``, ``torch``; :func:`autocompress.runtimes.list_runtimes`), or ``auto``: every installed
            runtime, the runtime a searched dimension. The budget is relative to the teacher on the same runtime
            (``auto``: the fastest fp32 teacher among the runtimes, so ``0.5x`` is the same milliseconds whichever
            runtime a trial uses).
        sampler: ``tpe`` | ``nsga2`` | ``gp`` | ``random``.
        device: where fine-tuning runs (``cpu``, ``cuda``, ``cuda:N``, ``auto``: :mod:`autocompress.hardware.device`);
            latency is always measured on the target runtime on this CPU.
        workers: processes running trials on this study from one command (1 = this process only); any number of
            plain ``search`` processes on one storage also share the study (:mod:`autocompress.scale.workers`).
        build_only: this process builds trials and a measure worker on the target measures them
            (:mod:`autocompress.scale.remote`).
        warmup / repeats / latency_window: latency protocol (:class:`autocompress.measure.latency.Protocol`):
            untimed warm-up runs, the least timed runs of one figure, and the seconds of blocks one figure takes
            (extended up to 2.5x on a noisy machine).
    """

    # Each field is its own CLI option (--field-name), config-file key and API keyword: :func:`option` holds its help
    # and CLI group; autocompress.cli builds the parser from these fields, so the four cannot drift apart.
    model: str = option("demo", "model and data", "model to compress: demo | torchvision:NAME | package.module:factory")
    data: str = option(
        "digits", "model and data", "dataset: digits | imagefolder:PATH | torchvision:NAME:ROOT | package.module:fn"
    )
    weights: Path | None = option(
        None,
        "model and data",
        "state_dict or checkpoint (.pt) for --model, loaded with torch.load(weights_only=True); "
        "or torchvision:DEFAULT / torchvision:IMAGENET1K_V1 for torchvision's pretrained weights (their preprocessing "
        "is then applied to the data)",
        type=Path,
    )
    num_classes: int | None = option(
        None, "model and data", "classes of the model's head (default: taken from the data)", type=int
    )
    trust_checkpoint: bool = option(
        False,
        "model and data",
        "allow --weights to be a whole pickled model (unpickling runs code from the file: only for files you trust)",
    )
    small_input: bool = option(
        False,
        "model and data",
        "adapt a torchvision model's stem to small images (e.g. 32x32): 3x3 stride-1 first conv, no max-pool",
    )
    input_size: int | None = option(
        None,
        "model and data",
        "image side in pixels for imagefolder/torchvision data "
        "(default: 224 for folders, native for torchvision datasets)",
        type=int,
    )
    channels: int | None = option(
        None,
        "model and data",
        "convert images to 1 (grayscale) or 3 (RGB) channels (default: as the data is)",
        type=int,
        choices=(1, 3),
    )
    download: bool = option(False, "model and data", "let torchvision datasets download into ROOT (needs internet)")
    max_samples: int | None = option(
        None, "model and data", "cap every split at this many images (stratified), for large datasets", type=int
    )
    normalize: str | None = option(
        None,
        "model and data",
        "normalisation of imagefolder/torchvision images after scaling pixels to [0, 1]: "
        "imagenet, none (plain ToTensor() pixels), or MEAN/STD with one number or 3 comma-separated per side "
        "(0.5/0.25, 0.485,0.456,0.406/0.229,0.224,0.225); use what the model was trained with (default: imagenet for 3 "
        "channels, 0.5/0.5 for 1)",
        type=str,
        metavar="imagenet|none|MEAN/STD",
    )
    allow_low_teacher_accuracy: bool = option(
        False,
        "model and data",
        "search even when the teacher's val accuracy is near chance (usually a preprocessing mismatch)",
    )
    trials: int = option(
        20, "search", "total finished trials the study should have; a rerun resumes up to this number", type=int
    )
    timeout: float | None = option(None, "search", "stop starting new trials after this many seconds", type=float)
    latency_budget: LatencyBudget = option(
        LatencyBudget(0.25, True),
        "search",
        "latency limit: milliseconds (2.5 or 2.5ms) or a fraction of the teacher's fp32 latency on --runtime (0.5x)",
        type=str,
    )
    max_accuracy_drop: float = option(
        1.0, "search", "allowed top-1 drop on the validation split, in percentage points", type=float
    )
    prefer: str = option(
        PREFERENCES[0],
        "search",
        "which feasible model is chosen: accuracy = the most accurate within the latency budget, latency = the "
        "fastest within the accuracy limit",
        choices=PREFERENCES,
    )
    space: str = option("default", "search", "search space: a name in search_spaces/ or a path to a YAML file")
    sampler: str = option("tpe", "search", "Optuna sampler", choices=SAMPLERS)
    seed: int = option(0, "search", "seed of the sampler, calibration and fine-tuning", type=int)
    study_name: str = option("demo", "storage and output", "study name; also the folder under --output")
    storage: str | None = option(
        None, "storage and output", "Optuna storage URL (default: sqlite:///OUTPUT/STUDY/study.db)"
    )
    output: Path = option(Path("results"), "storage and output", "results folder", type=Path)
    runtime: str = option(
        "onnxruntime",
        "measurement",
        "inference engine artifacts are built for, timed on and "
        "exported to (openvino needs pip install 'autocompress[openvino]'); the budget is relative to "
        "the teacher on it. auto: the runtime is searched too, over every installed runtime, and the "
        "budget is relative to the fastest fp32 teacher among them",
        choices=RUNTIMES,
    )
    threads: int = option(
        1, "measurement", "intra-op threads latency is measured with (accuracy is scored on every core)", type=int
    )
    batch_size: int = option(1, "measurement", "batch size latency is measured at", type=int)
    repeats: int = option(30, "measurement", "least timed runs per latency figure (after warm-up)", type=int)
    latency_window: float = option(
        1.2,
        "measurement",
        "seconds of timed blocks per latency figure, alternating with "
        "the teacher; extended up to 2.5x while the machine is in a slow phase",
        type=float,
    )
    warmup: int = option(20, "measurement", "untimed warm-up runs per latency measurement", type=int)
    device: str = option(
        "cpu",
        "scale out",
        "where fine-tuning runs (teacher logits and distillation); latency is "
        "always measured on --runtime on this CPU; auto uses CUDA when present and says so",
        metavar="cpu|cuda|cuda:N|auto",
    )
    workers: int = option(
        1,
        "scale out",
        "processes running this study's trials (set-up once, exactly --trials "
        "trials, timing never beside another worker's fine-tuning); more plain search processes on "
        "one --storage also join",
        type=int,
    )
    build_only: bool = option(
        False,
        "scale out",
        "build trials here (prune, fine-tune on --device, export) and "
        "leave every latency and accuracy figure to `autocompress measure-worker` on the target "
        "host (same --storage, --study-name and --output folder); this host never times",
    )

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < MIN_CLASSES:
            raise ConfigError(f"--num-classes must be at least {MIN_CLASSES}, got {self.num_classes}")
        if self.input_size is not None and self.input_size < MIN_INPUT_SIZE:
            raise ConfigError(f"--input-size must be at least {MIN_INPUT_SIZE} pixels, got {self.input_size}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.max_samples is not None and self.max_samples < MIN_MAX_SAMPLES:
            raise ConfigError(f"--max-samples must be at least {MIN_MAX_SAMPLES}, got {self.max_samples}")
        if self.normalize is not None:
            parse_normalize(self.normalize)
        pretrained = self.weights is not None and str(self.weights).startswith("torchvision:")
        if self.weights is not None and not pretrained and Path(self.weights).is_dir():
            raise ConfigError(
                f"--weights {str(self.weights)!r} is a folder; a file is expected: the saved "
                "state_dict or checkpoint (.pt) inside it, or torchvision:DEFAULT for pretrained "
                "torchvision weights"
            )
        if self.weights is not None and not pretrained and not Path(self.weights).is_file():
            raise ConfigError(
                f"--weights: file {str(self.weights)!r} does not exist; give the path of a saved state_dict or "
                "checkpoint, or torchvision:DEFAULT for pretrained torchvision weights"
            )
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive seconds, got {self.timeout}")
        if not (0 <= self.max_accuracy_drop <= 100):
            raise ConfigError(
                f"--max-accuracy-drop is in percentage points and must lie in [0, 100], got {self.max_accuracy_drop}"
            )
        if self.prefer not in PREFERENCES:
            raise ConfigError(f"--prefer must be one of {', '.join(PREFERENCES)}, got {self.prefer!r}")
        if len(self.study_name) > MAX_STUDY_NAME:
            raise ConfigError(
                f"--study-name is {len(self.study_name)} characters long; it names a folder, so at most "
                f"{MAX_STUDY_NAME} are allowed: pass a shorter name"
            )
        if not _STUDY_NAME.match(self.study_name):
            raise ConfigError(
                f"--study-name must be letters, digits, '.', '_' or '-' (it names a folder), got {self.study_name!r}"
            )
        if self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        from autocompress.runtimes import resolve_runtimes

        resolve_runtimes(self.runtime)  # unknown: ConfigError listing the runtimes; not installed: the pip install
        from autocompress.hardware.device import check_device

        check_device(self.device)  # --device cuda without CUDA: one line, before anything is written
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"--workers must lie in [1, 64], got {self.workers}")
        from autocompress.study.samplers import get_sampler

        get_sampler(self.sampler)  # unknown: ConfigError listing the registered samplers
        if self.warmup < 0 or self.repeats < 5:
            raise ConfigError(
                f"latency protocol needs warmup >= 0 and repeats >= 5, got warmup={self.warmup} repeats={self.repeats}"
            )
        if not (math.isfinite(self.latency_window) and 0.05 <= self.latency_window <= 30):
            raise ConfigError(f"--latency-window is in seconds and must lie in [0.05, 30], got {self.latency_window}")
        check_output(Path(self.output), self.study_name)
        if self.storage is not None:
            check_storage_url(self.storage)

    @property
    def protocol(self) -> Any:
        """The latency :class:`~autocompress.measure.latency.Protocol` these options describe."""
        from autocompress.measure.latency import Protocol

        return Protocol.from_options(warmup=self.warmup, repeats=self.repeats, window_s=self.latency_window)

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

"""The model and data source registries: what a ``--model`` or ``--data`` spec may name, and who loads it.

A *source* is one way of naming a model (``torchvision:NAME``) or data (``imagefolder:PATH``) on the command line.
Each is a small class that registers itself when its module is imported (``__init_subclass__``, as runtimes do):

* :class:`ModelSource`: :meth:`ModelSource.build` returns the architecture; the base :meth:`ModelSource.load` adds
  a ``--weights`` checkpoint. Hooks with do-nothing defaults refuse option combinations before anything is loaded
  (:meth:`ModelSource.check`), name the preprocessing of pretrained weights (:meth:`ModelSource.preprocess`), or
  hand over a whole workload for a model that comes with its own data (:meth:`ModelSource.bundled_workload`, the
  demo).
* :class:`DataSource`: :meth:`DataSource.load` returns train / val / test :class:`DataSplits` for validated
  :class:`DataOptions`; :meth:`DataSource.check` refuses options that do not apply (``--normalize`` on data that is
  normalised already).

Each class carries its ``name`` (the registry key and spec prefix), ``form`` (how a spec looks, e.g.
``imagefolder:PATH``), an ``example`` spec, a one-line ``help`` and its ``settings`` (the command-line options it
reads besides the spec). A spec goes to the first source whose :meth:`~ModelSource.matches` accepts it: prefixed
sources first, then *generic* ones that match a pattern (``package.module:factory``), so ``torchvision:resnet18``
is never taken for a module ``torchvision`` with a factory ``resnet18``.

Adding a source is one module of this package named ``_model_<name>.py`` or ``_data_<name>.py`` that defines a
subclass: such modules are found by name and imported on first use (with :mod:`importlib`, so this module never
imports a module that imports it back). A source defined elsewhere registers when its module is imported; an
installed distribution can name that module in the ``autocompress.sources`` entry-point group.

Example:
    >>> list_model_sources()
    ['demo', 'torchvision', 'factory']
    >>> match_data_source("imagefolder:./flowers").name
    'imagefolder'
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from autocompress.config import Normalization, SearchConfig
from autocompress.errors import ConfigError, WorkloadError
from autocompress.plugins import load_plugins, package_modules
from autocompress.sources._checkpoints import _load_weights
from autocompress.sources._pretrained import _refuse_pretrained
from autocompress.sources._types import DataSplits, Workload

__all__ = [
    "DataOptions",
    "DataSource",
    "ModelSource",
    "data_spec_forms",
    "get_data_source",
    "get_model_source",
    "list_data_sources",
    "list_model_sources",
    "match_data_source",
    "match_model_source",
    "model_spec_forms",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autocompress.sources"  # plugins: a module that defines ModelSource / DataSource subclasses
# Every module of this package named _model_*.py or _data_*.py holds sources; they are imported on first use.
_SOURCE_MODULE = re.compile(r"^_(model|data)_\w+$")
# The original sources are listed first, in this order, so the unknown-spec messages keep their wording; others follow.
_LISTED_FIRST = (
    "_model_demo",
    "_model_torchvision",
    "_model_factory",
    "_data_digits",
    "_data_imagefolder",
    "_data_torchvision",
    "_data_function",
)
_loaded = False


class _Source(ABC):
    """What model and data sources share: identity, help, settings, matching and self-registration."""

    name: ClassVar[str]  # registry key; also the spec prefix (``name`` or ``name:...``) unless generic
    form: ClassVar[str]  # how a spec looks, e.g. ``torchvision:NAME``; listed in the unknown-spec error
    example: ClassVar[str]  # one spec this source accepts, e.g. ``torchvision:resnet18`` (docs and contract tests)
    help: ClassVar[str]  # one line for --help and listings
    settings: ClassVar[tuple[str, ...]] = ()  # command-line options it reads besides the spec, e.g. ("--weights",)
    generic: ClassVar[bool] = False  # matches a pattern rather than a prefix: tried after the prefixed sources
    registry: ClassVar[dict[str, type[Any]]]  # one per kind, set on ModelSource and DataSource
    _kind: ClassVar[str]  # "model" or "data", for messages

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):  # an intermediate base class (ModelSource, DataSource) or a mix-in
            return
        old = cls.registry.get(cls.name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(
                f"{cls.__qualname__}: a {cls._kind} source named {cls.name!r} is already registered by "
                f"{old.__module__}.{old.__qualname__}; pick another name"
            )
        cls.registry[cls.name] = cls  # the same class defined again (a module reload) replaces itself

    @classmethod
    def matches(cls, spec: str) -> bool:
        """Whether ``spec`` names this source: ``spec == name`` when ``form`` takes no argument (``demo``), else
        ``spec`` starts with ``name:`` (``torchvision:resnet18``). Generic sources override this."""
        return spec.startswith(cls.name + ":") if ":" in cls.form else spec == cls.name

    @classmethod
    def describe(cls) -> str:
        """One line for listings: ``form: help (options: ...)``."""
        options = f" (options: {', '.join(cls.settings)})" if cls.settings else ""
        return f"{cls.form}: {cls.help}{options}"


class ModelSource(_Source):
    """One ``--model`` spec form. Subclasses set the class attributes of :class:`_Source` and implement :meth:`build`.

    Example:
        >>> class Toy(ModelSource):
        ...     name, form, example, help = "toy", "toy:WIDTH", "toy:8", "a one-layer CNN of WIDTH channels"
        ...     settings = ("--num-classes", "--weights")
        ...     def build(self, spec, *, num_classes, small_input):
        ...         width = int(spec.split(":", 1)[1])
        ...         return nn.Sequential(nn.Conv2d(1, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                              nn.Linear(width, num_classes or 10))
        >>> load_model("toy:8", num_classes=3)  # now also --model toy:8
    """

    registry: ClassVar[dict[str, type[ModelSource]]] = {}
    _kind = "model"

    @abstractmethod
    def build(self, spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
        """The architecture named by ``spec`` with a ``num_classes``-wide head (``None``: the source's default);
        ``small_input`` asks for a stem suited to small images such as 32x32 (sources may ignore it)."""

    def load(
        self,
        spec: str,
        *,
        num_classes: int | None,
        weights: str | Path | None,
        trust_checkpoint: bool,
        small_input: bool,
    ) -> nn.Module:
        """:meth:`build`, then the ``weights`` checkpoint file loaded into it (see
        :func:`autocompress.sources.load_model`); in eval mode. Override for weights of another kind."""
        _refuse_pretrained(spec, weights)
        model = self.build(spec, num_classes=num_classes, small_input=small_input)
        if weights is not None:
            model = _load_weights(model, spec, Path(weights), trust_checkpoint=trust_checkpoint)
        return model.eval()

    def preprocess(self, spec: str, weights: str | Path | None) -> Callable[[Any], torch.Tensor] | None:
        """The preprocessing that ``weights`` were trained with, when the source knows it (torchvision's pretrained
        weights); default ``None``: only the user knows."""
        _refuse_pretrained(spec, weights)
        return None

    def check(self, config: SearchConfig) -> None:
        """Refuse an option combination before anything is loaded (one-line :class:`WorkloadError`); default:
        accept."""

    def bundled_workload(self, config: SearchConfig, *, progress: Callable[[str], None] | None) -> Workload | None:
        """The whole workload, for a model that comes with its own data and trained weights (the demo); default
        ``None``: the data is loaded from ``--data`` and the model from :meth:`load`."""
        return None


@dataclass(frozen=True)
class DataOptions:
    """The options of one data load, validated by :func:`autocompress.sources.load_data` (see its arguments).

    Attributes:
        input_size: square side images are resized to; ``None``: the source's default.
        channels: 1 or 3; ``None``: the data's own.
        seed: seed of every split and subsample.
        download: whether the source may download missing files.
        max_samples: cap on the images per split (stratified).
        preprocess: maps one PIL image to a float tensor ``C x H x W`` instead of the default pipeline.
        normalize: the normalisation of pixels scaled to [0, 1]; ``None``: the default for the channel count.
        cache_dir: where decoded image stores are kept and reused (``<output>/_cache`` in a search); ``None``: a
            temporary folder removed when the process exits.
    """

    input_size: int | None = None
    channels: int | None = None
    seed: int = 0
    download: bool = False
    max_samples: int | None = None
    preprocess: Callable[[Any], torch.Tensor] | None = None
    normalize: Normalization | None = None
    cache_dir: Path | None = None


class DataSource(_Source):
    """One ``--data`` spec form. Subclasses set the class attributes of :class:`_Source` and implement :meth:`load`."""

    registry: ClassVar[dict[str, type[DataSource]]] = {}
    _kind = "data"

    @abstractmethod
    def load(self, spec: str, options: DataOptions) -> DataSplits:
        """Train / val / test of ``spec``; deterministic for ``options.seed``."""

    def check(self, spec: str, options: DataOptions) -> None:
        """Refuse options that do not apply to this source, before anything is loaded; default: accept."""


# ---------------------------------------------------------------------------------------------------------------
# queries

_S = TypeVar("_S", bound=_Source)


def list_model_sources() -> list[str]:
    """Names of the registered model sources: the built-ins first, then in the order they registered."""
    return [cls.name for cls in _listed(ModelSource)]


def list_data_sources() -> list[str]:
    """Names of the registered data sources: the built-ins first, then in the order they registered."""
    return [cls.name for cls in _listed(DataSource)]


def get_model_source(name: str) -> ModelSource:
    """The model source called ``name`` (one of :func:`list_model_sources`); unknown: a ConfigError listing them."""
    return _get(ModelSource, name)


def get_data_source(name: str) -> DataSource:
    """The data source called ``name`` (one of :func:`list_data_sources`); unknown: a ConfigError listing them."""
    return _get(DataSource, name)


def match_model_source(spec: str) -> ModelSource:
    """The source a ``--model`` spec names; none: a WorkloadError listing the valid forms."""
    source = _match(ModelSource, spec)
    if source is None:
        raise WorkloadError(f"--model {spec} : unknown model spec; expected one of {model_spec_forms()}")
    return source


def match_data_source(spec: str) -> DataSource:
    """The source a ``--data`` spec names; none: a WorkloadError listing the valid forms (and ``imagefolder:`` for
    a folder given bare)."""
    source = _match(DataSource, spec)
    if source is None:
        hint = f"; did you mean imagefolder:{spec}?" if spec and Path(spec).expanduser().is_dir() else ""
        raise WorkloadError(f"--data {spec} : unknown data spec; expected one of {data_spec_forms()}{hint}")
    return source


def model_spec_forms() -> str:
    """``demo, torchvision:NAME, package.module:factory`` (and the forms of sources registered since)."""
    return ", ".join(cls.form for cls in _listed(ModelSource))


def data_spec_forms() -> str:
    """``digits, imagefolder:PATH, torchvision:NAME:ROOT, package.module:fn`` (and those registered since)."""
    return ", ".join(cls.form for cls in _listed(DataSource))


def _listed(kind: type[_S]) -> list[type[_S]]:
    """The sources of ``kind`` in listing order: the built-ins of ``_LISTED_FIRST``, then the others in the order
    they registered (a stable sort keeps it). Appending keeps every earlier message a prefix of the new one."""
    _load_builtin()
    rank = {f"{__package__}.{module}": i for i, module in enumerate(_LISTED_FIRST)}
    return sorted(kind.registry.values(), key=lambda cls: rank.get(cls.__module__, len(rank)))


def _get(kind: type[_S], name: str) -> _S:
    _load_builtin()
    cls = kind.registry.get(name)
    if cls is None:
        valid = ", ".join(c.name for c in _listed(kind))
        raise ConfigError(f"{kind._kind} source {name!r}: expected one of {valid}")
    return cls()


def _match(kind: type[_S], spec: str) -> _S | None:
    """The first source that accepts ``spec``, prefixed sources before generic ones (``torchvision:resnet18`` is
    also a valid ``package.module:factory``)."""
    tried = sorted(_listed(kind), key=lambda cls: cls.generic)
    return next((cls() for cls in tried if cls.matches(spec)), None)


def _load_builtin() -> None:
    """Import the source modules of this package and the entry-point plugins once: importing registers them.

    The package's modules are found by name (``_model_*``, ``_data_*``), so a new source is one new file; a
    distribution can add sources through the ``autocompress.sources`` entry-point group. importlib, not import
    statements: those modules import this one, and the package's import graph stays free of cycles.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    found = [m for m in package_modules(__package__) if _SOURCE_MODULE.match(m)]
    first = [m for m in _LISTED_FIRST if m in found]
    load_plugins(__package__, group=ENTRY_POINT_GROUP, modules=first + [m for m in found if m not in first])

"""The sampler registry (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from autocompress.errors import ConfigError
from autocompress.plugins import load_plugins

__all__ = [
    "DEFAULT_SAMPLER",
    "SamplerEntry",
    "SamplerFactory",
    "get_sampler",
    "list_samplers",
    "make_sampler",
    "register_sampler",
]

DEFAULT_SAMPLER = "tpe"
ENTRY_POINT_GROUP = "autocompress.samplers"
SamplerFactory = Callable[..., optuna.samplers.BaseSampler]


@dataclass(frozen=True)
class SamplerEntry:
    """One ``--sampler`` choice.

    Attributes:
        name: what ``--sampler`` takes.
        help: one line for ``--help`` and the README.
        factory: ``factory(seed=..., trials=...)`` → a fresh sampler; ``trials`` is the study's ``--trials`` (some
            samplers size their start-up phase or population from it).
    """

    name: str
    help: str
    factory: SamplerFactory

    def build(self, *, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
        return self.factory(seed=seed, trials=trials)


_REGISTRY: dict[str, SamplerEntry] = {}
_loaded = False


def register_sampler(name: str, *, help: str) -> Callable[[SamplerFactory], SamplerFactory]:
    """Register ``factory`` as ``--sampler name`` (a decorator). A name registered twice is an error."""

    def decorate(factory: SamplerFactory) -> SamplerFactory:
        known = _REGISTRY.get(name)
        if known is not None and known.factory is not factory:
            raise ValueError(
                f"sampler {name!r} is registered twice ({known.factory.__module__} and "
                f"{factory.__module__}); pick another name"
            )
        _REGISTRY[name] = SamplerEntry(name=name, help=help, factory=factory)
        return factory

    return decorate


def _load() -> None:
    """Import this package's sampler modules and the entry-point plugins once (they register on import)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    load_plugins(__name__.rsplit(".", 1)[0], group=ENTRY_POINT_GROUP, skip=("_registry",))


def list_samplers() -> list[str]:
    """Every registered ``--sampler`` name, the default first."""
    _load()
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_SAMPLER, n))


def get_sampler(name: str) -> SamplerEntry:
    """The entry for ``--sampler name``; an unknown name is a :class:`ConfigError` listing the valid ones."""
    _load()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"--sampler must be one of {', '.join(list_samplers())}, got {name!r}")
    return entry


def make_sampler(name: str, *, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler for a study of ``trials`` trials."""
    return get_sampler(name).build(seed=seed, trials=trials)

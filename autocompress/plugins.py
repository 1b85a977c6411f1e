"""Loading the modules that register extensions (runtimes, samplers, model and data sources).

A registry's package imports each of its own modules once (a module registers its classes or factories when
imported) and then the modules other packages name under an entry-point group, so that adding an extension is one
module: in the package, or in any installed distribution that declares, e.g.::

    [project.entry-points."autocompress.samplers"]
    qmc = "my_package.qmc_sampler"

Modules are imported with :mod:`importlib`, so a registry never imports, as a statement, a module that imports it.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Collection, Iterable
from importlib import metadata

__all__ = ["load_plugins", "package_modules"]

logger = logging.getLogger(__name__)


def package_modules(package: str) -> list[str]:
    """The names of the modules directly in ``package``, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(importlib.import_module(package).__path__))


def load_plugins(package: str, *, group: str, skip: Collection[str] = (), modules: Iterable[str] | None = None) -> None:
    """Import the modules of ``package`` (``modules`` in that order, or every one not named in ``skip``), then every
    entry point of ``group``.

    A plugin that fails to import is logged and left out: it must not break the built-in extensions.
    """
    names = list(modules) if modules is not None else [m for m in package_modules(package) if m not in skip]
    for name in names:
        importlib.import_module(f"{package}.{name}")
    for point in metadata.entry_points(group=group):
        try:
            point.load()
        except Exception as exc:
            logger.warning("%s plugin %s could not be loaded: %s", group, point.value, exc)

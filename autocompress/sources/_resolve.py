"""Resolving ``package.module:attr`` specs, shared by ``--model package.module:factory`` and
``--data package.module:fn``.

Holds the spec pattern, the import of the user's module (from the working directory or ``PYTHONPATH``) with
one-line errors, and the check whether a user function takes a given keyword argument.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from typing import Any

from autocompress.errors import WorkloadError
from autocompress.sources._text import _one_line

__all__ = ["_MODULE_SPEC", "_accepts", "_resolve_object"]

# ``package.module:attr`` with dotted identifiers on both sides; shared with the data loader.
_MODULE_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _resolve_object(spec: str, *, option: str) -> Any:
    """Import ``package.module`` of ``spec`` and return its attribute ``attr`` (dotted paths allowed)."""
    module_name, _, attr_path = spec.partition(":")
    cwd = os.getcwd()
    # `python -m autocompress` and the console script do not put the working directory on sys.path, but users
    # expect `--model mymodels:build` to find ./mymodels.py.
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # files written after interpreter start (notebooks, tests) must be found
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            top = module_name.split(".")[0]
            raise WorkloadError(
                f"{option} {spec} : cannot import module {module_name!r} (no {top}.py or {top}/ in {cwd} or on "
                f"sys.path); run from the folder that contains it or add that folder to PYTHONPATH"
            ) from exc
        raise WorkloadError(
            f"{option} {spec} : importing {module_name!r} failed because it needs the missing module {exc.name!r}; "
            "pip install it"
        ) from exc
    except Exception as exc:
        raise WorkloadError(
            f"{option} {spec} : importing {module_name!r} raised {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in dir(target) if not n.startswith("_") and callable(getattr(target, n, None)))
            close = difflib.get_close_matches(part, public, n=3, cutoff=0.5)
            # Without a close match, list what the user wrote in that module, not everything it imported.
            own = [n for n in public if getattr(getattr(target, n), "__module__", None) == module.__name__]
            listed = ", ".join(close or (own or public)[:10]) or "none"
            raise WorkloadError(
                f"{option} {spec} : module {module_name!r} has no attribute {attr_path!r}; "
                f"{'close matches' if close else 'callables there'}: {listed}"
            )
        target = getattr(target, part)
    return target


def _accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` can be called with the keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins and some C extensions have no signature
        return False
    return any(
        (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or p.kind is p.VAR_KEYWORD
        for p in params
    )

"""The ``package.module:factory`` model source: a function (or ``nn.Module`` class) importable from the working
directory or ``PYTHONPATH``, e.g. ``mymodels.cifar:build``. It receives ``num_classes=`` when it accepts that keyword.

A *generic* source: it matches any ``dotted.name:attr`` that no prefixed source (``torchvision:``) claims first.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from autocompress.errors import WorkloadError
from autocompress.sources._base import ModelSource
from autocompress.sources._resolve import _MODULE_SPEC, _accepts, _resolve_object
from autocompress.sources._text import _one_line

__all__ = ["FactoryModel"]

# Records keep the name of the public module they were logged from before the split (the CLI prints it).
logger = logging.getLogger("autocompress.sources.models")


class FactoryModel(ModelSource):
    """``package.module:factory``: ``--small-input`` is ignored (the factory decides its stem)."""

    name = "factory"
    form = "package.module:factory"
    example = "mymodels.cifar:build"
    help = "a function or nn.Module class importable from the working directory or PYTHONPATH"
    settings = ("--weights", "--num-classes", "--trust-checkpoint")
    generic = True

    @classmethod
    def matches(cls, spec: str) -> bool:
        return bool(_MODULE_SPEC.match(spec))

    def build(self, spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
        model = _build_from_factory(spec, num_classes=num_classes)
        if small_input:
            logger.warning("--small-input is ignored for %s: adapt the stem inside your factory instead", spec)
        return model


def _build_from_factory(spec: str, *, num_classes: int | None) -> nn.Module:
    target = _resolve_object(spec, option="--model")
    if isinstance(target, nn.Module):  # an instance: calling it would run forward()
        return target
    if not callable(target):
        raise WorkloadError(
            f"--model {spec} : {spec.split(':', 1)[1]} is a {type(target).__name__}, expected a function or "
            "nn.Module class returning the model"
        )
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        if _accepts(target, "num_classes"):
            kwargs["num_classes"] = num_classes
        else:
            logger.info("%s takes no num_classes argument; --num-classes is only checked against its output", spec)
    call = f"{spec.split(':', 1)[1]}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        model = target(**kwargs)
    except Exception as exc:  # user code: report it on one line, the traceback stays chained for --debug
        raise WorkloadError(f"--model {spec} : calling {call} raised {type(exc).__name__}: {_one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise WorkloadError(
            f"--model {spec} : {call} returned {type(model).__name__}, expected a torch.nn.Module; "
            "return the model instance"
        )
    return model

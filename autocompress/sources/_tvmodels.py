"""torchvision classification models for ``--model torchvision:NAME``: their names and how they are built.

Lists the registered models, matches ``NAME`` case-insensitively (with close matches in the error), builds the
model without pretrained weights, and adapts its stem to small inputs for ``small_input=True``.
"""

from __future__ import annotations

import difflib
import logging

from torch import nn

from autocompress.errors import WorkloadError
from autocompress.sources._text import _one_line

__all__ = ["_adapt_small_input", "_build_torchvision", "_torchvision_name", "list_torchvision_models"]

# Records keep the name of the public module they were logged from before the split (the CLI prints it).
logger = logging.getLogger("autocompress.sources.models")

_LIST_HINT = "python -c 'import torchvision; print(torchvision.models.list_models(module=torchvision.models))'"


def list_torchvision_models() -> list[str]:
    """Names accepted by ``torchvision:NAME``: torchvision's classification models (no detection/segmentation)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_name(spec: str) -> str:
    """The registered name of ``torchvision:NAME`` (matched case-insensitively)."""
    name = spec.split(":", 1)[1]
    available = list_torchvision_models()
    canonical = {n.lower(): n for n in available}.get(name.lower())
    if canonical is None:
        close = difflib.get_close_matches(name.lower(), available, n=3, cutoff=0.6)
        found = f"close matches: {', '.join(close)}" if close else f"{len(available)} models exist"
        raise WorkloadError(
            f"--model {spec} : no torchvision classification model named {name!r}; {found} (list: {_LIST_HINT})"
        )
    return canonical


def _build_torchvision(spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
    import torchvision

    canonical = _torchvision_name(spec)
    classes = 1000 if num_classes is None else num_classes
    try:
        model = torchvision.models.get_model(canonical, weights=None, num_classes=classes)
    except (TypeError, ValueError) as exc:
        raise WorkloadError(
            f"--model {spec} : building it with num_classes={classes} failed: {_one_line(exc)}"
        ) from exc
    if small_input:
        _adapt_small_input(model, spec)
    return model


def _adapt_small_input(model: nn.Module, spec: str) -> None:
    import torchvision.models as tvm

    if isinstance(model, tvm.ResNet):
        # A 224-pixel stem (7x7 stride-2 conv + stride-2 max-pool) shrinks 32x32 to 8x8 before the first block and
        # leaves 1x1 maps at the end; the CIFAR ResNet stem keeps 32x32 through layer1.
        old = model.conv1
        model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
        return
    if isinstance(model, (tvm.VisionTransformer, tvm.SwinTransformer, tvm.MaxVit)):
        logger.warning("--small-input is ignored for %s: its patch embedding fixes the input size", spec)
        return
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and first.stride != (1, 1):
        # Only the stride changes, so the weight shapes (and checkpoints trained either way) still fit.
        first.stride = (1, 1)

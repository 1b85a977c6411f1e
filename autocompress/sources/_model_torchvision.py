"""The ``torchvision:NAME`` model source: any torchvision classification model, e.g. ``torchvision:resnet18``.

Built with ``weights=None`` (nothing is downloaded); trained weights come from ``--weights``: a checkpoint file, or
``torchvision:ENUM`` for torchvision's own pretrained weights (:mod:`autocompress.sources._pretrained`), whose
preprocessing :meth:`TorchvisionModel.preprocess` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.config import SearchConfig
from autocompress.errors import WorkloadError
from autocompress.sources._base import ModelSource
from autocompress.sources._pretrained import _build_pretrained, _weights_enum
from autocompress.sources._tvmodels import _build_torchvision

__all__ = ["TorchvisionModel"]


class TorchvisionModel(ModelSource):
    """``torchvision:NAME``: needs ``--weights`` in a search (the search compresses a trained model)."""

    name = "torchvision"
    form = "torchvision:NAME"
    example = "torchvision:resnet18"
    help = "a torchvision classification model; trained weights from --weights (a checkpoint or torchvision:ENUM)"
    settings = ("--weights", "--num-classes", "--small-input", "--trust-checkpoint")

    def build(self, spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
        return _build_torchvision(spec, num_classes=num_classes, small_input=small_input)

    def load(
        self,
        spec: str,
        *,
        num_classes: int | None,
        weights: str | Path | None,
        trust_checkpoint: bool,
        small_input: bool,
    ) -> nn.Module:
        enum = _weights_enum(spec, weights)
        if enum is not None:
            model = _build_pretrained(spec, enum, given=str(weights), num_classes=num_classes, small_input=small_input)
            return model.eval()
        return super().load(
            spec, num_classes=num_classes, weights=weights, trust_checkpoint=trust_checkpoint, small_input=small_input
        )

    def preprocess(self, spec: str, weights: str | Path | None) -> Callable[[Any], torch.Tensor] | None:
        enum = _weights_enum(spec, weights)
        return None if enum is None else enum.transforms()

    def check(self, config: SearchConfig) -> None:
        if config.weights is None:
            raise WorkloadError(
                f"--model {config.model} has random weights without --weights; pass --weights PATH with a state_dict "
                "trained on your data (the search compresses a trained model, it does not train one)"
            )

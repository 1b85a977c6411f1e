"""Bring-your-own model: build a classifier from a ``--model`` spec and load its ``--weights``.

A spec names a registered :class:`~autocompress.sources.ModelSource` (:func:`~autocompress.sources.list_model_sources`);
the built-ins:

* ``demo``: the embedded demo teacher (:mod:`autocompress.sources._model_demo`); in a search it comes with its own
  data (``--data digits``) and cached trained weights, here it is the untrained architecture.
* ``torchvision:NAME``: any torchvision classification model, e.g. ``torchvision:resnet18``. It is built with
  ``weights=None`` (nothing is downloaded); trained weights come from ``--weights``: a checkpoint file, or
  ``torchvision:ENUM`` (e.g. ``torchvision:DEFAULT``, ``torchvision:IMAGENET1K_V1``) for torchvision's own pretrained
  weights, downloaded into ``$TORCH_HOME/hub/checkpoints/`` unless already there. Their preprocessing is
  :func:`weights_transform`; pass it to :func:`autocompress.sources.load_data` as ``preprocess=``.
* ``package.module:factory``: a function (or ``nn.Module`` class) importable from the current directory or
  ``PYTHONPATH``, e.g. ``mymodels.cifar:build``. It receives ``num_classes=`` when it accepts that keyword.

Example:
    >>> model = load_model("torchvision:resnet18", num_classes=10, small_input=True)
    >>> check_num_classes(model, 10, (3, 32, 32))
    >>> weights_transform("torchvision:resnet18", "torchvision:IMAGENET1K_V1").crop_size
    [224]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.config import MIN_CLASSES
from autocompress.errors import WorkloadError
from autocompress.sources._base import match_model_source, model_spec_forms
from autocompress.sources._pretrained import TORCHVISION_WEIGHTS_PREFIX
from autocompress.sources._text import _one_line
from autocompress.sources._tvmodels import list_torchvision_models

__all__ = [
    "TORCHVISION_WEIGHTS_PREFIX",
    "check_num_classes",
    "list_torchvision_models",
    "load_model",
    "weights_transform",
]

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # The old constant MODEL_SPEC_FORMS, kept for callers: now model_spec_forms(), read from the registry when asked
    # for (the registry loads its built-in sources on first use, not at import).
    if name == "MODEL_SPEC_FORMS":
        return model_spec_forms()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(
    spec: str,
    *,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
    small_input: bool = False,
) -> nn.Module:
    """Build the model named by ``spec`` and optionally load a checkpoint into it.

    Args:
        spec: the spec of a registered model source: ``demo``, ``torchvision:NAME``, ``package.module:factory``
            (see the module docstring).
        num_classes: width of the classification head; ``None`` keeps the factory's default (1000 for torchvision).
        weights: a checkpoint written by ``torch.save``: a state_dict, or a dict holding one under ``state_dict``,
            ``model``, ``model_state_dict`` or ``net``. ``module.`` and ``_orig_mod.`` key prefixes are removed.
            ``.safetensors`` files are read with the ``safetensors`` package. Or, with a ``torchvision:NAME`` spec,
            ``"torchvision:ENUM"``: torchvision's pretrained weights ``get_model_weights(NAME)[ENUM]`` (``DEFAULT``,
            ``IMAGENET1K_V1``, ... ; case-insensitive, ``ResNet18_Weights.IMAGENET1K_V1`` works too). These come
            with their training head (1000 ImageNet classes): ``num_classes`` must be ``None`` or that count, and
            ``small_input`` must be off, since both would replace pretrained layers with untrained ones. A value
            starting with ``torchvision:`` names such weights unless a file of that name exists.
        trust_checkpoint: allow unpickling arbitrary Python objects (a full pickled ``nn.Module``). Off by default
            because unpickling can run arbitrary code. A pickled module replaces the architecture built from ``spec``.
        small_input: adapt a torchvision model's stem to small images such as 32x32. ResNet-family models get a
            3x3 stride-1 ``conv1`` and no max-pool (the usual CIFAR ResNet stem); other convolutional models get
            stride 1 in their first convolution; transformers (ViT, Swin, MaxViT) are left unchanged because their
            patch embedding defines the model. Ignored for ``demo`` and ``package.module:factory`` models.

    Returns:
        The model in eval mode.

    Raises:
        WorkloadError: unknown spec (the message lists the registered forms), model name, import failure, a
            checkpoint that does not fit the model, unknown torchvision weights, or torchvision weights that cannot
            be downloaded.
    """
    if num_classes is not None and num_classes < MIN_CLASSES:
        raise WorkloadError(
            f"--num-classes {num_classes} : expected at least {MIN_CLASSES} classes; pass e.g. --num-classes 10"
        )
    source = match_model_source(spec)
    return source.load(
        spec, num_classes=num_classes, weights=weights, trust_checkpoint=trust_checkpoint, small_input=small_input
    )


def weights_transform(spec: str, weights: str | Path | None) -> Callable[[Any], torch.Tensor] | None:
    """The preprocessing that torchvision's pretrained ``weights`` of model ``spec`` were trained with.

    Args:
        spec: the ``--model`` spec.
        weights: the ``--weights`` value, as for :func:`load_model`.

    Returns:
        ``enum.transforms()`` (e.g. ``ImageClassification(crop_size=[224], resize_size=[256], mean=..., std=...)``,
        which takes a PIL image and returns a normalised float tensor) for ``weights="torchvision:ENUM"``; ``None``
        for a checkpoint file or no weights, whose preprocessing only the user knows. Nothing is downloaded.

    Raises:
        WorkloadError: unknown spec, model or weights name, or ``torchvision:ENUM`` weights with a non-torchvision
            model.
    """
    return match_model_source(spec).preprocess(spec, weights)


def check_num_classes(
    model: nn.Module, num_classes: int, input_shape: tuple[int, int, int], *, class_names: Sequence[str] | None = None
) -> None:
    """Check that ``model`` accepts one ``input_shape`` image and outputs ``num_classes`` logits.

    Args:
        model: the classifier; its train/eval mode is restored afterwards.
        num_classes: number of classes in the data.
        input_shape: ``(channels, height, width)`` of one image of the data.
        class_names: the data's class names, quoted in the error message when given.

    Raises:
        WorkloadError: the forward pass fails (wrong channels or size) or the output width differs.
    """
    was_training = model.training
    model.eval()
    shape = (1, *input_shape)
    try:
        with torch.no_grad():
            output = model(torch.zeros(shape))
    except Exception as exc:  # any failure of user code here means "this input does not fit this model"
        raise WorkloadError(
            f"model does not accept inputs of shape {list(shape)} (batch x channels x height x width): "
            f"{type(exc).__name__}: {_one_line(exc)}; {_input_hint(model, input_shape)}"
        ) from exc
    finally:
        model.train(was_training)
    logits = _logits_of(output)
    if logits is None or logits.dim() != 2:
        got = list(logits.shape) if logits is not None else type(output).__name__
        raise WorkloadError(
            f"model output for input {list(shape)} is {got}, expected 2-D logits (batch, classes); "
            "make forward() return a (batch, classes) tensor"
        )
    width = int(logits.shape[1])
    if width != num_classes:
        names = ""
        if class_names:
            shown = ", ".join(class_names[:8]) + (", ..." if len(class_names) > 8 else "")
            names = f" (classes: {shown})"
        raise WorkloadError(
            f"model outputs {width} classes but the data has {num_classes}{names}; "
            f"pass --num-classes {num_classes} (and --weights trained for {num_classes} classes)"
        )


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def _logits_of(output: Any) -> torch.Tensor | None:
    """The logits tensor of a forward output: a tensor, the first tensor of a tuple, or ``.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


def _input_hint(model: nn.Module, input_shape: tuple[int, int, int]) -> str:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and first.in_channels != input_shape[0]:
        return (
            f"the model's first conv expects {first.in_channels} channels but the data has {input_shape[0]}: "
            f"load the data with --channels {first.in_channels}"
        )
    return (
        f"the data is {input_shape[1]}x{input_shape[2]}: resize it with --input-size (e.g. the size the model was "
        "trained at) or adapt the model to small images with --small-input"
    )

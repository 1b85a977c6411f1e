"""torchvision's pretrained weights for ``--weights torchvision:ENUM``.

Tells such a value from a checkpoint path, resolves it to the model's ``WeightsEnum`` member, downloads the
weights file into torch.hub's cache (``$TORCH_HOME/hub/checkpoints/``) unless it is there, and builds the
model with those weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from autocompress.errors import WorkloadError
from autocompress.sources._text import _one_line, _strip_torch_preamble
from autocompress.sources._tvmodels import _torchvision_name

__all__ = [
    "TORCHVISION_WEIGHTS_PREFIX",
    "_build_pretrained",
    "_cached_weights_path",
    "_fetch_weights",
    "_names_weights_enum",
    "_refuse_pretrained",
    "_weights_enum",
]

# Records keep the name of the public module they were logged from before the split (the CLI prints it).
logger = logging.getLogger("autocompress.sources.models")

# ``--weights torchvision:ENUM`` names torchvision's pretrained weights of a ``torchvision:NAME`` model.
TORCHVISION_WEIGHTS_PREFIX = "torchvision:"


def _names_weights_enum(weights: str | Path | None) -> bool:
    """Whether ``weights`` names torchvision weights: ``torchvision:...`` and not an existing file of that name."""
    if weights is None or not str(weights).startswith(TORCHVISION_WEIGHTS_PREFIX):
        return False
    return not Path(weights).is_file()


def _refuse_pretrained(spec: str, weights: str | Path | None) -> None:
    """A one-line error when ``weights`` names torchvision's pretrained weights but ``spec`` is no torchvision model
    (every model source but ``torchvision:NAME`` reads ``--weights`` as a checkpoint file)."""
    if _names_weights_enum(weights) and not spec.startswith("torchvision:"):
        raise WorkloadError(
            f"--weights {weights} : torchvision's pretrained weights need --model torchvision:NAME, got --model "
            f"{spec}; pass --weights PATH with a checkpoint of your model instead"
        )


def _weights_enum(spec: str, weights: str | Path | None) -> Any:
    """The ``WeightsEnum`` member named by ``weights="torchvision:ENUM"`` for ``spec``, or ``None`` for a file/none."""
    _refuse_pretrained(spec, weights)
    if not _names_weights_enum(weights):
        return None
    import torchvision

    name = _torchvision_name(spec)
    try:
        enum_cls = torchvision.models.get_model_weights(name)
    except (KeyError, ValueError) as exc:  # a registered builder without a weights enum
        raise WorkloadError(
            f"--weights {weights} : torchvision has no pretrained weights for {name} ({_one_line(exc)}); "
            "pass --weights PATH with a checkpoint"
        ) from exc
    # Accept "IMAGENET1K_V1", "imagenet1k_v1" and torchvision's own "ResNet18_Weights.IMAGENET1K_V1".
    member = str(weights)[len(TORCHVISION_WEIGHTS_PREFIX) :].strip()
    if member.lower().startswith(enum_cls.__name__.lower() + "."):
        member = member[len(enum_cls.__name__) + 1 :]
    members = enum_cls.__members__  # includes the alias DEFAULT
    found = {n.lower(): n for n in members}.get(member.lower())
    if found is None:
        valid = ", ".join(f"{n} (= {m.name})" if n != m.name else n for n, m in members.items())
        raise WorkloadError(
            f"--weights {weights} : {name} has no torchvision weights named {member!r}; "
            f"expected torchvision:ENUM with ENUM one of {valid}"
        )
    return members[found]


def _build_pretrained(spec: str, enum: Any, *, given: str, num_classes: int | None, small_input: bool) -> nn.Module:
    import torchvision

    name = _torchvision_name(spec)
    label = f"{type(enum).__name__}.{enum.name}"
    categories = len(enum.meta.get("categories") or ())
    if num_classes is not None and categories and num_classes != categories:
        # A fresh head would be untrained: the "compressed" model would predict noise until the user fine-tunes it,
        # and this tool compresses trained models, it does not train them. Refuse instead of guessing.
        raise WorkloadError(
            f"--weights {given} : the pretrained {label} head has {categories} classes (ImageNet) but {num_classes} "
            f"were asked for (--num-classes, or the data's class count); pass --num-classes {categories} with data "
            "labelled in those classes, or fine-tune the model on your data and pass --weights PATH with its state_dict"
        )
    if small_input:
        raise WorkloadError(
            f"--weights {given} : --small-input replaces the stem that {label} was trained with; drop "
            "--small-input and preprocess the data with the weights' transforms (they resize to the trained size)"
        )
    _fetch_weights(name, enum, given=given)
    try:
        model = torchvision.models.get_model(name, weights=enum)
    except Exception as exc:  # a damaged cached file fails inside torch.load / load_state_dict
        raise WorkloadError(
            f"--weights {given} : loading {label} from {_cached_weights_path(enum)} failed "
            f"({type(exc).__name__}: {_one_line(_strip_torch_preamble(exc))}); delete that file to download it again, "
            "or pass --weights PATH"
        ) from exc
    return model


def _cached_weights_path(enum: Any) -> Path:
    """Where ``torch.hub`` keeps the file of ``enum``: ``$TORCH_HOME/hub/checkpoints/<file name of enum.url>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(enum.url).path)


def _fetch_weights(name: str, enum: Any, *, given: str) -> None:
    """Download ``enum``'s file into torch.hub's cache unless it is there, turning a failure into one line.

    torchvision's builders download from inside the model constructor (through their own reference to
    ``load_state_dict_from_url``), where a network failure looks like any other error; fetching the file first
    through ``torch.hub`` gives one place to catch it. The builder then reads the cached file: a second read, on the
    first use only.
    """
    path = _cached_weights_path(enum)
    if path.is_file():
        return
    logger.info("downloading torchvision weights %s.%s from %s into %s", name, enum.name, enum.url, path.parent)
    try:
        torch.hub.load_state_dict_from_url(
            enum.url, progress=logger.isEnabledFor(logging.INFO), check_hash=True, map_location="cpu"
        )
    except (OSError, RuntimeError) as exc:  # URLError/HTTPError/timeouts are OSErrors; a bad hash is a RuntimeError
        raise WorkloadError(
            f"--weights {given} : could not download torchvision weights {name}.{enum.name} "
            f"({type(exc).__name__}: {_one_line(exc)}); on a machine without internet put the file {path.name} "
            f"(from {enum.url}) in $TORCH_HOME/hub/checkpoints/ (here {path.parent}) or pass --weights PATH"
        ) from exc

"""Model weights on disk without pickles: a NumPy ``.npz`` of the state_dict, read with ``allow_pickle=False``.

Nothing under ``results/`` is ever unpickled (a results folder copied from elsewhere must not be able to run code).
A trial therefore saves only the *weights* of its pruned, fine-tuned model; the *structure* is rebuilt from the
teacher and the trial's :class:`~autocompress.policy.PrunePolicy` (pruning is deterministic: the same teacher and the
same ratios remove the same channels), and the weights are loaded into it with every name and shape checked.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autocompress.errors import WorkloadError

__all__ = ["load_weights", "save_weights"]


def save_weights(model: nn.Module, path: Path) -> Path:
    """Write ``model.state_dict()`` to ``path`` (``.npz``, plain arrays only)."""
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path)
    return path


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load the ``.npz`` at ``path`` into ``model`` (in place) and return it.

    Raises:
        WorkloadError: the file is missing, not a plain-array ``.npz`` (a pickle inside is refused, never run), or
            its names/shapes do not match ``model`` (the folder belongs to another model or policy).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {name: torch.from_numpy(np.array(data[name])) for name in data.files}
    except FileNotFoundError:
        raise WorkloadError(
            f"weights file {str(path)!r} does not exist; the trial folder is incomplete — rerun the trial"
        ) from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise WorkloadError(
            f"weights file {str(path)!r} is not a plain-array .npz ({exc}); it was not written by "
            "autocompress and is refused (nothing from results/ is ever unpickled)"
        ) from None
    own = model.state_dict()
    wrong = sorted(k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape))
    extra = sorted(set(state) - set(own))
    if wrong or extra:
        first = (wrong or extra)[0]
        raise WorkloadError(
            f"weights file {str(path)!r} does not fit the model rebuilt from its policy "
            f"(first mismatch: {first}); it belongs to another model or study"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model

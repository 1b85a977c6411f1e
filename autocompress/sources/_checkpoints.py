"""Reading ``--weights`` checkpoint files into a model.

Reads ``torch.save`` files (safely unless trusted) and ``.safetensors`` files, finds the state_dict inside common
training wrappers, strips ``module.`` / ``_orig_mod.`` key prefixes, and explains a checkpoint that does not fit
the model (shape mismatches, missing or unexpected keys) with the likely fix.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.errors import MissingDependencyError, WorkloadError
from autocompress.sources._text import _few, _one_line, _plural, _strip_torch_preamble

__all__ = [
    "_check_state_fits",
    "_extract_state",
    "_is_state_dict",
    "_load_weights",
    "_mismatch_fixes",
    "_read_checkpoint",
    "_strip_prefixes",
]

# Records keep the name of the public module they were logged from before the split (the CLI prints it).
logger = logging.getLogger("autocompress.sources.models")

_CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "net")
# DataParallel/DistributedDataParallel save keys as ``module.x``; torch.compile saves them as ``_orig_mod.x``.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_NOT_A_CHECKPOINT_FIX = (
    "expected a complete file written by torch.save; a truncated or damaged copy (interrupted "
    "download or save) also fails this way: copy or save it again"
)


def _load_weights(model: nn.Module, spec: str, path: Path, *, trust_checkpoint: bool) -> nn.Module:
    path = path.expanduser()
    if not path.is_file():
        raise WorkloadError(
            f"--weights {path} : no such file; pass a checkpoint saved with torch.save(model.state_dict(), PATH)"
        )
    checkpoint = _read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    state = _extract_state(checkpoint, path)
    if isinstance(state, nn.Module):
        logger.info("--weights %s holds a full model; its architecture replaces the one built from %s", path, spec)
        return state
    state = _strip_prefixes(state, model.state_dict().keys())
    _check_state_fits(model, state, spec=spec, path=path)
    model.load_state_dict(state, strict=True)
    return model


def _read_checkpoint(path: Path, *, trust_checkpoint: bool) -> Any:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise MissingDependencyError(
                f"--weights {path} : reading .safetensors needs the safetensors package; pip install safetensors"
            ) from exc
        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        refers = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if trust_checkpoint or refers is None:  # garbage bytes also end here, as "Unsupported operand"
            raise WorkloadError(
                f"--weights {path} : not a readable PyTorch checkpoint ({_one_line(_strip_torch_preamble(exc))}); "
                f"{_NOT_A_CHECKPOINT_FIX}"
            ) from exc
        raise WorkloadError(
            f"--weights {path} : the file holds pickled Python objects (it references {refers.group(1)}), e.g. a full "
            "nn.Module, which safe loading (weights_only=True) refuses; pass --trust-checkpoint if you trust its "
            "source (unpickling can run arbitrary code), or re-save it with torch.save(model.state_dict(), PATH)"
        ) from exc
    except (AttributeError, ModuleNotFoundError) as exc:  # trusted unpickling could not find the model's class
        raise WorkloadError(
            f"--weights {path} : the pickled model refers to code that cannot be imported ({_one_line(exc)}); run "
            "from the folder that holds the model's source, or re-save it with torch.save(model.state_dict(), PATH)"
        ) from exc
    except Exception as exc:
        raise WorkloadError(
            f"--weights {path} : not a readable PyTorch checkpoint ({type(exc).__name__}: {_one_line(exc)}); "
            f"{_NOT_A_CHECKPOINT_FIX}"
        ) from exc


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _extract_state(checkpoint: Any, path: Path) -> dict[str, torch.Tensor] | nn.Module:
    if isinstance(checkpoint, nn.Module):
        return checkpoint
    if isinstance(checkpoint, Mapping):
        # Training scripts wrap the weights with epoch/optimizer/metrics; the common wrapper keys come first.
        for key in _CHECKPOINT_KEYS:
            inner = checkpoint.get(key)
            if isinstance(inner, nn.Module):
                return inner
            if _is_state_dict(inner):
                return dict(inner)
        if _is_state_dict(checkpoint):
            return dict(checkpoint)
        keys = ", ".join(repr(k) for k in list(checkpoint)[:8])
        raise WorkloadError(
            f"--weights {path} : a dict that is neither a state_dict nor holds one under "
            f"{', '.join(_CHECKPOINT_KEYS)}; its top-level keys are {keys}; "
            "re-save it with torch.save(model.state_dict(), PATH)"
        )
    raise WorkloadError(
        f"--weights {path} : holds a {type(checkpoint).__name__}, expected a state_dict (dict of tensors) or, with "
        "--trust-checkpoint, a pickled nn.Module; re-save it with torch.save(model.state_dict(), PATH)"
    )


def _strip_prefixes(state: dict[str, torch.Tensor], model_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    model_keys = list(model_keys)
    changed = True
    while changed:  # loop: a compiled model inside DataParallel saves "module._orig_mod.conv1.weight"
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            # Strip only when every key carries the prefix and the model's own keys do not (a submodule may
            # legitimately be called "module").
            if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in model_keys):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _check_state_fits(model: nn.Module, state: dict[str, torch.Tensor], *, spec: str, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        (k, list(state[k].shape), list(expected[k].shape))
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if mismatched:
        shown = ", ".join(f"{k} checkpoint {a} vs model {b}" for k, a, b in mismatched[:3])
        more = ", ..." if len(mismatched) > 3 else ""
        parts.append(f"{len(mismatched)} shape mismatch{'es' if len(mismatched) > 1 else ''} ({shown}{more})")
    if missing:
        parts.append(f"{_plural(len(missing), 'key')} missing from the checkpoint ({_few(missing)})")
    if unexpected:
        parts.append(f"{_plural(len(unexpected), 'unexpected key')} in the checkpoint ({_few(unexpected)})")
    # A head or stem fix only explains a checkpoint whose other layers all fit; otherwise it is another architecture.
    fixes = "; ".join(_mismatch_fixes(model, mismatched) if not (missing or unexpected) else []) or (
        "check that --model builds the architecture the weights were trained with"
    )
    raise WorkloadError(f"--weights {path} does not fit --model {spec}: {'; '.join(parts)}; {fixes}")


def _mismatch_fixes(model: nn.Module, mismatched: list[tuple[str, list[int], list[int]]]) -> list[str]:
    """Fixes for the two mismatches users hit most: a head for another class count and a small-input stem.

    Returns no fix when some mismatch is neither of the two: then the checkpoint is of another architecture.
    """
    modules = dict(model.named_modules())
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    fixes: dict[str, str] = {}  # one fix per kind: googlenet's aux heads would otherwise repeat the head fix
    for key, ckpt, built in mismatched:
        owner = modules.get(key.rsplit(".", 1)[0]) if "." in key else None
        is_head = isinstance(owner, nn.Linear) or (bool(convs) and key == f"{convs[-1]}.weight")
        if is_head and "head" not in fixes and ckpt[0] != built[0] and ckpt[1:] == built[1:]:
            fixes["head"] = (
                f"the checkpoint's head ({key}) has {ckpt[0]} classes but the model was built for "
                f"{built[0]}: pass --num-classes {ckpt[0]}"
            )
        elif (
            convs and key == f"{convs[0]}.weight" and len(ckpt) == 4 and ckpt[:2] == built[:2] and ckpt[2:] != built[2:]
        ):
            fixes["stem"] = (
                f"the checkpoint's first conv is {ckpt[2]}x{ckpt[3]} but the model's is "
                f"{built[2]}x{built[3]}: {'pass' if built[2] > ckpt[2] else 'drop'} --small-input"
            )
        elif not is_head:
            return []
    return list(fixes.values())

"""Bring-your-own model: build a classifier from a ``--model`` spec and load its ``--weights``.

Spec forms handled here (``demo`` is built by :mod:`autocompress.workload`):

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

import difflib
import importlib
import inspect
import logging
import os
import pickle
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from autocompress.errors import MissingDependencyError, WorkloadError

__all__ = [
    "MODEL_SPEC_FORMS",
    "TORCHVISION_WEIGHTS_PREFIX",
    "check_num_classes",
    "list_torchvision_models",
    "load_model",
    "weights_transform",
]

logger = logging.getLogger(__name__)

MODEL_SPEC_FORMS = "demo, torchvision:NAME, package.module:factory"
# ``--weights torchvision:ENUM`` names torchvision's pretrained weights of a ``torchvision:NAME`` model.
TORCHVISION_WEIGHTS_PREFIX = "torchvision:"
# ``package.module:attr`` with dotted identifiers on both sides; shared with the data loader.
_MODULE_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "net")
# DataParallel/DistributedDataParallel save keys as ``module.x``; torch.compile saves them as ``_orig_mod.x``.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_LIST_HINT = "python -c 'import torchvision; print(torchvision.models.list_models(module=torchvision.models))'"


def list_torchvision_models() -> list[str]:
    """Names accepted by ``torchvision:NAME``: torchvision's classification models (no detection/segmentation)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


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
        spec: ``torchvision:NAME`` or ``package.module:factory`` (see the module docstring).
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
            patch embedding defines the model. Ignored for ``package.module:factory`` models.

    Returns:
        The model in eval mode.

    Raises:
        WorkloadError: unknown spec, model name, import failure, a checkpoint that does not fit the model, unknown
            torchvision weights, or torchvision weights that cannot be downloaded.
    """
    if num_classes is not None and num_classes < 1:
        raise WorkloadError(
            f"--num-classes {num_classes} : expected a positive number of classes; "
            "pass e.g. --num-classes 10"
        )
    enum = _weights_enum(spec, weights)
    if enum is not None:
        model = _build_pretrained(spec, enum, given=str(weights), num_classes=num_classes, small_input=small_input)
        return model.eval()
    if spec.startswith("torchvision:"):
        model = _build_torchvision(spec, num_classes=num_classes, small_input=small_input)
    elif spec == "demo":
        raise WorkloadError("--model demo : the demo model is built by autocompress.workload, not by sources.load_model")
    elif _MODULE_SPEC.match(spec):
        model = _build_from_factory(spec, num_classes=num_classes)
        if small_input:
            logger.warning("--small-input is ignored for %s: adapt the stem inside your factory instead", spec)
    else:
        raise WorkloadError(f"--model {spec} : unknown model spec; expected one of {MODEL_SPEC_FORMS}")
    if weights is not None:
        model = _load_weights(model, spec, Path(weights), trust_checkpoint=trust_checkpoint)
    return model.eval()


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
        WorkloadError: unknown model or weights name, or ``torchvision:ENUM`` weights with a non-torchvision model.
    """
    enum = _weights_enum(spec, weights)
    return None if enum is None else enum.transforms()


def check_num_classes(
    model: nn.Module,
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    class_names: Sequence[str] | None = None,
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
# building


def _torchvision_name(spec: str) -> str:
    """The registered name of ``torchvision:NAME`` (matched case-insensitively)."""
    name = spec.split(":", 1)[1]
    available = list_torchvision_models()
    canonical = {n.lower(): n for n in available}.get(name.lower())
    if canonical is None:
        close = difflib.get_close_matches(name.lower(), available, n=3, cutoff=0.6)
        found = f"close matches: {', '.join(close)}" if close else f"{len(available)} models exist"
        raise WorkloadError(
            f"--model {spec} : no torchvision classification model named {name!r}; "
            f"{found} (list: {_LIST_HINT})"
        )
    return canonical


def _build_torchvision(spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
    import torchvision

    canonical = _torchvision_name(spec)
    classes = 1000 if num_classes is None else num_classes
    try:
        model = torchvision.models.get_model(canonical, weights=None, num_classes=classes)
    except (TypeError, ValueError) as exc:
        raise WorkloadError(f"--model {spec} : building it with num_classes={classes} failed: {_one_line(exc)}") from exc
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


# ---------------------------------------------------------------------------------------------------------------
# torchvision pretrained weights (--weights torchvision:ENUM)


def _names_weights_enum(weights: str | Path | None) -> bool:
    """Whether ``weights`` names torchvision weights: ``torchvision:...`` and not an existing file of that name."""
    if weights is None or not str(weights).startswith(TORCHVISION_WEIGHTS_PREFIX):
        return False
    return not Path(weights).is_file()


def _weights_enum(spec: str, weights: str | Path | None) -> Any:
    """The ``WeightsEnum`` member named by ``weights="torchvision:ENUM"`` for ``spec``, or ``None`` for a file/none."""
    if not _names_weights_enum(weights):
        return None
    if not spec.startswith("torchvision:"):
        raise WorkloadError(
            f"--weights {weights} : torchvision's pretrained weights need --model torchvision:NAME, got --model "
            f"{spec}; pass --weights PATH with a checkpoint of your model instead"
        )
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
    member = str(weights)[len(TORCHVISION_WEIGHTS_PREFIX):].strip()
    if member.lower().startswith(enum_cls.__name__.lower() + "."):
        member = member[len(enum_cls.__name__) + 1:]
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
        torch.hub.load_state_dict_from_url(enum.url, progress=logger.isEnabledFor(logging.INFO), check_hash=True,
                                           map_location="cpu")
    except (OSError, RuntimeError) as exc:  # URLError/HTTPError/timeouts are OSErrors; a bad hash is a RuntimeError
        raise WorkloadError(
            f"--weights {given} : could not download torchvision weights {name}.{enum.name} "
            f"({type(exc).__name__}: {_one_line(exc)}); on a machine without internet put the file {path.name} "
            f"(from {enum.url}) in $TORCH_HOME/hub/checkpoints/ (here {path.parent}) or pass --weights PATH"
        ) from exc


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


def _load_weights(model: nn.Module, spec: str, path: Path, *, trust_checkpoint: bool) -> nn.Module:
    path = path.expanduser()
    if not path.is_file():
        raise WorkloadError(
            f"--weights {path} : no such file; "
            "pass a checkpoint saved with torch.save(model.state_dict(), PATH)"
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
                f"--weights {path} : reading .safetensors needs the safetensors package; "
                "pip install safetensors"
            ) from exc
        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        refers = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if trust_checkpoint or refers is None:  # garbage bytes also end here, as "Unsupported operand"
            raise WorkloadError(
                f"--weights {path} : not a readable PyTorch checkpoint ({_one_line(_strip_torch_preamble(exc))}); "
                "expected a file written by torch.save"
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
            "expected a file written by torch.save"
        ) from exc


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping) and len(value) > 0
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
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _check_state_fits(model: nn.Module, state: dict[str, torch.Tensor], *, spec: str, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [(k, list(state[k].shape), list(expected[k].shape)) for k in expected
                  if k in state and state[k].shape != expected[k].shape]
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
    fixes = "; ".join(_mismatch_fixes(model, mismatched)) or (
        "check that --model builds the architecture the weights were trained with"
    )
    raise WorkloadError(f"--weights {path} does not fit --model {spec}: {'; '.join(parts)}; {fixes}")


def _mismatch_fixes(model: nn.Module, mismatched: list[tuple[str, list[int], list[int]]]) -> list[str]:
    """Fixes for the two mismatches users hit most: a head for another class count and a small-input stem."""
    modules = dict(model.named_modules())
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    fixes: dict[str, str] = {}  # one fix per kind: googlenet's aux heads would otherwise repeat the head fix
    for key, ckpt, built in mismatched:
        owner = modules.get(key.rsplit(".", 1)[0]) if "." in key else None
        is_head = isinstance(owner, nn.Linear) or (bool(convs) and key == f"{convs[-1]}.weight")
        if is_head and "head" not in fixes and ckpt[0] != built[0] and ckpt[1:] == built[1:]:
            fixes["head"] = (f"the checkpoint's head ({key}) has {ckpt[0]} classes but the model was built for "
                             f"{built[0]}: pass --num-classes {ckpt[0]}")
        elif convs and key == f"{convs[0]}.weight" and len(ckpt) == 4 and ckpt[2:] != built[2:]:
            fixes["stem"] = (f"the checkpoint's first conv is {ckpt[2]}x{ckpt[3]} but the model's is "
                             f"{built[2]}x{built[3]}: {'pass' if built[2] > ckpt[2] else 'drop'} --small-input")
    return list(fixes.values())


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _few(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def _one_line(exc: BaseException | str, limit: int = 200) -> str:
    """First line of an exception's message, shortened: the CLI prints errors on one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_torch_preamble(exc: BaseException) -> str:
    """torch's weights-only errors open with several lines of advice; the cause is after "WeightsUnpickler error:"."""
    text = str(exc)
    cause = text.split("WeightsUnpickler error:", 1)[-1].strip()
    return cause or text


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
        return (f"the model's first conv expects {first.in_channels} channels but the data has {input_shape[0]}: "
                f"load the data with --channels {first.in_channels}")
    return (f"the data is {input_shape[1]}x{input_shape[2]}: resize it with --input-size (e.g. the size the model was "
            "trained at) or adapt the model to small images with --small-input")

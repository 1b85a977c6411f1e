"""Pruning: structural channel pruning with torch-pruning, and unstructured magnitude sparsity.

**Structural.** torch-pruning's dependency graph couples layers that must lose the same channels (a conv, its
BatchNorm, the next conv's input, every conv that feeds the same residual sum, the slices of a DenseNet concat, ...).
Each coupled set is a *group*; we name a group after its root layer and give it one prune ratio. Channels are
physically removed, so the model really shrinks. The classifier's output units are never pruned.

How many channels a group keeps (:func:`_kept_channels`): ``channels - int(channels * ratio)``, rounded *down* to a
step, never to zero. The step is the group's own constraint (grouped convolutions lose the same channels in every
conv group; attention keeps ``embed_dim`` divisible by its heads), widened to a multiple of ``round_to`` where the
channels allow. Tiny example: 32 channels, ratio 0.3, ``round_to=4``: ``int(9.6) = 9`` removed → 23 kept → 20 kept,
i.e. the 12 channels whose summed L1 magnitude across every coupled layer is smallest are removed.

**Unstructured.** :func:`sparsify_model` zeroes the smallest weights of each layer instead. Shapes do not change, so
dense runtimes (ONNX Runtime CPU) do not get faster; see its docstring.

Architecture notes (torchvision, checked by ``benchmarks/compat_matrix.py``): ViT's ``class_token`` and
``pos_embedding`` and ConvNeXt's ``layer_scale`` are bare parameters that we register with torch-pruning explicitly;
ViT's cached ``hidden_dim`` is updated after pruning. ShuffleNetV2's channel shuffle cannot be traced, so while
tracing it is swapped for a barrier and only the channels it does not permute (stem, branch interiors, last conv)
are prunable.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from autocompress.errors import ConfigError, UnsupportedModelError
from autocompress.policy import PrunePolicy

__all__ = [
    "PrunableGroup",
    "PruningGraph",
    "classifier_layers",
    "count_macs_params",
    "prunable_groups",
    "prune_model",
    "sparsify_model",
    "stage_of",
    "weight_sparsity",
]

logger = logging.getLogger(__name__)

_IMPORTANCE_P = {"l1": 1, "l2": 2}
_NO_PRUNE_FIX = "set `prune.per: none` in the search space to compress this model with int8 only"


def stage_of(layer_name: str) -> str:
    """The stage a layer belongs to: its name up to the first component that carries a number.

    ``layer1.0.conv1`` → ``layer1`` (ResNet), ``features.3.conv.0.0`` → ``features.3`` (MobileNet block),
    ``features.denseblock2.denselayer1.conv1`` → ``features.denseblock2``, ``trunk_output.block1.block1-0.a`` →
    ``trunk_output.block1`` (RegNet), ``encoder.layers.encoder_layer_0.mlp.0`` → ``…encoder_layer_0`` (ViT).
    """
    parts = layer_name.split(".")
    for i, part in enumerate(parts):
        if any(ch.isdigit() for ch in part):
            return ".".join(parts[: i + 1])
    return parts[0]


@dataclass(frozen=True)
class PrunableGroup:
    """One coupled set of channels that is pruned together.

    Attributes:
        name: qualified name of the root layer (e.g. ``layer1.0.conv1``); the key of :attr:`PrunePolicy.ratios`.
        channels: number of channels the group has before pruning.
        layers: names of the layers whose weights lose channels when this group is pruned.
        multiple: the kept channel count is always a multiple of this (the number of groups of a grouped
            convolution, the heads of an attention layer; 1 for ordinary layers).
    """

    name: str
    channels: int
    layers: tuple[str, ...]
    multiple: int = 1

    @property
    def stage(self) -> str:
        """The stage the root layer belongs to (see :func:`stage_of`), for per-stage search spaces."""
        return stage_of(self.name)


def classifier_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """Layers whose outputs are class scores; pruning them would change the model's output size."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    heads += [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == num_classes]
    if not heads:
        raise UnsupportedModelError(
            f"model: found no nn.Linear or nn.Conv2d with {num_classes} outputs to treat as the classifier; "
            "check --num-classes or give the model a standard classification head"
        )
    return heads


# ---------------------------------------------------------------------------------------------------------------
# Architecture specifics. Kept here as small functions rather than a registry: there are only a few, and each is a
# fact about torchvision's implementation, not a user extension point.


class _ShuffleBarrier(nn.Module):
    """Stands in for ShuffleNetV2's ``channel_shuffle`` while torch-pruning traces the model.

    The shuffle is ``view → transpose → view``, which torch-pruning cannot map (it fails with a ZeroDivisionError).
    As one ``index_select`` inside a layer whose inputs and outputs are not coupled, it ends every group that reaches
    it; :func:`_groups` then leaves those groups alone, because the channels on either side are permuted and must keep
    their count. The groups inside each branch and the stem remain prunable.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.channels = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.channels = x.shape[1]
        # channel_shuffle(x, g)[:, j] == x[:, (j % g) * (c // g) + j // g]; e.g. c=6, g=2: order [0, 3, 1, 4, 2, 5]
        order = torch.arange(self.channels, device=x.device).view(self.groups, -1).t().reshape(-1)
        return x.index_select(1, order)


class _ShuffleBarrierPruner(tp.pruner.BasePruningFunc):
    """Distinct in/out functions tell torch-pruning that a barrier's inputs and outputs are independent."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError("internal: a channel-shuffle group was pruned")

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError("internal: a channel-shuffle group was pruned")

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.channels

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.channels


def _shuffle_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # torchvision's InvertedResidual.forward with channel_shuffle(out, 2) replaced by the barrier.
    if self.stride == 1:
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
    else:
        out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
    return self.shuffle_barrier(out)


@contextlib.contextmanager
def _traceable(model: nn.Module) -> Iterator[dict[type, tp.pruner.BasePruningFunc]]:
    """Temporarily swap ShuffleNetV2's channel shuffles for barriers; yields torch-pruning's customized pruners."""
    from torchvision.models.shufflenetv2 import InvertedResidual

    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    for block in blocks:
        block.shuffle_barrier = _ShuffleBarrier(groups=2)
        block.forward = types.MethodType(_shuffle_block_forward, block)  # this instance only; nothing global
    try:
        yield {_ShuffleBarrier: _ShuffleBarrierPruner()} if blocks else {}
    finally:
        for block in blocks:
            del block.shuffle_barrier
            del block.forward


def _unwrapped_parameters(model: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """Bare ``nn.Parameter``s that carry a prunable channel dimension, with that dimension.

    torch-pruning would guess "the last non-singleton dimension" (and warn); naming them makes the choice explicit.
    """
    from torchvision.models.convnext import CNBlock
    from torchvision.models.vision_transformer import Encoder, VisionTransformer

    found: list[tuple[nn.Parameter, int]] = []
    for module in model.modules():
        if isinstance(module, VisionTransformer):
            found.append((module.class_token, 2))  # (1, 1, hidden)
        elif isinstance(module, Encoder):
            found.append((module.pos_embedding, 2))  # (1, tokens, hidden)
        elif isinstance(module, CNBlock):
            found.append((module.layer_scale, 0))  # (dim, 1, 1)
    return found


def _after_prune(model: nn.Module) -> None:
    """Update attributes that cache a channel count and are read in ``forward``."""
    from torchvision.models import VisionTransformer

    for module in model.modules():
        if isinstance(module, VisionTransformer):
            module.hidden_dim = module.conv_proj.out_channels  # used to reshape the patch embeddings


# ---------------------------------------------------------------------------------------------------------------
# Groups


@dataclass(frozen=True)
class _Group:
    """A torch-pruning group with the constraints its kept channel count must satisfy."""

    name: str
    group: Any  # tp.Group with every channel's index
    channels: int
    slices: int  # channels form this many equal slices that must lose the same positions (grouped conv, GroupNorm)
    multiple: int  # the kept count must be a multiple of this (slices and attention heads)

    @property
    def root(self) -> nn.Module:
        return self.group[0].dep.target.module


def _trace(
    model: nn.Module, example_input: torch.Tensor, *, customized: Mapping[type, tp.pruner.BasePruningFunc]
) -> tp.DependencyGraph:
    try:
        with torch.enable_grad():  # torch-pruning traces through autograd
            return tp.DependencyGraph().build_dependency(
                model,
                example_inputs=example_input,
                unwrapped_parameters=_unwrapped_parameters(model),
                customized_pruners=dict(customized),
                verbose=False,
            )
    except Exception as exc:  # torch-pruning raises many kinds of errors on unusual graphs
        raise UnsupportedModelError(
            f"model: torch-pruning could not trace {type(model).__name__} ({_one_line(exc)}); "
            f"expected a graph of standard layers; {_NO_PRUNE_FIX}"
        ) from exc


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, shortened: user errors are printed as a single line by the CLI."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _constraints(group: Any) -> tuple[int, int]:
    """``(slices, multiple)`` of a group: see :class:`_Group`."""
    slices, multiple = 1, 1
    for dep, _ in group:
        module = dep.target.module
        if isinstance(module, nn.modules.conv._ConvNd) and 1 < module.groups != module.out_channels:
            slices = math.lcm(slices, module.groups)  # depthwise convs (groups == channels) follow any index set
        elif isinstance(module, nn.GroupNorm):
            slices = math.lcm(slices, module.num_groups)
        elif isinstance(module, nn.MultiheadAttention):
            multiple = math.lcm(multiple, module.num_heads)  # torch-pruning asserts embed_dim % num_heads == 0
    return slices, math.lcm(slices, multiple)


def _groups(graph: tp.DependencyGraph, model: nn.Module, num_classes: int) -> Iterator[_Group]:
    names = {module: name for name, module in model.named_modules()}
    ignored = [m for head in classifier_layers(model, num_classes) for m in head.modules()]
    root_types = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=root_types):
        root = group[0].dep.target.module
        channels = graph.get_out_channels(root) or 0
        slices, multiple = _constraints(group)
        if root not in names or channels // multiple <= 1:  # nothing could be removed without emptying the group
            continue
        if any(isinstance(dep.target.module, _ShuffleBarrier) for dep, _ in group):
            continue  # channels that are permuted by a channel shuffle must keep their count
        yield _Group(name=names[root], group=group, channels=channels, slices=slices, multiple=multiple)


def prunable_groups(model: nn.Module, example_input: torch.Tensor, *, num_classes: int) -> list[PrunableGroup]:
    """The coupled channel groups of ``model`` in graph order, classifier excluded.

    The names are exactly the keys :func:`prune_model` accepts in :attr:`PrunePolicy.ratios`.

    Raises:
        UnsupportedModelError: torch-pruning cannot trace the model, or it has no recognisable classifier.
    """
    return list(PruningGraph(model, example_input, num_classes=num_classes).groups)


class PruningGraph:
    """``model``'s torch-pruning dependency graph, traced once, for any number of :meth:`prune` calls.

    Tracing runs ``model`` forward with autograd at the input size and walks the autograd graph; a study prunes the
    same teacher in every trial, so it traces once (the trial runner keeps one ``PruningGraph``). Each :meth:`prune`
    deep-copies the model *together with* the graph (one ``copy.deepcopy`` memo, so the copied graph points at the
    copied layers) and prunes the copies. Measured on the AMX Xeon, 2 cores, 224 px: tracing resnet50 took 0.09 s and
    vit_b_16 0.20 s on a quiet machine, and 2.1 s (resnet50) while two other processes kept both cores busy; copying
    the graph costs a few hundredths of that (``benchmarks/history.md``).

    Nothing is copied, and nothing traced until the groups or a prune are first asked for: ``model`` is only read
    (ShuffleNetV2's barriers are swapped in while tracing and out again, see :func:`_traceable`), and must not change
    while this object is in use.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, *, num_classes: int) -> None:
        self.model = model
        self.example_input = example_input
        self.num_classes = num_classes

    @property
    def groups(self) -> tuple[PrunableGroup, ...]:
        """The model's prunable groups: see :func:`prunable_groups`.

        Raises:
            UnsupportedModelError: torch-pruning cannot trace the model, or it has no recognisable classifier.
        """
        return self._traced[1]

    @functools.cached_property
    def _traced(self) -> tuple[tp.DependencyGraph, tuple[PrunableGroup, ...]]:
        model = self.model
        with _traceable(model) as customized:
            graph = _trace(model, self.example_input, customized=customized)
            names = {module: name for name, module in model.named_modules()}
            groups = tuple(
                PrunableGroup(
                    name=g.name,
                    channels=g.channels,
                    layers=tuple(dict.fromkeys(names[d.target.module] for d, _ in g.group if d.target.module in names)),
                    multiple=g.multiple,
                )
                for g in _groups(graph, model, self.num_classes)
            )
        return graph, groups

    def prune(self, policy: PrunePolicy) -> nn.Module:
        """Return a pruned deep copy of the model: see :func:`prune_model`."""
        return prune_model(self.model, policy, self.example_input, num_classes=self.num_classes, graph=self)

    def _copy(self) -> tuple[nn.Module, tp.DependencyGraph]:
        """A deep copy of the model and a dependency graph of that copy, without tracing again.

        A plain ``copy.deepcopy(graph)`` fails: nodes point at autograd objects (which cannot be copied and are only
        read: shared here) and at each other in long chains (deepcopy recurses along them past Python's limit). So
        the nodes are created first, empty, and then filled, every reference between them resolved through the memo.
        """
        graph = self._traced[0]
        memo: dict[int, Any] = {}

        def share(obj: Any) -> None:
            memo[id(obj)] = obj

        for value in vars(graph).values():
            if isinstance(value, types.ModuleType):
                share(value)  # graph.ops
        for pruners in (graph.REGISTERED_PRUNERS, graph.CUSTOMIZED_PRUNERS):
            share(pruners)  # stateless functions shared by every graph, as torch-pruning itself shares them
            for pruner in pruners.values():
                share(pruner)
        nodes = list(graph.module2node.values())
        for node in nodes:
            share(node.grad_fn)
            if not isinstance(node.module, nn.Module):  # torch-pruning's op stand-ins (concat, split, slice, ...)
                for value in vars(node.module).values():
                    if isinstance(value, torch.autograd.graph.Node):
                        share(value)
        model = copy.deepcopy(self.model, memo)
        for node in nodes:
            memo[id(node)] = object.__new__(type(node))
        for node in nodes:
            vars(memo[id(node)]).update(copy.deepcopy(vars(node), memo))
        copied = object.__new__(type(graph))
        vars(copied).update(copy.deepcopy(vars(graph), memo))
        return model, copied


def _kept_channels(
    channels: int, ratio: float, *, slices: int = 1, multiple: int = 1, round_to: int | None = None
) -> int:
    """Channels a group keeps at ``ratio``: see the module docstring.

    ``round_to`` applies to the width one kernel computes: the whole group for ordinary layers, the width of each conv
    group for grouped convolutions (``slices`` > 1). Measured on RegNetX-400MF here (64×64, ONNX Runtime, 1 thread):
    its conv groups of 16 pruned to 11 ran *slower* than unpruned (0.64 vs 0.57 ms) and pruned to 8 faster (0.43 ms),
    so with ``round_to=8`` a 30 % ratio keeps 8 of 16 per conv group. ``round_to`` is skipped where fewer channels than
    one step would remain, and the result is never zero.

    Examples: ``(32, 0.3, round_to=4)`` → 23 exact → 20; ViT ``(768, 0.3, multiple=12, round_to=8)`` → steps of
    ``lcm(12, 8) = 24`` → 528; ResNeXt ``(128, 0.3, slices=32, multiple=32, round_to=8)`` → 2 of 4 per conv group
    (8 does not fit) → 64.
    """
    exact = channels - int(channels * ratio)
    unit = multiple // slices  # a constraint per conv group beyond "equal widths" (1 unless heads also apply)
    width = exact // slices
    if round_to and math.lcm(unit, round_to) <= width:
        unit = math.lcm(unit, round_to)
    return max(unit, width // unit * unit) * slices


def _indices_to_remove(importance: torch.Tensor, group: _Group, kept: int) -> list[int]:
    """The least important channels, the same positions in every slice so grouped layers stay regular."""
    width = group.channels // group.slices
    per_slice = importance.reshape(group.slices, width).mean(dim=0)  # e.g. [1,2,3 | 4,5,6] → [2.5, 3.5, 4.5]
    drop = torch.argsort(per_slice)[: width - kept // group.slices]
    return sorted(int(i) + s * width for s in range(group.slices) for i in drop)


def prune_model(
    model: nn.Module,
    policy: PrunePolicy,
    example_input: torch.Tensor,
    *,
    num_classes: int,
    graph: PruningGraph | None = None,
) -> nn.Module:
    """Return a pruned deep copy of ``model``; ``model`` itself is untouched.

    Every group named in ``policy.ratios`` keeps :func:`_kept_channels` channels: those with the largest group
    magnitude (``policy.importance``), all importances being computed before anything is removed so the result does
    not depend on the order of the groups. If ``policy`` has a ``sparsity`` field above 0, the structurally pruned
    model is then sparsified with :func:`sparsify_model` (classifier left dense).

    ``graph``: ``model``'s :class:`PruningGraph`, traced once for many prunes (a study); without it, ``model`` is
    traced now.

    Raises:
        UnsupportedModelError: a ratio names a layer that is not a group root of this model, torch-pruning cannot
            trace or prune the model, or the pruned model no longer runs with the same output shape.
        ConfigError: a ratio is outside ``[0, 1)``.
    """
    sparsity = float(getattr(policy, "sparsity", 0.0))  # an optional PrunePolicy field; absent means dense
    if graph is not None and graph.model is not model:
        raise ValueError("internal: prune_model was given the pruning graph of another model")
    if policy.is_identity:
        pruned = copy.deepcopy(model).eval()
    else:
        _check_ratios(model, policy)
        graph = graph or PruningGraph(model, example_input, num_classes=num_classes)
        pruned, dependencies = graph._copy()
        _prune_structure(pruned.eval(), dependencies, policy, example_input, num_classes=num_classes)
    if sparsity > 0:
        pruned = sparsify_model(pruned, sparsity=sparsity, example_input=example_input, num_classes=num_classes)
    return pruned.eval()


def _check_ratios(model: nn.Module, policy: PrunePolicy) -> None:
    modules: Mapping[str, nn.Module] = dict(model.named_modules())
    unknown = sorted(set(policy.ratios) - set(modules))
    if unknown:
        raise UnsupportedModelError(
            f"policy: prune ratios name layers the model does not have: {', '.join(unknown[:5])}; "
            "the search space must be built from this model's groups (prunable_groups)"
        )
    bad = sorted(name for name, ratio in policy.ratios.items() if not 0.0 <= ratio < 1.0)
    if bad:
        raise ConfigError(
            f"policy: prune ratios must lie in [0, 1), got {policy.ratios[bad[0]]} for {bad[0]}; "
            "a ratio of 1 would remove every channel of the group"
        )


def _prune_structure(
    model: nn.Module, graph: tp.DependencyGraph, policy: PrunePolicy, example_input: torch.Tensor, *, num_classes: int
) -> None:
    """Prune ``model`` in place along ``graph``, a dependency graph of this very model (:meth:`PruningGraph._copy`)."""
    with torch.no_grad():
        expected_shape = tuple(model(example_input).shape)
    groups = list(_groups(graph, model, num_classes))
    not_roots = sorted(set(policy.ratios) - {g.name for g in groups})
    if not_roots:
        raise UnsupportedModelError(
            f"policy: prune ratios name layers that are not prunable group roots: {', '.join(not_roots[:5])}; "
            "use the names returned by prunable_groups() for this model"
        )

    importance = tp.importance.GroupMagnitudeImportance(p=_IMPORTANCE_P.get(policy.importance, 1))
    plans = []
    for g in groups:  # graph order, so the result does not depend on the order of the ratios mapping
        ratio = float(policy.ratios.get(g.name, 0.0))
        kept = (
            _kept_channels(g.channels, ratio, slices=g.slices, multiple=g.multiple, round_to=policy.round_to)
            if ratio > 0
            else g.channels
        )
        if kept < g.channels:
            plans.append((g, _indices_to_remove(importance(g.group), g, kept)))
    try:
        for g, indices in plans:
            # Re-derive the group now: earlier removals changed concat/split offsets that map these indices.
            group = graph.get_pruning_group(g.root, g.group[0].dep.handler, indices)
            if not graph.check_pruning_group(group):
                logger.warning("skipping group %s: removing %d channels would empty a layer", g.name, len(indices))
                continue
            group.prune()
        _after_prune(model)
        with torch.no_grad():
            shape = tuple(model(example_input).shape)
    except Exception as exc:
        raise UnsupportedModelError(
            f"model: torch-pruning failed to prune {type(model).__name__} ({_one_line(exc)}); "
            f"try lower or per-stage ratios, or {_NO_PRUNE_FIX}"
        ) from exc
    if shape != expected_shape:
        raise UnsupportedModelError(
            f"model: pruning changed the output shape of {type(model).__name__} from {expected_shape} to {shape}; "
            f"expected the classifier to be found with --num-classes {num_classes}; {_NO_PRUNE_FIX}"
        )


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates and parameters of one forward pass at ``example_input``'s shape."""
    macs, params = tp.utils.count_ops_and_params(model, example_input)
    return int(macs), int(params)


# ---------------------------------------------------------------------------------------------------------------
# Unstructured sparsity


def _weights(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """``(module, parameter name)`` of every Conv/Linear weight, and attention's fused input projection."""
    for module in model.modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            yield module, "weight"
        elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            yield module, "in_proj_weight"


def sparsify_model(
    model: nn.Module, *, sparsity: float, example_input: torch.Tensor | None = None, num_classes: int | None = None
) -> nn.Module:
    """Return a deep copy of ``model`` whose smallest weights are set to zero (unstructured L1 magnitude pruning).

    In every Conv/Linear weight (and attention's fused input projection) the ``sparsity`` fraction with the smallest
    ``|w|`` is zeroed, layer by layer (``torch.nn.utils.prune.l1_unstructured``, made permanent with
    ``prune.remove``). With ``num_classes`` the classifier stays dense: it is small and the most sensitive layer.

    Be honest about what this buys: shapes do not change, so dense runtimes such as ONNX Runtime's CPU kernels run
    exactly as many multiply-adds and are **not faster**. Zeros help only the file size after generic compression
    (gzip/zstd of the ONNX file) and runtimes with sparse kernels. For speed, use :func:`prune_model`.

    Args:
        model: the model to sparsify; it is not modified.
        sparsity: fraction of each layer's weights to zero, in ``[0, 1)``.
        example_input: if given, a forward pass checks the sparse model still runs with the same output shape.
        num_classes: if given, layers found by :func:`classifier_layers` are left dense.

    Raises:
        ConfigError: ``sparsity`` is outside ``[0, 1)``.

    Example:
        >>> sparse = sparsify_model(model, sparsity=0.5)  # doctest: +SKIP
        >>> round(weight_sparsity(sparse), 2)  # doctest: +SKIP
        0.5
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity: expected a fraction in [0, 1), got {sparsity!r}; 0.5 zeroes half of each layer")
    sparse = copy.deepcopy(model).eval()
    if sparsity == 0:
        return sparse
    if example_input is not None:
        with torch.no_grad():
            before = tuple(sparse(example_input).shape)
    keep_dense = {id(m) for m in classifier_layers(sparse, num_classes)} if num_classes is not None else set()
    for module, name in _weights(sparse):
        if id(module) in keep_dense:
            continue
        torch_prune.l1_unstructured(module, name, amount=sparsity)
        torch_prune.remove(module, name)  # bake the mask into the weight; no hooks or *_orig copies remain
    if example_input is not None:
        with torch.no_grad():
            after = tuple(sparse(example_input).shape)
        if before != after:  # masks keep shapes; this guards a forward that reads weights in unusual ways
            raise UnsupportedModelError(
                f"model: sparsifying changed the output shape from {before} to {after}; expected it unchanged; "
                "leave sparsity at 0 for this model"
            )
    return sparse


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries over all Conv/Linear weights (classifier included); 0.0 if there are none."""
    zeros = total = 0
    for module, name in _weights(model):
        weight = getattr(module, name)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0

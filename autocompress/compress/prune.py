"""Structural channel pruning with torch-pruning: channels are physically removed, so the model really shrinks.

torch-pruning's dependency graph couples layers that must lose the same channels (a conv, its BatchNorm, the next
conv's input, every conv that feeds the same residual sum, ...). Each coupled set is a *group*; we name a group after
its root layer and give it one prune ratio. The classifier's output units are never pruned.

Tiny example: a group whose root conv has 32 output channels, ratio 0.3 and ``round_to=4`` removes
``int(32 * 0.3) = 9`` channels, rounded so the kept count is a multiple of 4: ``32 - 9 = 23 → 20`` kept, i.e. the 12
channels whose summed L1 magnitude across every coupled layer is smallest are removed (torch-pruning rounds the kept
count down).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from autocompress.errors import UnsupportedModelError
from autocompress.policy import PrunePolicy

__all__ = ["PrunableGroup", "classifier_layers", "prunable_groups", "prune_model", "count_macs_params"]

_IMPORTANCE_P = {"l1": 1, "l2": 2}


@dataclass(frozen=True)
class PrunableGroup:
    """One coupled set of channels that is pruned together.

    Attributes:
        name: qualified name of the root layer (e.g. ``layer1.0.conv1``); the key of :attr:`PrunePolicy.ratios`.
        channels: number of channels the group has before pruning.
        layers: names of the layers whose weights lose channels when this group is pruned.
    """

    name: str
    channels: int
    layers: tuple[str, ...]

    @property
    def stage(self) -> str:
        """Top-level block the root layer belongs to (``layer1.0.conv1`` → ``layer1``), for per-stage spaces."""
        return self.name.split(".")[0]


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


def _build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    except Exception as exc:  # torch-pruning raises many kinds of errors on unusual graphs
        raise UnsupportedModelError(
            f"model: torch-pruning could not trace the model ({type(exc).__name__}: {exc}); "
            "use a prune-free search space (search_spaces/int8_only.yaml) for this architecture"
        ) from exc


def prunable_groups(model: nn.Module, example_input: torch.Tensor, *, num_classes: int) -> list[PrunableGroup]:
    """The coupled channel groups of ``model`` in graph order, classifier excluded."""
    graph = _build_graph(model, example_input)
    names = {module: name for name, module in model.named_modules()}
    groups = []
    for group in graph.get_all_groups(ignored_layers=classifier_layers(model, num_classes)):
        root = group[0].dep.target.module
        channels = graph.get_out_channels(root) or 0
        if channels <= 1 or root not in names:
            continue
        layers = tuple(dict.fromkeys(names[d.target.module] for d, _ in group if d.target.module in names))
        groups.append(PrunableGroup(name=names[root], channels=channels, layers=layers))
    return groups


def prune_model(
    model: nn.Module, policy: PrunePolicy, example_input: torch.Tensor, *, num_classes: int
) -> nn.Module:
    """Return a pruned deep copy of ``model``; ``model`` itself is untouched.

    Raises:
        ConfigError-like ``UnsupportedModelError`` if a ratio names a layer the model does not have.
    """
    pruned = copy.deepcopy(model).eval()
    if policy.is_identity:
        return pruned
    modules: Mapping[str, nn.Module] = dict(pruned.named_modules())
    unknown = sorted(set(policy.ratios) - set(modules))
    if unknown:
        raise UnsupportedModelError(
            f"policy: prune ratios name layers the model does not have: {', '.join(unknown[:5])}; "
            "the search space must be built from this model's groups"
        )
    ratio_by_root = {modules[name]: float(ratio) for name, ratio in policy.ratios.items() if ratio > 0}
    importance = tp.importance.GroupMagnitudeImportance(p=_IMPORTANCE_P.get(policy.importance, 1))
    try:
        pruner = tp.pruner.MetaPruner(
            pruned,
            example_input,
            importance=importance,
            pruning_ratio=0.0,  # groups without an entry keep every channel
            pruning_ratio_dict=ratio_by_root,
            ignored_layers=classifier_layers(pruned, num_classes),
            round_to=policy.round_to,
        )
        pruner.step()
    except Exception as exc:
        raise UnsupportedModelError(
            f"model: torch-pruning failed to prune ({type(exc).__name__}: {exc}); "
            "try a per-stage space or prune-free search space (search_spaces/int8_only.yaml)"
        ) from exc
    return pruned.eval()


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates and parameters of one forward pass at ``example_input``'s shape."""
    macs, params = tp.utils.count_ops_and_params(model, example_input)
    return int(macs), int(params)

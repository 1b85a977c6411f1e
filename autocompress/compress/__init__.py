"""The compression stages: structural pruning, distillation fine-tuning and BatchNorm statistics re-estimation
(model → model; no runtime knowledge).

Building a deployable artifact (ONNX, int8, OpenVINO IR, TorchScript) is the runtimes' job:
:mod:`autocompress.runtimes`.
"""

from __future__ import annotations

from autocompress.compress.batchnorm import batchnorm_layers, recalibrate_batchnorm
from autocompress.compress.distill import DistillResult, TeacherLogits, distill, kd_loss
from autocompress.compress.prune import (
    PrunableGroup,
    PruningGraph,
    count_macs_params,
    prunable_groups,
    prune_model,
    sparsify_model,
    weight_sparsity,
)

__all__ = [
    "DistillResult",
    "PrunableGroup",
    "PruningGraph",
    "count_macs_params",
    "TeacherLogits",
    "batchnorm_layers",
    "distill",
    "kd_loss",
    "prunable_groups",
    "prune_model",
    "recalibrate_batchnorm",
    "sparsify_model",
    "weight_sparsity",
]

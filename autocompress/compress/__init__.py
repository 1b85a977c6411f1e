"""The compression stages: structural pruning and distillation fine-tuning (model → model; no runtime knowledge).

Building a deployable artifact (ONNX, int8, OpenVINO IR, TorchScript) is the runtimes' job:
:mod:`autocompress.runtimes`.
"""

from __future__ import annotations

from autocompress.compress.distill import DistillResult, TeacherLogits, distill, kd_loss
from autocompress.compress.prune import (
    PrunableGroup,
    count_macs_params,
    prunable_groups,
    prune_model,
    sparsify_model,
    weight_sparsity,
)

__all__ = [
    "DistillResult",
    "PrunableGroup",
    "count_macs_params",
    "TeacherLogits",
    "distill",
    "kd_loss",
    "prunable_groups",
    "prune_model",
    "sparsify_model",
    "weight_sparsity",
]

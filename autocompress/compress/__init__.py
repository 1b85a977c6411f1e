"""The compression stages: structural pruning, distillation fine-tuning and ONNX Runtime int8 quantization."""

from __future__ import annotations

from autocompress.compress.distill import DistillResult, distill, kd_loss
from autocompress.compress.prune import (
    PrunableGroup,
    count_macs_params,
    prunable_groups,
    prune_model,
    sparsify_model,
    weight_sparsity,
)
from autocompress.compress.quantize import Artifact, deploy, export_onnx

__all__ = [
    "Artifact",
    "DistillResult",
    "PrunableGroup",
    "count_macs_params",
    "deploy",
    "distill",
    "export_onnx",
    "kd_loss",
    "prunable_groups",
    "prune_model",
    "sparsify_model",
    "weight_sparsity",
]

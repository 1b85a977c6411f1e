"""ONNX Runtime (CPU execution provider): the default runtime.

Artifact: ``model_fp32.onnx`` or, for int8, ``model_int8.onnx`` (static QDQ or dynamic, ONNX Runtime's quantizer).
int8 kernels: ONNX Runtime's x86 kernels multiply uint8 activations by int8 weights (U8S8); without VNNI the weights
need 7 bits (``reduce_range``) to stay accurate (:mod:`autocompress.hardware.cpu`), so the space's ``kernel: auto``
resolves to the CPU's own setting. bf16 is not offered: the CPU execution provider has no bf16 convolution kernels.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from autocompress.hardware.cpu import CpuInfo
from autocompress.policy import QuantPolicy
from autocompress.runtimes._base import Artifact, Runner, Runtime
from autocompress.runtimes._onnx import export_onnx, node_in_modules, quantize_onnx

__all__ = ["OnnxRuntime", "ort_session"]

_COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul")


def ort_session(path: Path, *, threads: int) -> Any:
    """An ONNX Runtime CPU session pinned to ``threads`` intra-op threads, full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _OrtRunner(Runner):
    def __init__(self, artifact: Artifact, *, threads: int, batch_size: int | None) -> None:
        super().__init__(artifact, threads=threads, batch_size=batch_size)
        self.ort = ort_session(artifact.path, threads=threads)
        self._input = self.ort.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.ort.run(None, {self._input: batch})[0]

    def precision(self) -> dict[str, int]:
        """Compute nodes whose weight input is dequantized from int8 count as int8 (QDQ), the rest as fp32."""
        import onnx

        graph = onnx.load(str(self.artifact.path), load_external_data=False).graph
        dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        counts: Counter[str] = Counter()
        for node in graph.node:
            if node.op_type in (
                "ConvInteger",
                "MatMulInteger",
                "QLinearConv",
                "QLinearMatMul",
                "DynamicQuantizeMatMul",
            ):
                counts["int8"] += 1
            elif node.op_type in _COMPUTE_OPS:
                # The weight (input 1) decides: an fp32 layer between int8 ones still reads a dequantized activation.
                counts["int8" if len(node.input) > 1 and node.input[1] in dequantized else "fp32"] += 1
        return dict(counts)


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU (see the module docstring)."""

    name = "onnxruntime"
    package = "onnxruntime"
    export_names = ("model.onnx",)
    distribution = "onnxruntime"
    extra = None

    def modes(self, cpu: CpuInfo) -> tuple[str, ...]:
        return ("none", "int8", "int8_dynamic")

    def kernels(self) -> tuple[str, ...] | None:
        return ("u8s8", "u8s8_reduce", "s8s8")

    def build(
        self,
        model: nn.Module,
        quant: QuantPolicy,
        *,
        example_input: torch.Tensor,
        calibration: Dataset,
        workdir: Path,
        seed: int = 0,
    ) -> Artifact:
        fp32 = export_onnx(model, example_input, workdir / "model_fp32.onnx")
        if quant.mode == "none":
            return Artifact(path=fp32, quant=quant, runtime=self.name)
        exclude = fp32_node_names(fp32, quant.fp32_layers) if quant.fp32_layers else ()
        out = quantize_onnx(
            fp32, quant, calibration=calibration, out=workdir / "model_int8.onnx", seed=seed, exclude=exclude
        )
        return Artifact(path=out, quant=quant, runtime=self.name)

    def runner(self, artifact: Artifact, *, threads: int, batch_size: int | None = None) -> Runner:
        return _OrtRunner(artifact, threads=threads, batch_size=batch_size)


def fp32_node_names(path: Path, modules: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the compute nodes of the ONNX file ``path`` that came from ``modules`` (or their children)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return tuple(n.name for n in graph.node if n.op_type in _COMPUTE_OPS and node_in_modules(n.name, modules))

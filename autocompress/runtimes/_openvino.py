"""OpenVINO (CPU plug-in): reads the exported ONNX, int8 through NNCF post-training quantization.

Artifact: OpenVINO IR, ``model.xml`` + ``model.bin`` (fp32 weights; ``compress_to_fp16`` off so "fp32" is fp32 on
disk too). int8: ``nncf.quantize`` with the ``performance`` preset (symmetric activations, per-channel weights as NNCF
does by default), calibrated on training images; layers the precision plan keeps fp32 go in NNCF's
``ignored_scope``.

**Precision is set and read back.** OpenVINO's CPU plug-in runs an fp32 model in bf16 by default on CPUs with
AVX512_BF16 or AMX (measured on a Xeon with AMX: 0.42 ms "default" vs 1.74 ms f32 on the demo teacher). Every
compiled model here sets ``INFERENCE_PRECISION_HINT`` explicitly (``f32``, or ``bf16`` for the bf16 mode, which is
only offered where the CPU has native bf16), and :meth:`_OvRunner.precision` reads the precision each compute layer
ran in from the compiled model's runtime graph.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from autocompress.hardware.cpu import CpuInfo, Int8Kernel, native_bf16
from autocompress.policy import QuantPolicy
from autocompress.runtimes._base import Artifact, Runner, Runtime
from autocompress.runtimes._onnx import calibration_images, export_onnx, node_in_modules

__all__ = ["OpenVinoRuntime", "native_bf16"]

_COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution")
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "u8": "int8", "i8": "int8"}


@contextlib.contextmanager
def _quiet() -> Any:
    """NNCF prints progress bars and logs advice; the CLI's output stays ours."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class _OvRunner(Runner):
    """``explicit_precision=False`` compiles with OpenVINO's own defaults (no precision hint, default pinning): what a
    one-click user gets (``benchmarks/peers.py``); ``precision_hint`` is what the compiled model says it runs."""

    def __init__(
        self, artifact: Artifact, *, threads: int, batch_size: int | None, explicit_precision: bool = True
    ) -> None:
        super().__init__(artifact, threads=threads, batch_size=batch_size)
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(artifact.path))
        if batch_size is not None:
            # The exported graph has a dynamic batch axis; timing compiles the one batch size it times.
            shape = model.input(0).get_partial_shape()
            shape[0] = ov.Dimension(batch_size)
            model.reshape({model.input(0).get_any_name(): shape})
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if explicit_precision:
            config.update(
                {
                    "INFERENCE_PRECISION_HINT": "bf16" if artifact.quant.mode == "bf16" else "f32",
                    "ENABLE_CPU_PINNING": False,
                }
            )
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision_hint = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.request.infer({0: batch})[self.compiled.output(0)])

    def precision(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "layerType" not in info or str(info["layerType"].astype(str)) not in _COMPUTE_LAYERS:
                continue
            raw = str(info["runtimePrecision"].astype(str)) if "runtimePrecision" in info else "unknown"
            counts[_PRECISION_NAMES.get(raw, raw)] += 1
        return dict(counts)


class OpenVinoRuntime(Runtime):
    """OpenVINO's CPU plug-in (see the module docstring)."""

    name = "openvino"
    package = "openvino"
    export_names = ("model.xml", "model.bin")
    distribution = "openvino"
    extra = "openvino"

    @classmethod
    def installed(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None

    def modes(self, cpu: CpuInfo) -> tuple[str, ...]:
        return ("none", "int8", "bf16") if native_bf16(cpu) else ("none", "int8")

    def int8_kernel(self, cpu: CpuInfo) -> Int8Kernel:
        # OpenVINO picks its own int8 kernels (u8 activations x i8 weights, read back as "u8" layers); nothing to set.
        return Int8Kernel(
            "uint8", "int8", False, "OpenVINO: NNCF performance preset, kernels chosen by the CPU plug-in"
        )

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
        import openvino as ov

        onnx_file = export_onnx(model, example_input, workdir / "model_fp32.onnx")
        ov_model = ov.convert_model(str(onnx_file))
        stem = "model_int8" if quant.mode == "int8" else "model"
        if quant.mode == "int8":
            import nncf

            images = calibration_images(calibration, count=quant.calibration_samples, seed=seed)
            ignored = None
            if quant.fp32_layers:
                names = [
                    op.get_friendly_name()
                    for op in ov_model.get_ops()
                    if node_in_modules(op.get_friendly_name(), quant.fp32_layers)
                ]
                ignored = nncf.IgnoredScope(names=names, validate=False) if names else None
            with _quiet():
                ov_model = nncf.quantize(
                    ov_model,
                    nncf.Dataset([images[i : i + 1] for i in range(len(images))]),
                    subset_size=len(images),
                    preset=nncf.QuantizationPreset.PERFORMANCE,
                    target_device=nncf.TargetDevice.CPU,
                    ignored_scope=ignored,
                )
        elif quant.mode not in ("none", "bf16"):
            from autocompress.errors import ConfigError

            raise ConfigError(f"--runtime openvino: precision {quant.mode!r} is not supported; use none, int8 or bf16")
        xml = workdir / f"{stem}.xml"
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        onnx_file.unlink(missing_ok=True)
        return Artifact(path=xml, quant=quant, runtime=self.name, files=(xml, xml.with_suffix(".bin")))

    def runner(self, artifact: Artifact, *, threads: int, batch_size: int | None = None) -> Runner:
        return _OvRunner(artifact, threads=threads, batch_size=batch_size)

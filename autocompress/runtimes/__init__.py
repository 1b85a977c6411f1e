"""Runtimes: the inference engines an artifact is built for, timed on and exported to (see :mod:`._base`).

Adding a runtime is one module here with a :class:`Runtime` subclass (it registers itself by name) plus its row in
``tests/test_runtimes.py``'s contract test, which is parametrized over :func:`list_runtimes`.
"""

from __future__ import annotations

from autocompress.runtimes._base import (
    AUTO,
    DEFAULT_RUNTIME,
    Artifact,
    Runner,
    Runtime,
    get_runtime,
    list_runtimes,
    resolve_runtimes,
)
from autocompress.runtimes._onnx import INPUT_NAME, OUTPUT_NAME, calibration_images, export_onnx, onnx_node_module
from autocompress.runtimes._onnxruntime import OnnxRuntime, ort_session
from autocompress.runtimes._openvino import OpenVinoRuntime, native_bf16
from autocompress.runtimes._torch import TorchRuntime

__all__ = [
    "AUTO",
    "DEFAULT_RUNTIME",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "Artifact",
    "OnnxRuntime",
    "OpenVinoRuntime",
    "Runner",
    "Runtime",
    "TorchRuntime",
    "calibration_images",
    "export_onnx",
    "get_runtime",
    "list_runtimes",
    "native_bf16",
    "onnx_node_module",
    "ort_session",
    "resolve_runtimes",
]

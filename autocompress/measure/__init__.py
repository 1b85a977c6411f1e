"""Measurements: latency of deployable artifacts and accuracy on held-out data."""

from __future__ import annotations

from autocompress.measure.accuracy import Accuracy, evaluate, evaluate_artifact, evaluate_onnx, evaluate_torch
from autocompress.measure.latency import Latency, LatencyCache, measure_onnx, measure_torch, structure_key

__all__ = [
    "Accuracy",
    "Latency",
    "LatencyCache",
    "evaluate",
    "evaluate_artifact",
    "evaluate_onnx",
    "evaluate_torch",
    "measure_onnx",
    "measure_torch",
    "structure_key",
]

"""ONNX, the interchange format: export from PyTorch, and int8 post-training quantization with ONNX Runtime's tools.

ONNX Runtime runs these files; OpenVINO reads the fp32 file and quantizes it with NNCF instead.
``torch.ao.quantization`` is deprecated, so int8 goes through ONNX Runtime's quantizer: static QDQ quantization (weights
and activations int8, activation ranges calibrated on training images) with per-tensor or per-channel weight scales, or
dynamic quantization (weights int8, activation scales computed at run time) for Linear-heavy models.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from autocompress.errors import UnsupportedModelError
from autocompress.policy import QuantPolicy

__all__ = [
    "export_onnx",
    "quantize_onnx",
    "calibration_images",
    "onnx_node_module",
    "node_in_modules",
    "INPUT_NAME",
    "OUTPUT_NAME",
]

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: Path) -> Path:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch axis.

    Uses the TorchScript-based exporter (``dynamo=False``): 0.1 s for the demo model against ~3 s for the dynamo
    exporter, which matters when every trial exports twice.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    # PyTorch's fused attention fast path (aten::_native_multi_head_attention) has no ONNX symbolic; the
    # unfused path computes the same function and exports (needed for ViT and other nn.MultiheadAttention users).
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example_input,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=17,
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many kinds of errors on unsupported operators
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnsupportedModelError(
            f"model: ONNX export failed ({type(exc).__name__}: {first_line}); this architecture uses an operator the "
            "ONNX exporter does not support at this input size — try another --input-size or report the operator"
        ) from exc
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


class _CalibrationReader:
    """Feeds calibration images one at a time to ORT's calibrator (implements ``CalibrationDataReader``)."""

    def __init__(self, images: np.ndarray) -> None:
        self._images = images
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._images):
            return None
        batch = self._images[self._next : self._next + 1]
        self._next += 1
        return {INPUT_NAME: batch}

    def rewind(self) -> None:
        self._next = 0


def calibration_images(dataset: Dataset, *, count: int, seed: int = 0) -> np.ndarray:
    """``count`` images drawn without replacement from ``dataset`` with a fixed seed, as float32 NCHW."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]  # type: ignore[arg-type]
    return torch.stack([dataset[int(i)][0] for i in order]).numpy().astype(np.float32)


def quantize_onnx(
    fp32: Path, quant: QuantPolicy, *, calibration: Dataset, out: Path, seed: int = 0, exclude: tuple[str, ...] = ()
) -> Path:
    """Quantize the fp32 ONNX file ``fp32`` as ``quant`` says (static QDQ or dynamic) into ``out``.

    ``exclude``: ONNX node names left in fp32 (per-layer precision).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    workdir = out.parent
    prepared = workdir / f"{fp32.stem}_prepared.onnx"
    per_channel = quant.granularity == "per_channel"
    # ORT's calibrators print progress to stdout and log advice on the root logger; keep the CLI's output ours.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
        warnings.simplefilter("ignore")
        # Pre-processing (ONNX shape inference + graph optimisation: Conv+BN folding, bias as initializers) lets the
        # quantizer place Q/DQ pairs so ORT can fuse them into int8 kernels. Without it int8 was often *slower* than
        # fp32 (resnet18 at 64x64, 30 % pruned: 1.89 ms int8 vs 0.99 ms fp32; with it 0.26 ms). Symbolic shape
        # inference is skipped: it fails on some graphs (ViT) and the static shapes here do not need it.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        if quant.mode == "int8_dynamic":
            quantize_dynamic(
                str(prepared),
                str(out),
                per_channel=per_channel,
                reduce_range=quant.reduce_range,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude),
            )
        else:
            method = {
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[quant.calibration]
            reader = _CalibrationReader(calibration_images(calibration, count=quant.calibration_samples, seed=seed))
            # uint8 activations with int8 weights (U8S8) is the combination ORT's x86 int8 kernels are fastest at;
            # reduce_range (7-bit weights) keeps it accurate on CPUs without VNNI (autocompress.hardware.cpu).
            quantize_static(
                str(prepared),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=quant.reduce_range,
                activation_type=QuantType.QUInt8 if quant.activation_type == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                nodes_to_exclude=list(exclude),
            )
    prepared.unlink(missing_ok=True)
    # The calibrator leaves an augmented copy of the model next to the output; it is not part of the artifact.
    for leftover in workdir.glob("*augmented*.onnx"):
        leftover.unlink()
    return out


def onnx_node_module(node_name: str) -> str:
    """The PyTorch module a node of an exported graph came from, from the exporter's scope-path node name.

    Tiny example: ``/layer1/layer1.0/conv1/Conv`` → ``layer1.0.conv1``; ``/fc/Gemm`` → ``fc``. Each scope is the
    child's attribute name (``conv1``), its full dotted name, or, for a child of an ``nn.Sequential``, the Sequential's
    attribute name and the index (``layer2.0``, ``shortcut.0``), relative to the Sequential's parent:
    ``/layer2/layer2.0/shortcut/shortcut.0/Conv`` → ``layer2.0.shortcut.0`` (not ``layer2.0.shortcut.shortcut.0``:
    measured, that name matched no module, so a shortcut layer asked to stay fp32 ran int8).
    """
    scopes = [s for s in node_name.strip("/").split("/")[:-1] if s]
    qualified = ""
    for scope in scopes:
        parent, _, last = qualified.rpartition(".")
        if not qualified or scope.startswith(qualified + "."):
            qualified = scope  # a full dotted name
        elif scope.startswith(last + "."):
            qualified = (
                f"{parent}.{scope}" if parent else scope
            )  # a Sequential's child, named in the Sequential's parent
        else:
            qualified = f"{qualified}.{scope}"
    return qualified


def node_in_modules(node_name: str, modules: tuple[str, ...] | list[str]) -> bool:
    """True when the exported node ``node_name`` came from one of ``modules`` or from a child of one."""
    module = onnx_node_module(node_name)
    return any(module == m or module.startswith(m + ".") for m in modules)

"""PyTorch on the CPU: the pruned program itself, fp32 or bf16.

Artifact: ``model.pt``, a frozen TorchScript trace of the pruned (and fine-tuned) module — the pruned program, loadable
with ``torch.jit.load`` and no autocompress. Freezing (``torch.jit.freeze``) inlines the weights as constants and folds
batch norms into the convolutions: measured side by side on the demo (``benchmarks/torch_program.md``, AMD EPYC Zen 4, 1
thread) 0.94-0.98x the plain trace's latency on the teacher and 0.91x on a 70 %-pruned student, same predictions.
TorchScript is deprecated in favour of ``torch.export`` (PyTorch 2.14 warns), but loading a ``.pt2`` may fall back to
unrestricted unpickling, and nothing this tool reads back is ever unpickled; the export folder carries the
``torch.export`` program (``model.pt2``) for users as well. The runner runs it under ``torch.inference_mode`` with
``torch.set_num_threads(threads)`` held for the duration of a timing window or a scoring pass, then restored.

Precisions: fp32, and bf16 where the CPU runs it natively (AVX512_BF16 or AMX:
:func:`~autocompress.hardware.cpu.native_bf16`; never offered where it would be emulated). A bf16 artifact holds bf16
weights and casts the float32 input to bf16 and the logits back to float32, so it is called exactly like the fp32 one.
Whether bf16 pays is a per-structure question: on the demo (same benchmark) it ran the teacher in 0.58-0.62x the plain
trace's time, 30-50 %-pruned students in 0.87-0.94x, but a 70 %-pruned student in 1.61-1.72x — the search decides. The
precision read back is the dtype of every convolution's and linear layer's weight in the loaded graph. PyTorch's int8
CPU path (``torch.ao.quantization``) is deprecated and PT2E moved to torchao, so int8 is the other runtimes' job.

``torch.compile`` is not offered: a compiled module cannot be saved as a program that loads without unpickling
(``torch.export.load`` falls back to ``torch.load(weights_only=False)``, and nothing this tool reads back is ever
unpickled), and the runner, which may be another process, starts from the file.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from autocompress.errors import ConfigError
from autocompress.hardware.cpu import CpuInfo, native_bf16
from autocompress.policy import QuantPolicy
from autocompress.runtimes._base import Artifact, Runner, Runtime

__all__ = ["TorchRuntime"]

# Graph nodes whose second input is the layer's weight: what "the precision a layer ran in" means for a program.
_COMPUTE_NODES = ("aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::linear")
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class _Bf16(nn.Module):
    """``model`` in bf16, called with and returning float32 (the runner's and the user's contract)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(torch.bfloat16)).float()


class _TorchRunner(Runner):
    def __init__(self, artifact: Artifact, *, threads: int, batch_size: int | None) -> None:
        super().__init__(artifact, threads=threads, batch_size=batch_size)
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export (see the docstring)
            warnings.simplefilter("ignore", FutureWarning)
            self.module = torch.jit.load(str(artifact.path), map_location="cpu").eval()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).numpy()

    def precision(self) -> dict[str, int]:
        """Convolutions and linear layers per weight dtype, read from the loaded graph (a frozen program holds its
        weights as constants; a module that still has parameters is read from those)."""
        counts: Counter[str] = Counter()
        for node in self.module.graph.nodes():
            if node.kind() in _COMPUTE_NODES:
                weight = list(node.inputs())[1]
                value = weight.toIValue() if weight.node().kind() == "prim::Constant" else None
                if isinstance(value, torch.Tensor):
                    counts[_DTYPE_NAMES.get(value.dtype, str(value.dtype))] += 1
        if not counts:  # not frozen (an artifact written before freezing): the parameters say it
            counts.update(_DTYPE_NAMES.get(p.dtype, str(p.dtype)) for p in self.module.parameters() if p.dim() >= 2)
        return dict(counts)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


class TorchRuntime(Runtime):
    """PyTorch (frozen TorchScript trace of the pruned module), fp32 or native bf16 (see the module docstring)."""

    name = "torch"
    package = "torch"
    export_names = ("model.pt",)
    distribution = "torch"
    extra = None

    def modes(self, cpu: CpuInfo) -> tuple[str, ...]:
        return ("none", "bf16") if native_bf16(cpu) else ("none",)

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
        if quant.mode not in ("none", "bf16"):
            raise ConfigError(
                f"--runtime torch: precision {quant.mode!r} is not supported (fp32 and bf16); use "
                "--runtime onnxruntime or openvino for int8, or a space with quantize.mode: [none]"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "model.pt"
        # bf16 converts a copy: the caller's model (the fine-tuned student, exported as model.pt2) stays fp32
        program = _Bf16(copy.deepcopy(model)) if quant.mode == "bf16" else model
        program.eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(program, example_input[:1], check_trace=False)
            torch.jit.save(torch.jit.freeze(traced), str(path))
        return Artifact(path=path, quant=quant, runtime=self.name)

    def runner(self, artifact: Artifact, *, threads: int, batch_size: int | None = None) -> Runner:
        return _TorchRunner(artifact, threads=threads, batch_size=batch_size)

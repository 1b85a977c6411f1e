"""PyTorch on the CPU: the pruned program itself, fp32.

Artifact: ``model.pt``, a TorchScript trace of the pruned (and fine-tuned) module — the pruned program, loadable with
``torch.jit.load`` and no autocompress. TorchScript is deprecated in favour of ``torch.export`` (PyTorch 2.14 warns),
but loading a ``.pt2`` may fall back to unrestricted unpickling, and nothing this tool reads back is ever unpickled;
the export folder carries the ``torch.export`` program (``model.pt2``) for users as well. The runner runs it under
``torch.inference_mode`` with ``torch.set_num_threads(threads)`` held for the duration of a timing window or a scoring
pass, then restored.

Precisions: fp32 only. PyTorch's int8 CPU path (``torch.ao.quantization``) is deprecated and PT2E moved to torchao,
so int8 is the other runtimes' job.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from autocompress.cpu import CpuInfo
from autocompress.errors import ConfigError
from autocompress.policy import QuantPolicy
from autocompress.runtimes._base import Artifact, Runner, Runtime

__all__ = ["TorchRuntime"]


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
        """Weight tensors (conv and linear kernels) per dtype: the program runs in the precision its weights have."""
        names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        counts = Counter(names.get(p.dtype, str(p.dtype)) for p in self.module.parameters() if p.dim() >= 2)
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
    """PyTorch (TorchScript trace of the pruned module), fp32 (see the module docstring)."""

    name = "torch"
    package = "torch"
    distribution = "torch"
    extra = None

    def modes(self, cpu: CpuInfo) -> tuple[str, ...]:
        return ("none",)

    def build(self, model: nn.Module, quant: QuantPolicy, *, example_input: torch.Tensor, calibration: Dataset,
              workdir: Path, seed: int = 0) -> Artifact:
        if quant.mode != "none":
            raise ConfigError(f"--runtime torch: precision {quant.mode!r} is not supported (fp32 only); use "
                              "--runtime onnxruntime or openvino for int8, or a space with quantize.mode: [none]")
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "model.pt"
        model.eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example_input[:1], check_trace=False)
            torch.jit.save(traced, str(path))
        return Artifact(path=path, quant=quant, runtime=self.name)

    def runner(self, artifact: Artifact, *, threads: int, batch_size: int | None = None) -> Runner:
        return _TorchRunner(artifact, threads=threads, batch_size=batch_size)

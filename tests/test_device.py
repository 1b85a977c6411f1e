"""--device: fine-tuning moves to an accelerator when asked; without one, cuda is a one-line error and auto falls back
and says so. Latency never moves (it is always measured on the target runtime on this CPU)."""

from __future__ import annotations

import pytest
import torch

from autocompress.compress.distill import distill
from autocompress.compress.training import predict_logits
from autocompress.errors import ConfigError
from autocompress.hardware.device import resolve_device
from autocompress.policy import DistillPolicy
from autocompress.sources.workload import Workload


def test_auto_says_where_fine_tuning_runs() -> None:
    device, note = resolve_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda" and "cuda:0" in note
    else:
        assert device.type == "cpu" and "found no CUDA device" in note


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="torch sees no CUDA device.*--device cpu"):
        resolve_device("cuda")


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))],
)
def test_distillation_runs_on_the_device_and_returns_the_student_on_the_cpu(
    tiny_workload: Workload, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = tiny_workload.model
    if device == "cuda":
        # The point here is that the device computes the teacher's own logits: TF32 convolutions and matmuls (on by
        # default for cuDNN) differ from the CPU's fp32 by about 1e-3 on this model (seen on an H200), so they are
        # off for the comparison; monkeypatch restores them.
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    logits = predict_logits(teacher, tiny_workload.train, device=device)
    assert logits.device.type == device and next(teacher.parameters()).device.type == "cpu"
    reference = predict_logits(teacher, tiny_workload.train)
    assert torch.allclose(logits.cpu(), reference, atol=1e-3)
    result = distill(teacher, logits, tiny_workload.train, DistillPolicy(steps=5), seed=0, device=device)
    assert len(result.losses) == 5 and all(torch.isfinite(torch.tensor(result.losses)))
    assert {p.device.type for p in teacher.parameters()} == {"cpu"}

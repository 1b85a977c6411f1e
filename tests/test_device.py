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

# Every device test runs on the CPU here and on CUDA where there is one.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


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


@pytest.mark.parametrize("device", DEVICES)
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


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_training_learns_and_returns_float32_contiguous_weights(
    tiny_workload: Workload, device: str
) -> None:
    """The CUDA training setup (bf16 autocast; channels-last on a GPU), also run on the CPU where autocast works, so
    the code path is tested on every machine."""
    import copy

    from torch import nn

    from autocompress.compress.training import fit, training_setup

    model = copy.deepcopy(tiny_workload.model)
    for module in model.modules():  # start from scratch so that the loss has somewhere to go
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    losses = fit(
        model,
        tiny_workload.train,
        lambda logits, labels, _: nn.functional.cross_entropy(logits, labels),
        steps=30,
        lr=3e-3,
        device=device,
        mixed_precision=True,
    )
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, (losses[:5], losses[-5:])
    for p in model.parameters():
        assert p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()
    expected = "cpu" if device == "cpu" else "bf16 autocast"
    assert expected in training_setup(torch.device(device)), training_setup(torch.device(device))


@pytest.mark.parametrize("device", DEVICES)
def test_teacher_logits_filled_on_the_device_match_the_cpu(
    tiny_workload: Workload, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autocompress.compress.distill import TeacherLogits

    if device == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # exactness is the point (see above)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    teacher = tiny_workload.model
    lazy = TeacherLogits(teacher, len(tiny_workload.train))
    indices = torch.arange(0, 40, 3)
    images = torch.stack([tiny_workload.train[int(i)][0] for i in indices])
    lazy.fill(images.to(device), indices.to(device))
    got = lazy.lookup(indices.to(device))
    assert got.device.type == device and lazy.computed == len(indices)
    assert torch.allclose(got.cpu(), predict_logits(teacher, tiny_workload.train)[indices], atol=1e-4)
    assert {p.device.type for p in teacher.parameters()} == {"cpu"}, "the study's teacher stays on the CPU"

"""Where fine-tuning runs: ``--device cpu | cuda | cuda:N | auto``.

Only training-side work moves: the teacher's logits on the training split and knowledge-distillation steps. Latency
and accuracy are always measured on the target runtime on this CPU, and int8 calibration runs inside the runtime's
quantizer (CPU). ``auto`` picks CUDA when torch sees a device and says so either way.
"""

from __future__ import annotations

import re

import torch

from autocompress.errors import ConfigError

__all__ = ["DEVICES", "check_device", "resolve_device"]

DEVICES = "cpu | cuda | cuda:N | auto"
_FORM = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


def check_device(name: str) -> None:
    """A one-line ConfigError for a malformed ``--device`` or a CUDA device this machine does not have."""
    if not _FORM.match(name):
        raise ConfigError(f"--device must be {DEVICES}, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            built = torch.version.cuda or "none"
            raise ConfigError(
                f"--device {name}: torch sees no CUDA device on this machine (torch {torch.__version__}, "
                f"built for CUDA {built}); pass --device cpu, or --device auto to use one when present"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); pass one of them, or --device cpu"
            )


def resolve_device(name: str) -> tuple[torch.device, str]:
    """The torch device for fine-tuning and one line saying why (``auto`` falls back to the CPU and says so)."""
    check_device(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0"), f"fine-tuning on cuda:0 ({torch.cuda.get_device_name(0)}; --device auto)"
        return torch.device("cpu"), "fine-tuning on the CPU: --device auto found no CUDA device"
    device = torch.device(name)
    if device.type == "cuda":
        return device, f"fine-tuning on {name} ({torch.cuda.get_device_name(device)})"
    return device, "fine-tuning on the CPU"

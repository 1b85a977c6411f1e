"""The CPU this process runs on: its int8 instruction set, the int8 kernel settings that suit it, and a fingerprint.

CPUs differ, and so do the right answers. ONNX Runtime's x86 int8 kernels multiply uint8 activations by int8 weights
(U8S8). With VNNI (``avx512_vnni``, ``avx_vnni``) or AMX that is one exact instruction. Without it (AVX2 or AVX-512
without VNNI) ONNX Runtime uses ``vpmaddubsw``, which adds two u8*s8 products into a *saturating* int16: with
full-range 8-bit weights, sums above 32767 are clipped and accuracy drops. ONNX Runtime's quantization docs recommend
``reduce_range`` (7-bit weights, so the pair sum cannot saturate) on such CPUs. Measured on an AMD EPYC Zen 2 (AVX2,
no VNNI), demo teacher, int8 per-channel: 97.2 % val accuracy with full-range U8S8, 100 % with ``reduce_range``, at
the same latency; S8S8 was lossless but 1.4x slower than fp32 (design.md).

Tiny example of the saturation: activations ``[255, 255]`` times weights ``[127, 127]`` sum to 64770 > 32767, so the
pair is clipped to 32767 (half its value); with 7-bit weights ``[63, 63]`` the pair is 32130 and fits.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "process_cores",
    "CpuInfo",
    "Int8Kernel",
    "detect_cpu",
    "int8_kernel_for",
    "native_bf16",
    "machine_fingerprint",
    "cpu_from_fingerprint",
    "INT8_ISAS",
]

# From the most to the least capable for int8 matrix products; the first that matches names the CPU's ISA.
INT8_ISAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("amx", ("amx_int8",)),
    ("avx512_vnni", ("avx512_vnni",)),
    ("avx_vnni", ("avx_vnni",)),
    ("avx512", ("avx512bw",)),
    ("avx2", ("avx2",)),
    ("arm_dotprod", ("asimddp",)),
    ("arm_neon", ("asimd",)),
)
_VNNI_ISAS = {"amx", "avx512_vnni", "avx_vnni", "arm_dotprod"}
# Flags worth keeping in a fingerprint: the ones that change which kernels ONNX Runtime and PyTorch pick.
_REPORTED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
)
_VERSIONED = (
    "autocompress",
    "torch",
    "torchvision",
    "torch-pruning",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "optuna",
    "numpy",
)


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU is and which int8 instructions it has.

    Attributes:
        model: the CPU's model name (``/proc/cpuinfo``), e.g. ``AMD EPYC`` or ``Intel(R) Xeon(R) Platinum 8480+``.
        arch: ``platform.machine()``, e.g. ``x86_64`` or ``aarch64``.
        flags: the feature flags of :data:`_REPORTED_FLAGS` that the CPU has.
        logical_cores: ``os.cpu_count()``.
    """

    model: str
    arch: str
    flags: frozenset[str]
    logical_cores: int

    @property
    def isa(self) -> str:
        """The best int8 instruction set: ``amx``, ``avx512_vnni``, ``avx_vnni``, ``avx512``, ``avx2``,
        ``arm_dotprod``, ``arm_neon`` or ``baseline``."""
        for name, needed in INT8_ISAS:
            if all(flag in self.flags for flag in needed):
                return name
        return "baseline"

    @property
    def has_vnni(self) -> bool:
        """True when int8 dot products are exact single instructions (no int16 saturation)."""
        return self.isa in _VNNI_ISAS

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "arch": self.arch,
            "isa": self.isa,
            "flags": sorted(self.flags),
            "logical_cores": self.logical_cores,
        }

    @classmethod
    def from_flags(
        cls, flags: Iterable[str], *, model: str = "test CPU", arch: str = "x86_64", cores: int = 2
    ) -> CpuInfo:
        """A CpuInfo with the given flags (tests, and CPUs described by hand)."""
        return cls(
            model=model, arch=arch, flags=frozenset(f for f in flags if f in _REPORTED_FLAGS), logical_cores=cores
        )


def process_cores() -> frozenset[int]:
    """The cores this process may run on: its CPU affinity (``taskset``, a container's cpuset), every core where the
    OS has no affinity call. What threads and worker processes are sized from, and what the core guard locks."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return frozenset(range(os.cpu_count() or 1))


def detect_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """Read the CPU model and flags (Linux ``/proc/cpuinfo``; elsewhere only the model from :mod:`platform`)."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model name") and model in (platform.processor(), platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return CpuInfo.from_flags(flags, model=model or "unknown", arch=platform.machine(), cores=os.cpu_count() or 1)


def native_bf16(cpu: CpuInfo) -> bool:
    """bf16 runs natively (not emulated) only with AVX512_BF16 or AMX-BF16: where it would be emulated, no runtime
    offers it."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu.flags)


@dataclass(frozen=True)
class Int8Kernel:
    """How static int8 is quantized for a CPU: activation type, weight type and 7-bit weights or not."""

    activation_type: str
    weight_type: str
    reduce_range: bool
    reason: str

    @property
    def name(self) -> str:
        """Short label: ``u8s8``, ``u8s8_reduce`` or ``s8s8``."""
        base = "".join("u8" if t == "uint8" else "s8" for t in (self.activation_type, self.weight_type))
        return f"{base}_reduce" if self.reduce_range else base


def int8_kernel_for(cpu: CpuInfo) -> Int8Kernel:
    """The static-int8 settings that are fast *and* accurate on ``cpu`` (see the module docstring).

    Examples:
        >>> int8_kernel_for(CpuInfo.from_flags(["avx2", "avx512bw", "avx512_vnni"])).name
        'u8s8'
        >>> int8_kernel_for(CpuInfo.from_flags(["avx2", "fma"])).name
        'u8s8_reduce'
    """
    if cpu.isa in ("amx", "avx512_vnni", "avx_vnni"):
        return Int8Kernel("uint8", "int8", False, f"{cpu.isa}: exact int8 dot products, full-range U8S8")
    if cpu.isa in ("avx512", "avx2", "baseline"):
        return Int8Kernel(
            "uint8", "int8", True, f"{cpu.isa} without VNNI: U8S8 saturates in int16, so 7-bit weights (reduce_range)"
        )
    # Arm: ONNX Runtime's kernels take U8S8 through the (u)dot instructions; no int16 saturation path.
    return Int8Kernel("uint8", "int8", False, f"{cpu.isa}: U8S8 (not measured on this project's machines)")


def cpu_from_fingerprint(fingerprint: Mapping[str, Any]) -> CpuInfo:
    """The CPU a :func:`machine_fingerprint` describes (a build host takes the target's, to build for it)."""
    platform_name = str(fingerprint.get("platform", ""))
    arch = next((a for a in ("x86_64", "aarch64", "arm64") if a in platform_name), platform.machine())
    return CpuInfo(
        model=str(fingerprint.get("cpu", "unknown")),
        arch=arch,
        flags=frozenset(fingerprint.get("cpu_flags", ())),
        logical_cores=int(fingerprint.get("logical_cores") or 1),
    )


def machine_fingerprint(cpu: CpuInfo | None = None) -> dict[str, Any]:
    """Host, CPU (model, ISA, flags), OS and the versions of the libraries that shape the numbers.

    Written with every trial and every exported model: latency figures mean nothing without it.
    """
    cpu = cpu or detect_cpu()
    versions: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "host": socket.gethostname(),
        "cpu": cpu.model,
        "isa": cpu.isa,
        "cpu_flags": sorted(cpu.flags),
        "int8_kernel": int8_kernel_for(cpu).name,
        "logical_cores": cpu.logical_cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }

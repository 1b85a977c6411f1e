"""CPU detection and the int8 settings it picks; the settings really reach the quantized artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from autocompress.hardware.cpu import CpuInfo, detect_cpu, int8_kernel_for, machine_fingerprint
from autocompress.policy import QuantPolicy
from autocompress.runtimes import get_runtime
from autocompress.sources.workload import Workload

deploy = get_runtime("onnxruntime").build

ZEN2 = ["fpu", "sse4_2", "avx", "avx2", "fma", "sha_ni"]
ZEN4 = [*ZEN2, "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"]
SAPPHIRE_RAPIDS = [*ZEN4, "amx_int8", "amx_bf16", "amx_tile"]
ALDER_LAKE = [*ZEN2, "avx_vnni"]
SKYLAKE_X = [*ZEN2, "avx512f", "avx512bw"]
GRAVITON3 = ["fp", "asimd", "asimddp", "sve"]


@pytest.mark.parametrize(
    "flags,isa,kernel,reduce_range",
    [
        (ZEN2, "avx2", "u8s8_reduce", True),
        (SKYLAKE_X, "avx512", "u8s8_reduce", True),
        (ZEN4, "avx512_vnni", "u8s8", False),
        (ALDER_LAKE, "avx_vnni", "u8s8", False),
        (SAPPHIRE_RAPIDS, "amx", "u8s8", False),
        (GRAVITON3, "arm_dotprod", "u8s8", False),
        ([], "baseline", "u8s8_reduce", True),
    ],
)
def test_isa_and_int8_kernel(flags: list[str], isa: str, kernel: str, reduce_range: bool) -> None:
    cpu = CpuInfo.from_flags(flags)
    assert cpu.isa == isa
    chosen = int8_kernel_for(cpu)
    assert chosen.name == kernel
    assert chosen.reduce_range is reduce_range
    # Without VNNI the reason says why 7-bit weights are used.
    assert ("saturates" in chosen.reason) is reduce_range
    assert cpu.has_vnni is (isa in ("amx", "avx512_vnni", "avx_vnni", "arm_dotprod"))


def test_detect_cpu_reads_model_and_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
    )
    cpu = detect_cpu(cpuinfo)
    assert cpu.model == "AMD EPYC 7B12"
    assert cpu.isa == "avx2" and int8_kernel_for(cpu).reduce_range


def test_fingerprint_of_this_machine_names_cpu_isa_and_versions() -> None:
    fp = machine_fingerprint()
    real = detect_cpu()
    assert fp["isa"] == real.isa and fp["cpu"] == real.model
    assert fp["int8_kernel"] == int8_kernel_for(real).name
    assert fp["versions"]["onnxruntime"] and fp["versions"]["torch"]


def _int8_weight_range(path: Path) -> int:
    """Largest |int8 weight| stored in the QDQ model (weights are the int8 initializers)."""
    model = onnx.load(str(path))
    ints = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    return int(max(np.abs(a.astype(np.int32)).max() for a in ints if a.size > 1))


def test_reduce_range_really_gives_7_bit_weights(tiny_workload: Workload, tmp_path: Path) -> None:
    x = tiny_workload.example_input()
    full = deploy(
        tiny_workload.model,
        QuantPolicy(mode="int8", calibration_samples=8),
        example_input=x,
        calibration=tiny_workload.train,
        workdir=tmp_path / "full",
    )
    reduced = deploy(
        tiny_workload.model,
        QuantPolicy(mode="int8", calibration_samples=8, reduce_range=True),
        example_input=x,
        calibration=tiny_workload.train,
        workdir=tmp_path / "reduced",
    )
    assert _int8_weight_range(full.path) == 127
    assert _int8_weight_range(reduced.path) <= 64
    assert QuantPolicy(mode="int8", reduce_range=True).kernel == "u8s8_reduce"

"""The runtime seam: one contract test parametrized over every registered runtime, plus the registry's errors.

Every runtime must build an fp32 artifact whose logits match the PyTorch model, say that it ran fp32 (a row labelled
fp32 that ran bf16 is a bug), run at a fixed batch for timing and any batch for scoring, be timed side by side with
its own teacher by the :class:`LatencyMeter`, and — where it offers int8 — read back int8 layers and keep the layers
the plan names in fp32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.compress.prune import prunable_groups
from autocompress.errors import ConfigError, MissingDependencyError
from autocompress.hardware.cpu import CpuInfo, detect_cpu
from autocompress.measure.accuracy import evaluate, evaluate_torch
from autocompress.measure.latency import LatencyMeter, Protocol
from autocompress.policy import QuantPolicy
from autocompress.runtimes import OpenVinoRuntime, Runtime, get_runtime, list_runtimes, native_bf16, onnx_node_module
from autocompress.sources.workload import Workload
from autocompress.study.space import load_space

QUICK = Protocol(warmup=3, min_runs=5, window_s=0.1, max_window_s=0.2, warmup_s=0.0)
RUNTIMES = list_runtimes()


def test_every_runtime_of_the_project_is_registered_and_installed_here() -> None:
    # CI installs the openvino extra: a runtime silently missing would skip its contract test.
    assert list_runtimes(installed_only=False) == ["onnxruntime", "openvino", "torch"]
    assert RUNTIMES == ["onnxruntime", "openvino", "torch"], "install the extras: pip install -e '.[test,openvino]'"


@pytest.mark.parametrize("name", RUNTIMES)
def test_fp32_artifact_matches_pytorch_and_reads_back_fp32(name: str, tiny_workload: Workload, tmp_path: Path) -> None:
    runtime = get_runtime(name)
    wl = tiny_workload
    artifact = runtime.build(
        wl.model, QuantPolicy(mode="none"), example_input=wl.example_input(), calibration=wl.train, workdir=tmp_path
    )
    assert artifact.runtime == name and all(p.is_file() for p in artifact.all_files) and artifact.size_mb > 0
    # The export folder names each of the artifact's files: one name per file, none shared with another runtime.
    names = runtime.export_names
    assert len(names) == len(artifact.all_files) and len(set(names)) == len(names), (name, names, artifact.all_files)
    others = {
        n for other in list_runtimes(installed_only=False) if other != name for n in get_runtime(other).export_names
    }
    assert not set(names) & others, f"{name}: export file names {names} collide with another runtime's"
    scorer = runtime.runner(artifact, threads=1)
    images = torch.stack([wl.val[i][0] for i in range(5)])
    with torch.no_grad():
        expected = wl.model.eval()(images).numpy()
    with scorer.session():
        got = scorer.run(images.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=f"{name}: fp32 logits differ from PyTorch's")
    precision = scorer.precision()
    assert precision and set(precision) == {"fp32"}, f"{name}: labelled fp32 but ran {precision}"
    # Scoring any batch size, and the same accuracy as the PyTorch model.
    assert evaluate(scorer, wl.val, batch_size=7).top1 == pytest.approx(evaluate_torch(wl.model, wl.val).top1, abs=1e-9)
    # Timing: a fixed batch, side by side with the teacher on the same runtime.
    meter = LatencyMeter(runtime, artifact, wl.input_shape, threads=1, batch_size=2, protocol=QUICK)
    assert meter.calibrate(factor=1.0).median_ms > 0
    latency = meter.measure(artifact)
    assert latency.ratio is not None and 0.2 < latency.ratio < 5.0, "the same file timed beside itself"


@pytest.mark.parametrize("name", [n for n in RUNTIMES if "int8" in get_runtime(n).modes(detect_cpu())])
def test_int8_reads_back_int8_and_per_layer_fp32_is_honoured(
    name: str, tiny_workload: Workload, tmp_path: Path
) -> None:
    runtime = get_runtime(name)
    wl = tiny_workload
    kernel = runtime.int8_kernel(detect_cpu())
    quant = QuantPolicy(
        mode="int8", calibration_samples=16, activation_type=kernel.activation_type, reduce_range=kernel.reduce_range
    )
    full = runtime.build(
        wl.model, quant, example_input=wl.example_input(), calibration=wl.train, workdir=tmp_path / "all"
    )
    all_int8 = runtime.runner(full, threads=1).precision()
    assert all_int8.get("int8", 0) >= 2, f"{name}: int8 artifact read back as {all_int8}"
    first = min(prunable_groups(wl.model, wl.example_input(), num_classes=wl.num_classes), key=lambda g: g.name).name
    mixed = runtime.build(
        wl.model,
        dataclasses.replace(quant, fp32_layers=(first,)),
        example_input=wl.example_input(),
        calibration=wl.train,
        workdir=tmp_path / "mixed",
    )
    some_fp32 = runtime.runner(mixed, threads=1).precision()
    assert some_fp32.get("fp32", 0) > all_int8.get("fp32", 0), (
        f"{name}: keeping {first} in fp32 changed nothing ({all_int8} → {some_fp32})"
    )
    assert evaluate(runtime.runner(mixed, threads=1), wl.val).top1 > 0.5


def test_unknown_runtime_lists_the_valid_ones() -> None:
    expected = r"--runtime: expected auto or one of onnxruntime, openvino, torch, got 'tensorrt'"
    with pytest.raises(ConfigError, match=expected):
        get_runtime("tensorrt")


def test_a_runtime_that_is_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OpenVinoRuntime, "installed", classmethod(lambda cls: False))
    with pytest.raises(MissingDependencyError, match=r"pip install 'autocompress\[openvino\]'"):
        get_runtime("openvino")


def test_bf16_is_offered_only_where_the_cpu_runs_it_natively() -> None:
    plain = CpuInfo.from_flags(["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"])
    bf16 = CpuInfo.from_flags(["avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"])
    assert not native_bf16(plain) and native_bf16(bf16)
    for name in ("openvino", "torch"):
        assert "bf16" not in get_runtime(name).modes(plain) and "bf16" in get_runtime(name).modes(bf16), name
    assert "bf16" not in get_runtime("onnxruntime").modes(bf16), "the CPU execution provider has no bf16 convolutions"


def test_torch_bf16_program_runs_bf16_takes_float32_and_keeps_the_caller_model_fp32(
    tiny_workload: Workload, tmp_path: Path
) -> None:
    # Built directly (the runtime offers bf16 only on CPUs with native bf16; PyTorch emulates it elsewhere, so the
    # program's contract holds on any CPU): float32 in, float32 logits out, every compute layer read back as bf16.
    runtime = get_runtime("torch")
    wl = tiny_workload
    artifact = runtime.build(
        wl.model, QuantPolicy(mode="bf16"), example_input=wl.example_input(), calibration=wl.train, workdir=tmp_path
    )
    assert all(p.dtype == torch.float32 for p in wl.model.parameters()), "bf16 must convert a copy, not the student"
    runner = runtime.runner(artifact, threads=1)
    precision = runner.precision()
    assert set(precision) == {"bf16"} and precision["bf16"] >= 2, precision
    images = torch.stack([wl.val[i][0] for i in range(8)])
    with runner.session():
        got = runner.run(images.numpy())
    assert got.dtype == np.float32
    with torch.no_grad():
        expected = wl.model.eval()(images).numpy()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.75, "bf16 rounding may flip a close call, not most"
    fp32 = runtime.runner(
        runtime.build(
            wl.model,
            QuantPolicy(mode="none"),
            example_input=wl.example_input(),
            calibration=wl.train,
            workdir=tmp_path / "fp32",
        ),
        threads=1,
    )
    assert abs(evaluate(runner, wl.val).top1 - evaluate(fp32, wl.val).top1) <= 0.1


def test_the_space_keeps_only_what_the_runtime_builds() -> None:
    space = load_space("default")
    torch_rt: Runtime = get_runtime("torch")
    bf16 = native_bf16(detect_cpu())  # PyTorch offers bf16 only where this CPU runs it natively
    fp32_only = space.for_runtime(torch_rt.modes(detect_cpu()), torch_rt.kernels(), runtime="torch")
    assert fp32_only.quant_modes == (("none", "bf16") if bf16 else ("none",))
    assert [label for label, _ in fp32_only.baselines([])] == ["fp32 (uncompressed)", *(["bf16 only"] if bf16 else [])]
    onnx = space.for_runtime(get_runtime("onnxruntime").modes(detect_cpu()), None, runtime="onnxruntime")
    assert onnx.quant_modes == ("none", "int8")  # ONNX Runtime has no bf16 CPU kernels: dropped on every CPU
    int8_only = dataclasses.replace(space, quant_modes=("int8",))
    with pytest.raises(ConfigError, match=r"nothing --runtime torch can build"):
        int8_only.for_runtime(torch_rt.modes(detect_cpu()), torch_rt.kernels(), runtime="torch")


@pytest.mark.parametrize(
    ("node", "module"),
    [
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/fc/Gemm", "fc"),
        ("/stem/stem.0/Conv", "stem.0"),
        ("Conv_3", ""),
        ("/layer2/layer2.0/shortcut/shortcut.0/Conv", "layer2.0.shortcut.0"),
    ],
)
def test_onnx_node_names_map_back_to_modules(node: str, module: str) -> None:
    assert onnx_node_module(node) == module


def test_every_exported_compute_node_maps_to_a_module_of_the_model(demo_width_model, tmp_path: Path) -> None:
    # The demo network (residual blocks with an nn.Sequential shortcut): every Conv/Gemm of the exported graph must
    # name a real module, or a layer asked to stay fp32 (per-layer int8, layer refinement) silently runs int8.
    import onnx

    from autocompress.runtimes import export_onnx

    path = export_onnx(demo_width_model.eval(), torch.zeros(1, 1, 32, 32), tmp_path / "m.onnx")
    modules = dict(demo_width_model.named_modules())
    nodes = [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert any("shortcut" in n for n in nodes), nodes
    assert all(onnx_node_module(n) in modules for n in nodes), [(n, onnx_node_module(n)) for n in nodes]


def test_a_runtime_subclass_is_a_runtime_option_at_once(tmp_path: Path) -> None:
    from autocompress.config import RUNTIMES as CHOICES
    from autocompress.config import SearchConfig

    class _ToyRuntime(Runtime):
        """What a contributor's runtime module defines: a Runtime subclass (it registers itself by name)."""

        name = "toy-test"
        package = "torch"
        distribution = "torch"
        export_names = ("model.toy",)

        def build(self, model, quant, *, example_input, calibration, workdir, seed=0):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def runner(self, artifact, *, threads, batch_size=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    try:
        assert "toy-test" in list_runtimes() and "toy-test" in CHOICES, "registered by subclassing"
        assert isinstance(get_runtime("toy-test"), _ToyRuntime)
        assert SearchConfig(runtime="toy-test", output=tmp_path).runtime == "toy-test"
        from autocompress.report.export import export_files

        assert "model.toy" in export_files(), "its export file names come from the runtime"
    finally:
        Runtime.registry.pop("toy-test", None)
    assert "toy-test" not in list_runtimes()

"""``--runtime auto``: the runtime as a searched dimension (space, policy, latency model, baselines, probe params).

Logic only: no test here assumes a runtime is faster, or that OpenVINO is installed (fake offers stand in for the
runtimes; the end-to-end run on what is installed is in tests/test_e2e_runtimes.py).
"""

from __future__ import annotations

import optuna
import pytest

from autocompress.compress.prune import PrunableGroup
from autocompress.errors import ConfigError
from autocompress.hardware.cpu import Int8Kernel
from autocompress.measure.model import LatencyModel, precision_key
from autocompress.policy import Policy, QuantPolicy
from autocompress.runtimes import AUTO, list_runtimes, resolve_runtimes
from autocompress.study.space import RUNTIME_PARAM, RuntimeOffer, SearchSpace, load_space

GROUPS = [PrunableGroup("stem.0", 8, ("stem.0",)), PrunableGroup("layer1.0.conv1", 8, ("layer1.0.conv1",))]
REDUCE = Int8Kernel("uint8", "int8", True, "no VNNI")
OFFERS = [
    RuntimeOffer("onnxruntime", ("none", "int8"), ("u8s8", "u8s8_reduce", "s8s8"), REDUCE),
    RuntimeOffer("openvino", ("none", "int8", "bf16")),
    RuntimeOffer("torch", ("none", "bf16")),
]


def _auto(space: SearchSpace | None = None, offers: list[RuntimeOffer] = OFFERS) -> SearchSpace:
    return (space or load_space("default")).for_runtimes(offers)[0]


def test_resolve_runtimes_auto_is_every_installed_runtime_default_first() -> None:
    runtimes, missing = resolve_runtimes(AUTO)
    names = [rt.name for rt in runtimes]
    assert names[0] == "onnxruntime" and sorted(names) == sorted(list_runtimes())
    assert set(missing) == set(list_runtimes(installed_only=False)) - set(names)
    assert [rt.name for rt in resolve_runtimes("torch")[0]] == ["torch"] and resolve_runtimes("torch")[1] == []


def test_unknown_runtime_names_auto_among_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"--runtime: expected auto or one of .*onnxruntime"):
        resolve_runtimes("tensorrt")


def test_for_runtimes_keeps_each_runtimes_own_modes_and_drops_one_with_none_of_the_spaces() -> None:
    space = _auto()
    assert [o.name for o in space.offers] == ["onnxruntime", "openvino", "torch"]
    assert space.offer("torch").modes == ("none", "bf16")
    assert space.offer("onnxruntime").modes == ("none", "int8")
    assert space.offer("openvino").kernels == ("auto",), "no explicit kernel choice on OpenVINO"
    int8_only = SearchSpace.from_dict({"quantize": {"mode": ["int8"]}})
    narrowed, dropped = int8_only.for_runtimes(OFFERS)
    assert [o.name for o in narrowed.offers] == ["onnxruntime", "openvino"]
    assert dropped == ["torch builds only none, bf16 here"]
    with pytest.raises(ConfigError, match=r"--runtime auto: no installed runtime can build"):
        SearchSpace.from_dict({"quantize": {"mode": ["int8_dynamic"]}}).for_runtimes(OFFERS[1:])


def test_deployments_list_every_runtime_and_precision_pair() -> None:
    assert _auto().deployments() == [
        ("onnxruntime", "none"),
        ("onnxruntime", "int8"),
        ("openvino", "none"),
        ("openvino", "int8"),
        ("openvino", "bf16"),
        ("torch", "none"),
        ("torch", "bf16"),
    ]
    assert load_space("default").deployments()[0] == (None, "none"), "one runtime: no runtime in the pair"


def test_sampled_policies_carry_their_runtime_and_only_its_modes() -> None:
    space = _auto()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3))
    seen: dict[str, set[str]] = {}
    for _ in range(60):
        trial = study.ask()
        policy = space.suggest(trial, GROUPS, train_size=1078)
        assert policy.runtime == trial.params[RUNTIME_PARAM]
        assert trial.params[f"quant.mode.{policy.runtime}"] == policy.quant.mode
        assert "quant.mode" not in trial.params, "each runtime has its own precision parameter"
        seen.setdefault(policy.runtime, set()).add(policy.quant.mode)
        if policy.runtime == "onnxruntime" and policy.quant.mode == "int8":
            assert policy.quant.reduce_range, "ONNX Runtime's auto kernel on this (fake) CPU reduces the range"
        study.tell(trial, [0.9, 1.0])
    assert seen == {"onnxruntime": {"none", "int8"}, "openvino": {"none", "int8", "bf16"}, "torch": {"none", "bf16"}}


def test_quant_params_and_fixed_policy_deploy_on_the_named_runtime() -> None:
    space = _auto()
    params = space.quant_params("bf16", GROUPS, runtime="openvino")
    assert params == {RUNTIME_PARAM: "openvino", "quant.mode.openvino": "bf16"}
    assert space.quant_params("int8", GROUPS, runtime="torch") == {}, "torch has no int8"
    assert space.quant_params("none")[RUNTIME_PARAM] == "onnxruntime", "default: the first searched runtime"
    policy = space.fixed_policy({**space.uniform_params(GROUPS, 0.5), **params}, GROUPS, train_size=1078)
    assert policy.runtime == "openvino" and policy.quant.mode == "bf16"
    assert policy.prune.mean_ratio == pytest.approx(0.5)


def test_baselines_per_runtime_and_the_uncompressed_fp32_only_on_the_yardsticks() -> None:
    space = _auto()
    labels = [label for label, _ in space.baselines(GROUPS, fp32_runtime="openvino")]
    assert labels == [
        "int8 per-channel only · onnxruntime",
        "uniform 50% prune + KD + int8 · onnxruntime",
        "fp32 (uncompressed) · openvino",
        "int8 per-channel only · openvino",
        "uniform 50% prune + KD + int8 · openvino",
        "bf16 only · openvino",
        "bf16 only · torch",
    ]
    for label, params in space.baselines(GROUPS, fp32_runtime="openvino"):
        policy = space.fixed_policy(params, GROUPS, train_size=1078)
        assert policy.runtime == label.rsplit(" · ", 1)[1]
    one = load_space("default").for_runtime(("none", "int8"), None, runtime="onnxruntime")
    assert [label for label, _ in one.baselines(GROUPS)][0] == "fp32 (uncompressed)", "one runtime: as before"


def test_policy_runtime_round_trips_and_a_one_runtime_policy_json_is_unchanged() -> None:
    policy = Policy(quant=QuantPolicy(mode="bf16"), runtime="openvino")
    assert Policy.from_dict(policy.to_dict()) == policy
    assert policy.describe().endswith("· openvino")
    assert "runtime" not in Policy().to_dict()
    assert Policy.from_dict(Policy().to_dict()).runtime is None


def test_latency_model_keeps_one_curve_per_runtime() -> None:
    assert precision_key(QuantPolicy(mode="none"), "openvino") == "openvino:fp32"
    assert precision_key(QuantPolicy(mode="int8"), "openvino") == "openvino:int8/per_channel/u8s8"
    assert precision_key(QuantPolicy(mode="int8")) == "int8/per_channel/u8s8"
    model = LatencyModel()
    for macs, ort, ov in [(10, 0.20, 0.10), (50, 0.50, 0.25), (100, 0.90, 0.45)]:
        model.add("onnxruntime:fp32", macs, ort)
        model.add("openvino:fp32", macs, ov)
        model.add("openvino:int8/per_channel/u8s8", macs, ov * 1.5)  # int8 slower than fp32 on this runtime
    ort = model.predict("onnxruntime:fp32", 50)
    ov = model.predict("openvino:fp32", 50)
    assert ort is not None and ov is not None and ort.ms == pytest.approx(0.5) and ov.ms == pytest.approx(0.25)
    assert model.predict("torch:fp32", 50) is None, "a runtime with no figure has no curve of its own"
    reason = model.quantized_ruled_out(["none", "int8"], 50, runtime="openvino")
    assert reason is not None and "no faster than fp32" in reason
    assert model.quantized_ruled_out(["none", "int8"], 50, runtime="onnxruntime") is None, "no int8 curve there"


# ---------------------------------------------------------------------------------------------------- end to end
def test_auto_without_openvino_searches_what_is_installed_and_says_so(
    tiny_workload, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autocompress.config import SearchConfig
    from autocompress.hardware.cpu import detect_cpu, machine_fingerprint
    from autocompress.runtimes import OpenVinoRuntime
    from autocompress.study.events import SearchProgress
    from autocompress.study.session import Mode, StudySession

    monkeypatch.setattr(OpenVinoRuntime, "installed", classmethod(lambda cls: False))
    lines: list[str] = []
    config = SearchConfig(runtime=AUTO, output=tmp_path, study_name="no-ov")
    session = StudySession(
        tiny_workload,
        load_space("default"),
        config,
        mode=Mode.LOCAL,
        say=lines.append,
        cpu=detect_cpu(),
        progress=SearchProgress(),
    )
    session.cpu = detect_cpu()
    session.fingerprint = machine_fingerprint(session.cpu)
    session._prepare_space()
    assert [rt.name for rt in session.runtimes] == ["onnxruntime", "torch"]
    assert {o.name for o in session.space.offers} == {"onnxruntime", "torch"}
    # A runtime installed later would change the space: the identity names the searched runtimes, so a resume refuses.
    assert session.identity["runtimes"].startswith("onnxruntime:none/int8 torch:none")
    said = next(line for line in lines if line.startswith("runtime auto:"))
    assert "not installed: openvino" in said and "onnxruntime" in said and "torch" in said, said


def test_auto_study_searches_runtimes_on_one_yardstick_and_exports_the_chosen_runtimes_files(
    tiny_workload, tmp_path
) -> None:
    import json

    from autocompress.config import SearchConfig, parse_budget
    from autocompress.measure.accuracy import evaluate_artifact
    from autocompress.report.export import export_chosen
    from autocompress.runtimes import Artifact, Runtime, get_runtime
    from autocompress.study.session import run_study

    space = SearchSpace.from_dict(
        {
            "prune": {"per": "uniform", "ratio": {"low": 0.0, "high": 0.5, "step": 0.5}},
            "distill": {"steps": {"low": 10, "high": 10}},
            "quantize": {"calibration_samples": 16},
        },
        source="fast",
    )
    config = SearchConfig(
        trials=4,  # the baselines alone span two runtimes: int8 on ONNX Runtime, then on OpenVINO (or the reverse)
        study_name="auto",
        output=tmp_path,
        latency_budget=parse_budget("0.9x"),
        max_accuracy_drop=5.0,
        warmup=3,
        repeats=10,
        latency_window=0.3,
        runtime=AUTO,
    )
    lines: list[str] = []
    result = run_study(tiny_workload, space, config, say=lines.append)
    installed = set(list_runtimes())
    reference = result.reference
    # One yardstick: every installed runtime's fp32 teacher timed, the fastest is the budget's reference.
    assert set(reference.runtime_latencies) == installed
    fastest = min(reference.runtime_latencies, key=lambda n: reference.runtime_latencies[n].median_ms)
    assert reference.runtime == fastest == reference.artifact.runtime
    assert reference.budget_ms == pytest.approx(0.9 * reference.runtime_latency.median_ms)
    assert any("the budget's yardstick is the fastest" in line for line in lines), lines
    # The probe and the trials deploy on several runtimes; each record says its own.
    probed = {p.runtime for p in result.probe.points} if result.probe else set()
    assert probed == installed
    built = [r for r in result.records if r.policy is not None]
    assert all(r.policy.runtime in installed and r.runtime == r.policy.runtime for r in built)
    assert len({r.runtime for r in built}) >= 2, [r.summary for r in built]
    for r in built:
        if r.outcome == "complete":
            assert r.budget_ms == pytest.approx(reference.budget_ms), "one budget in ms whatever the runtime"
            assert r.artifact_in(config.study_dir).runtime == r.runtime
    assert result.choice is not None
    chosen = result.choice.record
    folder = export_chosen(result.choice, workload=tiny_workload, reference=reference, config=config)
    names = set(Runtime.registry[chosen.runtime].export_names)
    assert {p.name for p in folder.iterdir()} == names | {"model.pt2", "policy.json", "metrics.json"}
    assert json.loads((folder / "policy.json").read_text())["runtime"] == chosen.runtime
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["latency"]["runtime"]["runtime"] == fastest
    shipped_quant = chosen.policy.quant  # type: ignore[union-attr]
    shipped = Artifact(folder / Runtime.registry[chosen.runtime].export_names[0], shipped_quant, runtime=chosen.runtime)
    top1 = evaluate_artifact(get_runtime(chosen.runtime), shipped, tiny_workload.test, threads=1).top1
    assert top1 == pytest.approx(metrics["accuracy"]["test_top1"], abs=1e-9), "the figure is the shipped file's"

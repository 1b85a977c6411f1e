"""The request queue between a build host and the measure worker on the target (:mod:`autocompress.scale.remote`), on a
real SQLite storage: requests are answered once, a missing or altered artifact and an unknown request fail with a
reason, a request nobody serves times out with the command to start, and the auxiliary study stays out of listings."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from autocompress.measure.latency import measure_callable
from autocompress.policy import QuantPolicy
from autocompress.runtimes import Artifact
from autocompress.scale.remote import (
    MeasureError,
    MeasureQueue,
    RemoteMeter,
    artifact_from_request,
    artifact_request,
    serve,
)
from autocompress.scale.storage import is_lock


@pytest.fixture()
def study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(
        study_name="s", storage=f"sqlite:///{tmp_path}/db.sqlite", directions=["maximize", "minimize"]
    )


def _artifact(tmp_path: Path, content: bytes = b"onnx bytes") -> Artifact:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    return Artifact(path, QuantPolicy(mode="int8", fp32_layers=("layer1",)), runtime="onnxruntime")


def test_an_artifact_travels_as_paths_hashes_and_its_precision_plan(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    back = artifact_from_request(artifact_request(artifact))
    assert back.path == artifact.path.resolve() and back.quant == artifact.quant and back.runtime == "onnxruntime"


def test_an_artifact_the_target_cannot_see_or_that_changed_is_refused(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    request = artifact_request(artifact)
    artifact.path.write_bytes(b"another file")
    with pytest.raises(MeasureError, match="differs from the file the build host wrote"):
        artifact_from_request(request)
    artifact.path.unlink()
    with pytest.raises(MeasureError, match="same path"):
        artifact_from_request(request)


def test_the_measure_worker_answers_each_request_once_and_a_bad_one_with_its_reason(
    study: optuna.Study, tmp_path: Path
) -> None:
    artifact = _artifact(tmp_path)
    meter = RemoteMeter(study, timeout_s=60)
    answers: dict[str, object] = {}

    def ask() -> None:
        answers["latency"] = meter.measure(artifact)
        answers["score"] = meter.score(artifact)
        with pytest.raises(MeasureError, match="unknown request kind"):
            meter.queue.ask("flops", {"artifact": artifact_request(artifact)}, timeout_s=60)
        answers["done"] = True

    measured: list[Artifact] = []

    def measure(a: Artifact):  # a real figure of a trivial callable: the protocol, not a made-up number
        measured.append(a)
        return measure_callable(lambda: sum(range(100)), warmup=3, repeats=10, threads=1, batch_size=1)

    client = threading.Thread(target=ask)
    client.start()
    answered = serve(
        MeasureQueue(study),
        measure=measure,
        score=lambda a: (0.75, {"int8": 3, "fp32": 1}),
        anchor=lambda: 1.5,
        done=lambda: "done" in answers,
        say=lambda _: None,
    )
    client.join(timeout=30)
    assert answered == 2 and len(measured) == 1 and measured[0].quant == artifact.quant
    latency = answers["latency"]
    assert latency.low <= latency.median_ms <= latency.high  # type: ignore[attr-defined]
    assert answers["score"] == (0.75, {"int8": 3, "fp32": 1})
    assert meter.tally.figures == 1 and meter.anchor_ms == 1.5 and meter.measured_by is not None
    queue = MeasureQueue(study)
    assert queue.pending() == [] and is_lock(queue.name)
    states = [t.state for t in optuna.load_study(study_name=queue.name, storage=study._storage).trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2 and states.count(optuna.trial.TrialState.FAIL) == 1


def test_a_request_nobody_serves_times_out_naming_the_measure_worker(study: optuna.Study, tmp_path: Path) -> None:
    meter = RemoteMeter(study, timeout_s=0.5)
    with pytest.raises(MeasureError, match="measure-worker"):
        meter.measure(_artifact(tmp_path))
    assert MeasureQueue(study).pending() == [], "a request given up on is not measured later"

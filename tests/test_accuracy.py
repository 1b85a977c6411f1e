"""Scoring apart from timing: accuracy uses every core, and the predictions are the ones one thread gives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.hardware.cpu import detect_cpu
from autocompress.measure.accuracy import evaluate, scoring_threads
from autocompress.policy import QuantPolicy
from autocompress.runtimes import get_runtime, list_runtimes
from autocompress.sources.workload import Workload


def test_scoring_threads_are_the_affinity_cores_shared_among_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
    assert scoring_threads() == 16
    assert scoring_threads(workers=4) == 4
    assert scoring_threads(workers=32) == 1, "never zero threads"


def _logits(runtime_name: str, artifact: object, images: np.ndarray, *, threads: int) -> np.ndarray:
    runner = get_runtime(runtime_name).runner(artifact, threads=threads)  # type: ignore[arg-type]
    with runner.session():
        return np.concatenate([runner.run(images[i : i + 16]) for i in range(0, len(images), 16)])


@pytest.mark.parametrize("mode", ["none", "int8"])
@pytest.mark.parametrize("name", list_runtimes())
def test_several_threads_predict_what_one_thread_predicts(
    name: str, mode: str, tiny_workload: Workload, tmp_path: Path
) -> None:
    runtime = get_runtime(name)
    if mode not in runtime.modes(detect_cpu()):
        pytest.skip(f"{name} offers no {mode} on this CPU")
    wl = tiny_workload
    artifact = runtime.build(
        wl.model, QuantPolicy(mode=mode), example_input=wl.example_input(), calibration=wl.train, workdir=tmp_path
    )
    images = torch.stack([wl.val[i][0] for i in range(len(wl.val))]).numpy()
    threads = max(2, scoring_threads())  # several threads even where this machine has one core
    one, many = _logits(name, artifact, images, threads=1), _logits(name, artifact, images, threads=threads)
    assert (one.argmax(1) == many.argmax(1)).all(), f"{name} {mode}: {threads} threads changed a prediction"
    np.testing.assert_allclose(many, one, rtol=1e-4, atol=1e-4, err_msg=f"{name} {mode}: logits differ by threads")
    labels = np.array([wl.val[i][1] for i in range(len(wl.val))])
    scored = evaluate(get_runtime(name).runner(artifact, threads=threads), wl.val)
    assert scored.top1 == pytest.approx(float((one.argmax(1) == labels).mean()), abs=1e-12)

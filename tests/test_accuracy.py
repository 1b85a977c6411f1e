"""Scoring apart from timing: accuracy uses every core, and the predictions are the ones one thread gives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.hardware.cpu import detect_cpu
from autocompress.measure.accuracy import PairedDrop, drop_resolution, evaluate, paired_drop, scoring_threads
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


def test_paired_drop_counts_discordant_images_and_its_interval_covers_the_drop() -> None:
    teacher = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1] * 36, dtype=bool)  # 360 images
    student = teacher.copy()
    student[:4] = False  # 4 images the teacher gets right and the student wrong
    student[4] = True  # and 1 the other way round (the teacher misses images 4 and 5)
    paired = paired_drop(student, teacher)
    assert (paired.worse, paired.better, paired.n) == (4, 1, 360)
    low, high = paired.interval_pt
    assert low < paired.drop_pt < high and paired.drop_pt == pytest.approx(3 / 360 * 100)
    assert low == pytest.approx(-0.60, abs=0.05) and high == pytest.approx(2.27, abs=0.05), (low, high)
    # Identical predictions: drop 0, a symmetric interval that still has width (one image is 0.28 pt).
    same = paired_drop(teacher, teacher)
    assert (
        same.drop_pt == 0 and same.interval_pt[0] == pytest.approx(-same.interval_pt[1]) and same.interval_pt[1] > 0.5
    )
    assert PairedDrop.from_dict(paired.to_dict()) == paired
    with pytest.raises(ValueError, match="same images"):
        paired_drop(student[:10], teacher)
    # More images resolve a limit: the half-width shrinks with n, and the images asked for give half the limit.
    half_small, needed = drop_resolution(360, limit_pt=1.0)
    half_large, _ = drop_resolution(needed, limit_pt=1.0)
    assert half_small > 1.0 and half_large == pytest.approx(0.5, abs=0.05)

"""The teacher's preprocessing checked before the search: real linear classifiers trained on real digit PNGs.

The scenario of the issue: a ``Flatten + Linear(784, 10)`` trained on plain [0, 1] pixels of scikit-learn's digits
(8x8 PNGs, loaded at 28x28) scores far above chance under the default 1-channel 0.5/0.5 normalisation, yet far
below what it scores with ``--normalize none``. Workloads are built through the real ``load_workload`` path
(``imagefolder:`` data, ``module:factory`` model, ``--weights`` state_dict).
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from _data import stacked
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from autocompress.config import SearchConfig
from autocompress.errors import WorkloadError
from autocompress.sources.preprocess_check import (
    MAX_IMAGES,
    NormalizationScore,
    PreprocessCheck,
    check_preprocessing,
    far_better,
    suggest,
    verify_preprocessing,
)
from autocompress.sources.workload import Workload, load_digits_splits, load_workload

MODULE = "preprocess_check_models"
MODELS = """
    import torch
    from torch import nn


    def linear(num_classes: int = 10) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, num_classes))


    def linear_rgb(num_classes: int = 10) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, num_classes))
"""
PER_CLASS = 40  # 400 PNGs: 240 train, 80 val, 80 test


@dataclass(frozen=True)
class Assets:
    home: Path  # holds preprocess_check_models.py
    digits: Path  # 10 class folders of 8x8 grayscale PNGs
    plain: Path  # `linear` trained on plain [0, 1] pixels (--normalize none)
    half: Path  # `linear` trained on 0.5/0.5 pixels (the 1-channel default)
    standardised: Path  # `linear` trained on pixels standardised with the train split's own mean/std
    plain_rgb: Path  # `linear_rgb` trained on plain pixels of the same images as 3 channels
    data_mean: float
    data_std: float


def _train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, path: Path, steps: int = 300) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (64,))
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assets]:
    from autocompress.sources import load_data

    home = tmp_path_factory.mktemp("preprocess_check")
    (home / f"{MODULE}.py").write_text(textwrap.dedent(MODELS))
    sys.path.insert(0, str(home))
    try:
        models = importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(home))
    digits = load_digits()
    root = home / "digits"
    for label in range(10):
        (root / f"d{label}").mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == label][:PER_CLASS]):
            Image.fromarray((image / 16.0 * 255).astype(np.uint8), mode="L").save(root / f"d{label}" / f"{i}.png")
    plain = load_data(f"imagefolder:{root}", input_size=28, normalize="none")
    images, labels = stacked(plain.train)
    mean, std = round(float(images.mean()), 4), round(float(images.std(unbiased=False)), 4)
    _train(models.linear(), images, labels, home / "plain.pt")
    _train(models.linear(), (images - 0.5) / 0.5, labels, home / "half.pt")
    _train(models.linear(), (images - mean) / std, labels, home / "standardised.pt")
    _train(models.linear_rgb(), images.expand(-1, 3, -1, -1), labels, home / "plain_rgb.pt")
    yield Assets(
        home=home,
        digits=root,
        plain=home / "plain.pt",
        half=home / "half.pt",
        standardised=home / "standardised.pt",
        plain_rgb=home / "plain_rgb.pt",
        data_mean=mean,
        data_std=std,
    )
    sys.modules.pop(MODULE, None)


@pytest.fixture()
def in_home(assets: Assets, monkeypatch: pytest.MonkeyPatch) -> Assets:
    """Run from the assets folder (so the model module imports) and undo any sys.path insertion after."""
    monkeypatch.chdir(assets.home)
    monkeypatch.setattr(sys, "path", [str(assets.home), *sys.path])
    return assets


def _workload(a: Assets, weights: Path, *, normalize: str | None = None, rgb: bool = False) -> Workload:
    return load_workload(
        SearchConfig(
            model=f"{MODULE}:{'linear_rgb' if rgb else 'linear'}",
            weights=weights,
            data=f"imagefolder:{a.digits}",
            input_size=28,
            channels=3 if rgb else 1,
            normalize=normalize,
        )
    )


def _scores(check: PreprocessCheck) -> dict[str, float]:
    return {s.label: s.accuracy for s in check.scores}


# ------------------------------------------------------------------------------------------------ the decision


@pytest.mark.parametrize(
    ("candidate", "in_use", "count", "expected"),
    [
        (0.945, 0.155, 200, True),  # the issue: a broken teacher
        (0.95, 0.85, 1000, True),  # a third of the errors came from the inputs
        (0.75, 0.60, 1000, False),  # errors 40 % → 25 %: a better score, not another training normalisation
        (0.80, 0.50, 30, False),  # 30 points, but 3 SE = 35 on 30 images
        (0.80, 0.50, 100, True),
        (0.96, 0.90, 1000, False),  # 6 points
        (0.22, 0.10, 1000, False),  # an untrained model moving between classes
        (0.14, 0.02, 5000, False),  # errors barely move; and 14 % is no classifier with chance 10 %
    ],
)
def test_far_better_rule(candidate: float, in_use: float, count: int, expected: bool) -> None:
    assert far_better(candidate, in_use, count, chance=0.1) is expected, (candidate, in_use, count)


# ------------------------------------------------------------------------------------- the scenario


def test_plain_pixel_teacher_under_the_default_normalisation_is_refused(in_home: Assets) -> None:
    workload = _workload(in_home, in_home.plain)
    assert workload.info["normalize"] == "0.5/0.5"
    check = check_preprocessing(workload)
    scores = _scores(check)
    assert check.ran and check.images == len(workload.val) == 80
    assert set(scores) == {"0.5/0.5", "none", "data mean/std"}, "1-channel data: no imagenet, and 0.5/0.5 once"
    assert check.in_use is not None and check.in_use.label == "0.5/0.5"
    assert scores["none"] >= 0.85, f"on the pixels it was trained on the teacher is good: {scores}"
    assert scores["0.5/0.5"] <= 0.5, f"under 0.5/0.5 it is broken: {scores}"
    assert check.suggested == "none" and check.best is not None and check.best.label == "none"
    with pytest.raises(WorkloadError) as info:
        verify_preprocessing(workload)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"the teacher scores {scores['0.5/0.5']:.1%} val with --normalize 0.5/0.5 (the default "
        f"for 1-channel images) but {scores['none']:.1%} with --normalize none"
    ), message
    assert "pass --normalize none (checked on 80 val images: 0.5/0.5 " in message and "data mean/std " in message


def test_normalize_none_passes_and_records_the_alternatives(in_home: Assets) -> None:
    workload = _workload(in_home, in_home.plain, normalize="none")
    assert verify_preprocessing(workload).scores[0].label == "none", "passes without scoring the alternatives"
    check = verify_preprocessing(workload, every=True)
    scores = _scores(check)
    assert check.ran and check.suggested is None and check.normalize == "none"
    assert check.normalize_source == "given with --normalize"
    assert [s.label for s in check.scores] == ["none", "0.5/0.5", "data mean/std"]
    assert check.best is not None and check.best.label == "none"
    # The alternatives come from the recovered pixels: 0.5/0.5 here scores what the 0.5/0.5 workload scores as is.
    default = check_preprocessing(_workload(in_home, in_home.plain), every=True)
    assert scores["0.5/0.5"] == pytest.approx(_scores(default)["0.5/0.5"], abs=1.5 / check.images)
    assert scores["none"] == pytest.approx(_scores(default)["none"], abs=1.5 / check.images)
    data = next(s for s in check.scores if s.label == "data mean/std")
    assert data.normalize == f"{in_home.data_mean:g}/{in_home.data_std:g}", "the train split's pixels, 4 decimals"
    record = check.to_dict()
    assert json.loads(json.dumps(record)) == record, "goes into study attributes and metrics.json as it is"
    assert record["val_accuracy"] == scores and record["best"] == "none" and record["ran"] is True
    assert PreprocessCheck.from_dict(record).to_dict() == record
    assert check.summary().startswith("checked on 80 val images: none (in use) ")


def test_explicit_wrong_normalize_is_still_refused(in_home: Assets) -> None:
    """An explicit --normalize can be the wrong one: it is checked like the default."""
    with pytest.raises(
        WorkloadError,
        match=r"with --normalize 0\.5/0\.5 \(given with --normalize\) but .* pass "
        r"--normalize none \(checked",
    ):
        verify_preprocessing(_workload(in_home, in_home.plain, normalize="0.5/0.5"))


def test_teacher_trained_under_the_default_passes(in_home: Assets) -> None:
    check = verify_preprocessing(_workload(in_home, in_home.half), every=True)
    scores = _scores(check)
    assert check.suggested is None and check.normalize == "0.5/0.5"
    assert scores["0.5/0.5"] >= 0.85, scores
    assert check.best is not None and scores[check.best.label] - scores["0.5/0.5"] < 0.05, scores


def test_the_data_mean_std_numbers_can_be_passed_back(in_home: Assets) -> None:
    """A teacher trained on standardised pixels, loaded with those numbers: they are in use, and not scored twice."""
    numbers = f"{in_home.data_mean:g}/{in_home.data_std:g}"
    check = verify_preprocessing(_workload(in_home, in_home.standardised, normalize=numbers), every=True)
    assert check.normalize == numbers and check.in_use is not None and check.in_use.accuracy >= 0.85, check.summary()
    assert [s.label for s in check.scores] == [numbers, "none", "0.5/0.5"], check.summary()


def _score(label: str, accuracy: float, *, in_use: bool = False) -> NormalizationScore:
    normalize = "0.3042/0.3293" if label == "data mean/std" else label
    return NormalizationScore(label=label, normalize=normalize, accuracy=accuracy, in_use=in_use)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ((_score("0.5/0.5", 0.2, in_use=True), _score("none", 0.945), _score("data mean/std", 0.95)), "none"),
        ((_score("0.5/0.5", 0.2, in_use=True), _score("none", 0.6), _score("data mean/std", 0.95)), "0.3042/0.3293"),
        ((_score("none", 0.2, in_use=True), _score("0.5/0.5", 0.9), _score("imagenet", 0.95)), "imagenet"),
        ((_score("none", 0.94, in_use=True), _score("0.5/0.5", 0.2), _score("data mean/std", 0.95)), None),
        ((_score("none", 0.94), _score("0.5/0.5", 0.2)), None),  # nothing in use: nothing to compare
    ],
    ids=["named_within_1_point", "data_mean_std_far_ahead", "best_named", "in_use_best", "no_in_use"],
)
def test_suggest_prefers_a_named_normalisation_within_a_point(
    scores: tuple[NormalizationScore, ...], expected: str | None
) -> None:
    assert suggest(scores, 1000, chance=0.1) == expected


def test_rgb_data_also_tries_imagenet(in_home: Assets) -> None:
    workload = _workload(in_home, in_home.plain_rgb, rgb=True)
    assert workload.info["normalize"] == "imagenet"
    check = check_preprocessing(workload)
    assert [s.label for s in check.scores] == ["imagenet", "none", "0.5/0.5", "data mean/std"]
    assert check.suggested == "none", check.summary()
    data = next(s for s in check.scores if s.label == "data mean/std")
    assert "," not in data.normalize, "grayscale copied to 3 channels: one mean and one std"
    with pytest.raises(WorkloadError, match=r"\(the default for 3-channel images\) but .* pass --normalize none"):
        verify_preprocessing(workload)


def test_untrained_models_do_not_trigger_it(in_home: Assets) -> None:
    """Noise is not evidence: random linear models score near chance under every normalisation, unevenly."""
    workload = _workload(in_home, in_home.plain)
    for seed in range(10):
        torch.manual_seed(seed)
        workload.model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
        check = verify_preprocessing(workload)
        assert check.ran and check.suggested is None, check.summary()


def test_val_images_are_capped_stratified(in_home: Assets) -> None:
    check = check_preprocessing(_workload(in_home, in_home.plain), max_images=50)
    assert check.images == 50 and MAX_IMAGES == 1000
    assert check.suggested == "none", "the cap keeps the finding on 50 images"


# ------------------------------------------------------------------------------------ skipped workloads


def _api_workload(info: dict[str, object]) -> Workload:
    data = TensorDataset(torch.rand(20, 1, 8, 8), torch.arange(20) % 2)
    return Workload(
        name="api",
        model=nn.Sequential(nn.Flatten(), nn.Linear(64, 2)),
        train=data,
        val=data,
        test=data,
        input_shape=(1, 8, 8),
        num_classes=2,
        info=info,
    )


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (
            {"data": "digits (sklearn load_digits)", "preprocess": "digits: pixels / 16, ..."},
            "--data digits is standardised with the whole set's own mean and std",
        ),
        (
            {"data": "imagefolder:x", "preprocess": "ImageClassification(crop_size=[224], ...)"},
            "the images are preprocessed by ImageClassification(crop_size=[224], ...) (a preprocess transform",
        ),
        ({"data": "mydata:splits"}, "the data comes ready-made (a dataset function or the Python API)"),
    ],
    ids=["digits", "preprocess_transform", "dataset_function"],
)
def test_workloads_the_tool_does_not_normalise_are_skipped_and_say_why(info: dict[str, object], reason: str) -> None:
    check = verify_preprocessing(_api_workload(info))
    assert not check.ran and check.reason.startswith(reason), check.reason
    assert check.scores == () and check.suggested is None and check.error_message() == ""
    assert check.to_dict()["ran"] is False and check.summary() == f"skipped ({check.reason})"


def _images_seen(model: nn.Module) -> list[int]:
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(int(args[0].shape[0])))
    return seen


def test_a_good_teacher_costs_one_val_pass(tiny_workload: Workload, demo_width_model: nn.Module) -> None:
    """Where no alternative can be 10 points better (in use > 90 %), only the normalisation in use is scored."""
    workload = copy.copy(tiny_workload)
    workload.info = {"normalize": "0.5/0.5", "normalize_source": "the default for 1-channel images"}
    seen = _images_seen(workload.model)
    check = verify_preprocessing(workload)
    assert check.scores[0].accuracy > 0.9, check.summary()
    assert sum(seen) == len(workload.val) and len(check.scores) == 1 and check.note.startswith("alternatives not"), seen
    assert check.summary().endswith("points higher)"), check.summary()
    # An untrained teacher at the demo's size (32x32, width 32, 360 val images): every normalisation, once each.
    train, val, test = load_digits_splits(size=32)
    model = copy.deepcopy(demo_width_model)
    seen = _images_seen(model)
    check = check_preprocessing(
        Workload(
            name="demo-size",
            model=model,
            train=train,
            val=val,
            test=test,
            input_shape=(1, 32, 32),
            num_classes=10,
            info=workload.info,
        )
    )
    assert [s.label for s in check.scores] == ["0.5/0.5", "none", "data mean/std"]
    assert sum(seen) == 3 * len(val) and check.images == len(val), seen  # the cost, counted, not timed (shared CPUs)


# ------------------------------------------------------------------------------------------ through the CLI


# The study's set-up must run the check: a search with the wrong normalisation is refused before anything is
# timed or written, whichever module of the study calls verify_preprocessing.
@pytest.mark.parametrize("allow_low", [False, True], ids=["default", "allow_low_does_not_silence_it"])
def test_cli_refuses_it_with_one_line_naming_the_flag(
    in_home: Assets, tmp_path: Path, allow_low: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from autocompress.cli import main

    out = tmp_path / "results"
    code = main(
        [
            "search",
            "--output",
            str(out),
            "--model",
            f"{MODULE}:linear",
            "--weights",
            str(in_home.plain),
            "--data",
            f"imagefolder:{in_home.digits}",
            "--input-size",
            "28",
            "--repeats",
            "5",
            "--warmup",
            "0",
            "--latency-window",
            "0.2",
            "--trials",
            "1",
            *(["--allow-low-teacher-accuracy"] if allow_low else []),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert err.startswith("autocompress: error: the teacher scores ") and err.count("\n") == 1, err[-2000:]
    assert "with --normalize 0.5/0.5 (the default for 1-channel images)" in err and "pass --normalize none" in err
    assert not out.exists(), "nothing is left under --output"

"""The bad-input catalogue (README, "Bad input"): every case through the real CLI entry point.

Each case must end with exit code 2 and exactly one line on stderr, ``autocompress: error: ...``, naming the problem
and the fix, with no traceback, and must leave nothing under ``--output``. The workloads are tiny on purpose: 8x8 px
digit images and small CNNs from a module written next to them (``--model bad_input_models:digit_cnn``).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
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

from autocompress.cli import main
from autocompress.errors import WorkloadError
from autocompress.sources.workload import Workload, check_teacher_accuracy, low_accuracy_threshold

MODULE = "bad_input_models"
MODELS = """
    import torch
    from torch import nn


    def digit_cnn(num_classes: int = 10) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


    def other_cnn(num_classes: int = 10) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, num_classes))
"""


def write_digits(root: Path, *, classes: range | tuple[int, ...] = range(10), per_class: int = 30) -> Path:
    """Real handwritten digits (scikit-learn, 8x8) as grayscale PNGs in ``root/d<digit>/``."""
    digits = load_digits()
    for label in classes:
        folder = root / f"d{label}"
        folder.mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == label][:per_class]):
            Image.fromarray((image / 16.0 * 255).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    return root


@dataclass(frozen=True)
class Assets:
    """Files shared by the cases (written once per module)."""

    home: Path  # holds bad_input_models.py; the cases run from here
    digits: Path  # 10 classes x 30 images
    trained: Path  # digit_cnn trained on plain ToTensor() pixels in [0, 1] (--normalize none)
    other_arch: Path  # a state_dict of other_cnn
    corrupt: Path  # random bytes
    truncated: Path  # the first half of `trained`


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assets]:
    from autocompress.sources import load_data

    home = tmp_path_factory.mktemp("bad_inputs")
    (home / f"{MODULE}.py").write_text(textwrap.dedent(MODELS))
    sys.path.insert(0, str(home))
    try:
        models = importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(home))
    digits = write_digits(home / "digits")
    # The scenario: a model trained on plain ToTensor() pixels, with no normalisation.
    plain = load_data(f"imagefolder:{digits}", input_size=8, normalize="none")
    model = models.digit_cnn()
    images, labels = stacked(plain.train)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(200):
        idx = torch.randint(0, len(labels), (64,))
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = home / "trained.pt"
    torch.save(model.state_dict(), trained)
    other = home / "other.pt"
    torch.save(models.other_cnn().state_dict(), other)
    corrupt = home / "corrupt.pt"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = home / "truncated.pt"
    data = trained.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    yield Assets(home=home, digits=digits, trained=trained, other_arch=other, corrupt=corrupt, truncated=truncated)
    sys.modules.pop(MODULE, None)


@pytest.fixture()
def in_home(assets: Assets, monkeypatch: pytest.MonkeyPatch) -> Assets:
    """Run from the assets folder (so ``bad_input_models`` imports) and undo the CLI's sys.path insertion after."""
    monkeypatch.chdir(assets.home)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return assets


# Each case: id → (setup(assets, tmp) → CLI arguments after `search --output OUT`, fragments stderr must contain).
Setup = Callable[[Assets, Path], list[str]]
MODEL = ["--model", f"{MODULE}:digit_cnn"]
TINY = ["--input-size", "8", "--repeats", "5", "--warmup", "0", "--latency-window", "0.2"]


def _folder(layout: str) -> Setup:
    def setup(a: Assets, tmp: Path) -> list[str]:
        root = tmp / "folder"
        if layout == "empty":
            root.mkdir()
        elif layout == "one_class":
            write_digits(root, classes=(3,), per_class=6)
        elif layout == "unreadable":
            write_digits(root, classes=(0, 1), per_class=6)
            (root / "d1" / "3.png").write_bytes(b"this is not a PNG")
        return [*MODEL, "--data", f"imagefolder:{root}", *TINY]

    return setup


def _file(name: str, text: str) -> Setup:
    def setup(a: Assets, tmp: Path) -> list[str]:
        (tmp / name).write_text(text)
        return ["--config" if name.endswith("config.yaml") else "--space", str(tmp / name)]

    return setup


def _output_under_a_file(a: Assets, tmp: Path) -> list[str]:
    (tmp / "taken").write_text("a file where the results folder should go\n")
    return ["--output", str(tmp / "taken" / "results")]


def _data(*extra: str, weights: str | None = None, model: list[str] = MODEL) -> Setup:
    def setup(a: Assets, tmp: Path) -> list[str]:
        w = {"trained": a.trained, "other": a.other_arch, "corrupt": a.corrupt, "truncated": a.truncated}
        given = ["--weights", str(w.get(weights, weights))] if weights else []
        return [*model, *given, "--data", f"imagefolder:{a.digits}", *TINY, *extra]

    return setup


def _binary_config(a: Assets, tmp: Path) -> list[str]:
    path = tmp / "config.yaml"
    path.write_bytes("trials: 3\nstudy-name: caf\u00e9\n".encode("latin-1"))  # "é" as one latin-1 byte: not UTF-8
    return ["--config", str(path)]


def _args(*args: str) -> Setup:
    return lambda a, tmp: list(args)


CATALOGUE: dict[str, tuple[Setup, tuple[str, ...]]] = {
    "missing_checkpoint": (
        _args(*MODEL, "--weights", "nowhere.pt"),
        ("--weights: file 'nowhere.pt' does not exist", "give the path of a saved state_dict"),
    ),
    "corrupt_checkpoint": (_data(weights="corrupt"), ("not a readable PyTorch checkpoint", "written by torch.save")),
    "truncated_checkpoint": (
        _data(weights="truncated"),
        ("not a readable PyTorch checkpoint", "truncated or damaged copy", "copy or save it again"),
    ),
    "checkpoint_of_another_architecture": (
        _data(weights="other"),
        (
            "does not fit --model bad_input_models:digit_cnn",
            "keys missing",
            "check that --model builds the architecture the weights were trained with",
        ),
    ),
    "wrong_class_count": (
        _data("--num-classes", "5"),
        ("model outputs 5 classes but the data has 10", "pass --num-classes 10"),
    ),
    "unknown_model_name": (
        _data(weights="trained", model=["--model", "torchvision:resnet1"]),
        ("no torchvision classification model named 'resnet1'", "close matches: resnet18"),
    ),
    "unknown_factory": (
        _args("--model", f"{MODULE}:digit_cnm", "--data", "imagefolder:digits", *TINY),
        (f"module '{MODULE}' has no attribute 'digit_cnm'", "close matches: digit_cnn"),
    ),
    "unknown_model_spec": (
        _args("--model", "mystery"),
        ("--model mystery : unknown model spec; expected one of demo, torchvision:NAME, package.module:factory",),
    ),
    "torchvision_model_without_weights": (
        _args("--model", "torchvision:resnet18"),
        ("has random weights without --weights", "pass --weights PATH"),
    ),
    "demo_model_with_other_data": (
        _args("--model", "demo", "--data", "imagefolder:digits"),
        ("--model demo is trained on digits", "--model package.module:factory"),
    ),
    "unknown_data_spec": (
        _args(*MODEL, "--data", "cifar"),
        ("--data cifar : unknown data spec; expected one of digits, imagefolder:PATH",),
    ),
    "missing_image_folder": (
        _args(*MODEL, "--data", "imagefolder:nowhere"),
        ("no such folder 'nowhere'", "pass imagefolder:PATH with PATH/CLASS/IMAGE.png files"),
    ),
    "unknown_torchvision_dataset": (
        _args(*MODEL, "--data", "torchvision:CIFAR11:data"),
        ("no torchvision dataset named 'CIFAR11'", "close matches: CIFAR10"),
    ),
    "unknown_space": (_args("--space", "nope"), ("no search space named 'nope'", "give a path to a .yaml file")),
    "unknown_sampler": (
        _args("--sampler", "annealing"),
        ("argument --sampler: invalid choice: 'annealing'", "choose from", "--help"),
    ),
    "unknown_prefer": (
        _args("--prefer", "fast"),
        ("argument --prefer: invalid choice: 'fast'", "choose from 'accuracy', 'latency'", "--help"),
    ),
    "unknown_option": (_args("--trails", "3"), ("unrecognized arguments: --trails 3", "--help")),
    "empty_image_folder": (_folder("empty"), ("no class subfolders in", "CLASS_NAME/IMAGE.png")),
    "one_class_image_folder": (_folder("one_class"), ("found one class folder (d3)", "at least 2 classes")),
    "unreadable_image_file": (_folder("unreadable"), ("cannot read image", "3.png", "remove or replace the file")),
    "malformed_yaml_config": (_file("config.yaml", "model: [demo\ntrials: 3\n"), ("not valid YAML",)),
    "config_not_utf8": (_binary_config, ("not UTF-8 text", "save it as UTF-8 YAML")),
    "output_folder_cannot_be_created": (
        _args("--output", "/proc/autocompress-results"),
        ("--output '/proc/autocompress-results' cannot be created in '/proc'", "pass another --output"),
    ),
    "unknown_config_key": (
        _file("config.yaml", "trails: 3\n"),
        ("unknown key 'trails'", "valid keys are the search options"),
    ),
    "config_value_of_wrong_type": (_file("config.yaml", "trials: many\n"), ("trials: expected int, got 'many'",)),
    "accuracy_drop_out_of_range": (
        _args("--max-accuracy-drop", "150"),
        ("--max-accuracy-drop is in percentage points and must lie in [0, 100], got 150.0",),
    ),
    "space_prune_ratio_out_of_range": (
        _file("space.yaml", "prune:\n  ratio: {low: 0.2, high: 1.2}\n"),
        ("prune.ratio must lie in [0, 1)", "high=1.2"),
    ),
    "unparsable_latency_budget": (
        _args("--latency-budget", "fast"),
        ("--latency-budget: expected milliseconds like 2.5 or a fraction of the teacher like 0.5x, got 'fast'",),
    ),
    "negative_latency_budget": (_args("--latency-budget", "-1"), ("--latency-budget must be positive, got '-1'",)),
    "zero_latency_budget": (_args("--latency-budget", "0ms"), ("--latency-budget must be positive, got '0ms'",)),
    "storage_url_without_scheme": (
        _args("--storage", "results/db.sqlite"),
        ("--storage must be an SQLAlchemy URL such as sqlite:///path/study.db",),
    ),
    "storage_unknown_database": (
        _args("--storage", "nosuchdb://host/x"),
        ("SQLAlchemy knows no database 'nosuchdb'", "expected e.g. sqlite:///"),
    ),
    "storage_sqlite_folder_missing": (
        _args("--storage", "sqlite:////nonexistent-dir/x/study.db"),
        ("folder /nonexistent-dir/x does not exist", "create it or drop --storage"),
    ),
    # Without a PostgreSQL driver this is the missing driver with its pip install; with one, the refused connection.
    "storage_unreachable": (
        _args("--storage", "postgresql://nobody:secret@127.0.0.1:1/x"),
        ("postgresql://nobody:***@127.0.0.1:1/x",),
    ),
    "bad_study_name": (_args("--study-name", "../x"), ("--study-name must be letters, digits", "it names a folder")),
    "output_folder_not_writable": (_output_under_a_file, ("is a file, not a folder", "pass another --output")),
    "normalize_malformed": (
        _args("--normalize", "0.5,0.5,0.5"),
        ("--normalize: expected imagenet, none, or MEAN/STD", "e.g. 0.5/0.25"),
    ),
    "normalize_in_0_255_units": (_args("--normalize", "127.5/127.5"), ("divide 0..255 values by 255",)),
    "normalize_channels_mismatch": (
        _data("--normalize", "imagenet"),
        ("--normalize imagenet has 3 per-channel values but the data has 1 channel", "pass --channels 3"),
    ),
    "normalize_with_digits_data": (
        _args("--normalize", "none"),
        ("--data digits is standardised by its own mean/std",),
    ),
    "threads_zero": (_args("--threads", "0"), ("--threads must be at least 1, got 0",)),
    # No CUDA here (CI): "torch sees no CUDA device"; with GPUs, device 99 is not among them. Both name --device cpu.
    "device_cuda_not_present": (_args("--device", "cuda:99"), ("--device cuda:99:", "--device cpu")),
    "device_malformed": (_args("--device", "gpu"), ("--device must be cpu | cuda | cuda:N | auto, got 'gpu'",)),
    "workers_zero": (_args("--workers", "0"), ("--workers must lie in [1, 64], got 0",)),
    "trials_zero": (_args("--trials", "0"), ("--trials must be at least 1, got 0",)),
    "teacher_at_chance": (
        _data(weights="trained"),
        (
            "the teacher scores",
            "val with --normalize 0.5/0.5 (the default for 1-channel images) but",
            "pass --normalize none (checked on",
        ),
    ),
}


def _folder_as(option: str) -> Setup:
    def setup(a: Assets, tmp: Path) -> list[str]:
        (tmp / "a_folder").mkdir()
        return [option, str(tmp / "a_folder")]

    return setup


def _study_folder_is_a_file(a: Assets, tmp: Path) -> list[str]:
    (tmp / "results").mkdir()
    (tmp / "results" / "mine").write_text("a file where the study folder should go\n")
    return ["--study-name", "mine"]


# Inputs that used to be accepted silently (and lose work) or refused with a message naming the wrong problem: the
# same contract as the catalogue. They join CATALOGUE once the README's "Bad input" table lists them.
VALIDATION: dict[str, tuple[Setup, tuple[str, ...]]] = {
    **{
        f"storage_in_memory[{url}]": (
            _args("--storage", url),
            (
                f"--storage {url}: an in-memory SQLite database keeps nothing",
                "no resume",
                "give a file path such as sqlite:///results/study.db, or omit --storage",
            ),
        )
        for url in (
            "sqlite:///",
            "sqlite://",
            "sqlite:///:memory:",
            "sqlite+pysqlite:///:memory:",
            "sqlite:///file::memory:?cache=shared",
        )
    },
    "config_duplicate_key": (
        _file("config.yaml", "trials: 3\nseed: 1\ntrials: 50\n"),
        ("config.yaml: key 'trials' is given twice (lines 1 and 3); keep one of them",),
    ),
    "config_same_option_spelled_twice": (
        _file("config.yaml", "study-name: a\nstudy_name: b\n"),
        ("'study-name' and 'study_name' are the same option; keep one of them",),
    ),
    "space_duplicate_key": (
        _file("space.yaml", "prune:\n  per: uniform\n  per: group\n"),
        ("space.yaml: key 'per' is given twice (lines 2 and 3)",),
    ),
    "config_is_a_folder": (_folder_as("--config"), ("a_folder' is a folder; a YAML file is expected",)),
    "weights_is_a_folder": (
        _folder_as("--weights"),
        ("a_folder' is a folder; a file is expected", "state_dict or checkpoint (.pt) inside it"),
    ),
    "latency_budget_inf": (_args("--latency-budget", "inf"), ("--latency-budget must be a finite number", "got 'inf'")),
    "latency_budget_nan_x": (
        _args("--latency-budget", "nanx"),
        ("--latency-budget must be a finite number", "got 'nanx'"),
    ),
    "study_name_too_long": (
        _args("--study-name", "a" * 300),
        ("--study-name is 300 characters long", "at most 100", "pass a shorter name"),
    ),
    "study_folder_is_a_file": (_study_folder_is_a_file, ("mine' is a file, not a folder", "pass another --output")),
    "num_classes_below_limit": (_args("--num-classes", "1"), ("--num-classes must be at least 2, got 1",)),
    "input_size_below_limit": (_args("--input-size", "7"), ("--input-size must be at least 8 pixels, got 7",)),
    "max_samples_below_limit": (_args("--max-samples", "9"), ("--max-samples must be at least 10, got 9",)),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE) + sorted(VALIDATION))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, in_home: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, fragments = CATALOGUE[case] if case in CATALOGUE else VALIDATION[case]
    out = tmp_path / "results"
    args = setup(in_home, tmp_path)
    code = main(["search", "--output", str(out), *args])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, f"{case}: exit code {code}\n{err[-2000:]}"
    assert err.startswith("autocompress: error: ") and err.count("\n") == 1, f"{case}: not one line:\n{err[-2000:]}"
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{case}: {fragment!r} missing from {err!r}"
    leftovers = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    if case == "study_folder_is_a_file":  # --output existed before: only the file the case put there is in it
        assert leftovers == ["mine"], f"{case}: left {leftovers} under --output"
        return
    assert not out.exists(), f"{case}: left {leftovers or 'an empty folder'} under --output"


def test_limits_are_one_rule_for_the_cli_and_the_python_api(tmp_path: Path) -> None:
    """The least --num-classes, --input-size and --max-samples are the same numbers in SearchConfig and in
    sources.load_model / load_data (one constant each in autocompress.config): just under each, both refuse; at it,
    SearchConfig accepts."""
    from autocompress.config import MIN_CLASSES, MIN_INPUT_SIZE, MIN_MAX_SAMPLES, SearchConfig
    from autocompress.errors import ConfigError
    from autocompress.sources import load_data, load_model

    assert (MIN_CLASSES, MIN_INPUT_SIZE, MIN_MAX_SAMPLES) == (2, 8, 10)
    out = tmp_path / "results"
    for field, least in (
        ("num_classes", MIN_CLASSES),
        ("input_size", MIN_INPUT_SIZE),
        ("max_samples", MIN_MAX_SAMPLES),
    ):
        with pytest.raises(ConfigError, match=f"at least {least}"):
            SearchConfig(output=out, **{field: least - 1})
        SearchConfig(output=out, **{field: least})
    with pytest.raises(WorkloadError, match=f"--num-classes {MIN_CLASSES - 1} : expected at least {MIN_CLASSES}"):
        load_model("torchvision:resnet18", num_classes=MIN_CLASSES - 1)
    folder = write_digits(tmp_path / "digits", classes=(0, 1), per_class=3)
    with pytest.raises(WorkloadError, match=f"--input-size {MIN_INPUT_SIZE - 1} : expected at least {MIN_INPUT_SIZE}"):
        load_data(f"imagefolder:{folder}", input_size=MIN_INPUT_SIZE - 1)
    with pytest.raises(
        WorkloadError, match=f"--max-samples {MIN_MAX_SAMPLES - 1} : expected a cap of at least {MIN_MAX_SAMPLES}"
    ):
        load_data(f"imagefolder:{folder}", input_size=8, max_samples=MIN_MAX_SAMPLES - 1)
    assert not out.exists()


def test_a_file_storage_url_and_unique_config_keys_still_pass(tmp_path: Path) -> None:
    """What the new refusals must not catch: SQLite files (relative, absolute, with a driver), other databases, and a
    config whose nested mappings reuse a key name at different levels."""
    from autocompress.config import check_storage_url, read_yaml

    for url in (
        "sqlite:///results/x.db",
        f"sqlite:///{tmp_path}/x.db",
        "sqlite+pysqlite:///x.db",
        "sqlite:///memory.db",
        "postgresql://u@h/db",
    ):
        check_storage_url(url)
    path = tmp_path / "space.yaml"
    path.write_text("prune:\n  ratio: {low: 0.1, high: 0.5}\ndistill:\n  ratio: 2\n  epochs: {low: 1, high: 2}\n")
    assert read_yaml(path, option="--space") == {
        "prune": {"ratio": {"low": 0.1, "high": 0.5}},
        "distill": {"ratio": 2, "epochs": {"low": 1, "high": 2}},
    }


def test_catalogue_has_every_case_the_readme_lists(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    section = readme.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert listed == set(CATALOGUE), f"README only: {listed - set(CATALOGUE)}; tests only: {set(CATALOGUE) - listed}"
    assert len(CATALOGUE) >= 20


def test_unreachable_database_server_is_one_line(
    in_home: Assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a driver installed, a refused connection surfaces as SQLAlchemy's OperationalError.

    The error is one line, without the password.
    """
    import optuna
    import sqlalchemy.exc

    def refuse(url: str, **kwargs: object) -> None:
        raise sqlalchemy.exc.OperationalError(
            "SELECT 1",
            {},
            ConnectionRefusedError(
                'connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs the server running?'
            ),
        )

    monkeypatch.setattr(optuna.storages, "RDBStorage", refuse)
    out = tmp_path / "results"
    code = main(["search", "--output", str(out), "--storage", "postgresql+psycopg2://me:secret@127.0.0.1:1/x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err == (
        "autocompress: error: --storage postgresql+psycopg2://me:***@127.0.0.1:1/x: cannot use the database "
        '(OperationalError: connection to server at "127.0.0.1", port 1 failed: Connection refused); check '
        "that the server is running and reachable and that user, host, port and database in the URL are "
        "right, or drop --storage to use SQLite in --output\n"
    )
    assert not out.exists()


# ------------------------------------------------------------------------------------ the teacher check (item 1)


def _workload(labels: list[int], num_classes: int, info: dict[str, object] | None = None) -> Workload:
    y = torch.tensor(labels)
    data = TensorDataset(torch.zeros(len(labels), 1, 4, 4), y)
    return Workload(
        name="t",
        model=nn.Identity(),
        train=data,
        val=data,
        test=data,
        input_shape=(1, 4, 4),
        num_classes=num_classes,
        info=info or {},
    )


@pytest.mark.parametrize(
    ("chance", "count", "expected"),
    [
        (0.1, 360, 0.15),  # 10 balanced classes: 1.5 / num_classes
        (0.5, 100, 0.60),  # 2 balanced classes: capped at chance + 0.1, a weak real model passes
        (0.95, 1000, 0.975),  # 95 % majority: half the room above chance
        (0.001, 5000, 0.001 + 2 * (0.001 * 0.999 / 5000) ** 0.5),  # 1000 classes: 2 standard errors of a guesser
    ],
)
def test_low_accuracy_threshold(chance: float, count: int, expected: float) -> None:
    assert low_accuracy_threshold(chance, count) == pytest.approx(expected, abs=1e-9)


def test_check_teacher_accuracy_uses_the_majority_class_and_names_the_preprocessing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 3 classes, 60 % of val in class 0: always answering 0 scores 60 %, so 62 % is no evidence of a trained model.
    skewed = _workload(
        [0] * 60 + [1] * 20 + [2] * 20,
        3,
        {
            "normalize": "imagenet",
            "normalize_source": "the default for 3-channel images",
            "preprocess": "default: resize shorter side to 8, centre crop 8x8, scale to [0, 1], imagenet mean/std",
        },
    )
    with pytest.raises(WorkloadError) as info:
        check_teacher_accuracy(0.62, skewed, allow_low=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "the teacher's val accuracy is 62.0%, near chance (3 classes; always guessing the most "
        "frequent one scores 60.0% on the 100 val images, a trained model should reach at least 70.0%)"
    )
    assert "--normalize imagenet (the default for 3-channel images; preprocessing: resize shorter side to 8" in message
    assert message.endswith("or pass --allow-low-teacher-accuracy to search anyway")
    check_teacher_accuracy(0.71, skewed, allow_low=False)  # above the line: no error
    with caplog.at_level(logging.WARNING, logger="autocompress.sources.workload"):
        check_teacher_accuracy(0.30, skewed, allow_low=True)
    assert "searching anyway (--allow-low-teacher-accuracy)" in caplog.text
    api = _workload([0, 1] * 50, 2)  # no normalize in info (Python API datasets)
    with pytest.raises(
        WorkloadError,
        match=r"preprocessed unlike the model's training data \(preprocessing: as the "
        r"datasets return the images\)",
    ):
        check_teacher_accuracy(0.52, api, allow_low=False)


def test_teacher_trained_on_plain_pixels_passes_with_normalize_none(
    in_home: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's scenario, end to end: default normalisation is refused (catalogue), ``--normalize none`` searches."""
    out = tmp_path / "results"
    code = main(
        [
            "search",
            "--output",
            str(out),
            *MODEL,
            "--weights",
            str(in_home.trained),
            "--data",
            f"imagefolder:{in_home.digits}",
            *TINY,
            "--normalize",
            "none",
            "--trials",
            "1",
            "--space",
            "int8_only",
            "--latency-budget",
            "1000ms",
            "--max-accuracy-drop",
            "100",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    metrics = json.loads((out / "demo" / "chosen" / "metrics.json").read_text())
    assert (
        metrics["workload"]["normalize"] == "none"
        and metrics["workload"]["normalize_source"] == "given with --normalize"
    )
    teacher = metrics["accuracy"]["teacher_test_top1"]
    assert teacher > 0.5, f"on the pixels it was trained on, the teacher is far above the 10 % chance: {teacher:.2%}"


@pytest.mark.parametrize("extra", [["--build-only"], ["--workers", "2"]])
def test_measure_worker_with_build_host_options_is_one_line(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    code = main(["measure-worker", "--output", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--build-only and --workers are for build hosts" in err, err
    assert not out.exists()

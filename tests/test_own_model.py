"""Bring-your-own model and data through the real CLI and the Python API (issue: own models)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from autocompress.cli import main

TINY_SPACE = textwrap.dedent("""\
    prune: {per: stage, ratio: {low: 0.2, high: 0.5, step: 0.1}, round_to: 8}
    quantize: {mode: [none, int8], calibration_samples: 8}
    distill: {steps: {low: 4, high: 8, step: 4}, batch_size: 16}
""")


def write_digit_folder(root: Path, *, classes: tuple[int, ...] = (0, 1, 2), per_class: int = 30) -> Path:
    """Real handwritten digits rendered as 16x16 PNGs in ``root/<class>/``."""
    digits = load_digits()
    for label in classes:
        folder = root / f"digit{label}"
        folder.mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == label][:per_class]):
            pixels = (image / 16.0 * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((16, 16), Image.BILINEAR).save(folder / f"{i}.png")
    return root


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "autocompress", *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env
    )


def train_resnet18(folder: Path, ckpt: Path) -> None:
    """A few real training steps of a small-stem torchvision resnet18 on the folder; saves a checkpoint dict."""
    from autocompress.sources import load_data, load_model

    splits = load_data(f"imagefolder:{folder}", input_size=16, channels=3, seed=0)
    model = load_model("torchvision:resnet18", num_classes=3, small_input=True).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    labels = torch.tensor([int(splits.train[i][1]) for i in range(len(splits.train))])
    torch.manual_seed(0)
    for _ in range(25):
        idx = torch.randint(0, len(labels), (16,))
        loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({"epoch": 1, "model_state_dict": model.state_dict()}, ckpt)


@pytest.mark.slow
def test_torchvision_resnet18_on_image_folder(tmp_path: Path) -> None:
    folder = write_digit_folder(tmp_path / "digits")
    train_resnet18(folder, tmp_path / "ckpt.pt")
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    result = run_cli(
        "search",
        "--model",
        "torchvision:resnet18",
        "--weights",
        "ckpt.pt",
        "--small-input",
        "--data",
        f"imagefolder:{folder}",
        "--input-size",
        "16",
        "--channels",
        "3",
        "--trials",
        "3",
        "--space",
        "space.yaml",
        "--latency-budget",
        "0.9x",
        "--max-accuracy-drop",
        "100",
        "--output",
        "out",
        "--study-name",
        "rn18",
        "--repeats",
        "10",
        "--warmup",
        "3",
        "--latency-window",
        "0.3",
        "--no-explain",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = tmp_path / "out" / "rn18" / "chosen"
    metrics = json.loads((chosen / "metrics.json").read_text())
    assert metrics["model"]["num_classes"] == 3 and metrics["model"]["input_shape"] == [3, 16, 16]
    # The reported test accuracy is that of the shipped file: recompute it from model.onnx on the same test split.
    from autocompress.measure.accuracy import evaluate_onnx
    from autocompress.sources import load_data

    test = load_data(f"imagefolder:{folder}", input_size=16, channels=3, seed=0).test
    recomputed = evaluate_onnx(chosen / "model.onnx", test).top1
    assert recomputed == pytest.approx(metrics["accuracy"]["test_top1"], abs=1e-9), (recomputed, metrics["accuracy"])
    assert metrics["workload"]["normalize"] == "imagenet", "the default normalisation of 3-channel images is recorded"


@pytest.mark.slow
def test_factory_model_and_function_dataset_from_config_file(tmp_path: Path) -> None:
    (tmp_path / "mymodels.py").write_text(
        textwrap.dedent("""\
        import torch
        from torch import nn

        def small_cnn(num_classes: int = 10) -> nn.Module:
            torch.manual_seed(0)
            return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
    """)
    )
    (tmp_path / "mydata.py").write_text(
        textwrap.dedent("""\
        import torch
        from sklearn.datasets import load_digits
        from torch.utils.data import TensorDataset

        def digits_splits():
            d = load_digits()
            x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
            y = torch.tensor(d.target)
            return (TensorDataset(x[:1000], y[:1000]), TensorDataset(x[1000:1400], y[1000:1400]),
                    TensorDataset(x[1400:], y[1400:]))
    """)
    )
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    (tmp_path / "my.yaml").write_text(
        textwrap.dedent("""\
        model: mymodels:small_cnn
        data: mydata:digits_splits
        trials: 3
        space: space.yaml
        latency-budget: 0.95x
        max_accuracy_drop: 100
        allow-low-teacher-accuracy: true   # the factory model is untrained on purpose: this tests the plumbing
        output: out
        study-name: factory
        repeats: 10
        warmup: 3
        latency-window: 0.3
        no-explain: true           # a presentation flag is a config key too
    """)
    )
    result = run_cli("search", "--config", "my.yaml", "--trials", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Proposals stopped over the 0.95x budget before fine-tuning print a line but do not count as trials.
    counted = re.findall(r"\[trial +\d+ · (\d+)/(\d+)\]", result.stdout)
    assert counted and {total for _, total in counted} == {"2"}, (
        "--trials on the command line must override the config file"
    )
    assert max(int(done) for done, _ in counted) == 2, result.stdout[-3000:]
    metrics = json.loads((tmp_path / "out" / "factory" / "chosen" / "metrics.json").read_text())
    assert metrics["workload"]["model"] == "mymodels:small_cnn"


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (repo_root / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README must contain the Python API example after <!-- api-example -->"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README-api-example", "exec"), namespace)
    exported = tmp_path / "results" / "api-demo-model"
    assert {p.name for p in exported.iterdir()} == {"model.onnx", "model.pt2", "policy.json", "metrics.json"}
    result = namespace["result"]
    assert result.chosen is not None and result.pareto  # type: ignore[attr-defined]


def test_pretrained_torchvision_weights_pass_config_and_fail_offline_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--weights torchvision:DEFAULT`` is accepted by the CLI; without internet the download error is one line."""
    import urllib.error

    import torchvision

    def offline(*args, **kwargs):  # noqa: ANN002, ANN003
        raise urllib.error.URLError("offline")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline, raising=False)
    folder = write_digit_folder(tmp_path / "digits", per_class=6)
    out = tmp_path / "results"
    code = main(
        [
            "search",
            "--output",
            str(out),
            "--model",
            "torchvision:resnet18",
            "--weights",
            "torchvision:DEFAULT",
            "--num-classes",
            "1000",
            "--data",
            f"imagefolder:{folder}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "could not download torchvision weights resnet18.IMAGENET1K_V1" in err and "TORCH_HOME" in err, err
    assert err.count("\n") == 1
    assert not out.exists()


def test_search_api_leaves_the_callers_model_untouched(tmp_path: Path) -> None:
    """``autocompress.search`` works on a copy: the caller's train/eval mode, weights and BN statistics stay put."""
    from torch import nn
    from torch.utils.data import TensorDataset

    import autocompress

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    model.train()  # the caller was still training it
    with torch.no_grad():
        model[1].running_mean.fill_(0.25)  # non-default statistics, so a reset or an update would show
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(30, 1, 8, 8, generator=g), torch.arange(30) % 3)
    result = autocompress.search(
        model,
        train=data,
        val=data,
        trials=1,
        space="int8_only",
        output=tmp_path,
        latency_budget_ms=1000.0,
        max_accuracy_drop=100.0,
        allow_low_teacher_accuracy=True,
    )
    assert result.reference.val_accuracy >= 0.0
    assert all(m.training for m in model.modules()), "every submodule is still in training mode"
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"the caller's tensors changed: {changed}"


def test_search_api_refuses_a_teacher_at_chance(tmp_path: Path) -> None:
    """A model that always answers class 0 scores 1/3 on balanced 3-class val: refused, with the override named."""
    from torch import nn
    from torch.utils.data import TensorDataset

    import autocompress
    from autocompress.errors import WorkloadError

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    data = TensorDataset(torch.rand(30, 1, 8, 8), torch.arange(30) % 3)
    with pytest.raises(
        WorkloadError,
        match=r"val accuracy is 33\.3%, near chance \(3 classes; .* at least 43\.3%\).*"
        r"--allow-low-teacher-accuracy",
    ):
        autocompress.search(model, train=data, val=data, trials=1, space="int8_only", output=tmp_path)

"""Bad input the study itself must catch: a name clash with another kind of study, a run that diverges (NaN loss),
a full disk while exporting, an export folder that is not ours, a model ONNX cannot export. One line each, nothing
half-written, and a failing trial never stops the study."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from autocompress.cli import main
from autocompress.config import SearchConfig, parse_budget
from autocompress.errors import ConfigError, UnsupportedModelError, WorkloadError
from autocompress.report.export import export_chosen
from autocompress.sources.workload import Workload
from autocompress.study.session import create_study, run_study
from autocompress.study.space import SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "prune": {
            "per": "uniform",
            "level": {"low": 0.0, "high": 0.4, "step": 0.2},
            "ratio": {"low": 0.0, "high": 0.5},
        },
        "quantize": {"mode": ["none"]},
        "distill": {"steps": {"low": 10, "high": 10}},
    },
    source="nan-space",
)


def _config(tmp_path: Path, **kw: object) -> SearchConfig:
    base = dict(
        trials=3,
        study_name="s",
        output=tmp_path,
        latency_budget=parse_budget("10x"),
        max_accuracy_drop=50.0,
        warmup=2,
        repeats=5,
        latency_window=0.2,
    )
    return SearchConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_study_name_of_another_kind_of_study_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config.study_dir.mkdir(parents=True)
    optuna.create_study(study_name="s", storage=config.storage_url, direction="minimize")
    with pytest.raises(
        ConfigError,
        match=r"--study-name 's': the storage already holds a study of that name with directions \[minimize\]",
    ):
        create_study(config)
    # Through the CLI: one line, exit 2, before the model is even loaded (no teacher is trained for it).
    code = main(["search", "--output", str(tmp_path), "--study-name", "s", "--trials", "1"])
    assert code == 2
    assert not (tmp_path / "_cache").exists()


def test_nan_loss_fails_the_trial_with_its_reason_and_the_study_goes_on(
    tiny_workload: Workload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    distill_module = sys.modules["autocompress.compress.distill"]  # the package re-exports a function of that name

    def nan_loss(logits: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return logits.sum() * float("nan")

    monkeypatch.setattr(distill_module, "kd_loss", nan_loss)
    result = run_study(tiny_workload, SPACE, _config(tmp_path, trials=3))
    failed = [r for r in result.records if r.outcome == "failed"]
    assert failed, "every pruned trial fine-tunes, so each must fail"
    assert all("training loss is not finite" in (r.fail_reason or "") for r in failed), [r.fail_reason for r in failed]
    # The fp32 baseline (nothing to fine-tune) completed, and the study ran all its trials.
    assert any(r.outcome == "complete" and r.label == "fp32 (uncompressed)" for r in result.records)
    assert sum(1 for t in result.study.trials if t.state.is_finished()) >= 3


def test_disk_full_while_exporting_is_one_error_and_writes_nothing(
    tiny_workload: Workload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, trials=1)
    result = run_study(tiny_workload, SPACE, config)
    assert result.choice is not None

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(
        WorkloadError, match=r"cannot write the exported model to .* \(No space left on device\); nothing was written"
    ):
        export_chosen(result.choice, workload=tiny_workload, reference=result.reference, config=config)
    assert not any(p.name.startswith(".") or p.name in ("chosen", "over_budget") for p in config.study_dir.iterdir())


def test_export_never_replaces_a_folder_it_did_not_write(tiny_workload: Workload, tmp_path: Path) -> None:
    config = _config(tmp_path, trials=1)
    result = run_study(tiny_workload, SPACE, config)
    assert result.choice is not None
    # result.export("results")-style mistake: the destination is the results folder holding the study itself.
    with pytest.raises(ConfigError, match="already exists and was not written by an autocompress export"):
        export_chosen(
            result.choice, workload=tiny_workload, reference=result.reference, config=config, destination=tmp_path
        )
    assert (config.study_dir / "study.db").exists(), "the study must survive"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("user data")
    with pytest.raises(ConfigError):
        export_chosen(
            result.choice, workload=tiny_workload, reference=result.reference, config=config, destination=mine
        )
    assert (mine / "notes.txt").read_text() == "user data"
    # Our own earlier export is replaced (a resumed study re-exports).
    first = export_chosen(result.choice, workload=tiny_workload, reference=result.reference, config=config)
    again = export_chosen(result.choice, workload=tiny_workload, reference=result.reference, config=config)
    assert first == again and json.loads((again / "metrics.json").read_text())["trial"] == result.choice.record.number


class _Unexportable(nn.Module):
    """A classifier whose forward uses an operator the ONNX exporter has no mapping for (SVD)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.conv(x).mean(dim=(2, 3))
        return self.head(feats + torch.linalg.svdvals(feats.unsqueeze(-1)).sum())


def test_a_model_onnx_cannot_export_is_one_error(tiny_workload: Workload, tmp_path: Path) -> None:
    workload = Workload(
        name="svd",
        model=_Unexportable().eval(),
        train=tiny_workload.train,
        val=tiny_workload.val,
        test=tiny_workload.test,
        input_shape=tiny_workload.input_shape,
        num_classes=10,
        info={},
    )
    with pytest.raises(UnsupportedModelError, match="ONNX export failed") as info:
        run_study(
            workload,
            SearchSpace.from_dict({"prune": {"per": "none"}, "quantize": {"mode": ["none"]}}, source="x"),
            _config(tmp_path, allow_low_teacher_accuracy=True),
        )
    assert "\n" not in str(info.value)

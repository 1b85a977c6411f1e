"""``autocompress report``: report.html and its PNGs, on a tiny real study of the digits model."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from autocompress.cli import main
from autocompress.config import SearchConfig, parse_budget
from autocompress.report import explain
from autocompress.report.html import BREAKDOWN_TABLE, IMAGES_DIR, REPORT_FILE, Report, write_report
from autocompress.sources.demo_model import build_demo_resnet
from autocompress.sources.workload import Workload
from autocompress.study.pareto import choose
from autocompress.study.session import SearchResult, run_study
from autocompress.study.space import SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "prune": {"per": "uniform", "ratio": {"low": 0.0, "high": 0.5, "step": 0.25}},
        "distill": {"steps": 10},
        "quantize": {"calibration_samples": 16},
    },
    source="report-test",
)
CHARTS = {"pareto", "hypervolume", "importance", "probe", "sensitivity", "breakdown"}
SECTIONS = (
    "summary",
    "pareto",
    "hypervolume",
    "importance",
    "probe",
    "sensitivity",
    "breakdown",
    "trials",
    "machine",
    "config",
)


def tiny_resnet(num_classes: int = 10) -> nn.Module:
    """The conftest's tiny architecture as a ``--model`` factory; its trained weights come from ``--weights``."""
    return build_demo_resnet(width=8, num_classes=num_classes, seed=0)


@pytest.fixture(scope="module")
def reported(_tiny_trained: Workload, tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchResult, Report, Path]:
    workload = copy.copy(_tiny_trained)
    workload.model = copy.deepcopy(_tiny_trained.model)
    output = tmp_path_factory.mktemp("report")
    weights = output / "teacher.pt"
    torch.save(workload.model.state_dict(), weights)
    # Stored like a CLI study (factory + weights + digits at 16 px), so the report can rebuild its model by itself.
    config = SearchConfig(
        model=f"{__name__}:tiny_resnet",
        data="digits",
        input_size=16,
        weights=weights,
        trials=4,
        study_name="t",
        output=output,
        latency_budget=parse_budget("2x"),
        max_accuracy_drop=5.0,
        warmup=3,
        repeats=20,
        seed=0,
        latency_window=0.3,
    )
    result = run_study(workload, SPACE, config)
    report = write_report(study_name="t", output=output, workload=workload, ratios=(0.5,))
    return result, report, output


def test_report_writes_html_and_every_chart(reported: tuple[SearchResult, Report, Path]) -> None:
    result, report, output = reported
    assert report.html == output / "t" / REPORT_FILE and report.html.is_file()
    assert set(report.images) == CHARTS, report.notes
    folder = output / "t" / IMAGES_DIR
    assert {p.name for p in folder.iterdir()} == {f"{c}.png" for c in CHARTS} | {BREAKDOWN_TABLE}
    assert report.notes == ()
    # The study's choice: the rule's pick, unless its fresh-process re-measurement passed it over for the next one.
    choice = result.choice
    assert choice is not None and report.chosen == choice.record.number
    assert choice.record == choose(result.records, exclude=choice.passed_over).record
    assert report.breakdown is not None and report.breakdown.trial == choice.record.number
    assert report.breakdown.to_markdown() in (folder / BREAKDOWN_TABLE).read_text(encoding="utf-8")


def test_html_is_self_contained_and_has_every_section(reported: tuple[SearchResult, Report, Path]) -> None:
    result, report, _ = reported
    text = report.html.read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text, anchor
    chosen = report.chosen
    assert f"<td>chosen</td><td>trial {chosen}: " in text
    assert f"{result.reference.budget_ms:.4g} ms" in text
    # Every chart is embedded as a data URI of the PNG written next to it; nothing is fetched from anywhere.
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == len(CHARTS)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    assert result.cpu.model in text  # the machine fingerprint table
    assert report.breakdown is not None and report.breakdown.final.name in text


def test_pngs_are_real_images(reported: tuple[SearchResult, Report, Path]) -> None:
    _, report, _ = reported
    for name, path in report.images.items():
        assert path.stat().st_size > 5_000, f"{name}.png is only {path.stat().st_size} bytes"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 600 and image.height >= 150, (name, image.size)
            pixels = np.asarray(image.convert("L"), dtype=float)
        # A blank or single-colour canvas has (almost) no variance; a chart with axes, bars and text has plenty.
        assert pixels.std() > 15, f"{name}.png looks blank (pixel std {pixels.std():.1f})"
        assert (pixels < 128).mean() > 0.005, f"{name}.png has almost no dark pixels (no text or lines)"


def test_report_rebuilds_a_cli_model_and_reuses_the_profile(
    reported: tuple[SearchResult, Report, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, first, output = reported
    measured: list[str] = []
    monkeypatch.setattr(explain, "_measure_point", lambda *a, **kw: measured.append("point"))
    again = write_report(study_name="t", output=output, ratios=(0.5,))  # no workload: rebuilt from the study's config
    assert again.notes == () and set(again.images) == CHARTS
    assert measured == [], "the sensitivity profile was measured again instead of read from the cache"
    assert again.sensitivity == first.sensitivity
    assert again.breakdown is not None and first.breakdown is not None
    assert [r.name for r in again.breakdown.rows] == [r.name for r in first.breakdown.rows]
    assert again.breakdown.final.accuracy == first.breakdown.final.accuracy


# The tests below rewrite the report without the model sections: they run last (pytest keeps file order).
def test_report_without_explain_skips_the_model_sections(reported: tuple[SearchResult, Report, Path]) -> None:
    _, _, output = reported
    report = write_report(study_name="t", output=output, explain=False)
    assert set(report.images) == CHARTS - {"sensitivity", "breakdown"}
    assert not (output / "t" / IMAGES_DIR / "sensitivity.png").exists(), "a stale chart outlived its section"
    assert not (output / "t" / IMAGES_DIR / BREAKDOWN_TABLE).exists()
    assert [n.split(":")[0] for n in report.notes] == ["sensitivity", "breakdown"]
    text = report.html.read_text(encoding="utf-8")
    assert "Not computed: skipped (--no-explain)." in text and '<section id="breakdown">' in text


def test_cli_report(reported: tuple[SearchResult, Report, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, _, output = reported
    assert main(["report", "--study", "t", "--output", str(output), "--no-explain", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"report: {output / 't' / REPORT_FILE} (4 charts in {output / 't' / IMAGES_DIR})"

    assert main(["report", "--study", "nope", "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("autocompress: error: no study named 'nope'") and "t" in err
    empty = output / "empty"
    empty.mkdir()
    assert main(["report", "--study", "nope", "--output", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study database" in err
    assert not (empty / "nope").exists(), "report created a study folder"

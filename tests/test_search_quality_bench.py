"""The pure helpers of ``benchmarks/search_quality.py`` that turn an export's ``metrics.json`` into CSV columns and
count, per scenario, the runs whose chosen model broke the accuracy limit on test (issue 27)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from autocompress.measure.accuracy import PairedDrop

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "search_quality.py"


@pytest.fixture(scope="module")
def sq():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("search_quality_bench", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _accuracy(paired: PairedDrop, *, limit: float = 1.0) -> dict[str, object]:
    """The ``accuracy`` block of metrics.json as export.py writes it, for a paired drop."""
    low, high = paired.interval_pt
    return {
        "test_drop_pt": paired.drop_pt,
        "test_drop_interval_pt": [low, high],
        "test_drop_may_exceed_limit": high > limit,
        "max_drop_pt": limit,
        "n_test": paired.n,
    }


def test_columns_from_metrics_breaks_and_warns(sq) -> None:  # type: ignore[no-untyped-def]
    # accuracy.py's example: 360 images, 6 worse, 1 better: drop 1.39 pt, interval [-0.24, 3.00]
    cols = sq.columns_from_metrics(_accuracy(PairedDrop(6, 1, 360)))
    assert cols["test_drop_pt"] == pytest.approx(1.389, abs=1e-3)
    assert cols["test_drop_low_pt"] == pytest.approx(-0.24, abs=0.01)
    assert cols["test_drop_high_pt"] == pytest.approx(3.00, abs=0.01)
    assert cols["test_breaks_limit"] is True
    assert cols["interval_warned"] is True
    assert cols["n_test"] == 360
    assert tuple(cols) == sq.TEST_FIELDS


def test_columns_from_metrics_within_limit(sq) -> None:  # type: ignore[no-untyped-def]
    cols = sq.columns_from_metrics(_accuracy(PairedDrop(0, 0, 360)))  # same answers: upper end 0.77 pt
    assert cols["test_breaks_limit"] is False
    assert cols["interval_warned"] is False
    cols = sq.columns_from_metrics(_accuracy(PairedDrop(3, 2, 360)))  # 0.28 pt, upper end over 1 pt
    assert cols["test_breaks_limit"] is False
    assert cols["interval_warned"] is True


def _row(seed: int, *, trials: str = "30", drop: str = "", breaks: str = "", warned: str = "", **extra: str):  # type: ignore[no-untyped-def]
    row = {
        "cpu": "AMD EPYC",
        "isa": "avx512_vnni",
        "scenario": "default",
        "sampler": "tpe",
        "seed": str(seed),
        "trials": trials,
        "chosen_val_drop_pt": "0.279",
        "chosen_feasible": "True",
        "test_drop_pt": drop,
        "test_drop_low_pt": "-0.5" if drop else "",
        "test_drop_high_pt": "1.5" if drop else "",
        "test_breaks_limit": breaks,
        "interval_warned": warned,
        "n_test": "360" if drop else "",
    }
    row.update(extra)
    return row


def test_has_test_figures(sq) -> None:  # type: ignore[no-untyped-def]
    assert not sq.has_test_figures(_row(0))  # a chosen model, no test columns: an old row, made again
    assert sq.has_test_figures(_row(0, drop="0.3", breaks="False", warned="True"))
    assert sq.has_test_figures(_row(0, chosen_val_drop_pt=""))  # nothing chosen: nothing to score


def test_latest_per_run(sq) -> None:  # type: ignore[no-untyped-def]
    old = _row(0, trials="30")
    other = _row(1, trials="30")
    new = _row(0, trials="20", drop="0.3", breaks="False", warned="True")
    assert sq.latest_per_run([old, other, new]) == [new, other]
    assert sq.latest_per_run([old, other, new], fullest=True) == [old, other]
    again = _row(0, trials="30", drop="0.6", breaks="False", warned="True")
    assert sq.latest_per_run([old, new, again], fullest=True) == [again]  # the last among equals


def test_count_test_breaks(sq) -> None:  # type: ignore[no-untyped-def]
    rows = [
        _row(0),  # no test figures: not counted
        _row(1, drop="0.3", breaks="False", warned="True"),
        _row(2, drop="1.4", breaks="True", warned="True"),
        _row(3, drop="1.1", breaks="True", warned="False", chosen_feasible="False"),
        _row(4, drop="-0.3", breaks="False", warned="False"),
    ]
    assert sq.count_test_breaks(rows) == {"chosen": 4, "over_budget": 1, "breaks": 2, "breaks_warned": 1, "warned": 2}


def test_report_counts_breaks_per_scenario(sq, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = {f: "0" for f in sq.FIELDS} | {"reachable": "True", "feasible_found": "True", "code": "1c4dc40"}
    rows = [
        base | _row(0, drop="0.3", breaks="False", warned="True"),
        base | _row(1, drop="1.4", breaks="True", warned="True"),
        base | _row(0, drop="0.0", breaks="False", warned="False", scenario="tight"),
    ]
    path = tmp_path / "report.md"
    sq.write_report(rows, path)
    text = path.read_text()
    assert "| AMD EPYC (avx512_vnni) | default | tpe | 2 (0) | 1/2 (50 %) | 1/1 | 2/2 (100 %) |" in text
    assert "| AMD EPYC (avx512_vnni) | tight | tpe | 1 (0) | 0/1 (0 %) | 0/0 | 0/1 (0 %) |" in text
    assert "| AMD EPYC (avx512_vnni) | all | tpe | 3 (0) | 1/3 (33 %) | 1/1 |" in text
    assert "the interval had warned about 1 of the 1: acceptance met." in text


def test_report_keeps_hand_written_notes(sq, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = {f: "0" for f in sq.FIELDS} | {"reachable": "True", "feasible_found": "True", "code": "1c4dc40"}
    rows = [base | _row(0, drop="0.3", breaks="False", warned="True")]
    path = tmp_path / "report.md"
    path.write_text(f"# old table\n\n{sq.NOTES_MARKER}\n\n## Notes\n\nhow the batch ran\n")
    sq.write_report(rows, path)
    text = path.read_text()
    assert "# old table" not in text
    assert text.endswith(f"{sq.NOTES_MARKER}\n\n## Notes\n\nhow the batch ran\n")
    sq.write_report(rows, path)
    assert path.read_text() == text  # rewriting again changes nothing

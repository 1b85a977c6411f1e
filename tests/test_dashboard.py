"""optuna-dashboard on a tiny study written with ``write_record``: its HTTP API, the CLI errors and a real browser.

The study is built by hand (no model is trained): four trials whose records cover what the search writes —
complete and feasible (twice), complete but infeasible by accuracy, and stopped over budget (PRUNED).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from PIL import Image, ImageStat  # a dependency of torchvision, so always there

pytest.importorskip(
    "optuna_dashboard", reason='optuna-dashboard is not installed: pip install "autocompress[dashboard]"'
)

from autocompress.cli import main  # noqa: E402
from autocompress.errors import ConfigError, MissingDependencyError  # noqa: E402
from autocompress.measure.latency import Latency  # noqa: E402
from autocompress.policy import Policy, PrunePolicy, QuantPolicy  # noqa: E402
from autocompress.report.dashboard import (  # noqa: E402
    Dashboard,
    StudyNotFoundError,
    chosen_record,
    make_server,
    open_dashboard,
    study_note,
)
from autocompress.study.record import TrialRecord, artifact_store, read_records, write_record  # noqa: E402

STUDY = "tiny"
BUDGET_MS = 1.0
MAX_DROP_PT = 2.0
TEACHER = 0.98
# number -> (prune ratio, quant, outcome, accuracy, latency ms); see the module docstring.
PLAN = {
    0: (0.3, "none", "complete", 0.970, 0.80),  # drop 1.0 pt, 0.80 ms: feasible (the chosen one)
    1: (0.6, "int8", "complete", 0.900, 0.50),  # drop 8.0 pt: infeasible by accuracy
    2: (0.0, "none", "stopped", None, 1.50),  # over budget before fine-tuning: PRUNED
    3: (0.5, "int8", "complete", 0.965, 0.60),  # drop 1.5 pt, 0.60 ms: feasible, faster, less accurate
}
FINGERPRINT = {
    "host": "test-host",
    "cpu": "Test CPU 9000",
    "isa": "avx512_vnni",
    "int8_kernel": "u8s8",
    "logical_cores": 2,
    "versions": {"optuna": optuna.__version__},
}


def _latency(ms: float) -> Latency:
    return Latency(median_ms=ms, iqr_ms=0.01, p10_ms=ms - 0.01, p90_ms=ms + 0.01, n=50, threads=1, batch_size=1)


def _objective(
    trial: optuna.Trial, store: optuna.artifacts.FileSystemArtifactStore, scratch: Path
) -> tuple[float, float]:
    ratio, quant, outcome, accuracy, ms = PLAN[trial.number]
    trial.suggest_float("prune_ratio", 0.0, 0.7)
    trial.suggest_categorical("quant", ["none", "int8"])
    policy = Policy(prune=PrunePolicy(ratios={"layer1.0.conv1": ratio}), quant=QuantPolicy(mode=quant))
    record = TrialRecord(
        number=trial.number,
        outcome=outcome,
        policy=policy,
        budget_ms=BUDGET_MS,
        max_drop_pt=MAX_DROP_PT,
        teacher_accuracy=TEACHER,
        accuracy=accuracy,
        latency=_latency(ms),
        finetuned=outcome == "complete",
        fingerprint=FINGERPRINT,
        stopped_reason="over budget before fine-tuning" if outcome == "stopped" else None,
    )
    write_record(trial, record)
    # The trial runner uploads each trial's policy.json (and model.onnx); the policy is enough to test downloads.
    policy_file = scratch / f"{trial.number}" / "policy.json"
    policy_file.parent.mkdir()
    policy_file.write_text(json.dumps({"trial": trial.number, **policy.to_dict()}))
    optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(policy_file), study_or_trial=trial)
    if outcome == "stopped":
        raise optuna.TrialPruned()
    return accuracy, ms


def build_tiny_study(output: Path) -> Path:
    """``<output>/tiny/study.db`` laid out as the search lays it out (study folder, artifacts); returns the folder."""
    study_dir = output / STUDY
    study_dir.mkdir(parents=True)
    study = optuna.create_study(
        study_name=STUDY,
        storage=f"sqlite:///{study_dir / 'study.db'}",
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
    study.set_user_attr(
        "config",
        {
            "model": "demo",
            "data": "digits",
            "latency_budget": "1ms",
            "max_accuracy_drop": MAX_DROP_PT,
            "trials": len(PLAN),
        },
    )
    study.set_user_attr(
        "reference",
        {"budget_ms": BUDGET_MS, "teacher_val_accuracy": TEACHER, "teacher_ort_latency": _latency(2.0).to_dict()},
    )
    study.set_user_attr("fingerprint", FINGERPRINT)
    store, scratch = artifact_store(study_dir), output / "_scratch"
    scratch.mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda trial: _objective(trial, store, scratch), n_trials=len(PLAN))
    return study_dir


@pytest.fixture(scope="module")
def tiny_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("results")
    build_tiny_study(output)
    return output


@pytest.fixture(scope="module")
def served(tiny_output: Path) -> Iterator[tuple[Dashboard, str]]:
    board = open_dashboard(study_name=STUDY, output=tiny_output)
    server = make_server(board, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield board, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, (url, response.status)
        return response.read()


def _study_json(board: Dashboard, base: str) -> dict[str, Any]:
    return json.loads(_get(f"{base}/api/studies/{board.study_id}"))


# ---------------------------------------------------------------------------------------------------- HTTP API
def test_api_reports_feasibility_from_write_record(served: tuple[Dashboard, str]) -> None:
    board, base = served
    detail = _study_json(board, base)
    assert detail["name"] == STUDY
    assert detail["objective_names"] == ["accuracy", "latency_ms"]
    trials = {t["number"]: t for t in detail["trials"]}
    assert sorted(trials) == sorted(PLAN)
    for number in (0, 3):
        assert trials[number]["state"] == "Complete"
        assert len(trials[number]["constraints"]) == 2, trials[number]["constraints"]
        assert all(c <= 0 for c in trials[number]["constraints"]), (number, trials[number]["constraints"])
    # Infeasible by accuracy: (8 pt - 2 pt) / 2 pt = 3.0 on the accuracy constraint, latency within budget.
    latency, accuracy = trials[1]["constraints"]
    assert latency < 0 and accuracy == pytest.approx(3.0), trials[1]["constraints"]
    # Stopped over budget: PRUNED, 1.5 ms / 1.0 ms - 1 = 0.5 over, not charged for accuracy.
    assert trials[2]["state"] == "Pruned"
    latency, accuracy = trials[2]["constraints"]
    # Over the budget: 100 + the overshoot, so the samplers rank it behind any trial within the budget.
    assert latency == pytest.approx(100.5) and accuracy == 0.0, trials[2]["constraints"]
    # The Pareto front the dashboard computes: the three complete trials trade accuracy for latency.
    assert sorted(t["number"] for t in detail["best_trials"]) == [0, 1, 3]


def test_note_and_artifact_download(served: tuple[Dashboard, str]) -> None:
    board, base = served
    detail = _study_json(board, base)
    body = detail["note"]["body"]
    for expected in (
        "Budget:** 1 ms",
        "Chosen:** trial 0",
        "Test CPU 9000",
        "avx512_vnni",
        "| latency_budget | 1ms |",
        "3 complete (2 feasible), 1 stopped",
    ):
        assert expected in body, f"{expected!r} not in the note:\n{body}"
    artifacts = {t["number"]: t["artifacts"] for t in detail["trials"]}
    assert all(len(artifacts[n]) == 1 and artifacts[n][0]["filename"] == "policy.json" for n in PLAN), artifacts
    trial_id = next(t["trial_id"] for t in detail["trials"] if t["number"] == 3)
    data = json.loads(_get(f"{base}/artifacts/{board.study_id}/{trial_id}/{artifacts[3][0]['artifact_id']}"))
    assert data["trial"] == 3 and data["quant"]["mode"] == "int8", data
    assert board.url("127.0.0.1", 8080) == f"http://127.0.0.1:8080/dashboard/studies/{board.study_id}"


def test_note_tolerates_a_bare_study() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    note = study_note(study)
    assert "Budget:** not recorded yet" in note and "no feasible trial yet" in note and "not recorded" in note


def test_chosen_record_is_best_feasible_accuracy(tiny_output: Path) -> None:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tiny_output / STUDY / 'study.db'}")
    chosen = chosen_record(read_records(study))
    assert chosen is not None and chosen.number == 0


# ---------------------------------------------------------------------------------------------------- errors
def test_unknown_study_lists_the_studies(tiny_output: Path) -> None:
    url = f"sqlite:///{tiny_output / STUDY / 'study.db'}"
    with pytest.raises(StudyNotFoundError, match=r"no study named 'nope' .*studies there: tiny$"):
        open_dashboard(study_name="nope", output=tiny_output, storage=url)
    # The default layout keeps one study.db per study folder: the folders are the list.
    with pytest.raises(StudyNotFoundError, match=r"no study named 'nope' in .*; studies there: tiny \(pick one"):
        open_dashboard(study_name="nope", output=tiny_output)


def test_missing_storage_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no study database at .*demo/study.db; run `autocompress search` first"):
        open_dashboard(output=tmp_path)
    assert not (tmp_path / "demo").exists(), "a missing study must not be created"


def test_missing_optuna_dashboard_says_what_to_install(tiny_output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "autocompress\[dashboard\]"'):
        open_dashboard(study_name=STUDY, output=tiny_output)


def test_cli_errors_are_one_line(tiny_output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "--study", "nope", "--output", str(tiny_output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no study named 'nope'" in err and "tiny" in err, err
    assert main(["dashboard", "--output", str(tiny_output / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no study database at" in err, err


# ---------------------------------------------------------------------------------------------------- browser
def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get install -y chromium")
        pytest.skip("chromium not found (Debian: apt-get install -y chromium)")
    return path


def _run_chromium(chromium: str, profile: Path, *args: str) -> str:
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def _pareto_points(dom: str) -> int:
    """Markers drawn in the Pareto-front plot (the ``graph-pareto-front`` div, before the next plot)."""
    start = dom.find('id="graph-pareto-front"')
    assert start >= 0, "no Pareto-front plot in the page"
    end = dom.find('id="plot-history"', start)
    return dom[start : end if end > 0 else None].count('class="point"')


def _text(dom: str) -> str:
    """The page's visible text, roughly: tags dropped, entities kept (enough for substring checks)."""
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S))
    return re.sub(r"\s+", " ", html.unescape(text).replace("\u200b", ""))


@pytest.mark.slow
def test_chromium_renders_the_study(served: tuple[Dashboard, str], tmp_path: Path) -> None:
    chromium = _chromium()
    board, base = served
    study_page = f"{base}/dashboard/studies/{board.study_id}"
    wait = "--virtual-time-budget=10000"

    def page(url: str, profile: str) -> str:
        return _run_chromium(chromium, tmp_path / profile, wait, "--dump-dom", url)

    listing = _text(page(f"{base}/dashboard", "list"))
    assert f"1. {STUDY}" in listing and "MAXIMIZE, MINIMIZE" in listing, (
        f"study missing from the list: {listing[:2000]}"
    )

    # The study page (History tab) holds the Pareto front in 0.21; it has no URL of its own.
    dom = page(study_page, "study")
    text = _text(dom)
    assert f"{STUDY} (id={board.study_id})" in text and "Pareto Front" in text, text[:2000]
    assert "Objective X: accuracy" in text and "Objective Y: latency_ms" in text, "objective names missing"
    # The three complete trials are drawn (the pruned one is hidden by default); the timeline marks infeasibility.
    assert _pareto_points(dom) == 3, f"{_pareto_points(dom)} markers in the Pareto-front plot, expected 3"
    assert "Infeasible" in text and "Pruned" in text, "the timeline does not show infeasible and pruned trials"
    for number in (0, 1, 3):
        assert f"Trial {number} Objective Values" in text, f"trial {number} missing from Best Trials"

    trials = _text(page(f"{study_page}/trials", "trials"))
    for number, (_, _, outcome, _, _) in PLAN.items():
        state = "Pruned" if outcome == "stopped" else "Complete"
        assert f"Trial {number} {state}" in trials, f"trial {number} ({state}) missing from the trial list"
    assert "policy.json" in trials, "the trial's artifacts are not offered for download"

    analytics = _text(page(f"{study_page}/analytics", "analytics"))
    assert "EDF for latency_ms" in analytics and "EDF for accuracy" in analytics, analytics[:2000]

    note = _text(page(f"{study_page}/note", "note"))
    assert "Chosen: trial 0" in note.replace("**", "") and "Test CPU 9000" in note, note[:2000]

    shot = tmp_path / "study.png"
    _run_chromium(chromium, tmp_path / "shot", wait, "--window-size=1400,1000", f"--screenshot={shot}", study_page)
    assert shot.stat().st_size > 20_000, f"screenshot too small: {shot.stat().st_size} bytes"
    with Image.open(shot) as image:
        assert image.size == (1400, 1000), image.size
        grey = image.convert("L")
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
        spread = ImageStat.Stat(grey).stddev[0]
    assert colours > 50 and spread > 10, f"screenshot looks blank: {colours} colours, grey stddev {spread:.1f}"

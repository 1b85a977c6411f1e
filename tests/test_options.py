"""One source of options: every SearchConfig field is reachable from the CLI, the config file, the Python API and
the resume identity, with the same defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autocompress import api
from autocompress.cli import (
    _NOT_IN_CONFIG,
    _search_parser,
    build_parser,
    config_from_args,
    load_config_file,
    parse_args,
)
from autocompress.config import LatencyBudget, SearchConfig, parse_budget
from autocompress.study.resume import _NOT_IDENTITY

FIELDS = {f.name: f for f in dataclasses.fields(SearchConfig)}
DEFAULTS = SearchConfig()


def _search_actions() -> dict[str, object]:
    return {a.dest: a for a in _search_parser(build_parser())._actions if a.dest != "help"}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_is_a_cli_option_with_the_same_default(name: str) -> None:
    actions = _search_actions()
    assert name in actions, f"SearchConfig.{name} has no --{name.replace('_', '-')} option"
    default = actions[name].default  # type: ignore[attr-defined]
    expected = getattr(DEFAULTS, name)
    if name == "latency_budget":
        default = parse_budget(default)
    elif isinstance(expected, Path) and default is not None:
        default = Path(default)
    assert default == expected, f"--{name.replace('_', '-')} defaults to {default!r}, SearchConfig to {expected!r}"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_is_a_config_file_key(name: str, tmp_path: Path) -> None:
    assert name not in _NOT_IN_CONFIG
    value = getattr(DEFAULTS, name)
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    (tmp_path / "c.yaml").write_text(f"{name.replace('_', '-')}: {text}\n")
    assert name in load_config_file(tmp_path / "c.yaml", build_parser())


# A value other than SearchConfig's default for every field the Python API takes as a keyword. A new field fails
# test_every_api_keyword_reaches_the_search until it has one here (or is declared API_ONLY_SOURCES/CLI_ONLY_OPTIONS).
API_VALUES: dict[str, Any] = {
    "allow_low_teacher_accuracy": True,
    "trials": 3,
    "timeout": 60.0,
    "max_accuracy_drop": 2.5,
    "prefer": "latency",
    "space": "int8_only",
    "sampler": "random",
    "seed": 7,
    "study_name": "other",
    "storage": "STORAGE",
    "output": "OUTPUT",
    "runtime": "torch",
    "threads": 2,
    "batch_size": 4,
    "repeats": 9,
    "latency_window": 0.5,
    "warmup": 3,
    "device": "auto",
    "build_only": True,
    "num_classes": 6,
}


class _Captured(Exception):
    """Raised by the stand-in for run_study once it has the workload and config that api.search built."""

    def __init__(self, workload: Any, config: SearchConfig) -> None:
        super().__init__()
        self.workload, self.config = workload, config


def _api_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **kwargs: Any) -> _Captured:
    """Call api.search on a tiny model and datasets up to where the study would start, and return what it built."""

    def run_study(workload: Any, space: Any, config: SearchConfig, **_: Any) -> None:
        raise _Captured(workload, config)

    monkeypatch.setattr(api, "run_study", run_study)
    monkeypatch.chdir(tmp_path)  # the default --output (results/) resolves here
    data = TensorDataset(torch.zeros(8, 1, 8, 8), torch.arange(8) % 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with pytest.raises(_Captured) as info:
        api.search(model, train=data, val=data, **kwargs)
    return info.value


def test_the_api_defaults_are_the_configs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """api.search() with no options searches with SearchConfig's defaults, except the study name (api, beside the
    CLI's demo study) and the fields whose source is the Python objects themselves."""
    config = _api_search(monkeypatch, tmp_path).config
    assert config.latency_budget == DEFAULTS.latency_budget == LatencyBudget(0.25, True)
    assert config.study_name == api.API_STUDY_NAME != DEFAULTS.study_name
    shared = set(FIELDS) - api.API_ONLY_SOURCES - api.CLI_ONLY_OPTIONS - {"study_name"}
    differ = {
        name: (getattr(config, name), getattr(DEFAULTS, name))
        for name in sorted(shared)
        if getattr(config, name) != getattr(DEFAULTS, name)
    }
    assert not differ, f"api.search's defaults differ from SearchConfig's (api, config): {differ}"


@pytest.mark.parametrize("name", sorted(set(FIELDS) - api.API_ONLY_SOURCES - api.CLI_ONLY_OPTIONS))
def test_every_api_keyword_reaches_the_search(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert name in API_VALUES, f"give SearchConfig.{name} a non-default value in API_VALUES (or declare its source)"
    value = {"STORAGE": f"sqlite:///{tmp_path}/other.db", "OUTPUT": tmp_path / "out"}.get(
        API_VALUES[name], API_VALUES[name]
    )
    assert value != getattr(DEFAULTS, name)
    captured = _api_search(monkeypatch, tmp_path, **{name: value})
    if name == "num_classes":  # the workload's class count, not a SearchConfig value (the model's output says 4)
        assert captured.workload.num_classes == value != 4, "the model's head says 4"
        return
    assert getattr(captured.config, name) == (Path(value) if name == "output" else value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [({"latency_budget_ms": 2.0}, LatencyBudget(2.0, False)), ({"latency_budget": "0.5x"}, LatencyBudget(0.5, True))],
)
def test_the_api_budget_reaches_the_search(
    given: dict[str, Any], expected: LatencyBudget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _api_search(monkeypatch, tmp_path, **given).config.latency_budget == expected


def test_config_file_values_reach_the_search_and_the_command_line_wins(tmp_path: Path) -> None:
    """A config file and the command line, parsed as `autocompress search` does, build one SearchConfig: the file's
    values where the command line is silent, the command line's where both give one."""
    path = tmp_path / "c.yaml"
    path.write_text(
        f"trials: 5\nlatency-budget: 2.5ms\nmax_accuracy_drop: 0.5\nsampler: random\n"
        f"study-name: from-file\noutput: {tmp_path / 'out'}\nallow-low-teacher-accuracy: true\n"
    )
    config = config_from_args(parse_args(["search", "--config", str(path), "--trials", "7", "--seed", "3"]))
    assert (config.trials, config.seed) == (7, 3), "the command line wins"
    assert config.latency_budget == LatencyBudget(2.5, False) and config.max_accuracy_drop == 0.5
    assert (config.sampler, config.study_name, config.output) == ("random", "from-file", tmp_path / "out")
    assert config.allow_low_teacher_accuracy is True
    assert config_from_args(parse_args(["search", "--output", str(tmp_path / "out")])) == SearchConfig(
        output=tmp_path / "out"
    ), "without a file or options: SearchConfig's defaults"


def test_the_resume_identity_names_only_real_fields_and_holds_every_other() -> None:
    assert _NOT_IDENTITY <= set(FIELDS), _NOT_IDENTITY - set(FIELDS)
    # Fields that change what a trial means are in the identity (a resume with another value is refused).
    for name in ("runtime", "threads", "batch_size", "latency_budget", "max_accuracy_drop", "space", "model", "data"):
        assert name not in _NOT_IDENTITY

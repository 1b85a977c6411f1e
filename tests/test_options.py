"""One source of options: every SearchConfig field is reachable from the CLI, the config file, the Python API and
the resume identity, with the same defaults."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from autocompress import api
from autocompress.cli import _NOT_IN_CONFIG, _search_parser, build_parser, load_config_file
from autocompress.config import SearchConfig, parse_budget
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


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_is_an_api_keyword_with_the_same_default_or_a_documented_source(name: str) -> None:
    params = inspect.signature(api.search).parameters
    if name in api.API_ONLY_SOURCES or name in api.CLI_ONLY_OPTIONS:
        return  # the API takes the model and datasets themselves (and latency_budget as ms or "0.5x", checked below);
        # --workers starts processes of the same command (API callers run several processes on one storage)
    assert name in params, f"api.search lacks {name}="
    default = params[name].default
    expected = api.API_STUDY_NAME if name == "study_name" else getattr(DEFAULTS, name)
    assert default == expected, f"api.search({name}={default!r}) but SearchConfig's default is {expected!r}"


def test_the_api_budget_default_is_the_configs() -> None:
    assert str(DEFAULTS.latency_budget) == "0.25x"
    assert "str(_D.latency_budget)" in inspect.getsource(api.search)


def test_the_resume_identity_names_only_real_fields_and_holds_every_other() -> None:
    assert _NOT_IDENTITY <= set(FIELDS), _NOT_IDENTITY - set(FIELDS)
    # Fields that change what a trial means are in the identity (a resume with another value is refused).
    for name in ("runtime", "threads", "batch_size", "latency_budget", "max_accuracy_drop", "space", "model", "data"):
        assert name not in _NOT_IDENTITY

"""The sampler registry: every registered sampler honours the contract, and a new one is one module away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from autocompress.config import SAMPLERS, SearchConfig
from autocompress.errors import ConfigError
from autocompress.study.samplers import _registry, get_sampler, list_samplers, make_sampler, register_sampler
from autocompress.study.session import create_study


def test_the_builtin_samplers_are_registered_with_the_default_first() -> None:
    names = list_samplers()
    assert names[0] == "tpe", names
    assert set(names) >= {"tpe", "nsga2", "gp", "random"}, names
    assert list(SAMPLERS) == names, "--sampler's choices are the registry's names"


@pytest.mark.parametrize("name", list_samplers())
def test_every_sampler_builds_seeded_and_runs_a_multi_objective_trial(name: str) -> None:
    entry = get_sampler(name)
    assert entry.help and "\n" not in entry.help, f"{name}: a one-line help text"
    values = []
    for _ in range(2):  # same seed → same first proposal
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(name, seed=3, trials=8))
        trial = study.ask({"ratio": optuna.distributions.FloatDistribution(0.0, 0.7)})
        values.append(trial.params["ratio"])
        study.tell(trial, [0.5, 1.0])
    assert values[0] == values[1], f"{name}: seeded samplers propose the same first point"


def test_an_unknown_sampler_is_one_line_listing_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"--sampler must be one of tpe, .*random.*, got 'annealing'"):
        SearchConfig(sampler="annealing")


def test_a_name_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_sampler("tpe", help="another tpe")(lambda *, seed, trials: optuna.samplers.RandomSampler(seed=seed))


class _Toy(optuna.samplers.RandomSampler):
    """What a contributor's sampler module defines (here: random with a marker)."""


@pytest.fixture
def toy_sampler() -> Iterator[str]:
    # The whole contribution: one module with this decorated factory.
    @register_sampler("toy", help="a toy sampler registered by a test")
    def toy(*, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
        return _Toy(seed=seed)

    yield "toy"
    _registry._REGISTRY.pop("toy", None)


def test_a_registered_sampler_is_a_search_option_and_drives_the_study(toy_sampler: str, tmp_path: Path) -> None:
    assert toy_sampler in list_samplers() and toy_sampler in SAMPLERS
    config = SearchConfig(sampler=toy_sampler, study_name="toy-sampler", output=tmp_path, trials=2)
    study = create_study(config)
    assert isinstance(study.sampler, _Toy), type(study.sampler)

"""The model and data source registries: every registered source keeps the contract, the built-ins (``demo`` and
``digits`` included) are ordinary entries, and a new source is one class that works through ``--model`` / ``--data``.

The toy sources register inside the test, into a copy of the registries that the ``fresh_registries`` fixture puts
back afterwards, so no other test sees them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import autocompress.plugins as plugins_module
import autocompress.sources
from autocompress.cli import config_from_args, parse_args
from autocompress.config import SearchConfig
from autocompress.errors import ConfigError, WorkloadError
from autocompress.sources import (
    DataOptions,
    DataSource,
    DataSplits,
    ModelSource,
    _base,
    get_data_source,
    get_model_source,
    list_data_sources,
    list_model_sources,
    load_data,
    load_model,
    match_data_source,
    match_model_source,
)
from autocompress.sources.demo_model import DemoResNet, build_demo_resnet
from autocompress.sources.weights import save_weights
from autocompress.sources.workload import DEMO_TEACHER_FILE, load_workload

Kind = type[ModelSource] | type[DataSource]
_OPTIONS = {f.name for f in dataclasses.fields(SearchConfig)}


def _all_sources() -> list[tuple[Kind, str]]:
    return [(ModelSource, n) for n in list_model_sources()] + [(DataSource, n) for n in list_data_sources()]


def _check_contract(kind: Kind, cls: type) -> None:
    """What every source must keep: a name, a one-line help, a form and example that resolve back to it, and
    settings that are real command-line options."""
    match, get = (match_model_source, get_model_source) if kind is ModelSource else (match_data_source, get_data_source)
    label = f"{kind.__name__} {cls.__qualname__}"
    assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.name), f"{label}: name {cls.name!r} is not a lower-case identifier"
    assert isinstance(cls.help, str) and cls.help.strip() == cls.help and 10 <= len(cls.help) <= 110, (
        f"{label}: help must be one trimmed line of 10-110 characters, got {cls.help!r}"
    )
    assert "\n" not in cls.help and "\n" not in cls.describe(), f"{label}: help spans lines"
    assert cls.generic or cls.form == cls.name or cls.form.startswith(cls.name + ":"), (
        f"{label}: form {cls.form!r} must be {cls.name!r} or start with {cls.name + ':'!r} (or the source generic)"
    )
    assert cls.matches(cls.example), f"{label}: does not match its own example {cls.example!r}"
    claimed = type(match(cls.example))
    assert claimed is cls, f"{label}: example {cls.example!r} resolves to {claimed.__qualname__}, which claims it"
    assert type(get(cls.name)) is cls, f"{label}: get_*_source({cls.name!r}) returns another source"
    flags = [s.removeprefix("--").replace("-", "_") for s in cls.settings]
    assert all(s.startswith("--") for s in cls.settings) and set(flags) <= _OPTIONS, (
        f"{label}: settings {cls.settings} must be command-line options, unknown: {set(flags) - _OPTIONS}"
    )
    assert len(set(flags)) == len(flags), f"{label}: settings repeat an option: {cls.settings}"
    option = "--model" if kind is ModelSource else "--data"
    with pytest.raises(
        WorkloadError,
        match=rf"^{option} no-such-spec : unknown .* spec; expected one of .*"
        rf"{re.escape(cls.form)}",
    ):
        match("no-such-spec")


@pytest.mark.parametrize(("kind", "name"), _all_sources(), ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_every_registered_source_keeps_the_contract(kind: Kind, name: str) -> None:
    _check_contract(kind, type(get_model_source(name) if kind is ModelSource else get_data_source(name)))


def test_built_in_sources_are_listed_first_in_a_fixed_order() -> None:
    assert list_model_sources()[:3] == ["demo", "torchvision", "factory"]
    assert list_data_sources()[:4] == ["digits", "imagefolder", "torchvision", "function"]


def test_each_source_module_of_the_package_is_found_by_its_name() -> None:
    """_model_<name>.py / _data_<name>.py files are imported on first use: a new one needs no edit elsewhere."""
    package = Path(autocompress.sources.__file__).parent
    files = {p.stem for p in package.glob("_model_*.py")} | {p.stem for p in package.glob("_data_*.py")}
    registered = {
        (kind, cls.__module__.rsplit(".", 1)[1])
        for kind in (ModelSource, DataSource)
        for cls in kind.registry.values()
        if cls.__module__.startswith("autocompress.sources.")
    }
    assert {module for _, module in registered} == files, "every source module registers, every source has one"
    assert all(module.startswith("_model_" if kind is ModelSource else "_data_") for kind, module in registered)


def test_prefixed_sources_win_over_the_generic_module_pattern() -> None:
    # "torchvision:resnet18" and "imagefolder:digits" also read as package.module:attr; "demo:build" is a module demo
    assert match_model_source("torchvision:resnet18").name == "torchvision"
    assert match_model_source("demo").name == "demo"
    assert match_model_source("demo:build").name == "factory", "demo takes no argument: demo:X is a user module"
    assert match_data_source("imagefolder:digits").name == "imagefolder"
    assert match_data_source("digits:load").name == "function"
    assert match_data_source("torchvision:CIFAR10:./data").name == "torchvision"


def test_unknown_source_name_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"^model source 'no_such': expected one of demo, torchvision, factory\b"):
        get_model_source("no_such")
    with pytest.raises(
        ConfigError,
        match=r"^data source 'no_such': expected one of digits, imagefolder, "
        r"torchvision, function\b",
    ):
        get_data_source("no_such")


# ------------------------------------------------------------------------------------------ demo and digits


def test_digits_is_an_ordinary_data_source() -> None:
    splits = load_data("digits", input_size=16)
    assert splits.input_shape == (1, 16, 16) and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1078, 359, 360), "fixed 60/20/20 split"
    assert splits.info["data"].startswith("digits"), splits.info
    with pytest.raises(WorkloadError, match=r"^--normalize none : --data digits is standardised by its own mean/std"):
        load_data("digits", normalize="none")


def test_demo_is_an_ordinary_model_source() -> None:
    model = load_model("demo", num_classes=4)
    assert isinstance(model, DemoResNet) and not model.training
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 4)


def test_demo_brings_its_own_data_and_cached_teacher(tmp_path: Path) -> None:
    config = SearchConfig(output=tmp_path)
    config.cache_dir.mkdir(parents=True)
    teacher = build_demo_resnet(num_classes=10, seed=1)  # a "cached teacher": no minute of training in a unit test
    save_weights(teacher, config.cache_dir / DEMO_TEACHER_FILE)
    workload = load_workload(config)
    assert (workload.name, workload.input_shape, workload.num_classes) == ("demo", (1, 32, 32), 10)
    assert workload.info["model"] == "demo (DemoResNet, width 32)" and workload.info["data"].startswith("digits")
    first = next(iter(teacher.state_dict().values()))
    assert torch.equal(next(iter(workload.model.state_dict().values())), first), "the cached weights were loaded"
    with pytest.raises(WorkloadError, match=r"--normalize imagenet : --data digits is standardised"):
        load_workload(dataclasses.replace(config, normalize="imagenet"))


# ------------------------------------------------------------------------------------------ a new source


@pytest.fixture()
def fresh_registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Copies of both registries for the test: what it registers is gone afterwards."""
    list_model_sources(), list_data_sources()  # the built-ins register on first use: before the copy
    monkeypatch.setattr(ModelSource, "registry", dict(ModelSource.registry))
    monkeypatch.setattr(DataSource, "registry", dict(DataSource.registry))
    yield


def _register_toys() -> tuple[type[ModelSource], type[DataSource]]:
    """What a contributor writes: one class per source (here both in one function; in the package, one module)."""

    class ToyModel(ModelSource):
        name = "toy"
        form = "toy:WIDTH"
        example = "toy:8"
        help = "a one-convolution classifier WIDTH channels wide (untrained)"
        settings = ("--num-classes", "--weights")

        def build(self, spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
            width = int(spec.split(":", 1)[1])
            torch.manual_seed(0)
            return nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(width, num_classes or 10),
            )

    class ToyData(DataSource):
        name = "toy"
        form = "toy:SIZE"
        example = "toy:small"
        help = "random 1-channel images of three classes, SIZE small (12 per class) or large (40)"
        settings = ("--input-size",)

        def load(self, spec: str, options: DataOptions) -> DataSplits:
            per_class = {"small": 12, "large": 40}[spec.split(":", 1)[1]]
            side = options.input_size or 8
            generator = torch.Generator().manual_seed(options.seed)
            labels = torch.arange(3).repeat_interleave(per_class)
            images = torch.randn(len(labels), 1, side, side, generator=generator) + labels.view(-1, 1, 1, 1)
            split = TensorDataset(images, labels)
            return DataSplits(
                split, split, split, input_shape=(1, side, side), num_classes=3, info={"data": spec, "source": "toy"}
            )

    return ToyModel, ToyData


def test_a_new_source_is_one_class_usable_through_model_and_data(fresh_registries: None, tmp_path: Path) -> None:
    toy_model, toy_data = _register_toys()
    assert list_model_sources()[:3] == ["demo", "torchvision", "factory"] and list_model_sources()[-1] == "toy", (
        "listed after the built-ins"
    )
    assert list_data_sources()[:4] == ["digits", "imagefolder", "torchvision", "function"]
    assert list_data_sources()[-1] == "toy"
    _check_contract(ModelSource, toy_model)
    _check_contract(DataSource, toy_data)
    # "toy:small" also reads as package.module:attr (a module toy); the registered prefix wins
    argv = ["search", "--model", "toy:6", "--data", "toy:small", "--input-size", "10", "--output", str(tmp_path)]
    workload = load_workload(config_from_args(parse_args(argv)))
    assert (workload.name, workload.input_shape, workload.num_classes) == ("toy:6", (1, 10, 10), 3)
    assert workload.model[-1].out_features == 3, "the head is built for the data's class count"
    assert workload.info["source"] == "toy" and len(workload.train) == 36
    # appended: every message that listed the built-ins still starts the same way
    with pytest.raises(
        WorkloadError,
        match=r"expected one of demo, torchvision:NAME, package\.module:factory, "
        r"(.+, )?toy:WIDTH$",
    ):
        load_model("mystery")
    with pytest.raises(WorkloadError, match=r"expected one of digits, .*, package\.module:fn, (.+, )?toy:SIZE$"):
        load_data("cifar")


def test_two_sources_cannot_share_a_name(fresh_registries: None) -> None:
    with pytest.raises(
        TypeError,
        match=r"a model source named 'demo' is already registered by "
        r"autocompress\.sources\._model_demo\.DemoModel; pick another name",
    ):

        class AnotherDemo(ModelSource):
            name, form, example, help = "demo", "demo", "demo", "a second demo"

            def build(self, spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
                return nn.Identity()

    assert type(get_model_source("demo")).__qualname__ == "DemoModel"


class _FakeEntryPoint:
    """What ``importlib.metadata.entry_points(group="autocompress.sources")`` yields: ``load()`` imports the module."""

    def __init__(self, value: str, load: Callable[[], object]) -> None:
        self.value, self.load = value, load


def test_an_installed_plugin_registers_through_the_entry_point_group(
    fresh_registries: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> object:
        raise ImportError("No module named 'torch_hub_sources'")

    plugins = [_FakeEntryPoint("toy_sources", _register_toys), _FakeEntryPoint("torch_hub_sources", broken)]
    monkeypatch.setattr(
        plugins_module.metadata, "entry_points", lambda group: plugins if group == "autocompress.sources" else []
    )
    monkeypatch.setattr(_base, "_loaded", False)
    with caplog.at_level(logging.WARNING, logger="autocompress.plugins"):
        assert list_model_sources()[-1] == "toy" and list_data_sources()[-1] == "toy"
    assert "autocompress.sources plugin torch_hub_sources could not be loaded: No module named" in caplog.text, (
        "a broken plugin is a warning, the others still load"
    )
    assert match_model_source("toy:4").name == "toy"

"""The runtime seam: how a pruned ``nn.Module`` becomes a deployable artifact, and how that artifact is run.

A :class:`Runtime` knows one inference engine (ONNX Runtime, OpenVINO, PyTorch). It

- builds an :class:`Artifact` from a pruned model and a precision plan (a :class:`~autocompress.policy.QuantPolicy`);
- opens a :class:`Runner` on an artifact with fixed threads (and, for timing, a fixed batch size), which the latency
  protocol and the accuracy scorer both drive;
- reads back the precision each layer actually ran in (OpenVINO runs "fp32" in bf16 on CPUs with AVX512_BF16 unless
  told otherwise: a row labelled fp32 must have run fp32);
- says which precisions it offers on this CPU (never bf16 where it would be emulated).

Subclasses register themselves by name (``__init_subclass__``, Olive-style); :func:`list_runtimes` and
:func:`get_runtime` query the registry, and a runtime whose package is not installed is a one-line
:class:`~autocompress.errors.MissingDependencyError` naming the extra to install.

Example:
    >>> [r for r in list_runtimes(installed_only=False)]
    ['onnxruntime', 'openvino', 'torch']
"""

from __future__ import annotations

import contextlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from autocompress.errors import ConfigError, MissingDependencyError
from autocompress.hardware.cpu import CpuInfo, Int8Kernel, int8_kernel_for
from autocompress.plugins import load_plugins
from autocompress.policy import QuantPolicy

__all__ = [
    "Artifact",
    "Runner",
    "Runtime",
    "get_runtime",
    "list_runtimes",
    "resolve_runtimes",
    "AUTO",
    "DEFAULT_RUNTIME",
]

DEFAULT_RUNTIME = "onnxruntime"
AUTO = "auto"  # --runtime auto: the runtime is a searched dimension over every installed runtime


@dataclass(frozen=True)
class Artifact:
    """A deployable model file for one runtime, and how it was made.

    Attributes:
        path: the file that is measured and exported (``.onnx``, OpenVINO ``.xml`` with its ``.bin``, TorchScript
            ``.pt``).
        quant: the precision plan that produced it.
        runtime: the name of the runtime that built it and runs it.
        files: every file the artifact consists of (``path`` first).
    """

    path: Path
    quant: QuantPolicy
    runtime: str = DEFAULT_RUNTIME
    files: tuple[Path, ...] = field(default=())

    @property
    def all_files(self) -> tuple[Path, ...]:
        return self.files or (self.path,)

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.all_files if p.is_file())

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


class Runner(ABC):
    """An artifact loaded for inference with fixed threads: ``run(batch) → logits``.

    ``batch_size`` fixed: the runner may specialise to it (OpenVINO compiles a static shape); ``None``: any batch.
    """

    def __init__(self, artifact: Artifact, *, threads: int, batch_size: int | None) -> None:
        self.artifact = artifact
        self.threads = threads
        self.batch_size = batch_size

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of one float32 NCHW batch."""

    def precision(self) -> dict[str, int]:
        """How many compute layers ran in each precision (``{"fp32": 12, "int8": 3}``), read back from the runtime."""
        return {}

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Hold the runtime's process-wide settings (PyTorch's thread count) while timing or scoring; restored after."""
        yield


class Runtime(ABC):
    """One inference engine (see the module docstring). Subclasses set :attr:`name`, :attr:`package` and
    :attr:`extra`, and implement :meth:`build` and :meth:`runner`."""

    name: ClassVar[str]
    package: ClassVar[str]  # the import name whose presence means the runtime is installed
    distribution: ClassVar[str]  # the pip distribution whose version is recorded
    extra: ClassVar[str | None] = None  # ``pip install autocompress[extra]``; None = a core dependency
    # The artifact's files in an export folder, in the order of :attr:`Artifact.all_files` (the measured files under
    # fixed names, so a user finds ``model.onnx`` or ``model.xml``/``model.bin`` whatever the trial called them).
    export_names: ClassVar[tuple[str, ...]]
    registry: ClassVar[dict[str, type[Runtime]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "name", None):
            Runtime.registry[cls.name] = cls

    # ------------------------------------------------------------------ what it is
    @classmethod
    def installed(cls) -> bool:
        return importlib.util.find_spec(cls.package) is not None

    @classmethod
    def version(cls) -> str | None:
        try:
            return metadata.version(cls.distribution)
        except metadata.PackageNotFoundError:
            return None

    def modes(self, cpu: CpuInfo) -> tuple[str, ...]:
        """The precision modes (:data:`autocompress.policy.QUANT_MODES`) this runtime can build and run on ``cpu``."""
        return ("none", "int8")

    def int8_kernel(self, cpu: CpuInfo) -> Int8Kernel:
        """The static-int8 settings that are fast and accurate on ``cpu`` with this runtime."""
        return int8_kernel_for(cpu)

    def kernels(self) -> tuple[str, ...] | None:
        """The explicit int8 kernel names a space may search (``None``: only ``auto``, the runtime decides)."""
        return None

    # ------------------------------------------------------------------ build and run
    @abstractmethod
    def build(
        self,
        model: nn.Module,
        quant: QuantPolicy,
        *,
        example_input: torch.Tensor,
        calibration: Dataset,
        workdir: Path,
        seed: int = 0,
    ) -> Artifact:
        """The artifact of ``model`` at precision ``quant``, written under ``workdir``."""

    @abstractmethod
    def runner(self, artifact: Artifact, *, threads: int, batch_size: int | None = None) -> Runner:
        """``artifact`` loaded for inference with ``threads`` threads."""


def list_runtimes(*, installed_only: bool = True) -> list[str]:
    """Registered runtime names (only those whose package is importable, by default)."""
    _load_builtin()
    return sorted(n for n, cls in Runtime.registry.items() if cls.installed() or not installed_only)


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; an unknown name is a ConfigError listing the valid ones, a runtime that is not
    installed a MissingDependencyError with the ``pip install`` to run."""
    _load_builtin()
    cls = Runtime.registry.get(name)
    if cls is None:
        raise ConfigError(f"--runtime: expected {AUTO} or one of {', '.join(sorted(Runtime.registry))}, got {name!r}")
    if not cls.installed():
        hint = f"pip install 'autocompress[{cls.extra}]'" if cls.extra else f"pip install {cls.distribution}"
        raise MissingDependencyError(f"--runtime {name}: the {cls.distribution} package is not installed; run: {hint}")
    return cls()


def resolve_runtimes(name: str) -> tuple[list[Runtime], list[str]]:
    """The runtimes a study with ``--runtime name`` builds for: that one, or for ``auto`` every installed runtime
    (the default one first); and, for ``auto``, the registered runtimes that are not installed (said at set-up).

    Example: ``resolve_runtimes("auto")`` without OpenVINO → ``([onnxruntime, torch], ["openvino"])``.
    """
    if name != AUTO:
        return [get_runtime(name)], []
    names = list_runtimes()
    ordered = sorted(names, key=lambda n: (n != DEFAULT_RUNTIME, n))
    missing = [n for n in list_runtimes(installed_only=False) if n not in names]
    return [get_runtime(n) for n in ordered], missing


ENTRY_POINT_GROUP = "autocompress.runtimes"
_loaded = False


def _load_builtin() -> None:
    """Import every runtime module of this package, and the entry-point plugins, once: importing a module registers
    its class (each imports its engine lazily, so this costs nothing). Adding a runtime is one module here."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    # the base and the shared ONNX export helpers define no runtime
    load_plugins(__name__.rsplit(".", 1)[0], group=ENTRY_POINT_GROUP, skip=("_base", "_onnx"))

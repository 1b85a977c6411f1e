"""Shared fixtures: a tiny residual CNN really trained on digits (16x16), reused by every test in the session."""

from __future__ import annotations

import copy
import faulthandler
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from autocompress.compress.training import fit
from autocompress.hardware.cpu import process_cores
from autocompress.sources.demo_model import build_demo_resnet
from autocompress.sources.workload import Workload, load_digits_splits

TINY_SIZE = 16
# A native crash must name the test and the Python stack it happened in (the suite once died with exit 139 and no
# trace). pytest's capture owns file descriptor 2 while tests run and a library may install its own SIGSEGV handler,
# so faulthandler is armed again before each test, writing to AUTOCOMPRESS_CRASH_LOG (.ci/run prints it on failure).
_CRASH_LOG = os.environ.get("AUTOCOMPRESS_CRASH_LOG")
_CRASH_FD = os.open(_CRASH_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if _CRASH_LOG else None


def pytest_configure(config: pytest.Config) -> None:
    """The pytest-xdist workers (started after this, with this environment) use the C library's allocator.

    Why: the suite's processes died with SIGSEGV late in long runs (one process: 3 runs of 3; 2 or 4 xdist workers:
    one worker per run, 3 runs of 3 on 2026-12-05, signal 11 read from the dead worker), and a core dump showed
    CPython's small-object allocator (pymalloc) failing inside its own free, on a heap that some native extension had
    corrupted earlier. With ``PYTHONMALLOC=malloc`` a block handed across the allocator boundary (allocated with
    one API, freed with another) cannot corrupt pymalloc's arenas. Applied to the workers only, and only when the
    caller has not chosen an allocator; the cause is still open (benchmarks/history.md)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("PYTHONMALLOC", "malloc")
    else:
        _cores_of_its_own(os.environ["PYTEST_XDIST_WORKER"], int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def _cores_of_its_own(worker: str, workers: int) -> None:
    """This pytest-xdist worker (and every process its tests start) on a share of the cores of its own.

    Why: the workers shared the cores. Each worker's torch and every study its tests ran used every core, so 2
    workers on 2 cores ran twice as many threads as cores, and OpenMP's barriers then crawl: the tiny teacher's 150
    training steps took 212 s as a fixture's set-up in a full run and 4.3 s alone (AMX Xeon, 2 cores). And a timing in
    one worker's study held back the other worker's heavy work. Pinned to disjoint cores, the workers neither slow
    each other down nor wait for each other: the core guard locks per core (:mod:`autocompress.measure.guard`).
    With fewer cores than workers nothing is pinned.
    """
    if workers < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(process_cores())
    share = len(cores) // workers
    if share < 1:
        return
    index = int(worker.removeprefix("gw")) % workers  # a worker started after a crash is numbered past the count
    mine = cores[index * share : (index + 1) * share]
    os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))  # torch sized its pool from the affinity when it was imported


@pytest.fixture(autouse=True)
def _crash_trace(request: pytest.FixtureRequest) -> Iterator[None]:
    if _CRASH_FD is not None:
        try:
            os.fstat(_CRASH_FD)
        except OSError as exc:  # something closed a descriptor it did not own: the likeliest cause of a crash
            raise RuntimeError(f"the crash trace's descriptor was closed before {request.node.nodeid}") from exc
        faulthandler.enable(file=_CRASH_FD, all_threads=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")  # which process: pytest-xdist runs up to 4
        os.write(_CRASH_FD, f"[{worker} pid {os.getpid()}] [test start] {request.node.nodeid}\n".encode())
    yield


@pytest.fixture(scope="session")
def _tiny_trained() -> Workload:
    train, val, test = load_digits_splits(size=TINY_SIZE)
    model = build_demo_resnet(width=8, seed=0)
    fit(
        model,
        train,
        lambda logits, labels, _: nn.functional.cross_entropy(logits, labels),
        steps=150,
        lr=0.05,
        optimizer="sgd",
        seed=0,
    )
    return Workload(
        name="tiny",
        model=model.eval(),
        train=train,
        val=val,
        test=test,
        input_shape=(1, TINY_SIZE, TINY_SIZE),
        num_classes=10,
        info={"model": "tiny", "data": "digits16"},
    )


@pytest.fixture()
def tiny_workload(_tiny_trained: Workload) -> Workload:
    """A fresh copy per test so no test can change another's teacher."""
    wl = copy.copy(_tiny_trained)
    wl.model = copy.deepcopy(_tiny_trained.model)
    return wl


@pytest.fixture(scope="session")
def demo_width_model() -> nn.Module:
    """The demo architecture at full width (untrained): big enough that latency differences are far above noise."""
    return build_demo_resnet(width=32, seed=0).eval()


@pytest.fixture()
def x32() -> torch.Tensor:
    return torch.zeros(1, 1, 32, 32)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]

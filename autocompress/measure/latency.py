"""Latency of a deployable artifact, measured so that the same file gives the same figure on a noisy machine.

**Why not "20 warm-up + 100 runs, median".** On a shared 2-core VM (AMD EPYC Zen 3, AVX2) the same ``model.onnx``
timed 150 times that way read CV 12.9 %, max/min 1.79: the machine flips between a fast and a slow regime (an int8
model ran ~0.42 ms or ~0.75 ms) and each regime lasts 0.5 to 5+ s, longer than one 100-run figure. A median, a p10 or
the minimum of five 20-run blocks cannot fix that; they all sit inside one regime.

**The protocol** (:class:`Protocol`; ``benchmarks/latency_noise.md`` has the measurements behind every constant):

1. warm-up: ``warmup`` untimed runs and at least ``warmup_s`` seconds (allocations, kernel selection, caches);
2. *blocks*: very short blocks (``block_runs`` = 3 runs, or ``block_s`` seconds if longer) spread over a window of
   ``window_s`` seconds; with a *reference* (the study's teacher artifact) the artifacts take turns of ``switch_s``
   (20 ms of consecutive blocks each, after ``rewarm_runs`` untimed run to refill the caches the other one evicted),
   candidate, reference, candidate, ... so both are timed side by side under the same machine state;
3. the figure is the median run time of the **fastest block** (the machine's undisturbed state; noise only ever adds
   time), and its interval runs from that figure to the third-fastest block, each widened by ``floor`` for what one
   window cannot see.

   Why 3-run blocks in 20 ms turns (``benchmarks/latency_trace.md``, ``benchmarks/latency_noise.md``): a 150 s trace
   of every run on the Zen 3 VM showed the slow phase is not a steady state but a fine mixture: in 137 of 151 seconds
   the int8 student's median run was over 1.3x its fastest, yet its 5th-percentile run was the undisturbed 0.42-0.45
   ms in almost every second. A 20 ms block (~45 runs) almost never holds only undisturbed runs; a 3-run block often
   does. But switching artifacts after every 3 runs costs a cold first run each time (the teacher evicts the
   student's weights), which the real protocol showed: 10 figures per variant, in rotation, same minutes: the int8
   student's CV was 16.2 % with 20 ms blocks, 10.4 % with 3-run blocks alternating every block, 0.75 % with one
   untimed re-warm run per turn, and 0.29 % with 3-run blocks in 20 ms turns after a re-warm run (65 %-pruned fp32
   student: 4.6 %, 1.2 %, 1.3 %, 0.37 %);
4. a *noise check*: the spread of the blocks (typical block / fastest block - 1), the CPU time other processes used
   during the window (from ``/proc/stat``, in cores) and the hypervisor's steal time are recorded on every figure;
   with a reference and its known undisturbed figure (the *anchor*), a window whose reference never came within
   ``canary_tolerance`` of the anchor was spent in a slow regime: it is extended up to ``max_window_s``, and if the
   reference still did not come back the figure is flagged ``noisy`` and its interval widened downwards.

Each figure carries ``noise``: ``quiet``, ``noisy`` (large spread, or the reference never came back) or ``busy``
(other processes used a quarter of a core or more, or steal time was high).

The PyTorch teacher is timed with the same protocol (``torch.set_num_threads`` inside a context manager that
restores the previous value), so "speed-up vs the original model" compares like with like.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import statistics
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autocompress.runtimes._base import Artifact, Runner, Runtime, get_runtime

__all__ = [
    "Latency",
    "LatencyCache",
    "LatencyMeter",
    "Meter",
    "NoiseTally",
    "Protocol",
    "NOISE_LEVELS",
    "combine",
    "measure_callable",
    "measure_blocks",
    "measure_onnx",
    "measure_torch",
    "artifact_run",
    "fixed_input",
    "onnx_runner",
    "structure_key",
    "torch_threads",
]

NOISE_LEVELS = ("quiet", "noisy", "busy")
_BUSY_CORES = 0.25  # other processes used at least this many cores during the window
_BUSY_STEAL = 0.05  # or the hypervisor stole at least this fraction of our vCPU time
_NOISY_SPREAD = 0.10  # typical block over fastest block
# In a slow regime the int8 demo student slowed by +80 % while the teacher slowed by +20 % (Zen 3 VM): a candidate's
# slowdown is taken to be up to this many times the reference's when widening a noisy figure's interval downwards.
_SLOWDOWN_LEVERAGE = 4.0


@dataclass(frozen=True)
class Protocol:
    """How one latency figure is taken (see the module docstring).

    Attributes:
        warmup: untimed runs before timing (and at least ``warmup_s`` seconds of them).
        min_runs: at least this many timed runs in all (a slow model gets more time than the window).
        block_runs: runs in one block (at least).
        block_s: least length of one block in seconds (0: exactly ``block_runs`` runs).
        switch_s: blocks of one artifact follow each other for at least this long before the next artifact's turn.
        rewarm_runs: untimed runs of an artifact at each of its turns (side by side only: the caches are cold).
        window_s: wall time of the blocks (candidate and reference together).
        max_window_s: how far a window is extended while the reference has not come back to its anchor.
        floor: relative widening of the interval on both sides (what one window cannot see).
        canary_tolerance: a reference within this fraction of its anchor shows the machine in its fast regime.
    """

    warmup: int = 20
    min_runs: int = 30
    block_runs: int = 3
    block_s: float = 0.0
    switch_s: float = 0.02
    rewarm_runs: int = 1
    window_s: float = 1.2
    max_window_s: float = 3.0
    warmup_s: float = 0.05
    floor: float = 0.03
    canary_tolerance: float = 0.05

    def __post_init__(self) -> None:
        assert (
            self.block_runs >= 1 and self.block_s >= 0 and self.window_s > 0 and self.max_window_s >= self.window_s
        ), self

    @classmethod
    def from_options(cls, *, warmup: int, repeats: int, window_s: float) -> Protocol:
        """The protocol of the ``--warmup``, ``--repeats`` and ``--latency-window`` options: the window is extended up
        to 2.5x while the machine is in a slow phase (the one place that rule lives)."""
        return cls(warmup=warmup, min_runs=repeats, window_s=window_s, max_window_s=window_s * 2.5)

    def longer(self, factor: float) -> Protocol:
        """The same protocol with a ``factor`` times longer window (export re-measurement, the teacher's anchor)."""
        return replace(
            self, window_s=self.window_s * factor, max_window_s=max(self.max_window_s, self.window_s * factor)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Latency:
    """One latency figure, in milliseconds.

    Attributes:
        median_ms: the reported figure: the median run time in the fastest block.
        iqr_ms / p10_ms / p90_ms: spread of every timed run (all blocks).
        n: timed runs; ``threads`` / ``batch_size``: the setting timed.
        low_ms / high_ms: the interval the figure is trusted to (see the module docstring).
        typical_ms: the median block (what the machine gave most of the time during the window).
        blocks / seconds: blocks timed and the window's wall time.
        spread: ``typical_ms / median_ms - 1``.
        load_cores: CPU time other processes used during the window, in cores.
        steal: fraction of our vCPU time the hypervisor stole during the window.
        noise: ``quiet`` | ``noisy`` | ``busy``.
        reference_ms: the reference artifact's figure in the same window (when timed side by side).
        ratio: ``median_ms / reference_ms`` (when timed side by side).
    """

    median_ms: float
    iqr_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    threads: int
    batch_size: int
    low_ms: float | None = None
    high_ms: float | None = None
    typical_ms: float | None = None
    blocks: int = 0
    seconds: float = 0.0
    spread: float = 0.0
    load_cores: float = 0.0
    steal: float = 0.0
    noise: str = "quiet"
    reference_ms: float | None = None
    ratio: float | None = None
    block_medians: tuple[float, ...] = field(default=(), compare=False, repr=False)

    @property
    def low(self) -> float:
        """Lower end of the interval (the figure itself for records written before intervals existed)."""
        return self.median_ms if self.low_ms is None else self.low_ms

    @property
    def high(self) -> float:
        return self.median_ms if self.high_ms is None else self.high_ms

    def over(self, budget_ms: float) -> bool:
        """Over ``budget_ms`` with confidence: the whole interval lies above it."""
        return self.low > budget_ms

    def within(self, budget_ms: float) -> bool:
        """Within ``budget_ms`` with confidence: the whole interval lies at or below it."""
        return self.high <= budget_ms

    def straddles(self, budget_ms: float) -> bool:
        return not self.over(budget_ms) and not self.within(budget_ms)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("block_medians")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Latency:
        known = {f.name for f in fields(cls)} - {"block_medians"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __str__(self) -> str:
        interval = f" [{self.low:.3f}, {self.high:.3f}]" if self.low_ms is not None else ""
        noise = f", {self.noise}" if self.noise != "quiet" else ""
        return (
            f"{self.median_ms:.3f} ms{interval} ({self.blocks or self.n} {'blocks' if self.blocks else 'runs'}{noise})"
        )


# ---------------------------------------------------------------------------------------------------- machine load
def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, steal) jiffies of the whole machine from ``/proc/stat``; ``None`` where there is no such file."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    steal = values[7] if len(values) > 7 else 0
    return sum(values[:8]) - idle - steal, steal


class _LoadMeter:
    """CPU time other processes used, and steal time, between :meth:`start` and :meth:`stop`."""

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._own = sum(os.times()[:2])
        self._jiffies = _cpu_jiffies()

    def stop(self) -> tuple[float, float]:
        """``(other processes' load in cores, steal fraction)``."""
        wall = max(time.perf_counter() - self._wall, 1e-9)
        end = _cpu_jiffies()
        if self._jiffies is None or end is None:
            return 0.0, 0.0
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = (end[0] - self._jiffies[0]) / tick
        own = sum(os.times()[:2]) - self._own
        steal = (end[1] - self._jiffies[1]) / tick / (wall * (os.cpu_count() or 1))
        return max(0.0, (busy - own) / wall), max(0.0, steal)


# ---------------------------------------------------------------------------------------------------- the protocol
def _summary(
    samples: Sequence[float],
    blocks: Sequence[float],
    *,
    threads: int,
    batch_size: int,
    seconds: float,
    load: tuple[float, float],
    floor: float,
) -> Latency:
    values = np.asarray(samples, dtype=np.float64)
    q10, q25, q75, q90 = np.percentile(values, [10, 25, 75, 90])
    ordered = sorted(blocks)
    figure = ordered[0]
    third = ordered[min(2, len(ordered) - 1)]
    typical = float(np.median(ordered))
    spread = typical / figure - 1.0 if figure > 0 else 0.0
    load_cores, steal = load
    noise = (
        "busy" if load_cores >= _BUSY_CORES or steal >= _BUSY_STEAL else "noisy" if spread > _NOISY_SPREAD else "quiet"
    )
    return Latency(
        median_ms=float(figure),
        iqr_ms=float(q75 - q25),
        p10_ms=float(q10),
        p90_ms=float(q90),
        n=int(values.size),
        threads=threads,
        batch_size=batch_size,
        low_ms=float(figure * (1 - floor)),
        high_ms=float(third * (1 + floor)),
        typical_ms=typical,
        blocks=len(ordered),
        seconds=round(seconds, 4),
        spread=round(spread, 4),
        load_cores=round(load_cores, 3),
        steal=round(steal, 4),
        noise=noise,
        block_medians=tuple(float(b) for b in blocks),
    )


def measure_blocks(
    runs: Sequence[Callable[[], object]],
    *,
    protocol: Protocol,
    threads: int,
    batch_size: int,
    anchor_ms: float | None = None,
) -> list[Latency]:
    """Time each of ``runs`` in alternating blocks (see the module docstring); one :class:`Latency` per run.

    With ``anchor_ms`` (the undisturbed figure of ``runs[-1]``, the reference), the window is extended up to
    ``protocol.max_window_s`` until the reference's fastest block comes within ``canary_tolerance`` of it.
    """
    for run in runs:
        end = time.perf_counter() + protocol.warmup_s
        count = 0
        while count < protocol.warmup or time.perf_counter() < end:
            run()
            count += 1
    samples: list[list[float]] = [[] for _ in runs]
    blocks: list[list[float]] = [[] for _ in runs]
    load = _LoadMeter()
    load.start()
    started = time.perf_counter()
    while True:
        for i, run in enumerate(runs):
            for _ in range(protocol.rewarm_runs if len(runs) > 1 else 0):
                run()  # the other artifact's runs evicted this one's weights from the caches: untimed
            stretch_end = time.perf_counter() + protocol.switch_s
            while True:
                block: list[float] = []
                block_end = time.perf_counter() + protocol.block_s
                while len(block) < protocol.block_runs or time.perf_counter() < block_end:
                    t0 = time.perf_counter_ns()
                    run()
                    block.append((time.perf_counter_ns() - t0) / 1e6)
                samples[i].extend(block)
                blocks[i].append(float(statistics.median(block)))  # 3 runs: cheaper than np.median, same value
                if time.perf_counter() >= stretch_end:
                    break
        elapsed = time.perf_counter() - started
        enough = elapsed >= protocol.window_s and min(len(s) for s in samples) >= protocol.min_runs
        if enough and (anchor_ms is None or min(blocks[-1]) <= anchor_ms * (1 + protocol.canary_tolerance)):
            break
        if elapsed >= protocol.max_window_s and min(len(s) for s in samples) >= protocol.min_runs:
            break
    seconds = time.perf_counter() - started
    machine = load.stop()
    return [
        _summary(s, b, threads=threads, batch_size=batch_size, seconds=seconds, load=machine, floor=protocol.floor)
        for s, b in zip(samples, blocks)
    ]


def _side_by_side(candidate: Latency, reference: Latency, *, anchor_ms: float | None, protocol: Protocol) -> Latency:
    """``candidate`` with the reference's figure, the ratio, and the canary's verdict folded into noise/interval."""
    out = replace(candidate, reference_ms=reference.median_ms, ratio=candidate.median_ms / reference.median_ms)
    if anchor_ms is not None and reference.median_ms > anchor_ms * (1 + protocol.canary_tolerance):
        # The reference never came back to its undisturbed figure: the whole window may have been slow.
        slowdown = reference.median_ms / anchor_ms - 1.0
        low = out.median_ms / (1.0 + _SLOWDOWN_LEVERAGE * slowdown)
        out = replace(out, low_ms=min(out.low, low), noise="busy" if out.noise == "busy" else "noisy")
    return out


def combine(first: Latency, second: Latency, *, floor: float = Protocol.floor) -> Latency:
    """Two figures of the same artifact as one: the blocks of both, summarised again.

    The measure-again path of a decision near the budget: the pooled figure is the fastest block of either, the
    pooled upper bound the third-fastest block of both. The lower bound stays widened only if both were noisy.
    """
    pooled = sorted(first.block_medians + second.block_medians)
    best = first if first.median_ms <= second.median_ms else second
    if not pooled:
        return best
    figure, third = pooled[0], pooled[min(2, len(pooled) - 1)]
    noisy = first.noise != "quiet" and second.noise != "quiet"
    low = min(first.low, second.low) if noisy else figure * (1 - floor)
    return replace(
        best,
        median_ms=figure,
        low_ms=min(low, figure),
        high_ms=third * (1 + floor),
        n=first.n + second.n,
        blocks=len(pooled),
        seconds=round(first.seconds + second.seconds, 4),
        typical_ms=float(np.median(pooled)),
        noise=best.noise if noisy else "quiet",
        load_cores=max(first.load_cores, second.load_cores),
        block_medians=tuple(pooled),
    )


def measure_callable(
    run: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    threads: int,
    batch_size: int,
    protocol: Protocol | None = None,
) -> Latency:
    """Time ``run()`` with the protocol (``warmup`` untimed calls, at least ``repeats`` timed ones)."""
    protocol = replace(protocol or Protocol(), warmup=warmup, min_runs=repeats)
    return measure_blocks([run], protocol=protocol, threads=threads, batch_size=batch_size)[0]


def fixed_input(input_shape: tuple[int, ...], batch_size: int) -> np.ndarray:
    """The fixed, real-shaped batch every figure times (seeded, so every artifact sees the same input)."""
    return np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)


def artifact_run(runner: Runner, input_shape: tuple[int, ...], batch_size: int) -> Callable[[], object]:
    """``run()`` = one inference of ``runner`` on the fixed batch."""
    batch = fixed_input(input_shape, batch_size)
    return lambda: runner.run(batch)


def onnx_runner(path: Path, input_shape: tuple[int, ...], *, threads: int, batch_size: int) -> Callable[[], object]:
    """A warm ONNX Runtime session on ``path`` and a fixed batch of real-shaped input: ``run()`` is one inference."""
    from autocompress.policy import QuantPolicy
    from autocompress.runtimes import Artifact, get_runtime

    runner = get_runtime("onnxruntime").runner(Artifact(path, QuantPolicy()), threads=threads, batch_size=batch_size)
    return artifact_run(runner, input_shape, batch_size)


def measure_onnx(
    path: Path,
    input_shape: tuple[int, ...],
    *,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 20,
    repeats: int = 30,
    protocol: Protocol | None = None,
) -> Latency:
    """Latency of the ONNX file at ``path`` for one batch of shape ``(batch_size, *input_shape)``, alone."""
    run = onnx_runner(path, input_shape, threads=threads, batch_size=batch_size)
    return measure_callable(
        run, warmup=warmup, repeats=repeats, threads=threads, batch_size=batch_size, protocol=protocol
    )


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the previous value afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_torch(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 20,
    repeats: int = 30,
    protocol: Protocol | None = None,
) -> Latency:
    """Eager-mode PyTorch fp32 latency of ``model`` (eval, no grad) with the same protocol as ONNX."""
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32))
    from autocompress.measure.guard import core_guard

    with core_guard().timing(), torch_threads(threads), torch.inference_mode():
        return measure_callable(
            lambda: model(x), warmup=warmup, repeats=repeats, threads=threads, batch_size=batch_size, protocol=protocol
        )


class NoiseTally:
    """How many figures a meter took and how many were not quiet: the study's, the report's and metrics.json's
    noise summary."""

    def __init__(self) -> None:
        self.figures = 0
        self.noisy_figures = 0

    def count(self, latency: Latency) -> Latency:
        self.figures += 1
        self.noisy_figures += latency.noise != "quiet"
        return latency

    def summary(self) -> dict[str, Any]:
        return {
            "figures": self.figures,
            "not_quiet": self.noisy_figures,
            "not_quiet_fraction": round(self.noisy_figures / self.figures, 3) if self.figures else 0.0,
        }


class Meter(typing.Protocol):
    """What a trial times its artifacts with: :class:`LatencyMeter` in this process, or
    :class:`autocompress.scale.remote.RemoteMeter` on a build host (the measure worker on the target answers)."""

    anchor_ms: float | None
    measured_by: dict[str, Any] | None  # the host that timed the last figure; None: this process

    def measure(self, artifact: Artifact) -> Latency: ...

    def noise_summary(self) -> dict[str, Any]: ...


class LatencyMeter:
    """Times artifacts side by side with the study's reference artifact (the teacher on the same runtime), warm.

    The first :meth:`calibrate` takes the reference's undisturbed figure (the *anchor*) with a long window; every
    :meth:`measure` then alternates blocks of the candidate and the reference, uses the reference as a canary for the
    machine's regime (see the module docstring) and lowers the anchor when the reference runs faster than ever.
    Candidate and reference run with the same threads and batch, the reference on ``runtime``, a candidate on the
    runtime that built it (the same one, but for ``--runtime auto``): a budget relative to the teacher is relative to
    the teacher *on the reference's runtime*.

    Example:
        >>> meter = LatencyMeter(runtime, teacher, (1, 32, 32), threads=1, batch_size=1)   # doctest: +SKIP
        >>> meter.calibrate().median_ms, meter.measure(student).ratio                     # doctest: +SKIP
        (2.29, 0.186)
    """

    def __init__(
        self,
        runtime: Runtime,
        reference: Artifact,
        input_shape: tuple[int, ...],
        *,
        threads: int,
        batch_size: int,
        protocol: Protocol | None = None,
    ) -> None:
        self.runtime = runtime
        self.input_shape = tuple(input_shape)
        self.threads = threads
        self.batch_size = batch_size
        self.protocol = protocol or Protocol()
        self._reference_runner = runtime.runner(reference, threads=threads, batch_size=batch_size)
        self._reference = artifact_run(self._reference_runner, self.input_shape, batch_size)
        self.anchor_ms: float | None = None
        self.measured_by: dict[str, Any] | None = None  # timed here (a Meter)
        self.tally = NoiseTally()
        from autocompress.measure.guard import core_guard

        self.cores = core_guard()  # no other autocompress process on this host fine-tunes while we time

    def calibrate(self, *, factor: float = 2.5) -> Latency:
        """The reference alone over a ``factor`` times longer window; its figure becomes the anchor."""
        with self.cores.timing(), self._reference_runner.session():
            latency = measure_blocks(
                [self._reference],
                protocol=self.protocol.longer(factor),
                threads=self.threads,
                batch_size=self.batch_size,
            )[0]
        self.anchor_ms = latency.median_ms if self.anchor_ms is None else min(self.anchor_ms, latency.median_ms)
        return latency

    def measure(self, artifact: Artifact, *, protocol: Protocol | None = None, runner: Runner | None = None) -> Latency:
        """``artifact`` timed side by side with the reference (``runner``: the artifact already opened with other
        runtime settings, e.g. a peer's defaults; same threads and batch)."""
        protocol = protocol or self.protocol
        runner = runner or self._runtime_of(artifact).runner(artifact, threads=self.threads, batch_size=self.batch_size)
        run = artifact_run(runner, self.input_shape, self.batch_size)
        with self.cores.timing(), runner.session():
            candidate, reference = measure_blocks(
                [run, self._reference],
                protocol=protocol,
                threads=self.threads,
                batch_size=self.batch_size,
                anchor_ms=self.anchor_ms,
            )
        latency = _side_by_side(candidate, reference, anchor_ms=self.anchor_ms, protocol=protocol)
        if self.anchor_ms is not None and reference.median_ms < self.anchor_ms:
            self.anchor_ms = reference.median_ms
        return self.tally.count(latency)

    def _runtime_of(self, artifact: Artifact) -> Runtime:
        """The runtime that runs ``artifact``: the reference's, or (``--runtime auto``) the one that built it. The
        reference stays the canary whatever runtime the candidate uses: it watches the machine, not the engine."""
        return self.runtime if artifact.runtime == self.runtime.name else get_runtime(artifact.runtime)

    def noise_summary(self) -> dict[str, Any]:
        """How noisy the machine was over this meter's figures (for the study, the report and metrics.json)."""
        return {**self.tally.summary(), "reference_anchor_ms": self.anchor_ms, "protocol": self.protocol.to_dict()}


def structure_key(model: nn.Module, *extra: object) -> str:
    """Hash of the model's layer shapes plus ``extra`` (quant settings, threads, batch).

    Two models with the same key differ only in weight values, so their latency is the same up to noise: the search
    reuses a measurement instead of timing the same architecture again.
    """
    digest = hashlib.sha1()
    for name, tensor in list(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:16]


class LatencyCache:
    """In-memory ``structure_key → Latency`` map (per study process; no global state)."""

    def __init__(self) -> None:
        self._entries: dict[str, Latency] = {}

    def get(self, key: str) -> Latency | None:
        return self._entries.get(key)

    def put(self, key: str, latency: Latency) -> None:
        self._entries[key] = latency

"""The noise-robust latency protocol and the decisions built on it, with a fake clock (no wall-clock assertions).

The fake clock makes every run last exactly what the test says, so the figure, its interval, the canary and the
pooling of a second figure are checked as numbers. Whether the protocol holds on a real noisy machine is measured by
``benchmarks/latency_noise.py``, not asserted here.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import autocompress.measure.latency as latency_module
from autocompress.measure.latency import Latency, LatencyMeter, Protocol, combine, measure_blocks
from autocompress.policy import QuantPolicy
from autocompress.runtimes import Artifact, Runner


class FakeClock:
    """``perf_counter``/``perf_counter_ns`` that advance only when a run "takes" time."""

    def __init__(self) -> None:
        self.now_ns = 0

    def perf_counter_ns(self) -> int:
        return self.now_ns

    def perf_counter(self) -> float:
        return self.now_ns / 1e9

    def runner(self, durations_ms):  # type: ignore[no-untyped-def]
        """A run whose i-th call lasts ``durations_ms(i)`` ms."""
        calls = {"n": 0}

        def run() -> None:
            self.now_ns += int(durations_ms(calls["n"]) * 1e6)
            calls["n"] += 1

        run.calls = calls  # type: ignore[attr-defined]
        return run


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(
        latency_module,
        "time",
        types.SimpleNamespace(perf_counter_ns=fake.perf_counter_ns, perf_counter=fake.perf_counter),
    )
    return fake


PROTOCOL = Protocol(warmup=2, min_runs=5, block_s=0.01, window_s=0.2, max_window_s=0.5, warmup_s=0.0, floor=0.03)


def test_figure_is_the_fastest_block_and_ignores_a_slow_phase(clock: FakeClock) -> None:
    # 1 ms runs, except a slow phase (runs 30..119) at 1.8 ms: the figure is the undisturbed 1 ms, not the median.
    run = clock.runner(lambda i: 1.8 if 30 <= i < 120 else 1.0)
    lat = measure_blocks([run], protocol=PROTOCOL, threads=1, batch_size=1)[0]
    assert lat.median_ms == pytest.approx(1.0)
    assert lat.low == pytest.approx(0.97) and lat.high == pytest.approx(1.03), "3rd-fastest block is 1 ms too"
    assert lat.typical_ms is not None and lat.typical_ms > 1.0
    assert lat.blocks >= 10 and lat.seconds >= PROTOCOL.window_s
    assert lat.noise in ("noisy", "busy") and lat.spread > 0.1, "a slow phase is reported as noise"


def test_default_blocks_find_undisturbed_runs_in_a_fine_mixture(clock: FakeClock) -> None:
    # A slow phase that is a fine mixture, as traced on the Zen 3 VM: 0.42 ms undisturbed runs come in short runs of
    # 3 in every 60 calls, the rest take 0.75 ms. Blocks of 3 runs (the default) catch the undisturbed figure; blocks
    # of 20 ms (the old default, ~27 runs) never hold only undisturbed runs and report the slow phase.
    def mixture(i: int) -> float:
        return 0.42 if i % 60 in (7, 8, 9) else 0.75

    default = Protocol(warmup=0, min_runs=30, window_s=0.5, max_window_s=0.5, warmup_s=0.0)
    assert default.block_runs == 3 and default.block_s == 0.0
    lat = measure_blocks([clock.runner(mixture)], protocol=default, threads=1, batch_size=1)[0]
    assert lat.median_ms == pytest.approx(0.42)
    old = Protocol(warmup=0, min_runs=30, block_s=0.02, window_s=0.5, max_window_s=0.5, warmup_s=0.0)
    assert measure_blocks([clock.runner(mixture)], protocol=old, threads=1, batch_size=1)[0].median_ms == pytest.approx(
        0.75
    )


def test_turns_with_a_rewarm_run_keep_the_cold_runs_after_a_switch_out_of_the_figure(clock: FakeClock) -> None:
    # Side by side, the first two runs of an artifact after the other one ran are cold (2x): its weights were evicted.
    last = {"who": ""}

    def cold_after_switch(name: str, warm_ms: float):  # type: ignore[no-untyped-def]
        streak = {"n": 0}

        def duration(i: int) -> float:
            streak["n"] = streak["n"] + 1 if last["who"] == name else 1
            last["who"] = name
            return 2 * warm_ms if streak["n"] <= 2 else warm_ms

        return clock.runner(duration)

    base = dict(warmup=0, min_runs=30, window_s=0.5, max_window_s=0.5, warmup_s=0.0)
    default = Protocol(**base)  # type: ignore[arg-type]
    assert (default.switch_s, default.rewarm_runs) == (0.02, 1)
    cand, ref = measure_blocks(
        [cold_after_switch("cand", 0.4), cold_after_switch("ref", 2.0)], protocol=default, threads=1, batch_size=1
    )
    assert (cand.median_ms, ref.median_ms) == (pytest.approx(0.4), pytest.approx(2.0))
    every_block = Protocol(switch_s=0.0, rewarm_runs=0, **base)  # type: ignore[arg-type]
    cand, _ = measure_blocks(
        [cold_after_switch("cand", 0.4), cold_after_switch("ref", 2.0)], protocol=every_block, threads=1, batch_size=1
    )
    assert cand.median_ms == pytest.approx(0.8), "alternating every 3 runs, each block's median is a cold run"


def test_interval_upper_end_is_the_third_fastest_block() -> None:
    # Block medians 1.0, 1.5, 1.2, 1.1, 1.6: figure 1.0; a bootstrap of the minimum over the blocks puts its upper
    # bound near the third order statistic, 1.2; both ends widened by the 3 % floor.
    lat = latency_module._summary(
        [1.0] * 5, [1.0, 1.5, 1.2, 1.1, 1.6], threads=1, batch_size=1, seconds=1.0, load=(0.0, 0.0), floor=0.03
    )
    assert (lat.median_ms, lat.low, lat.high) == (1.0, pytest.approx(0.97), pytest.approx(1.2 * 1.03))
    assert lat.typical_ms == pytest.approx(1.2) and lat.noise == "noisy"  # typical block 20 % above the fastest
    busy = latency_module._summary([1.0], [1.0], threads=1, batch_size=1, seconds=1.0, load=(0.6, 0.0), floor=0.03)
    assert busy.noise == "busy" and busy.load_cores == 0.6


def test_side_by_side_ratio_and_canary_extends_a_slow_window(clock: FakeClock) -> None:
    # The reference is 2 ms undisturbed (its anchor); for the first 0.35 s the machine is slow (reference 2.4 ms,
    # candidate 0.9 ms instead of 0.5). The window (0.2 s) is extended until the reference comes back.
    slow = lambda: clock.now_ns < 0.35e9  # noqa: E731
    candidate = clock.runner(lambda i: 0.9 if slow() else 0.5)
    reference = clock.runner(lambda i: 2.4 if slow() else 2.0)
    cand, ref = measure_blocks([candidate, reference], protocol=PROTOCOL, threads=1, batch_size=1, anchor_ms=2.0)
    assert ref.median_ms == pytest.approx(2.0), "the window went on until the reference was back at its anchor"
    assert cand.median_ms == pytest.approx(0.5)
    assert PROTOCOL.window_s < cand.seconds <= PROTOCOL.max_window_s + 0.05


def test_meter_flags_a_window_that_never_came_back_and_widens_it_downwards(clock: FakeClock, monkeypatch) -> None:
    runs = {"ref": clock.runner(lambda i: 2.0)}

    class FakeRunner(Runner):
        def run(self, batch):  # type: ignore[no-untyped-def]
            return runs[str(self.artifact.path)]()

    class FakeRuntime:
        name = "fake"

        def runner(self, artifact: Artifact, *, threads: int, batch_size: int | None = None) -> Runner:
            return FakeRunner(artifact, threads=threads, batch_size=batch_size)

    meter = LatencyMeter(
        FakeRuntime(),
        Artifact(Path("ref"), QuantPolicy(), runtime="fake"),
        (1, 8, 8),
        threads=1,  # type: ignore[arg-type]
        batch_size=1,
        protocol=PROTOCOL,
    )
    anchor = meter.calibrate(factor=1.0)
    assert meter.anchor_ms == pytest.approx(2.0) == anchor.median_ms
    # Now the machine is slow for good: reference 2.4 ms (+20 %), candidate 0.9 ms.
    runs["ref"] = clock.runner(lambda i: 2.4)
    runs["cand"] = clock.runner(lambda i: 0.9)
    lat = meter.measure(Artifact(Path("cand"), QuantPolicy(), runtime="fake"))
    assert lat.ratio == pytest.approx(0.9 / 2.4)
    assert lat.noise == "noisy"
    assert lat.seconds >= PROTOCOL.max_window_s, "extended to the longest window first"
    # +20 % on the reference, up to 4x that on the candidate: the lower end goes down to 0.9 / 1.8.
    assert lat.low == pytest.approx(0.9 / 1.8)
    assert meter.noise_summary()["not_quiet"] == 1 and meter.anchor_ms == pytest.approx(2.0)


def test_combine_pools_blocks_of_two_figures() -> None:
    a = Latency(1.0, 0, 1, 1, 10, 1, 1, low_ms=0.97, high_ms=1.3 * 1.03, blocks=3, block_medians=(1.0, 1.3, 1.3))
    b = Latency(1.05, 0, 1, 1, 10, 1, 1, low_ms=1.0, high_ms=1.2 * 1.03, blocks=3, block_medians=(1.05, 1.1, 1.2))
    pooled = combine(a, b)
    assert pooled.median_ms == pytest.approx(1.0)
    assert pooled.high == pytest.approx(1.1 * 1.03), "third fastest of the pooled blocks"
    assert pooled.blocks == 6 and pooled.n == 20


@pytest.mark.parametrize(
    ("figure", "low", "high", "over", "within"),
    [
        (0.6, 0.55, 0.65, True, False),  # whole interval over a 0.5 ms budget
        (0.45, 0.43, 0.48, False, True),  # whole interval within
        (0.49, 0.47, 0.53, False, False),  # straddles: measured again before deciding
    ],
)
def test_budget_decisions_use_the_interval(figure: float, low: float, high: float, over: bool, within: bool) -> None:
    lat = Latency(figure, 0, figure, figure, 10, 1, 1, low_ms=low, high_ms=high)
    assert lat.over(0.5) is over and lat.within(0.5) is within and lat.straddles(0.5) is (not over and not within)


def test_old_records_without_intervals_still_read() -> None:
    old = {"median_ms": 0.4, "iqr_ms": 0.01, "p10_ms": 0.39, "p90_ms": 0.42, "n": 100, "threads": 1, "batch_size": 1}
    lat = Latency.from_dict(old)
    assert lat.low == lat.high == 0.4 and lat.noise == "quiet"
    assert Latency.from_dict(lat.to_dict()) == lat

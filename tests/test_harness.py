"""Harness statistics: the interval for the median, grouping, stopping, and flagging noise."""

from __future__ import annotations

import random
import statistics

import pytest

from vidnas._errors import SpecError
from vidnas.latency_models import HarnessConfig, compare, measure, median_interval, quantile
from vidnas.latency_models._backends import VirtualClock
from vidnas.latency_models._stats import summarize


def virtual_runner(durations_ms):
    """A runner whose calls take the given (cycled) durations on a virtual clock."""
    clock = VirtualClock()
    seq = iter(durations_ms) if not callable(durations_ms) else None

    def run() -> None:
        clock.now += (durations_ms() if seq is None else next(seq)) / 1000

    run.clock = clock
    return run


def test_quantile_matches_numpy_linear():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert quantile(values, 0.5) == 3.0
    assert quantile(values, 0.1) == pytest.approx(1.4)
    assert quantile(values, 0.9) == pytest.approx(4.6)


def test_median_interval_covers_the_true_median_about_95_percent():
    rng = random.Random(0)
    covered = 0
    trials = 600
    for _ in range(trials):
        sample = [rng.lognormvariate(0, 0.5) for _ in range(25)]  # true median 1.0
        lo, hi = median_interval(sample)
        covered += lo <= 1.0 <= hi
    assert 0.92 <= covered / trials <= 0.995


def test_constant_timings_are_trusted_and_stop_early():
    config = HarnessConfig(min_runs=10, max_runs=200)
    m = measure(virtual_runner(lambda: 4.0), config)
    assert m.median_ms == pytest.approx(4.0) and m.p10_ms == pytest.approx(4.0)
    assert m.trusted and m.runs < 200 and m.cv == pytest.approx(0.0, abs=1e-9)


def test_fast_calls_are_grouped():
    config = HarnessConfig(min_sample_seconds=0.002)
    m = measure(virtual_runner(lambda: 0.1), config)  # 0.1 ms per call
    assert m.inner_loops == 20
    assert m.median_ms == pytest.approx(0.1)


def test_noisy_timings_are_flagged_not_trusted():
    rng = random.Random(1)
    config = HarnessConfig(min_runs=10, max_runs=40, target_rel_ci=0.02, max_cv=0.1, min_sample_seconds=0.0)
    m = measure(virtual_runner(lambda: rng.choice([1.0, 3.0])), config)
    assert not m.trusted
    assert "interval" in m.reason or "CV" in m.reason
    assert m.runs == 40  # kept sampling to the budget before giving up


def test_warmup_runs_by_count_and_by_time():
    calls = []

    def run():
        calls.append(1)

    run.clock = VirtualClock()
    m = measure(run, HarnessConfig(warmup_runs=7, warmup_seconds=0.0, min_runs=5, max_runs=5))
    assert m.warmup_runs == 7
    clock = VirtualClock()

    def slow():
        clock.now += 0.01

    slow.clock = clock
    m = measure(slow, HarnessConfig(warmup_runs=1, warmup_seconds=0.05, min_runs=5, max_runs=5))
    assert m.warmup_runs >= 5  # 10 ms calls for at least 50 ms


def test_compare_interleaves_and_reports_the_ratio():
    a, b = virtual_runner(lambda: 2.0), virtual_runner(lambda: 3.0)
    measurements, ratios = compare({"a": a, "b": b}, HarnessConfig(min_runs=10, max_runs=50))
    assert measurements["a"].median_ms == pytest.approx(2.0)
    (ratio,) = ratios
    assert (ratio.a, ratio.b) == ("b", "a") and ratio.median == pytest.approx(1.5)
    assert ratio.ci_low <= 1.5 <= ratio.ci_high


def test_config_errors_name_the_field():
    with pytest.raises(SpecError) as info:
        HarnessConfig(min_runs=2)
    assert info.value.field == "harness.min_runs"


def test_summarize_reports_relative_interval():
    m = summarize([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0], inner_loops=1, warmup_runs=1, target_rel_ci=0.5,
                  max_cv=0.5)
    assert m.trusted and m.rel_ci == pytest.approx((m.ci_high_ms - m.ci_low_ms) / 2 / statistics.median(
        [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0]))

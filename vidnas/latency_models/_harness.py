"""The measurement harness: warm-up, repeated timed runs until the median is pinned down.

The procedure, for one callable:

1. warm up: call it at least ``warmup_runs`` times *and* for at least ``warmup_seconds``;
2. group calls: calls faster than ``min_sample_seconds`` are timed in groups of
   ``inner_loops`` so that one sample is long enough for the timer and the scheduler;
3. sample: take at least ``min_runs`` samples, then keep sampling while the median's 95 %
   interval is wider than ``target_rel_ci`` of the median, up to ``max_runs`` samples or
   ``max_seconds``;
4. judge: the result is *untrusted* when the interval never got narrow enough or the
   coefficient of variation is above ``max_cv`` (see :class:`Measurement`).

The garbage collector is paused while sampling. :func:`compare` measures several
callables interleaved, sample by sample, so that machine noise hits them alike, and
reports their ratios with intervals.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._stats import Measurement, median_interval, summarize

Runner = Callable[[], None]


@dataclasses.dataclass(frozen=True)
class HarnessConfig:
    """How long and how carefully to measure. Times in seconds."""

    warmup_runs: int = 3
    warmup_seconds: float = 0.25  # multi-threaded runtimes take a while to settle
    min_runs: int = 10
    max_runs: int = 300
    max_seconds: float = 5.0
    min_sample_seconds: float = 0.002
    target_rel_ci: float = 0.02  # median's 95 % interval half-width / median
    max_cv: float = 0.15
    recheck_tolerance: float = 0.05  # table entries are measured twice; more drift than this marks them noisy
    paired_reference: bool = True  # time everything interleaved with the reference workload (see _reference)

    def __post_init__(self) -> None:
        checks = {
            "warmup_runs": self.warmup_runs >= 0,
            "min_runs": self.min_runs >= 3,
            "max_runs": self.max_runs >= self.min_runs,
            "max_seconds": self.max_seconds > 0,
            "target_rel_ci": self.target_rel_ci > 0,
            "max_cv": self.max_cv > 0,
        }
        for field, ok in checks.items():
            if not ok:
                raise SpecError(f"harness.{field}", getattr(self, field), "is out of range",
                                "min_runs >= 3, max_runs >= min_runs, times and targets > 0")

    @classmethod
    def quick(cls) -> HarnessConfig:
        """For tests and smoke runs: fewer samples, looser targets."""
        return cls(warmup_runs=1, warmup_seconds=0.0, min_runs=5, max_runs=20, max_seconds=0.5,
                   min_sample_seconds=0.0005, target_rel_ci=0.05, max_cv=0.3)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _clock_of(run: Runner) -> Callable[[], float]:
    # A runner may bring its own clock (the debug backend's virtual one).
    return getattr(run, "clock", time.perf_counter)


def _warm_up(run: Runner, config: HarnessConfig) -> tuple[int, float]:
    """Warm up; return (calls made, seconds of the last call)."""
    clock = _clock_of(run)
    start = clock()
    calls, last = 0, 0.0
    while calls < config.warmup_runs or clock() - start < config.warmup_seconds:
        t0 = clock()
        run()
        last = clock() - t0
        calls += 1
        if calls >= 10_000:
            break
    if calls == 0:  # still need one call to size the groups
        t0 = clock()
        run()
        last = clock() - t0
        calls = 1
    return calls, last


def _inner_loops(seconds_per_call: float, config: HarnessConfig) -> int:
    if seconds_per_call <= 0:
        return 1
    return max(1, math.ceil(config.min_sample_seconds / seconds_per_call - 1e-9))


def _sample(run: Runner, inner: int) -> float:
    clock = _clock_of(run)
    t0 = clock()
    for _ in range(inner):
        run()
    return (clock() - t0) * 1000 / inner


def _narrow_enough(samples: list[float], config: HarnessConfig) -> bool:
    lo, hi = median_interval(samples)
    med = statistics.median(samples)
    return med > 0 and (hi - lo) / 2 / med <= config.target_rel_ci


def measure(run: Runner, config: HarnessConfig | None = None) -> Measurement:
    """Time ``run`` (a no-argument callable that completes its work before returning)."""
    config = config or HarnessConfig()
    warm_calls, last = _warm_up(run, config)
    inner = _inner_loops(last, config)
    clock = _clock_of(run)
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        while len(samples) < config.max_runs:
            samples.append(_sample(run, inner))
            n = len(samples)
            if n >= config.min_runs:
                if clock() - start > config.max_seconds:
                    break
                if n % 5 == 0 and _narrow_enough(samples, config):
                    break
    finally:
        if gc_was_enabled:
            gc.enable()
    return summarize(samples, inner_loops=inner, warmup_runs=warm_calls, target_rel_ci=config.target_rel_ci,
                     max_cv=config.max_cv)


@dataclasses.dataclass(frozen=True)
class Ratio:
    """``a / b`` from paired interleaved samples: median and a bootstrap 95 % interval."""

    a: str
    b: str
    median: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _interleaved_samples(runs: Mapping[str, Runner], config: HarnessConfig, seed: int
                         ) -> tuple[dict[str, list[float]], dict[str, int], dict[str, int]]:
    names = list(runs)
    inner: dict[str, int] = {}
    warm: dict[str, int] = {}
    for name in names:
        warm[name], last = _warm_up(runs[name], config)
        inner[name] = _inner_loops(last, config)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {n: [] for n in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for round_ in range(config.max_runs):
            order = names[:]
            rng.shuffle(order)
            for name in order:
                samples[name].append(_sample(runs[name], inner[name]))
            if round_ + 1 >= config.min_runs:
                if time.perf_counter() - start > config.max_seconds * len(names):
                    break
                if (round_ + 1) % 5 == 0 and all(_narrow_enough(s, config) for s in samples.values()):
                    break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, inner, warm


def measure_interleaved(runs: Mapping[str, Runner], config: HarnessConfig | None = None, *,
                        seed: int = 0) -> dict[str, Measurement]:
    """Measure several callables sample by sample in shuffled rounds.

    A burst of machine noise then hits every callable alike instead of ruining one;
    the rounds go on until every median is pinned down or the budget (``max_seconds``
    per callable) is spent.
    """
    config = config or HarnessConfig()
    samples, inner, warm = _interleaved_samples(runs, config, seed)
    return {n: summarize(samples[n], inner_loops=inner[n], warmup_runs=warm[n], target_rel_ci=config.target_rel_ci,
                         max_cv=config.max_cv) for n in runs}


def compare(runs: Mapping[str, Runner], config: HarnessConfig | None = None, *,
            seed: int = 0) -> tuple[dict[str, Measurement], list[Ratio]]:
    """Measure several callables interleaved and the ratio of each to the first (paired by round)."""
    config = config or HarnessConfig()
    if len(runs) < 2:
        raise SpecError("runs", list(runs), "needs at least two callables to compare")
    samples, inner, warm = _interleaved_samples(runs, config, seed)
    measurements = {n: summarize(samples[n], inner_loops=inner[n], warmup_runs=warm[n],
                                 target_rel_ci=config.target_rel_ci, max_cv=config.max_cv) for n in runs}
    names = list(runs)
    rng = random.Random(seed)
    ratios = [_paired_ratio(name, names[0], samples[name], samples[names[0]], rng) for name in names[1:]]
    return measurements, ratios


_REFERENCE = "\0reference"  # the reference's key inside measure_group: never a caller's name


def measure_group(runs: Mapping[str, Runner], reference: Runner | None, config: HarnessConfig | None = None, *,
                  seed: int = 0) -> tuple[dict[str, Measurement], dict[str, Ratio], Measurement | None]:
    """Measure ``runs`` interleaved; with a ``reference`` callable, sampled in every round too,
    each run also gets its paired ratio to it.

    Returns ``(measurements by name, ratios by name, the reference's measurement)``; the
    ratios are empty and the reference ``None`` without a reference.
    """
    if reference is None:
        return measure_interleaved(runs, config, seed=seed), {}, None
    measured, ratios = compare({_REFERENCE: reference, **runs}, config, seed=seed)
    return {name: measured[name] for name in runs}, {r.a: r for r in ratios}, measured[_REFERENCE]


def _paired_ratio(a: str, b: str, xa: list[float], xb: list[float], rng: random.Random,
                  resamples: int = 2000) -> Ratio:
    pairs = [x / y for x, y in zip(xa, xb) if y > 0]
    med = statistics.median(pairs)
    boot = sorted(statistics.median(rng.choices(pairs, k=len(pairs))) for _ in range(resamples))
    return Ratio(a, b, med, boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1])

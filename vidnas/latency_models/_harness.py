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
reports their ratios with intervals. :func:`measure_group` times items interleaved with
the reference workload and decides, per group, whether the items' figures are their
per-round ratios to the reference, their plain medians rescaled by the reference's level,
or their plain medians (``_pairing`` states the rule); items still flagged noisy are
measured again by the callers, at most ``remeasure_rounds`` more passes.

A runner may bring its own timer: ``run.time_calls(n)`` returning milliseconds per call
over ``n`` calls (CUDA events for torch on a GPU), or its own clock, ``run.clock`` (the
debug backend's virtual one); otherwise ``time.perf_counter`` brackets the calls.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._pairing import (
    BASES,
    Basis,
    Ratio,
    Series,
    Timing,
    combine,
    decide_basis,
    paired_ratio,
    rel_ci,
)
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
    max_cv: float = 0.15  # on the robust coefficient of variation (see ``Measurement``)
    recheck_tolerance: float = 0.05  # passes over one item must agree this closely to confirm it
    paired_reference: bool = True  # time everything interleaved with the reference workload (see _reference)
    basis: str = "auto"  # paired ratio, level-rescaled or plain median: decided per group (see _pairing), or forced
    remeasure_rounds: int = 2  # extra passes over items still flagged noisy (0: flag them and move on)

    def __post_init__(self) -> None:
        checks = {
            "warmup_runs": self.warmup_runs >= 0,
            "min_runs": self.min_runs >= 3,
            "max_runs": self.max_runs >= self.min_runs,
            "max_seconds": self.max_seconds > 0,
            "target_rel_ci": self.target_rel_ci > 0,
            "max_cv": self.max_cv > 0,
            "recheck_tolerance": self.recheck_tolerance > 0,
            "remeasure_rounds": 0 <= self.remeasure_rounds <= 10,
        }
        for field, ok in checks.items():
            if not ok:
                raise SpecError(f"harness.{field}", getattr(self, field), "is out of range",
                                "min_runs >= 3, max_runs >= min_runs, times and targets > 0, "
                                "0 <= remeasure_rounds <= 10")
        if self.basis not in BASES:
            raise SpecError("harness.basis", self.basis, "is not a basis", f"choose one of {list(BASES)}")

    @classmethod
    def quick(cls) -> HarnessConfig:
        """For tests, smoke runs and a campaign's on-the-fly table: fewer samples, looser targets.

        At least 10 samples (with 5 the median's interval is the whole range), up to 40 when
        the median is slow to settle, samples of at least 2 ms (a 0.02 ms unit timed alone is
        mostly timer and scheduler), a short timed warm-up (a runtime's first calls are slow),
        and up to two more passes over entries still flagged noisy.
        """
        return cls(warmup_runs=2, warmup_seconds=0.05, min_runs=10, max_runs=40, max_seconds=0.5,
                   min_sample_seconds=0.002, target_rel_ci=0.05, max_cv=0.3, remeasure_rounds=2)

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
    timer = getattr(run, "time_calls", None)
    if timer is not None:  # a device timer knows the call's own time better than the host clock
        last = timer(1) / 1000
    return calls, last


def _inner_loops(seconds_per_call: float, config: HarnessConfig) -> int:
    if seconds_per_call <= 0:
        return 1
    return max(1, math.ceil(config.min_sample_seconds / seconds_per_call - 1e-9))


def _sample(run: Runner, inner: int) -> float:
    """Milliseconds per call over ``inner`` calls."""
    timer = getattr(run, "time_calls", None)
    if timer is not None:
        return float(timer(inner))
    clock = _clock_of(run)
    t0 = clock()
    for _ in range(inner):
        run()
    return (clock() - t0) * 1000 / inner


def _narrow_enough(samples: list[float], config: HarnessConfig, floor_ms: float = 0.0) -> bool:
    """Whether the median's interval is within the target, relative to the median (or to ``floor_ms``
    when that is larger: an item faster than the reference is judged on the reference's scale)."""
    lo, hi = median_interval(samples)
    med = statistics.median(samples)
    return med > 0 and (hi - lo) / 2 / max(med, floor_ms) <= config.target_rel_ci


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


def _settled(samples: list[float], reference: list[float] | None, config: HarnessConfig, rounds_left: int) -> bool:
    """Whether an item's figure is pinned down on a basis its group may choose (see ``_pairing``).

    That is its ratio to the reference, or its plain median with the reference's level. With
    the plain median pinned but not the reference's level, sampling goes on only while the
    level can still be pinned in the rounds left (its interval narrows as one over the
    square root of the rounds): a reference too noisy for that would hold every item to
    the budget for nothing, and the group falls back to the plain medians.
    """
    if reference is None:
        return _narrow_enough(samples, config)
    reference_ms = statistics.median(reference)
    if config.basis == "plain":
        return _narrow_enough(samples, config, reference_ms)
    if config.basis != "level":
        ratios = [x / r for x, r in zip(samples, reference) if r > 0]
        if ratios and _narrow_enough(ratios, config, 1.0):
            return True
    if config.basis == "paired" or not _narrow_enough(samples, config, reference_ms):
        return False
    h_ref = rel_ci(reference)
    if h_ref <= config.target_rel_ci:
        return True
    needed = len(reference) * (h_ref / config.target_rel_ci) ** 2
    return config.basis == "auto" and needed > len(reference) + rounds_left


def _interleaved_samples(runs: Mapping[str, Runner], config: HarnessConfig, seed: int, reference: str | None = None
                         ) -> tuple[dict[str, list[float]], dict[str, int], dict[str, int]]:
    """Samples of every runner in shuffled rounds, until every item is settled or the budget is spent.

    ``reference`` names the runner the others are paired with: it need not settle itself.
    """
    names = list(runs)
    inner: dict[str, int] = {}
    warm: dict[str, int] = {}
    for name in names:
        warm[name], last = _warm_up(runs[name], config)
        inner[name] = _inner_loops(last, config)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {n: [] for n in names}
    items = [n for n in names if n != reference]
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
                elapsed = time.perf_counter() - start
                budget = config.max_seconds * len(names)
                if elapsed > budget:
                    break
                if (round_ + 1) % 5 == 0:
                    ref = samples[reference] if reference is not None else None
                    per_round = elapsed / (round_ + 1)
                    left = config.max_runs - round_ - 1
                    if per_round > 0:
                        left = min(left, int((budget - elapsed) / per_round))
                    if all(_settled(samples[n], ref, config, left) for n in items):
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
    ratios = [paired_ratio(name, names[0], samples[name], samples[names[0]]) for name in names[1:]]
    return measurements, ratios


_REFERENCE = "\0reference"  # the reference's key inside measure_group: never a caller's name


@dataclasses.dataclass(frozen=True)
class GroupTiming:
    """What :func:`measure_group` found: each item's :class:`Timing`, the reference's time, the group's basis."""

    timings: dict[str, Timing]
    reference: Measurement | None
    basis: Basis


def measure_group(runs: Mapping[str, Runner], reference: Runner | None, config: HarnessConfig | None = None, *,
                  seed: int = 0, previous: Mapping[str, Sequence[Series]] | None = None) -> GroupTiming:
    """Measure ``runs`` interleaved, with ``reference`` (when given) sampled in every round too.

    ``previous`` holds earlier passes over some of the items (a re-check, a re-measurement):
    they are pooled with this pass. The group's basis, paired or plain, is decided on
    every item's passes together (``_pairing.decide_basis``), and each item's figures are
    combined from its passes (``_pairing.combine``).
    """
    config = config or HarnessConfig()
    if not runs:
        raise SpecError("runs", [], "needs at least one callable to measure")
    if _REFERENCE in runs:
        raise SpecError("runs", _REFERENCE, "is a reserved name")
    previous = previous or {}
    if reference is None:
        samples, inner, warm = _interleaved_samples(runs, config, seed)
        refs = None
    else:
        samples, inner, warm = _interleaved_samples({_REFERENCE: reference, **runs}, config, seed, _REFERENCE)
        refs = samples[_REFERENCE]
    passes = {name: (*previous.get(name, ()), Series(tuple(samples[name]), None if refs is None else tuple(refs),
                                                     inner[name], warm[name]))
              for name in runs}
    basis = decide_basis(list(passes.values()), target_rel_ci=config.target_rel_ci, forced=config.basis)
    timings = {name: combine(p, basis, target_rel_ci=config.target_rel_ci, max_cv=config.max_cv,
                             tolerance=config.recheck_tolerance) for name, p in passes.items()}
    ref_measurement = None
    if refs is not None:
        ref_measurement = summarize(refs, inner_loops=inner[_REFERENCE], warmup_runs=warm[_REFERENCE],
                                    target_rel_ci=config.target_rel_ci, max_cv=config.max_cv)
    return GroupTiming(timings, ref_measurement, basis)

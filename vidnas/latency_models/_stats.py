"""Statistics of repeated timings: median, spread, and a distribution-free interval for the median."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Any


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), ``0 <= q <= 1``."""
    if not values:
        raise ValueError("quantile of no values")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval for the median from order statistics.

    With n samples the interval ``[x_(j), x_(n-j+1)]`` covers the median with probability
    ``1 - 2 P(Binomial(n, 1/2) < j)``; the largest ``j`` that keeps the coverage at least
    ``confidence`` is used. With fewer than 6 samples the interval is the full range.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n < 6:
        return ordered[0], ordered[-1]
    alpha = 1 - confidence
    j = 0
    while j + 1 <= n // 2 and 2 * _binom_cdf(j, n) <= alpha:  # P(X <= j) = P(X < j + 1)
        j += 1
    j = max(j, 1)
    return ordered[j - 1], ordered[n - j]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Latency of one thing on one backend, in milliseconds, with its spread and trust.

    ``trusted`` is False when the median's 95 % interval stayed wider than the target or
    the robust coefficient of variation exceeded the limit within the time budget;
    ``reason`` then says which. Consumers print untrusted figures as such.

    ``cv`` is the classic standard deviation over the mean; ``robust_cv`` is the
    interquartile range over 1.349 times the median, which equals the CV for normal noise
    but is not blown up by the rare sample a preempted thread stretches tenfold (which
    the median ignores anyway), so trust is judged on it.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    cv: float  # standard deviation / mean of the samples
    ci_low_ms: float  # 95 % interval for the median
    ci_high_ms: float
    runs: int  # timed samples
    inner_loops: int  # calls per sample (fast calls are timed in groups)
    warmup_runs: int
    trusted: bool
    reason: str = ""
    robust_cv: float = 0.0  # (p75 - p25) / 1.349 / median

    @property
    def rel_ci(self) -> float:
        """Half-width of the median's interval relative to the median."""
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.median_ms if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rel_ci": self.rel_ci}


def robust_cv(values: Sequence[float]) -> float:
    """Interquartile range over 1.349 times the median (the CV for normal noise, robust to rare outliers)."""
    med = statistics.median(values)
    if med <= 0 or len(values) < 2:
        return 0.0
    return (quantile(values, 0.75) - quantile(values, 0.25)) / 1.349 / med


def summarize(samples_ms: Sequence[float], *, inner_loops: int, warmup_runs: int, target_rel_ci: float,
              max_cv: float) -> Measurement:
    """A :class:`Measurement` of ``samples_ms`` judged against the trust targets."""
    med = statistics.median(samples_ms)
    mean = statistics.fmean(samples_ms)
    sd = statistics.pstdev(samples_ms) if len(samples_ms) > 1 else 0.0
    cv = sd / mean if mean > 0 else 0.0
    rcv = robust_cv(samples_ms)
    lo, hi = median_interval(samples_ms)
    rel = (hi - lo) / 2 / med if med > 0 else math.inf
    reasons = []
    if rel > target_rel_ci:
        reasons.append(f"median 95% interval +-{100 * rel:.1f}% wider than +-{100 * target_rel_ci:.1f}%")
    if rcv > max_cv:
        reasons.append(f"robust CV {100 * rcv:.1f}% above {100 * max_cv:.0f}%")
    return Measurement(
        median_ms=med,
        p10_ms=quantile(samples_ms, 0.1),
        p90_ms=quantile(samples_ms, 0.9),
        mean_ms=mean,
        cv=cv,
        ci_low_ms=lo,
        ci_high_ms=hi,
        runs=len(samples_ms),
        inner_loops=inner_loops,
        warmup_runs=warmup_runs,
        trusted=not reasons,
        reason="; ".join(reasons),
        robust_cv=rcv,
    )

"""Rank statistics shared by latency validation, proxy calibration and the search benchmark.

One definition each, with one rule for undefined cases: when either input is constant (or
there are fewer than two pairs) a rank correlation carries no ranking information and is
returned as ``undefined`` (default 0.0).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence

__all__ = ["bootstrap_interval", "kendall", "percentile", "spearman"]


def _correlation(fn, x: Sequence[float], y: Sequence[float], undefined: float) -> float:
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = fn(x, y).statistic
    return float(value) if value == value else undefined


def kendall(x: Sequence[float], y: Sequence[float], *, undefined: float = 0.0) -> float:
    """Kendall's tau-b."""
    from scipy import stats

    return _correlation(stats.kendalltau, x, y, undefined)


def spearman(x: Sequence[float], y: Sequence[float], *, undefined: float = 0.0) -> float:
    """Spearman's rho."""
    from scipy import stats

    return _correlation(stats.spearmanr, x, y, undefined)


Statistic = Callable[[Sequence[float], Sequence[float]], float]


def bootstrap_interval(x: Sequence[float], y: Sequence[float], stat: Statistic, *, resamples: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(x, y)`` over resampled pairs."""
    rng = random.Random(seed)
    n = len(x)
    values = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        values.append(stat([x[i] for i in idx], [y[i] for i in idx]))
    values.sort()
    tail = (1 - level) / 2
    return values[int(tail * resamples)], values[int((1 - tail) * resamples) - 1]


def percentile(value: float, population: Sequence[float]) -> float:
    """Share of ``population`` below ``value``, ties counted half (0 when the population is empty)."""
    below = sum(1 for v in population if v < value) + 0.5 * sum(1 for v in population if v == value)
    return below / max(1, len(population))

"""Paired, level or plain: which figure of an item timed beside the reference workload to stand behind.

Every item (a table entry, an end-to-end network) is timed in shuffled rounds together
with the reference workload (``_reference``), so each round gives a pair: the item's time
per call ``x_i`` and the reference's ``r_i`` (milliseconds). Three figures follow:

* **paired**: the median of the per-round ratios ``x_i / r_i``. Multiplied by a table's
  typical reference time it is in milliseconds at the speed the machine had while the
  table was built: it cancels the machine's speed wherever the reference shares it,
  round by round within a group and, above all, between a table's build and a later
  session (the whole-machine drift correction).
* **level**: the ratio of the medians, ``median(x) / median(r)``, at the same typical
  reference time: the drift correction at the level of the whole group. The reference's
  round-to-round noise then moves every item of the group alike (it cannot reorder
  them) and a skewed reference cannot bias one item's ratio more than another's.
* **plain**: the median of ``x_i``, in this session's milliseconds.

Pairing round by round helps only while the reference runs at the machine speed the item
sees at that moment. With one thread on a shared machine it does; when the item uses
every core, or another process loads one, the reference competes with the item or is
slowed on its own, and the per-round ratio turns to noise. :func:`decide_basis` decides
per measurement group from the rounds themselves. With ``h_ratio``, ``h_plain`` and
``h_ref`` the relative half-widths of the 95 % intervals of the ratio's median, of the
item's plain median and of the reference's median (each the median over the group's
items, every item's passes pooled):

1. ``h_ratio <= h_plain``: dividing by the reference removes at least as much of the
   item's round-to-round variation as it adds. For log-times this is
   ``Var(log x - log r) <= Var(log x)``, i.e. the regression slope of ``log x`` on
   ``log r`` is at least 1/2 (Cochran's condition for a ratio estimator to beat the
   plain one): **paired** (the reference tracks the item round by round).
2. otherwise, ``h_ratio <= target_rel_ci``: the reference adds some variation of its own,
   but the ratio still meets the trust target, and its drift correction between sessions,
   which no statistic inside one group can see, is worth that price: **paired**.
3. otherwise, ``h_ref <= target_rel_ci``: round by round the reference adds variation the
   item does not have, but its level over the group is pinned down: **level** (the
   drift correction kept, without the per-round noise).
4. otherwise: the reference is too noisy even to say how fast the machine ran: **plain**.

The correlation of the paired log-times (pooled over the group's items, each pass centred
on its own median) is recorded beside the decision as a diagnostic. The level correction
assumes that the reference slows down with the machine as the items do; where it is
slowed differently (a workload of another size sharing cores with a second process), the
plain figures, which every validation prints too, show the difference.

An item measured in several passes (a table entry's re-check, re-measurements of flagged
items) keeps every pass's rounds; :func:`combine` turns them into one :class:`Timing`.
Its figure on the chosen basis comes from the pooled rounds of the passes that agree:
the two passes closest to each other must agree within ``tolerance`` (the item is then
*confirmed*), passes further than that from those two are left out (a burst of machine
noise during one pass is outvoted), and the medians are taken over the remaining rounds.
An item is trusted when its interval on its basis meets the target (on the level basis:
the item's and the reference's) and, with two or more passes, it is confirmed; a single
pass must also keep its robust coefficient of variation within the limit (agreeing passes
show reproducibility directly, which the spread of single samples only hints at). An item faster than the reference
workload (a typical unit) is judged on the reference's scale: an uncertainty of a few
microseconds in a 20-microsecond entry is no uncertainty in any network's prediction.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._stats import Measurement, median_interval, robust_cv, summarize

BASES = ("auto", "paired", "level", "plain")  # harness.basis: decided from the data, or forced
RESCALED = ("paired", "level")  # the bases whose figures are at a table's reference speed


def _sig(value: float) -> float:
    return float(f"{value:.6g}")


@dataclasses.dataclass(frozen=True)
class Series:
    """One pass over one item: its time per call in each round (ms) and the reference's in the same rounds."""

    item_ms: tuple[float, ...]
    reference_ms: tuple[float, ...] | None = None
    inner_loops: int = 1
    warmup_runs: int = 0

    def __post_init__(self) -> None:
        items = tuple(float(v) for v in self.item_ms)
        if not items:
            raise SpecError("series.item_ms", [], "must hold at least one round")
        object.__setattr__(self, "item_ms", items)
        if self.reference_ms is not None:
            ref = tuple(float(v) for v in self.reference_ms)
            if len(ref) != len(items):
                raise SpecError("series.reference_ms", len(ref), f"must hold one time per round ({len(items)})")
            object.__setattr__(self, "reference_ms", ref)

    @property
    def paired(self) -> bool:
        return self.reference_ms is not None

    def ratios(self) -> list[float]:
        """Per-round ratios item / reference (rounds with a zero reference time left out)."""
        if self.reference_ms is None:
            return []
        return [x / r for x, r in zip(self.item_ms, self.reference_ms) if r > 0]

    def to_dict(self) -> dict[str, Any]:
        return {"item_ms": [_sig(v) for v in self.item_ms],
                "reference_ms": None if self.reference_ms is None else [_sig(v) for v in self.reference_ms],
                "inner_loops": self.inner_loops, "warmup_runs": self.warmup_runs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Series:
        return cls(tuple(data["item_ms"]), None if data.get("reference_ms") is None else tuple(data["reference_ms"]),
                   int(data.get("inner_loops", 1)), int(data.get("warmup_runs", 0)))


@dataclasses.dataclass(frozen=True)
class Ratio:
    """``a / b`` from paired interleaved samples: the median of per-round ratios and its 95 % interval."""

    a: str
    b: str
    median: float
    ci_low: float
    ci_high: float
    cv: float = 0.0  # robust coefficient of variation of the per-round ratios (see ``Measurement``)
    runs: int = 0

    @property
    def rel_ci(self) -> float:
        return (self.ci_high - self.ci_low) / 2 / self.median if self.median > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rel_ci": self.rel_ci}


def paired_ratio(a: str, b: str, xa: Sequence[float], xb: Sequence[float]) -> Ratio:
    """The :class:`Ratio` of paired samples (order-statistic interval, as for medians)."""
    pairs = [x / y for x, y in zip(xa, xb) if y > 0]
    if not pairs:
        raise SpecError("reference samples", list(xb)[:5], "are all zero; no ratio can be formed")
    med = statistics.median(pairs)
    lo, hi = median_interval(pairs)
    return Ratio(a, b, med, lo, hi, robust_cv(pairs), len(pairs))


def rel_ci(values: Sequence[float]) -> float:
    """Half-width of the median's 95 % interval relative to the median."""
    med = statistics.median(values)
    lo, hi = median_interval(values)
    return (hi - lo) / 2 / med if med > 0 else math.inf


@dataclasses.dataclass(frozen=True)
class Basis:
    """The figure a measurement group stands behind, and why."""

    basis: str  # "paired", "level" or "plain"
    reason: str
    plain_rel_ci: float  # median over the group's items
    ratio_rel_ci: float | None  # None without a reference
    correlation: float | None  # of the items' and the reference's log-times (diagnostic)
    items: int
    rounds: int  # median rounds per item, passes pooled
    reference_rel_ci: float | None = None  # of the reference's median (None without a reference)
    forced: bool = False  # chosen by ``harness.basis``, not from the data

    @property
    def rescaled(self) -> bool:
        """Whether the group's figures are at a table's reference speed (paired or level)."""
        return self.basis in RESCALED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Basis:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


def _pooled_log_correlation(items: Sequence[Sequence[Series]]) -> float | None:
    """Pearson correlation of item and reference log-times, each pass centred on its own medians."""
    xs: list[float] = []
    ys: list[float] = []
    for passes in items:
        for s in passes:
            pairs = [(math.log(x), math.log(r)) for x, r in zip(s.item_ms, s.reference_ms or ()) if x > 0 and r > 0]
            if len(pairs) < 3:
                continue
            cx = statistics.median(p[0] for p in pairs)
            cr = statistics.median(p[1] for p in pairs)
            xs += [p[0] - cx for p in pairs]
            ys += [p[1] - cr for p in pairs]
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def decide_basis(items: Sequence[Sequence[Series]], *, target_rel_ci: float, forced: str = "auto") -> Basis:
    """Paired, level or plain for a group of items, each given as its passes (see the module doc for the rule).

    Interval widths are relative to each item's median, or to the reference's when that is
    larger (an item faster than the reference is judged on the reference's scale).
    """
    if forced not in BASES:
        raise SpecError("harness.basis", forced, "is not a basis", f"choose one of {list(BASES)}")
    if not items or any(not passes for passes in items):
        raise SpecError("items", len(items), "must give at least one pass for every item")
    pooled = [[v for s in passes for v in s.item_ms] for passes in items]
    h_plain = statistics.median(rel_ci(v) for v in pooled)
    rounds = int(statistics.median(len(v) for v in pooled))
    paired = all(s.paired for passes in items for s in passes)
    if not paired:
        return Basis("plain", "no reference workload was timed beside the items", h_plain, None, None, len(items),
                     rounds)
    refs = [[v for s in passes for v in s.reference_ms or ()] for passes in items]
    # an item faster than the reference is judged on the reference's scale (see ``combine``)
    scales = [_scale(statistics.median(v), statistics.median(r)) for v, r in zip(pooled, refs)]
    h_plain = statistics.median(rel_ci(v) * k for v, k in zip(pooled, scales))
    h_ratio = statistics.median(rel_ci([q for s in passes for q in s.ratios()]) * k
                                for passes, k in zip(items, scales))
    h_ref = statistics.median(rel_ci(r) for r in refs)
    corr = _pooled_log_correlation(items)

    def made(basis: str, reason: str) -> Basis:
        return Basis(basis, reason, h_plain, h_ratio, corr, len(items), rounds, h_ref, forced != "auto")

    figures = (f"ratio interval +-{100 * h_ratio:.1f}%, plain +-{100 * h_plain:.1f}%, reference "
               f"+-{100 * h_ref:.1f}%")
    if forced != "auto":
        return made(forced, f"forced by harness.basis ({figures})")
    if h_ratio <= h_plain:
        return made("paired", f"the reference tracks the items round by round: {figures}")
    if h_ratio <= target_rel_ci:
        return made("paired", f"the ratio meets the +-{100 * target_rel_ci:.1f}% target ({figures}); "
                              "its drift correction between sessions is kept")
    if h_ref <= target_rel_ci:
        return made("level", f"round by round the reference adds variation of its own, but its level is pinned "
                             f"down: {figures}, target +-{100 * target_rel_ci:.1f}%; the group is rescaled by "
                             "the reference's median")
    return made("plain", f"the reference adds variation of its own and its level is not pinned down: {figures}, "
                         f"target +-{100 * target_rel_ci:.1f}%")


@dataclasses.dataclass(frozen=True)
class Timing:
    """One item's figures from all its passes, on the basis its group chose."""

    plain: Measurement  # over the pooled rounds of the passes used
    ratio: Ratio | None
    reference: Measurement | None  # the reference over the same rounds
    basis: Basis
    passes: tuple[Series, ...]
    used: tuple[int, ...]  # indices of the passes pooled into the figures
    drift: float | None  # how far apart the two closest passes are on the basis (None with one pass)
    trusted: bool
    reason: str

    @property
    def paired(self) -> bool:
        return self.basis.basis == "paired" and self.ratio is not None

    @property
    def level(self) -> float | None:
        """The ratio of the medians, item over reference (None without a reference)."""
        if self.reference is None or self.reference.median_ms <= 0:
            return None
        return self.plain.median_ms / self.reference.median_ms

    @property
    def rel_ci(self) -> float:
        """The interval's relative half-width on the chosen basis (the level's: item and reference combined)."""
        if self.paired and self.ratio is not None:
            return self.ratio.rel_ci
        if self.basis.basis == "level" and self.reference is not None:
            return math.hypot(self.plain.rel_ci, self.reference.rel_ci)
        return self.plain.rel_ci

    def rescaled_ms(self, reference_ms: float | None) -> float | None:
        """The figure at the reference speed ``reference_ms``: the per-round ratio on the paired basis, the
        ratio of medians otherwise (None without a reference or a reference time)."""
        if reference_ms is None:
            return None
        if self.paired and self.ratio is not None:
            return self.ratio.median * reference_ms
        level = self.level
        return None if level is None else level * reference_ms

    def ms(self, reference_ms: float | None) -> float:
        """The figure in milliseconds on the group's basis: rescaled to ``reference_ms`` (a table's typical
        reference time) on the paired and level bases when given, else the plain median."""
        rescaled = self.rescaled_ms(reference_ms) if self.basis.rescaled else None
        return rescaled if rescaled is not None else self.plain.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {"plain": self.plain.to_dict(), "ratio": self.ratio.to_dict() if self.ratio else None,
                "reference": self.reference.to_dict() if self.reference else None, "basis": self.basis.to_dict(),
                "passes": len(self.passes), "used": list(self.used), "drift": self.drift, "trusted": self.trusted,
                "reason": self.reason}


def _figure(series: Series, basis: str) -> float:
    if basis == "paired":
        return statistics.median(series.ratios())
    if basis == "level":
        return statistics.median(series.item_ms) / statistics.median(series.reference_ms or (1.0,))
    return statistics.median(series.item_ms)


def combine(passes: Sequence[Series], basis: Basis, *, target_rel_ci: float, max_cv: float,
            tolerance: float) -> Timing:
    """One :class:`Timing` from an item's passes (see the module doc).

    An item faster than the reference workload (a typical unit) is judged on the reference's
    scale: its interval, spread and disagreement between passes are taken relative to the
    reference's time rather than to its own few microseconds, which no prediction of a
    network could notice. Items slower than the reference are judged on their own scale.
    """
    if not passes:
        raise SpecError("passes", [], "must hold at least one pass")
    on = basis.basis if basis.basis != "plain" and all(s.paired for s in passes) else "plain"
    paired_all = all(s.paired for s in passes)
    # the scale below which differences do not matter, in the figures' own units
    floor = 1.0 if on != "plain" else (
        statistics.median([v for s in passes for v in s.reference_ms or ()]) if paired_all else 0.0)
    figures = [_figure(s, on) for s in passes]
    drift = None
    used = tuple(range(len(passes)))
    if len(passes) > 1:
        pairs = [(i, j) for i in range(len(figures)) for j in range(i + 1, len(figures))]
        i, j = min(pairs, key=lambda p: _gap(figures[p[0]], figures[p[1]], floor))
        drift = _gap(figures[i], figures[j], floor)
        if drift <= tolerance:
            centre = (figures[i] + figures[j]) / 2
            used = tuple(k for k, f in enumerate(figures)
                         if abs(f - centre) / max(centre, floor) <= tolerance or k in (i, j))
    chosen = [passes[k] for k in used]
    items = [v for s in chosen for v in s.item_ms]
    warm = sum(s.warmup_runs for s in chosen)
    plain = summarize(items, inner_loops=chosen[-1].inner_loops, warmup_runs=warm, target_rel_ci=target_rel_ci,
                      max_cv=max_cv)
    ratio = reference = None
    if all(s.paired for s in chosen):
        refs = [v for s in chosen for v in s.reference_ms or ()]
        ratio = paired_ratio("item", "reference", items, refs)
        reference = summarize(refs, inner_loops=1, warmup_runs=0, target_rel_ci=target_rel_ci, max_cv=max_cv)
    reasons = []
    # Agreeing passes show the figure reproducible directly; the spread of single samples then no longer decides.
    confirmed = drift is not None and drift <= tolerance
    if on == "paired" and ratio is not None:
        scale = _scale(ratio.median, 1.0)
        if ratio.rel_ci * scale > target_rel_ci:
            reasons.append(f"ratio to the reference +-{100 * ratio.rel_ci * scale:.1f}% wider than "
                           f"+-{100 * target_rel_ci:.1f}%")
        if ratio.cv * scale > max_cv and not confirmed:
            reasons.append(f"ratio robust CV {100 * ratio.cv * scale:.1f}% above {100 * max_cv:.0f}%")
    else:
        ref_ms = reference.median_ms if reference is not None else 0.0
        scale = _scale(plain.median_ms, ref_ms)
        if plain.rel_ci * scale > target_rel_ci:
            reasons.append(f"median 95% interval +-{100 * plain.rel_ci * scale:.1f}% wider than "
                           f"+-{100 * target_rel_ci:.1f}%")
        if plain.robust_cv * scale > max_cv and not confirmed:
            reasons.append(f"robust CV {100 * plain.robust_cv * scale:.1f}% above {100 * max_cv:.0f}%")
        if on == "level" and reference is not None and reference.rel_ci > target_rel_ci:
            reasons.append(f"reference's median +-{100 * reference.rel_ci:.1f}% wider than "
                           f"+-{100 * target_rel_ci:.1f}%")
    if drift is not None and drift > tolerance:
        reasons.append(f"{len(passes)} passes disagree: the closest two differ by {100 * drift:.1f}% "
                       f"(more than {100 * tolerance:.0f}%)")
    return Timing(plain, ratio, reference, basis, tuple(passes), used, drift, not reasons, "; ".join(reasons))


def _scale(value: float, floor: float) -> float:
    """What a relative figure of ``value`` is worth on the scale ``max(value, floor)``."""
    return value / max(value, floor) if value > 0 else 1.0


def _gap(a: float, b: float, floor: float = 0.0) -> float:
    """How far apart two figures are, relative to the smaller one (or to ``floor`` if that is larger)."""
    lo, hi = min(a, b), max(a, b)
    base = max(lo, floor)
    return (hi - lo) / base if base > 0 else math.inf

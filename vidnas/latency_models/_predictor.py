"""Whole-network latency from a lookup table, corrected by end-to-end measurements.

The *naive* prediction sums the table's median for every unit of the network. Units
timed alone miss what happens between them (per-call overhead, caches, fusion), so a
linear *correction* ``corrected = intercept_ms + slope * naive`` is fitted to
end-to-end measurements of a few sampled architectures and stored with the table.
A prediction never silently skips a unit the table lacks: it raises
:class:`MissingEntriesError` listing them, unless a ``measure_missing`` callback fills them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vidnas._errors import SpecError, VidnasError
from vidnas.latency_models._table import LatencyTable
from vidnas.search_space import ArchSpec, SearchSpace, UnitPlan, build_plan

CFG_MODES = ("none", "sequential", "batched")


class MissingEntriesError(VidnasError):
    """The table has no entry for some units of the network."""

    def __init__(self, missing: Sequence[UnitPlan], batch: int) -> None:
        self.missing = list(missing)
        self.batch = batch
        listed = ", ".join(f"{p.name} ({p.config.get('op', p.kind)}, {p.signature_id})" for p in self.missing[:8])
        more = f" and {len(self.missing) - 8} more" if len(self.missing) > 8 else ""
        super().__init__(
            f"the table has no entry at batch {batch} for {len(self.missing)} unit(s): {listed}{more}; "
            "build the table for this space (`vidnas lut build`) or pass --measure-missing"
        )


CORRECTION_MODELS = ("identity", "scale", "affine", "affine+units")


@dataclasses.dataclass(frozen=True)
class Correction:
    """``corrected_ms = intercept_ms + slope * naive_ms - per_unit_ms * units``.

    ``intercept_ms`` is the call's fixed overhead, ``slope`` what running units together
    does to their time (caches, fusion), ``per_unit_ms`` the overhead each unit paid when
    timed alone (a runtime's per-call cost) that the whole network pays once.

    :meth:`fit` considers three models — ``scale`` (slope only), ``affine`` (+ intercept)
    and ``affine+units`` (+ per-unit overhead) — fits each robustly (soft-L1 loss on
    relative errors, so one disturbed measurement cannot drag the fit) within physical
    bounds, and keeps the simplest model whose leave-one-out median relative error is
    within 10 % of the best: a handful of networks cannot support
    three free parameters unless the data insist.
    """

    intercept_ms: float
    slope: float
    n: int
    arch_ids: tuple[str, ...]
    rmse_ms: float
    mape_naive: float  # on the fitting set, for reference
    mape_fit: float
    per_unit_ms: float = 0.0
    model: str = "affine"
    loo_error: float | None = None  # leave-one-out median relative error of the chosen model
    # the figures fitted on: "rescaled" (at the table's reference speed) or "plain" (that session's medians);
    # None for corrections stored before this was recorded
    basis: str | None = None

    def apply(self, naive_ms: float, units: int = 0) -> float:
        return self.intercept_ms + self.slope * naive_ms - self.per_unit_ms * units

    @classmethod
    def fit(cls, naive_ms: Sequence[float], measured_ms: Sequence[float], arch_ids: Sequence[str],
            units: Sequence[int] | None = None, *, basis: str | None = None) -> Correction:
        import numpy as np

        x, y = np.asarray(naive_ms, float), np.asarray(measured_ms, float)
        u = np.asarray(units if units is not None else [0] * len(x), float)
        if len(x) < 2:
            raise SpecError("fit", len(x), "needs at least two end-to-end measurements")
        candidates = ["identity", "scale"]
        if len(x) >= 4 and np.ptp(x) > 0:
            candidates.append("affine")
        if len(x) >= 6 and np.ptp(u) > 0 and np.ptp(x) > 0:
            candidates.append("affine+units")
        if len(x) >= 4:
            scores = {m: _loo_error(m, x, y, u) for m in candidates}
            best = min(scores.values())
            model = next(m for m in candidates if scores[m] <= 1.1 * best + 1e-6)
        else:  # too few networks to judge out of sample: the simplest fitted model
            scores, model = {"scale": None}, "scale"
        intercept, slope, per_unit = _robust_fit(model, x, y, u)
        fitted = intercept + slope * x - per_unit * u
        return cls(float(intercept), float(slope), len(x), tuple(arch_ids),
                   float(np.sqrt(np.mean((fitted - y) ** 2))), float(np.mean(np.abs(x - y) / y)),
                   float(np.mean(np.abs(fitted - y) / y)), float(per_unit), model, scores[model], basis)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "arch_ids": list(self.arch_ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Correction:
        return cls(**{**data, "arch_ids": tuple(data.get("arch_ids", ()))})


def _robust_fit(model: str, x, y, u) -> tuple[float, float, float]:
    """``(intercept, slope, per_unit)`` minimising a soft-L1 loss of relative residuals."""
    import numpy as np
    from scipy.optimize import least_squares

    if model == "identity":
        return 0.0, 1.0, 0.0

    def unpack(p):
        if model == "scale":
            return 0.0, p[0], 0.0
        if model == "affine":
            return p[0], p[1], 0.0
        return p[0], p[1], p[2]

    def residuals(p):
        a, b, c = unpack(p)
        return (a + b * x - c * u - y) / y

    # Physical bounds: running units together changes their time by at most 4x; the fixed
    # overhead and the per-unit overhead are at most half of the smallest network's time.
    lim = 0.5 * float(np.min(y))
    unit_lim = lim / max(1.0, float(np.max(u)))
    lower = {"scale": [0.25], "affine": [-lim, 0.25], "affine+units": [-lim, 0.25, -unit_lim]}[model]
    upper = {"scale": [4.0], "affine": [lim, 4.0], "affine+units": [lim, 4.0, unit_lim]}[model]
    start = {"scale": [1.0], "affine": [0.0, 1.0], "affine+units": [0.0, 1.0, 0.0]}[model]
    result = least_squares(residuals, np.asarray(start, float), loss="soft_l1", f_scale=0.02, bounds=(lower, upper))
    return unpack(result.x)


def _loo_error(model: str, x, y, u) -> float:
    import numpy as np

    errors = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        a, b, c = _robust_fit(model, x[keep], y[keep], u[keep])
        errors.append(abs(a + b * x[i] - c * u[i] - y[i]) / y[i])
    return float(np.median(errors))


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted latency of one UNet call, with its per-unit breakdown."""

    arch_id: str
    batch: int
    naive_ms: float
    corrected_ms: float | None
    units: tuple[dict[str, Any], ...]  # name, kind, slot, op, signature_id, median_ms, trusted
    untrusted: tuple[str, ...]  # units whose table entry was flagged noisy

    @property
    def unit_count(self) -> int:
        """Units actually run (identity slots excluded)."""
        return sum(1 for u in self.units if not (u["slot"] is not None and u["op"] == "none"))

    @property
    def ms(self) -> float:
        """The best available figure: corrected when a correction exists."""
        return self.corrected_ms if self.corrected_ms is not None else self.naive_ms

    def slot_rows(self) -> list[dict[str, Any]]:
        return [u for u in self.units if u["slot"] is not None]

    @property
    def temporal_ms(self) -> float:
        return sum(u["median_ms"] for u in self.units if u["slot"] is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"arch_id": self.arch_id, "batch": self.batch, "naive_ms": self.naive_ms,
                "corrected_ms": self.corrected_ms, "per_call_ms": self.ms, "temporal_ms": self.temporal_ms,
                "backbone_ms": self.naive_ms - self.temporal_ms, "untrusted_units": list(self.untrusted),
                "slots": self.slot_rows(), "units": list(self.units)}


def video_cost(per_call_ms: Callable[[int], float], *, steps: int, cfg: str) -> dict[str, Any]:
    """Per denoising step and per video, from a function batch -> per-call ms.

    ``cfg``: ``none`` (one call per step), ``sequential`` (two calls at batch 1 per step)
    or ``batched`` (one call at batch 2 per step).
    """
    if steps < 1:
        raise SpecError("steps", steps, "must be >= 1")
    if cfg not in CFG_MODES:
        raise SpecError("cfg", cfg, "is not a classifier-free guidance mode", f"choose one of {list(CFG_MODES)}")
    batch = 2 if cfg == "batched" else 1
    calls = 2 if cfg == "sequential" else 1
    call_ms = per_call_ms(batch)
    return {"steps": steps, "cfg": cfg, "call_batch": batch, "calls_per_step": calls, "per_call_ms": call_ms,
            "per_step_ms": calls * call_ms, "per_video_ms": steps * calls * call_ms}


class LatencyPredictor:
    """Predicts whole-network latency from a table (and its correction, if it has one)."""

    def __init__(self, table: LatencyTable, correction: Correction | None | str = "table") -> None:
        self.table = table
        if correction == "table":
            correction = Correction.from_dict(table.meta.correction) if table.meta.correction else None
        self.correction = correction

    def predict(self, spec: ArchSpec, *, batch: int = 1,
                measure_missing: Callable[[list[UnitPlan], int], None] | None = None) -> Prediction:
        plans = build_plan(spec)
        missing = {p.signature_id: p for p in plans
                   if not p.is_identity and (p.signature_id, batch) not in self.table}
        if missing and measure_missing is not None:
            measure_missing(list(missing.values()), batch)
            missing = {k: p for k, p in missing.items() if (k, batch) not in self.table}
        if missing:
            raise MissingEntriesError(list(missing.values()), batch)
        units = []
        untrusted = []
        for p in plans:
            row = None if p.is_identity else self.table.get(p.signature_id, batch)
            ms = 0.0 if row is None else self.table.latency_ms(row)
            trusted = True if row is None else bool(row.get("trusted", True))
            if not trusted:
                untrusted.append(p.name)
            units.append({"name": p.name, "kind": p.kind, "slot": p.slot, "level": p.level,
                          "op": p.config["op"] if p.slot is not None else None,
                          "signature_id": p.signature_id, "median_ms": ms, "trusted": trusted})
        naive = sum(u["median_ms"] for u in units)
        count = sum(1 for p in plans if not p.is_identity)
        corrected = self.correction.apply(naive, count) if self.correction else None
        return Prediction(spec.arch_id, batch, naive, corrected, tuple(units), tuple(untrusted))

    def compile(self, space: SearchSpace, *, batch: int = 1) -> SpacePredictor:
        return SpacePredictor(space, self, batch)


class SpacePredictor:
    """Vectorised predictions for every architecture of one space.

    The backbone is the same across a space and latencies add per unit, so a network's
    naive latency is the backbone's plus, per group of tied slots, the chosen option's
    (a table lookup per group). ``predict_indices`` handles millions of architectures
    per second as integer arrays; ``encode`` maps a spec to its indices.
    """

    def __init__(self, space: SearchSpace, predictor: LatencyPredictor, batch: int) -> None:
        import numpy as np

        self.space = space
        self.batch = batch
        self.correction = predictor.correction
        table = predictor.table
        plans = build_plan(space.base)
        searched = {s for g in space.groups for s in g.slots}
        missing: dict[str, UnitPlan] = {}

        def lookup(plan: UnitPlan) -> float:
            if plan.is_identity:
                return 0.0
            ms = table.median_ms(plan.signature_id, batch)
            if ms is None:
                missing[plan.signature_id] = plan
                return 0.0
            return ms

        fixed = [p for p in plans if p.slot is None or p.slot not in searched]
        self.backbone_ms = sum(lookup(p) for p in fixed)
        self.backbone_units = sum(1 for p in fixed if not p.is_identity)
        per_group: dict[str, dict[tuple, list[float]]] = {g.name: {} for g in space.groups}
        for group, _slot, choice, plan in space.slot_units(plans):
            entry = per_group[group.name].setdefault(_choice_key(choice.op, choice.params), [0.0, 0])
            entry[0] += lookup(plan)
            entry[1] += 0 if plan.is_identity else 1
        self.choices: list[list[tuple]] = []
        self.matrix = []
        self.counts = []
        for group in space.groups:
            keys = [_choice_key(c.op, c.params) for o in group.options for c in o.choices()]
            self.choices.append(keys)
            self.matrix.append(np.asarray([per_group[group.name][k][0] for k in keys]))
            self.counts.append(np.asarray([per_group[group.name][k][1] for k in keys]))
        if missing:
            raise MissingEntriesError(list(missing.values()), batch)
        self._index = [{k: i for i, k in enumerate(keys)} for keys in self.choices]
        self._offsets = np.cumsum([0] + [len(m) for m in self.matrix[:-1]])
        self._flat = np.concatenate(self.matrix) if self.matrix else np.zeros(0)
        self._flat_counts = np.concatenate(self.counts) if self.counts else np.zeros(0)

    def encode(self, spec: ArchSpec) -> list[int]:
        """Per group, the index of the spec's choice."""
        out = []
        for group, index in zip(self.space.groups, self._index):
            choice = spec.temporal[group.slots[0]]
            option = next((o for o in group.options if o.op == choice.op), None)
            if option is None:
                raise SpecError(f"temporal.{group.slots[0]}.op", choice.op, f"is not in space {self.space.name}")
            key = _choice_key(choice.op, {k: choice.params[k] for k in option.params})
            out.append(index[key])
        return out

    def random_indices(self, n: int, seed: int = 0):
        import numpy as np

        rng = np.random.default_rng(seed)
        return np.stack([rng.integers(0, len(m), n) for m in self.matrix], axis=1)

    def predict_indices(self, indices) -> tuple[Any, Any]:
        """``(naive_ms, corrected_ms)`` arrays for an ``(N, groups)`` integer array."""
        import numpy as np

        flat = np.asarray(indices) + self._offsets
        naive = self.backbone_ms + self._flat[flat].sum(axis=1)
        if self.correction is None:
            return naive, naive
        units = self.backbone_units + self._flat_counts[flat].sum(axis=1)
        c = self.correction
        return naive, c.intercept_ms + c.slope * naive - c.per_unit_ms * units

    def predict(self, spec: ArchSpec) -> float:
        import numpy as np

        naive, corrected = self.predict_indices(np.asarray([self.encode(spec)]))
        return float(corrected[0])


def _choice_key(op: str, params: Mapping[str, Any]) -> tuple:
    return (op, tuple(sorted(params.items())))

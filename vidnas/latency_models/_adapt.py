"""A table for a new target from a few end-to-end measurements (``vidnas lut adapt``).

Building a table measures every unit a space can produce: minutes on a laptop, far more
on a phone or for a large space. A new target (another thread count, another runtime,
another device) seldom changes every op differently; mostly it speeds everything up by
one factor, changes a per-call overhead, and treats a few op kinds better or worse than
the rest (LitePred and HELP adapt CNN latency predictors to new devices in the same
spirit). So the source table's figures are kept as features, ``K`` networks sampled from
the source's space are measured end to end on the target, and a small linear model maps
the one onto the other. Networks rather than single units: a whole network is what the
predictor must get right (with the per-call costs and fusion that units timed alone miss),
and one network exercises a dozen op choices at once. For a network with source
prediction ``P`` (the source table's correction applied), sum of entries ``N``,
per-temporal-op sums ``N_k`` and ``U`` units:

* ``scale``: ``y = s * P``: the target is uniformly faster or slower;
* ``affine``: ``y = a + s * N``: plus a fixed per-call cost;
* ``affine+units``: ``y = a + s * N - c * U``: plus a per-unit cost that changed (a
  runtime's call overhead, thread wake-ups);
* ``per_op``: ``y = a + sum_k s_k * N_k - c * U``: every temporal op kind its own scale,
  each shrunk toward a common scale by a ridge penalty ``lam * sum_k (d_k * share_k)^2``
  (``s_k = s + d_k``, ``share_k`` the op's mean share of a network's time), ``lam`` from a
  grid. The backbone is the same in every network of a space, so its cost lies in ``a``.

Every candidate is fitted by least squares on relative errors. The model kept is the
simplest whose leave-one-out median relative error is within 10 % of the best (as the
correction is chosen); with fewer than 4 networks only ``scale`` can be judged, and a
candidate whose fit predicts a non-positive time, or gives an op a non-positive scale, is
out. The new table holds every source entry mapped (its op kind's scale; the backbone at
the common scale) plus a correction carrying the intercept and the per-unit term, so the
ordinary predictor and ``vidnas latency validate`` work on it unchanged. A separate set of networks, measured on the
target but not used for the fit, validates it; the metadata (``TableMeta.adapted``)
records the source table, ``K``, the method, its parameters and that validation.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._accuracy import AccuracyReport
from vidnas.latency_models._backends import Backend, fingerprint_id
from vidnas.latency_models._harness import HarnessConfig
from vidnas.latency_models._predictor import Correction, LatencyPredictor
from vidnas.latency_models._table import LatencyTable, TableMeta
from vidnas.search_space import ArchSpec

ADAPT_MODELS = ("scale", "flops_linear", "params_linear", "affine", "affine+units", "per_op")
COUNT_MODELS = {"flops_linear": "flops", "params_linear": "params"}  # no table: y = a + b * count
RIDGE_GRID = (100.0, 10.0, 1.0, 0.1)  # simplest (strongest shrinkage) first
MIN_NETWORKS = 3


@dataclasses.dataclass(frozen=True)
class Features:
    """What the source table says about one network."""

    arch_id: str
    predicted_ms: float  # the source table's prediction (its correction applied)
    naive_ms: float  # sum of the network's source entries
    backbone_ms: float  # entries outside temporal slots
    ops: Mapping[str, float]  # temporal op -> sum of its entries in the network
    units: int
    flops: float = 0.0  # the network's FLOPs per call (closed-form count)
    params: float = 0.0  # its parameters


def network_features(table: LatencyTable, spec: ArchSpec, *, batch: int = 1) -> Features:
    """The source table's figures for ``spec`` (raises :class:`MissingEntriesError` for missing units)."""
    prediction = LatencyPredictor(table).predict(spec, batch=batch)
    ops: dict[str, float] = {}
    backbone = 0.0
    for unit in prediction.units:
        if unit["slot"] is None:
            backbone += unit["median_ms"]
        elif unit["op"] != "none":
            ops[unit["op"]] = ops.get(unit["op"], 0.0) + unit["median_ms"]
    from vidnas.search_space import count_spec

    counts = count_spec(spec, batch=batch)
    return Features(spec.arch_id, prediction.ms, prediction.naive_ms, backbone, ops, prediction.unit_count,
                    float(counts.flops), float(counts.params))


@dataclasses.dataclass(frozen=True)
class Adaptation:
    """The map from a source table to a target: ``y = intercept + scale * (...)`` per :data:`ADAPT_MODELS`.

    ``op_scales`` holds each temporal op's scale (``per_op``; the common scale for every op
    otherwise); ``per_unit_ms`` the per-unit term; ``loo_errors`` every candidate's
    leave-one-out median relative error (None where it could not be judged).
    """

    model: str
    intercept_ms: float
    scale: float
    op_scales: Mapping[str, float]
    per_unit_ms: float
    ridge: float | None
    k: int
    arch_ids: tuple[str, ...]
    loo_errors: Mapping[str, float | None]
    fit_mape: float

    def predict(self, f: Features) -> float:
        if self.model == "scale":
            return self.scale * f.predicted_ms
        if self.model in COUNT_MODELS:  # the plain baselines: the table is not used
            return self.intercept_ms + self.scale * getattr(f, COUNT_MODELS[self.model])
        temporal = sum(self.op_scales.get(op, self.scale) * ms for op, ms in f.ops.items())
        return self.intercept_ms + self.scale * f.backbone_ms + temporal - self.per_unit_ms * f.units

    def row_scale(self, op: str | None) -> float:
        """The factor a source entry is multiplied by (``op`` None for backbone entries)."""
        return self.scale if op is None else self.op_scales.get(op, self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "op_scales": dict(self.op_scales), "arch_ids": list(self.arch_ids),
                "loo_errors": dict(self.loo_errors)}


def _design(model: str, feats: Sequence[Features], ops: Sequence[str]) -> list[list[float]]:
    """Columns: intercept, common scale, per-op deviations (per_op), per-unit (negated)."""
    rows = []
    for f in feats:
        if model in COUNT_MODELS:
            rows.append([1.0, getattr(f, COUNT_MODELS[model])])
            continue
        temporal = sum(f.ops.values())
        row = [1.0, f.backbone_ms + temporal]
        if model == "per_op":
            row += [f.ops.get(op, 0.0) for op in ops]
        if model in ("affine+units", "per_op"):
            row.append(-float(f.units))
        rows.append(row)
    return rows


def _solve(model: str, feats: Sequence[Features], y: Sequence[float], ops: Sequence[str],
           ridge: float | None) -> tuple[float, float, dict[str, float], float]:
    """``(intercept, scale, op_scales, per_unit)`` by least squares on relative errors."""
    import numpy as np

    yv = np.asarray(y, float)
    if model == "scale":
        p = np.asarray([f.predicted_ms for f in feats], float)
        s = float(np.sum(p / yv) / np.sum((p / yv) ** 2))
        return 0.0, s, {}, 0.0
    a = np.asarray(_design(model, feats, ops), float) / yv[:, None]
    b = np.ones(len(yv))
    if model == "per_op":
        share = [statistics.fmean(f.ops.get(op, 0.0) / v for f, v in zip(feats, yv)) for op in ops]
        penalty = np.zeros((len(ops), a.shape[1]))
        for k, sh in enumerate(share):
            penalty[k, 2 + k] = math.sqrt(ridge or 0.0) * max(sh, 1e-9)
        a = np.vstack([a, penalty])
        b = np.concatenate([b, np.zeros(len(ops))])
    theta, *_ = np.linalg.lstsq(a, b, rcond=None)
    intercept, scale = float(theta[0]), float(theta[1])
    op_scales = {op: scale + float(theta[2 + k]) for k, op in enumerate(ops)} if model == "per_op" else {}
    per_unit = float(theta[-1]) if model in ("affine+units", "per_op") else 0.0
    return intercept, scale, op_scales, per_unit


def _make(model: str, feats: Sequence[Features], y: Sequence[float], ops: Sequence[str], ridge: float | None,
          loo: Mapping[str, float | None]) -> Adaptation:
    intercept, scale, op_scales, per_unit = _solve(model, feats, y, ops, ridge)
    draft = Adaptation(model, intercept, scale, op_scales or {op: scale for op in ops}, per_unit, ridge, len(feats),
                       tuple(f.arch_id for f in feats), dict(loo), 0.0)
    fit = statistics.fmean(abs(draft.predict(f) - v) / v for f, v in zip(feats, y))
    return dataclasses.replace(draft, fit_mape=fit)


def _loo(model: str, feats: Sequence[Features], y: Sequence[float], ops: Sequence[str],
         ridge: float | None) -> float:
    errors = []
    for i in range(len(feats)):
        keep = [j for j in range(len(feats)) if j != i]
        fitted = _make(model, [feats[j] for j in keep], [y[j] for j in keep], ops, ridge, {})
        if any(fitted.predict(feats[j]) <= 0 for j in keep):
            return math.inf
        errors.append(abs(fitted.predict(feats[i]) - y[i]) / y[i])
    return statistics.median(errors)


def fit_adaptation(features: Sequence[Features], measured_ms: Sequence[float], *,
                   models: Sequence[str] = ADAPT_MODELS) -> Adaptation:
    """Choose and fit the map from the source table's ``features`` to the target's ``measured_ms``."""
    if len(features) != len(measured_ms):
        raise SpecError("measured_ms", len(measured_ms), f"must give one time per network ({len(features)})")
    if len(features) < MIN_NETWORKS:
        raise SpecError("n", len(features), f"must be >= {MIN_NETWORKS} networks measured on the target")
    for m in models:
        if m not in ADAPT_MODELS:
            raise SpecError("models", m, "is not an adaptation model", f"choose from {list(ADAPT_MODELS)}")
    if any(not v > 0 for v in measured_ms):
        raise SpecError("measured_ms", min(measured_ms), "must all be positive")
    ops = sorted({op for f in features for op in f.ops})
    k = len(features)
    # (model, ridge) in order of simplicity; a model needs more networks than it has free numbers. The
    # plain FLOPs- and params-linear fits compete too: the adapted table must beat them or give way.
    candidates: list[tuple[str, float | None]] = [("scale", None)]
    candidates += [(m, None) for m in COUNT_MODELS if m in models]
    if k >= 4:
        candidates += [("affine", None)] if "affine" in models else []
        candidates += [("affine+units", None)] if "affine+units" in models and k >= 5 else []
        candidates += [("per_op", lam) for lam in RIDGE_GRID] if "per_op" in models and k >= 5 and ops else []
    if "scale" not in models and len(candidates) > 1:
        candidates = candidates[1:]
    loo: dict[str, float | None] = {}
    scores: dict[tuple[str, float | None], float] = {}
    for model, lam in candidates:
        # a map that makes an op (or the backbone) take negative time is no map of a device
        full = _make(model, features, measured_ms, ops, lam, {})
        valid = full.scale > 0 and all(v > 0 for v in full.op_scales.values())
        scores[(model, lam)] = _loo(model, features, measured_ms, ops, lam) if valid else math.inf
        label = model if lam is None else f"{model}(ridge={lam:g})"
        loo[label] = scores[(model, lam)]
    best = min(scores.values())
    model, lam = next(c for c in candidates if scores[c] <= 1.1 * best + 1e-6)
    return _make(model, features, measured_ms, ops, lam, loo)


def adapted_table(source: LatencyTable, adaptation: Adaptation, *, fingerprint: Mapping[str, Any],
                  harness: Mapping[str, Any], reference_ms: float | None, end_to_end: Sequence[Mapping[str, Any]],
                  provenance: Mapping[str, Any], unit_counts: Mapping[str, float] | None = None) -> LatencyTable:
    """The source table's entries mapped onto the target, with the correction the map implies.

    For a plain FLOPs- or params-linear fit (the table lost), every entry is the fit's slope times
    the unit's count (``unit_counts``: signature id -> FLOPs or params; a unit without a closed-form
    count is left out) and the correction carries the intercept, so the predictor gives the fit."""
    fp = dict(fingerprint)
    fp_id = fingerprint_id(fp)
    meta = TableMeta(backend=str(fp["backend"]), device=str(fp["device"]), device_name=str(fp["device_name"]),
                     dtype=str(fp.get("dtype") or "float32"), threads=fp.get("threads"), fingerprint=fp,
                     harness=dict(harness), space=source.meta.space, space_shape=source.meta.space_shape,
                     reference=None if reference_ms is None else {
                         "description": "the reference workload timed beside the adaptation's networks",
                         "median_ms": reference_ms},
                     end_to_end=[dict(r) for r in end_to_end], adapted=dict(provenance))
    table = LatencyTable(meta)
    if adaptation.model in COUNT_MODELS:
        _count_entries(table, source, adaptation, unit_counts or {}, fp_id)
        table.meta.correction = Correction(adaptation.intercept_ms, 1.0, adaptation.k, tuple(adaptation.arch_ids),
                                           0.0, 0.0, adaptation.fit_mape, 0.0, f"adapted:{adaptation.model}",
                                           adaptation.loo_errors.get(adaptation.model)).to_dict()
        return table
    for row in source.rows():
        is_slot = row.get("kind") == "temporal"
        factor = adaptation.row_scale(row.get("op") if is_slot else None)
        ms = source.latency_ms(row)
        scaled = {k: (None if row.get(k) is None else float(row[k]) * ms / max(float(row["median_ms"]), 1e-12)
                      * factor) for k in ("p10_ms", "p90_ms", "mean_ms", "ci_low_ms", "ci_high_ms")}
        table.add({**{k: row.get(k) for k in ("signature_id", "batch", "kind", "op", "signature", "cv", "runs",
                                              "inner_loops", "warmup_runs", "trusted", "reason", "measured_at")},
                   **scaled, "median_ms": factor * ms, "source": "adapted", "fingerprint_id": fp_id,
                   "basis": "adapted", "basis_reason": f"source entry x {factor:.4g} ({adaptation.model})"})
    correction = _implied_correction(source, adaptation)
    table.meta.correction = correction.to_dict()
    return table


def _count_entries(table: LatencyTable, source: LatencyTable, adaptation: Adaptation, counts: Mapping[str, float],
                   fp_id: str) -> None:
    what = COUNT_MODELS[adaptation.model]
    for row in source.rows():
        count = counts.get(row["signature_id"])
        if count is None:
            continue
        table.add({**{k: row.get(k) for k in ("signature_id", "batch", "kind", "op", "signature", "measured_at")},
                   "median_ms": adaptation.scale * count, "trusted": True, "source": "adapted",
                   "fingerprint_id": fp_id, "basis": "adapted",
                   "basis_reason": f"{what} x {adaptation.scale:.4g} ms ({adaptation.model}: the table lost)"})


def _implied_correction(source: LatencyTable, adaptation: Adaptation) -> Correction:
    """The correction that makes the mapped table's prediction equal ``adaptation.predict``.

    ``scale`` multiplies the source's own correction (intercept and per-unit term by the
    scale); the linear models' mapped entries already hold the backbone and the op terms,
    so their intercept and per-unit term go into an otherwise identity correction.
    """
    a = adaptation
    ids = tuple(a.arch_ids)
    if a.model == "scale":
        src = Correction.from_dict(source.meta.correction) if source.meta.correction else None
        if src is None:
            return Correction(0.0, 1.0, a.k, ids, 0.0, 0.0, a.fit_mape, 0.0, "adapted:scale", a.loo_errors.get("scale"))
        return Correction(a.scale * src.intercept_ms, src.slope, a.k, ids, 0.0, 0.0, a.fit_mape,
                          a.scale * src.per_unit_ms, "adapted:scale", a.loo_errors.get("scale"))
    label = a.model if a.ridge is None else f"{a.model}(ridge={a.ridge:g})"
    # Mapped naive = scale * backbone + sum_k s_k N_k; the model adds intercept - per_unit * U.
    return Correction(a.intercept_ms, 1.0, a.k, ids, 0.0, 0.0, a.fit_mape, a.per_unit_ms, f"adapted:{label}",
                      a.loo_errors.get(label))


def check_adaptation(source: LatencyTable, backend: Backend, *, k: int, validate: int, batch: int = 1,
                     source_path: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Refuse what cannot be adapted, before anything is measured; return the source's space and the
    target's fingerprint."""
    from vidnas.search_space import get_space

    if k < MIN_NETWORKS:
        raise SpecError("n", k, f"must be >= {MIN_NETWORKS}: a map from a table to a target needs at least "
                                f"{MIN_NETWORKS} networks measured on the target",
                        "use --n 10 or more for per-op scales")
    if validate != 0 and validate < 3:
        raise SpecError("validate", validate, "must be 0 (no held-out check) or >= 3 for rank correlations")
    if batch < 1:
        raise SpecError("batch", batch, "must be >= 1")
    if not len(source):
        raise SpecError("table", str(source_path), "has no entries to adapt")
    if not source.meta.space:
        raise SpecError("table.space", None, "is not recorded; adapting needs the space the table covers",
                        "build the table with `vidnas lut build --space`, or import it with --space")
    space = get_space(source.meta.space, field="table.space", **(source.meta.space_shape or {}))
    if k + validate > space.size:
        raise SpecError("n", k, f"plus --validate {validate} exceeds the {space.size} architectures of space "
                                f"`{space.name}`")
    return space, check_target(source, backend)


def check_target(source: LatencyTable, backend: Backend) -> dict[str, Any]:
    """The target's fingerprint; refuses the source's own target (nothing to adapt)."""
    fp = backend.fingerprint()
    if source.meta.fingerprint and fingerprint_id(fp) == fingerprint_id(source.meta.fingerprint):
        raise SpecError("--backend/--device/--threads", f"{fp['backend']}/{fp['device']}/{fp.get('threads')}",
                        "is the source table's own target; there is nothing to adapt",
                        "give another backend, device or thread count (or validate the table directly)")
    return fp


def adapt_table(source: LatencyTable, backend: Backend, *, k: int, validate: int = 10, seed: int = 0,
                batch: int = 1, config: HarnessConfig | None = None, source_path: str | Path | None = None,
                progress: Callable[[int, int], None] | None = None,
                artefacts: Path | None = None) -> tuple[LatencyTable, dict[str, Any]]:
    """Measure ``k`` + ``validate`` networks of the source's space on ``backend``; fit on ``k``, validate on the rest.

    Returns the adapted table (not yet saved) and a report: the adaptation, its held-out
    accuracy (the corrected predictor of the new table against the networks not fitted
    on, on the basis those measurements chose) and every candidate's leave-one-out error.
    """
    from vidnas.latency_models._network import _end_to_end_row, answer_figures, measure_networks

    space, fp = check_adaptation(source, backend, k=k, validate=validate, batch=batch, source_path=source_path)
    config = config or HarnessConfig()
    specs = space.random_specs(k + validate, seed)
    feats = [network_features(source, s, batch=batch) for s in specs]  # fails early on missing entries
    measured = measure_networks(specs, backend, batch=batch, config=config, progress=progress, artefacts=artefacts)
    refs = [m.reference.median_ms for m in measured if m.reference is not None]
    reference_ms = statistics.median(refs) if refs else None
    figures, fit_basis, rescaled = answer_figures(measured[:k], reference_ms)
    adaptation = fit_adaptation(feats[:k], figures)
    report: dict[str, Any] = {"from": None if source_path is None else str(source_path), "k": k, "seed": seed,
                              "batch": batch, "method": adaptation.model, "adaptation": adaptation.to_dict(),
                              "chosen": _why(adaptation),
                              "measurement_basis": fit_basis,
                              "source": {key: getattr(source.meta, key) for key in
                                         ("backend", "device", "device_name", "dtype", "threads", "space",
                                          "space_shape")} | {"fingerprint_id": fingerprint_id(source.meta.fingerprint)
                                                             if source.meta.fingerprint else None},
                              "validation": None}
    table = adapted_table(source, adaptation, fingerprint=fp, harness=config.to_dict(), reference_ms=reference_ms,
                          end_to_end=[], provenance=report, unit_counts=_unit_counts(space, adaptation, batch))
    naive = LatencyPredictor(table, correction=None)  # the measurements behind the correction, in the new table's terms
    table.meta.end_to_end = [{**_end_to_end_row(s, naive.predict(s, batch=batch), m, reference_ms, batch),
                              "measured_ms": y, "rescaled_measured_ms": None if rescaled is None else rescaled[i]}
                             for i, (s, m, y) in enumerate(zip(specs[:k], measured[:k], figures))]
    if validate:
        held = specs[k:]
        predictor = LatencyPredictor(table)
        predicted = [predictor.predict(s, batch=batch).ms for s in held]
        truth, basis, _ = answer_figures(measured[k:], reference_ms)
        report["validation"] = {"n": validate, "basis": basis["basis"], "basis_reason": basis["reason"],
                                "untrusted_measurements": sum(not m.trusted for m in measured[k:]),
                                **AccuracyReport.from_pairs(predicted, truth, [s.arch_id for s in held]).to_dict()}
        table.meta.adapted = report
    return table, report


def _unit_counts(space, adaptation: Adaptation, batch: int) -> dict[str, float] | None:
    """Signature id -> the unit's FLOPs or params, for a plain count fit (None for a table model)."""
    if adaptation.model not in COUNT_MODELS:
        return None
    from vidnas.latency_models._builder import space_units
    from vidnas.search_space import unit_cost

    what = COUNT_MODELS[adaptation.model]
    counts = {}
    for plan in space_units(space):
        cost = unit_cost(plan, batch)
        if cost is not None:
            counts[plan.signature_id] = float(getattr(cost, what))
    return counts


def _why(adaptation: Adaptation) -> str:
    """Which candidate the adaptation stands behind, and why (leave-one-out on the K networks)."""
    scored = {m: e for m, e in adaptation.loo_errors.items() if e is not None and math.isfinite(e)}
    if not scored:
        return f"{adaptation.model}: the only candidate that could be fitted"
    best = min(scored, key=scored.get)
    table_models = {m: e for m, e in scored.items() if m.split("(")[0] not in COUNT_MODELS}
    counts = {m: e for m, e in scored.items() if m in COUNT_MODELS}
    parts = [f"{adaptation.model}, the simplest candidate within 10 % of the best leave-one-out median error "
             f"({100 * scored[best]:.1f} %, {best})"]
    if table_models and counts:
        t, c = min(table_models, key=table_models.get), min(counts, key=counts.get)
        parts.append(f"adapted table {100 * table_models[t]:.1f} % ({t}) against plain {c} "
                     f"{100 * counts[c]:.1f} %")
    return "; ".join(parts)

"""Baselines beside every validation: latency from FLOPs, from parameters, and a scaled roofline.

A lookup table earns its cost only where counting cannot do as well. Each baseline is
one feature of the network and two fitted numbers::

    latency_ms = intercept_ms + slope * feature

with ``feature`` the closed-form FLOPs per call (``flops_linear``), the parameter count
(``params_linear``), or the roofline estimate in milliseconds on the closest datasheet
device (``roofline``: a datasheet device is not this machine, so its estimate is scaled
and offset like the others). Baselines are fitted on the same end-to-end measurements as
the table's correction (``TableMeta.end_to_end``), in the same way (a robust soft-L1 loss
on relative errors; intercept and slope non-negative, since neither more FLOPs nor more
parameters make a network faster), and judged on the same held-out networks with the
same figures (:class:`AccuracyReport`).

The closest datasheet device (:func:`closest_datasheet`): the datasheet GPU whose name
the CUDA device's name contains (A100, H100, H200); else the device the table's backend
names for its hardware (``BackendDef.datasheet``: ``phone-npu`` for Core ML); else
``laptop-cpu`` for any CPU (an x86 AVX2/FMA part: its ratio of compute to bandwidth is
what shapes the estimate, and the fit absorbs the absolute speed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._accuracy import AccuracyReport
from vidnas.latency_models._backends import find_backend_def
from vidnas.latency_models._table import TableMeta
from vidnas.search_space import ArchSpec, count_spec

BASELINES = ("flops_linear", "params_linear", "roofline")
FEATURES = {"flops_linear": "flops", "params_linear": "params", "roofline": "roofline_ms"}


def closest_datasheet(meta: TableMeta) -> tuple[str, str]:
    """The datasheet device and dtype a roofline baseline uses for a table's target."""
    from vidnas.latency_models._roofline import load_devices

    devices = load_devices()
    definition = find_backend_def(meta.backend)
    if meta.device.startswith("cuda"):
        name = next((d for d in ("h200", "h100", "a100") if d in meta.device_name.lower()), "h100")
    elif definition is not None and definition.datasheet in devices:
        name = definition.datasheet
    else:
        name = "laptop-cpu"
    peaks = devices[name].peak_flops
    dtype = meta.dtype if meta.dtype in peaks else next(iter(peaks))
    return name, dtype


def baseline_features(spec: ArchSpec, *, batch: int, device: str, dtype: str) -> dict[str, float]:
    """FLOPs and parameters per call (closed form) and the roofline estimate (ms) on ``device``."""
    from vidnas.latency_models._roofline import roofline_estimate

    report = count_spec(spec, batch=batch)
    roof = roofline_estimate(spec, device, batch=batch, dtype=dtype)
    return {"flops": float(report.flops), "params": float(report.params), "roofline_ms": float(roof["per_call_ms"])}


@dataclasses.dataclass(frozen=True)
class Baseline:
    """``latency_ms = intercept_ms + slope * feature``, fitted on ``n`` networks."""

    name: str
    feature: str
    intercept_ms: float
    slope: float
    n: int
    fit_mape: float
    device: str | None = None  # the datasheet device of a roofline baseline

    def predict(self, value: float) -> float:
        return self.intercept_ms + self.slope * value

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_baseline(name: str, values: Sequence[float], measured_ms: Sequence[float], *,
                 device: str | None = None) -> Baseline:
    """Fit one baseline (see the module doc) to features and measured milliseconds."""
    import numpy as np
    from scipy.optimize import least_squares

    if name not in BASELINES:
        raise SpecError("baseline", name, "is not a baseline", f"choose one of {list(BASELINES)}")
    x, y = np.asarray(values, float), np.asarray(measured_ms, float)
    if len(x) < 2 or len(x) != len(y):
        raise SpecError(f"baselines.{name}", len(x), "needs at least two networks with a measured time each")
    if np.any(y <= 0):
        raise SpecError(f"baselines.{name}", float(y.min()), "measured times must be positive")
    scale = float(np.median(np.abs(x))) or 1.0  # conditions the fit: FLOPs run to 1e12

    def residuals(p):
        return (p[0] + p[1] * x / scale - y) / y

    slope0 = float(np.median(y) / max(np.median(x / scale), 1e-12))
    result = least_squares(residuals, np.asarray([0.0, slope0]), loss="soft_l1", f_scale=0.02,
                           bounds=([0.0, 0.0], [float(y.max()), np.inf]))
    intercept, slope = float(result.x[0]), float(result.x[1]) / scale
    fitted = intercept + slope * x
    return Baseline(name, FEATURES[name], intercept, slope, len(x), float(np.mean(np.abs(fitted - y) / y)), device)


def fit_baselines(meta: TableMeta, *, batch: int) -> dict[str, Baseline]:
    """Every baseline fitted on the table's correction networks (``meta.end_to_end``)."""
    rows = [r for r in meta.end_to_end if int(r.get("batch", 1)) == batch]
    if len(rows) < 2:
        raise SpecError("table.end_to_end", len(rows), f"has fewer than two networks measured at batch {batch} "
                                                       "to fit the baselines on",
                        "fit the correction first (`vidnas lut build --fit N` or `vidnas latency validate --refit N`)")
    missing = [r["arch_id"] for r in rows if not r.get("spec")]
    if missing:
        raise SpecError("table.end_to_end.spec", missing[:3], "is not stored for the correction networks (a table "
                                                              "from an earlier vidnas)",
                        "refit the correction: `vidnas latency validate --refit N`")
    device, dtype = closest_datasheet(meta)
    features = [baseline_features(ArchSpec.from_json(r["spec"]), batch=batch, device=device, dtype=dtype)
                for r in rows]
    measured = [float(r["measured_ms"]) for r in rows]
    return {name: fit_baseline(name, [f[FEATURES[name]] for f in features], measured,
                               device=device if name == "roofline" else None) for name in BASELINES}


def baseline_reports(meta: TableMeta, specs: Sequence[ArchSpec], measured_ms: Sequence[float], *,
                     batch: int) -> dict[str, Any]:
    """Each baseline's accuracy on held-out ``specs`` against ``measured_ms``, with its fit.

    Returns ``{"fitted_on": n, "baselines": {name: {"fit": ..., **AccuracyReport}}, "predictions": {name: [...]}}``
    or, when the table cannot support a fit, ``{"error": message}``.
    """
    try:
        fitted = fit_baselines(meta, batch=batch)
    except SpecError as exc:
        return {"error": str(exc)}
    device, dtype = closest_datasheet(meta)
    features = [baseline_features(s, batch=batch, device=device, dtype=dtype) for s in specs]
    ids = [s.arch_id for s in specs]
    out: dict[str, Any] = {"fitted_on": next(iter(fitted.values())).n, "device": device, "dtype": dtype,
                           "baselines": {}, "predictions": {}}
    for name, baseline in fitted.items():
        predicted = [baseline.predict(f[baseline.feature]) for f in features]
        out["predictions"][name] = predicted
        out["baselines"][name] = {"fit": baseline.to_dict(),
                                  **AccuracyReport.from_pairs(predicted, measured_ms, ids).to_dict()}
    return out

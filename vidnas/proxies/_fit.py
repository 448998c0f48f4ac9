"""A learned quality model: cheap signals and the architecture's choices -> its ground-truth rank.

Fitted on calibration rows (``rows.parquet`` of ``vidnas proxies calibrate``: a truth per
architecture and every signal's value), a ridge regression predicts the truth's rank (the
held-out loss as a percentile of the fitting set, 0 = best) from three groups of features:

* ``signal.NAME``: each registered signal (counts, zero-cost proxies, supernet scores) as the
  percentile of its value among the fitting set's values (robust to heavy tails; a new
  candidate is placed among the same population);
* ``slot.SLOT=OP``: one indicator per (slot, op) seen in the fitting set;
* ``count.OP``: how many slots hold each op.

Features are standardised on the fitting set; the ridge penalty is chosen by exact
leave-one-out error over a grid. Stored as JSON (never pickle) with what it was fitted on:
the space and its shape, the truth's protocol, the signals' setting, the architectures.

A model is judged only on architectures it was not fitted on: :func:`out_of_fold` fits one
model per fold on the other folds and scores the fold; the result records, per fold,
``fitted_on`` and ``judged_on`` (disjoint by construction, and checked), and beside it the
best single signal chosen the same way (on the fitting folds only), which the model must
beat to be worth its complexity.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas._stats import bootstrap_interval, kendall, percentile

__all__ = ["FEATURE_GROUPS", "QualityModel", "fit_and_judge", "fit_quality_model", "load_calibration_rows",
           "out_of_fold", "packaged_models", "resolve_model"]

FORMAT = "vidnas.quality_model"
VERSION = 1
FEATURE_GROUPS = ("signals", "slots", "counts")
ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def _ranks(values: Sequence[float]) -> list[float]:
    return [percentile(v, values) for v in values]


def _choices(spec_json: str) -> dict[str, str]:
    data = json.loads(spec_json)
    return {slot: (choice["op"] if isinstance(choice, dict) else str(choice))
            for slot, choice in data["temporal"].items()}


@dataclasses.dataclass
class QualityModel:
    """A fitted ridge model over signals and choices (see the module docstring)."""

    setting: dict[str, Any]  # space, space_shape, data, pretrain, supernet, protocol_id
    signals: list[str]
    features: list[str]
    populations: dict[str, list[float]]  # per signal: the fitting set's sorted values (oriented raw values)
    mean: list[float]
    scale: list[float]
    weights: list[float]
    intercept: float
    alpha: float
    fitted_on: list[str]
    validation: dict[str, Any] = dataclasses.field(default_factory=dict)

    # Prediction ----------------------------------------------------------------------------------

    def feature_vector(self, spec_json: str, values: Mapping[str, float]) -> list[float]:
        choices = _choices(spec_json)
        counts: dict[str, int] = {}
        for op in choices.values():
            counts[op] = counts.get(op, 0) + 1
        out = []
        for name in self.features:
            group, _, rest = name.partition(".")
            if group == "signal":
                if rest not in values:
                    raise SpecError("signals", rest, "is needed by the quality model but was not computed")
                value = float(values[rest])
                out.append(0.5 if math.isnan(value) else percentile(value, self.populations[rest]))
            elif group == "slot":
                slot, _, op = rest.partition("=")
                out.append(1.0 if choices.get(slot) == op else 0.0)
            else:
                out.append(float(counts.get(rest, 0)))
        return out

    def predict(self, spec_json: str, values: Mapping[str, float]) -> float:
        """The predicted truth rank (0 = best of the fitting set's range, 1 = worst): lower is better."""
        x = self.feature_vector(spec_json, values)
        return self.intercept + sum(w * (v - m) / s for w, v, m, s in zip(self.weights, x, self.mean, self.scale))

    # Serialisation -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self),
                "target": "rank of the ground truth's held-out loss among the fitting set (0 best, 1 worst)",
                "direction": "minimize"}

    def save(self, path: str | Path) -> Path:
        import os

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> QualityModel:
        """A model from its JSON file, or a model shipped with vidnas by name (:func:`packaged_models`)."""
        path = resolve_model(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SpecError(str(path), None, "does not exist", "fit one with `vidnas proxies fit`") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SpecError(str(path), None, f"is not a readable JSON file ({type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            shown = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise SpecError(f"{path}: format", shown, f"is not a quality model (expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise SpecError(f"{path}: version", data.get("version"), f"is not supported (this vidnas reads {VERSION})")
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [f for f in fields if f not in data and f != "validation"]
        if missing:
            raise SpecError(f"{path}: {missing[0]}", None, "is missing from the quality model")
        model = cls(**{f: data[f] for f in fields if f in data})
        n = len(model.features)
        for name in ("mean", "scale", "weights"):
            values = getattr(model, name)
            if not isinstance(values, list) or len(values) != n or not all(
                    isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise SpecError(f"{path}: {name}", values if not isinstance(values, list) else f"{len(values)} values",
                                f"must be {n} finite numbers, one per feature")
        for signal in model.signals:
            if signal not in model.populations or not model.populations[signal]:
                raise SpecError(f"{path}: populations.{signal}", None, "is missing")
        return model

    def check_setting(self, setting: Mapping[str, Any], *, where: str = "quality model") -> None:
        """Refuse a model fitted in another setting (space, shape, data, backbone, supernet, protocol)."""
        for key in ("space", "space_shape", "data", "pretrain", "supernet", "protocol_id"):
            if key not in setting or setting[key] is None:
                continue
            mine = self.setting.get(key)
            if mine is not None and _canonical(mine) != _canonical(setting[key]):
                raise SpecError(f"{where}: setting.{key}", mine,
                                f"differs from this use's {key} {setting[key]!r}",
                                "fit a model on a calibration of this setting (`vidnas proxies fit`)")


def packaged_models() -> dict[str, Path]:
    """Quality models shipped with vidnas (``vidnas/proxies/models/NAME.json``), by name."""
    from importlib import resources

    folder = resources.files("vidnas.proxies").joinpath("models")
    if not folder.is_dir():
        return {}
    return {entry.name[: -len(".json")]: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".json")}


def resolve_model(path: str | Path) -> Path:
    """``path`` itself when it is a file; else the packaged model of that name; else ``path`` (whose
    loading then fails with a message naming it)."""
    if Path(path).is_file():
        return Path(path)
    return packaged_models().get(str(path), Path(path))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# Fitting ---------------------------------------------------------------------------------------


def _design(rows: Sequence[Mapping[str, Any]], signals: Sequence[str], groups: Sequence[str]
            ) -> tuple[list[str], dict[str, list[float]]]:
    features: list[str] = []
    if "signals" in groups:
        features += [f"signal.{s}" for s in signals]
    choices = [_choices(r["spec"]) for r in rows]
    if "slots" in groups:
        pairs = sorted({(slot, op) for c in choices for slot, op in c.items()})
        features += [f"slot.{slot}={op}" for slot, op in pairs]
    if "counts" in groups:
        features += [f"count.{op}" for op in sorted({op for c in choices for op in c.values()})]
    populations = {s: sorted(v for v in (float(r[f"proxy.{s}"]) for r in rows) if not math.isnan(v))
                   for s in signals}
    return features, populations


def fit_quality_model(rows: Sequence[Mapping[str, Any]], *, signals: Sequence[str], setting: Mapping[str, Any],
                      groups: Sequence[str] | str = "auto", alphas: Sequence[float] = ALPHAS) -> QualityModel:
    """Fit on ``rows`` (calibration rows with ``spec``, ``heldout_loss`` and ``proxy.NAME``).

    ``groups="auto"`` tries the feature sets of :data:`AUTO_GROUPS` and keeps the one (with its
    penalty) of lowest leave-one-out error on ``rows``: the choice is part of the fit, so a model
    judged out of fold was also chosen without the architectures it is judged on."""
    if groups == "auto":
        options = [g for g in AUTO_GROUPS if signals or "signals" not in g]
        fits = [_fit_groups(rows, signals, setting, g, alphas) for g in options]
        return min(fits, key=lambda f: f[0])[1]
    return _fit_groups(rows, signals, setting, groups, alphas)[1]


AUTO_GROUPS = (("signals",), ("counts",), ("signals", "counts"), ("slots", "counts"), ("signals", "slots", "counts"))


def _fit_groups(rows: Sequence[Mapping[str, Any]], signals: Sequence[str], setting: Mapping[str, Any],
                groups: Sequence[str], alphas: Sequence[float]) -> tuple[float, QualityModel]:
    """``(leave-one-out error, model)`` of a ridge fit on the feature ``groups``."""
    import numpy as np

    for g in groups:
        if g not in FEATURE_GROUPS:
            raise SpecError("features", g, "is not a feature group", f"use some of {list(FEATURE_GROUPS)}")
    if len(rows) < 5:
        raise SpecError("rows", len(rows), "are too few to fit a quality model (at least 5 architectures)")
    if "signals" not in groups:
        signals = []
    features, populations = _design(rows, signals, groups)
    model = QualityModel(dict(setting), list(signals), features, populations, [], [], [], 0.0, 0.0,
                         [str(r["arch_id"]) for r in rows])
    model.mean, model.scale, model.weights = [0.0] * len(features), [1.0] * len(features), [0.0] * len(features)
    x = np.array([model.feature_vector(r["spec"], _values(r, signals)) for r in rows], dtype=float)
    y = np.array(_ranks([float(r["heldout_loss"]) for r in rows]))
    mean = x.mean(axis=0)
    # Percentiles and indicators are already on one scale ([0, 1]) and stay there: dividing a rare
    # indicator by its small spread would shrink its penalty and let it fit noise. Counts are scaled
    # by their spread.
    scale = np.array([float(x[:, j].std()) if name.startswith("count.") else 1.0
                      for j, name in enumerate(features)])
    scale[scale < 1e-12] = 1.0
    z = (x - mean) / scale
    yc = y - y.mean()
    best = None
    for alpha in alphas:
        # exact leave-one-out residuals of ridge: e_i / (1 - h_ii)
        gram = z.T @ z + alpha * np.eye(z.shape[1])
        hat = z @ np.linalg.solve(gram, z.T)
        residual = yc - hat @ yc
        loo = residual / np.clip(1 - np.diag(hat) - 1 / len(y), 1e-6, None)
        error = float(np.mean(loo**2))
        if best is None or error < best[0]:
            best = (error, alpha)
    alpha = best[1]
    weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ yc)
    model.mean, model.scale = mean.tolist(), scale.tolist()
    model.weights, model.intercept, model.alpha = weights.tolist(), float(y.mean()), float(alpha)
    model.setting = {**model.setting, "groups": list(groups)}
    return best[0], model


def _values(row: Mapping[str, Any], signals: Sequence[str]) -> dict[str, float]:
    return {s: float(row[f"proxy.{s}"]) for s in signals}


def _oriented(rows: Sequence[Mapping[str, Any]], signal: str) -> list[float]:
    """Signal values oriented so that higher means a better model."""
    from vidnas.proxies._registry import get_proxy

    sign = 1.0 if get_proxy(signal).higher_is_better else -1.0
    return [sign * float(r[f"proxy.{signal}"]) for r in rows]


def out_of_fold(rows: Sequence[Mapping[str, Any]], *, signals: Sequence[str], setting: Mapping[str, Any],
                groups: Sequence[str] | str = "auto", folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Judge the model (and the best single signal, chosen the same way) on architectures it was not
    fitted on: ``folds``-fold cross-validation; Kendall tau of the out-of-fold predictions against the
    truth, with a bootstrap interval, and per fold ``fitted_on`` / ``judged_on``."""
    n = len(rows)
    if folds < 2 or folds > n:
        raise SpecError("folds", folds, f"must be in [2, {n}] (the number of architectures)")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    fold_of = {i: k % folds for k, i in enumerate(order)}
    predicted = [math.nan] * n
    single = [math.nan] * n
    records = []
    truth = [-float(r["heldout_loss"]) for r in rows]  # higher = better
    oriented = {s: _oriented(rows, s) for s in signals}
    for f in range(folds):
        train = [i for i in range(n) if fold_of[i] != f]
        test = [i for i in range(n) if fold_of[i] == f]
        fitted_on = [str(rows[i]["arch_id"]) for i in train]
        judged_on = [str(rows[i]["arch_id"]) for i in test]
        if set(fitted_on) & set(judged_on):
            raise SpecError("folds", f, "judges an architecture it was fitted on")  # duplicates in the rows
        model = fit_quality_model([rows[i] for i in train], signals=signals, setting=setting, groups=groups)
        for i in test:
            predicted[i] = -model.predict(rows[i]["spec"], _values(rows[i], signals))  # higher = better
        taus = {s: kendall([oriented[s][i] for i in train], [truth[i] for i in train]) for s in signals}
        chosen = max(sorted(taus), key=lambda s: taus[s]) if taus else None
        if chosen is not None:
            population = sorted(oriented[chosen][i] for i in train)
            for i in test:
                single[i] = percentile(oriented[chosen][i], population)
        records.append({"fold": f, "fitted_on": fitted_on, "judged_on": judged_on, "alpha": model.alpha,
                        "groups": model.setting.get("groups"), "best_single_signal": chosen})
    chosen_groups = groups if isinstance(groups, str) else ", ".join(groups)
    out = {"method": f"ridge on features {chosen_groups}; {folds}-fold out of fold (seed {seed})", "n": n,
           "kendall": kendall(predicted, truth), "kendall_ci": bootstrap_interval(predicted, truth, kendall, seed=seed),
           "folds": records, "scores": predicted}
    if signals:
        out["best_single_signal"] = {"kendall": kendall(single, truth),
                                     "kendall_ci": bootstrap_interval(single, truth, kendall, seed=seed),
                                     "chosen_per_fold": [r["best_single_signal"] for r in records],
                                     "scores": single}
    return out


def fit_and_judge(rows: Sequence[Mapping[str, Any]], *, signals: Sequence[str], setting: Mapping[str, Any],
                  groups: Sequence[str] | str = "auto", folds: int = 5, seed: int = 0) -> QualityModel:
    """The model fitted on every row, carrying its out-of-fold judgement (``validation``): tau with its
    interval, per fold ``fitted_on`` / ``judged_on``, the best single signal chosen the same way, and
    whether the model beats it."""
    validation = out_of_fold(rows, signals=signals, setting=setting, groups=groups, folds=folds, seed=seed)
    model = fit_quality_model(rows, signals=signals, setting=setting, groups=groups)
    best = validation.get("best_single_signal", {})
    model.validation = {k: v for k, v in validation.items() if k != "scores"}
    if best:
        model.validation["best_single_signal"] = {k: v for k, v in best.items() if k != "scores"}
    model.validation["beats_best_single_signal"] = bool(best) and validation["kendall"] > best["kendall"]
    return model


def load_calibration_rows(paths: Sequence[str | Path]) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Rows of one or more calibrations of the same setting (``summary.json`` + ``rows.parquet`` folders),
    each architecture once; ``(rows, setting, signals present in every calibration)``."""
    import pandas as pd

    from vidnas.proxies._setting import calibration_setting

    rows: dict[str, dict[str, Any]] = {}
    setting: dict[str, Any] | None = None
    signals: set[str] | None = None
    for raw in paths:
        folder = Path(raw)
        if folder.is_file():
            folder = folder.parent
        summary_path = folder / "summary.json"
        try:
            summary = json.loads(summary_path.read_text())
        except FileNotFoundError:
            raise SpecError("truth", str(raw), "holds no summary.json",
                            "give the --out folder of `vidnas proxies calibrate`") from None
        except ValueError as exc:
            raise SpecError(str(summary_path), None, f"is not readable JSON ({exc})") from None
        if summary.get("format") != "vidnas.calibration":
            raise SpecError(f"{summary_path}: format", summary.get("format"), "is not a calibration summary")
        this = {**calibration_setting(summary), "protocol_id": summary["config"].get("protocol_id")}
        if setting is None:
            setting = this
        elif _canonical(this) != _canonical(setting):
            differs = [k for k in setting if _canonical(setting[k]) != _canonical(this.get(k))]
            raise SpecError(f"{summary_path}: {differs[0]}", this.get(differs[0]),
                            f"differs from the first calibration's {setting[differs[0]]!r}",
                            "fit on calibrations of one setting")
        frame = pd.read_parquet(folder / "rows.parquet")
        present = {c[len("proxy."):] for c in frame.columns if c.startswith("proxy.")}
        signals = present if signals is None else signals & present
        for record in frame.to_dict("records"):
            rows.setdefault(str(record["arch_id"]), record)
    return list(rows.values()), setting or {}, sorted(signals or ())

"""Tidy tables of everything a campaign stored, for the report's figures and tables."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.runners import parse_metric


@dataclasses.dataclass
class RunData:
    """A run directory read into DataFrames and dicts."""

    run_dir: Path
    campaign: dict[str, Any]
    trials: Any  # DataFrame, one row per trial
    pareto: list[dict[str, Any]]
    objectives: list[dict[str, str]]
    table_meta: dict[str, Any] | None
    table_rows: Any | None  # DataFrame of the latency table, when it can be read
    calibration: dict[str, Any] | None
    coverage: dict[str, Any] | None = None  # the table's coverage of the campaign's space
    quality_calibration: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    verification: dict[str, Any] | None = None  # verify/verify.json: K architectures trained with the truth

    @property
    def name(self) -> str:
        return str(self.campaign["config"].get("name", "campaign"))


def load_run(run_dir: str | Path, calibration: str | Path | None = None) -> RunData:
    import pandas as pd

    run_dir = Path(run_dir)
    for needed in ("campaign.json", "trials.parquet", "pareto/pareto.json"):
        if not (run_dir / needed).exists():
            raise SpecError("RUN_DIR", str(run_dir), f"has no {needed}",
                            "give the directory of a finished `vidnas search` run")
    campaign = _json(run_dir / "campaign.json")
    try:
        trials = pd.read_parquet(run_dir / "trials.parquet")
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise SpecError("RUN_DIR", str(run_dir), f"has an unreadable trials.parquet ({type(exc).__name__})",
                        "`vidnas search --resume RUN_DIR` writes it again") from None
    pareto_doc = _json(run_dir / "pareto" / "pareto.json")
    table_meta, table_rows, coverage = None, None, None
    latency = campaign.get("latency", {})
    if latency.get("source") == "table":
        table_meta = latency.get("meta")
        path = Path(latency.get("path", ""))
        if path.exists():
            from vidnas.latency_models import LatencyTable

            table = LatencyTable.load(path)
            table_meta = table.meta.to_dict()
            table_rows = table.to_frame()
            coverage = _coverage(campaign, table)
    cal = None
    candidates = [Path(calibration)] if calibration else []
    configured = (campaign["config"].get("proxy") or {}).get("calibration")
    candidates += [Path(configured)] if configured else []
    metrics = [parse_metric(o["metric"], check=False) for o in campaign["config"]["objectives"]]
    candidates += [Path(m.ensemble_path) for m in metrics if m.ensemble_path is not None]
    candidates += [run_dir / "calibration" / "summary.json"]
    for path in candidates:
        if path.exists():
            cal = _calibration(path)
            break
    if cal is None:
        cal = _packaged_calibration(campaign)
    if cal is not None:
        from vidnas.proxies import upgrade_summary

        cal = upgrade_summary(cal)
    data = RunData(run_dir, campaign, trials, pareto_doc["pareto"], pareto_doc["objectives"], table_meta, table_rows,
                   cal, coverage)
    data.quality_calibration = quality_calibration(data)
    data.verification = _verification(run_dir)
    return data


def _verification(run_dir: Path) -> dict[str, Any] | None:
    """``verify/verify.json`` (written by ``vidnas verify``) with what the report shows, or a note why not."""
    from vidnas.runners import VERIFY_FILE

    path = run_dir / VERIFY_FILE
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        if result.get("format") != "vidnas.verification":
            raise ValueError(f"format {result.get('format')!r}")
        float(result["kendall"]), [float(v) for v in result["kendall_ci"]]
        for arch in result["architectures"]:
            float(arch["quality"]), float(arch["heldout_loss"])
    except Exception as exc:  # the report goes on without this section
        return {"unreadable": f"{type(exc).__name__}: {str(exc)[:200]}", "path": str(path)}
    return result


def campaign_setting(campaign: dict[str, Any]) -> dict[str, Any] | None:
    """The quality setting of a campaign, in the terms of ``calibration_setting``."""
    from vidnas.runners import quality_setting

    quality = campaign.get("quality")
    return quality_setting(quality) if quality else None


def _packaged_calibration(campaign: dict[str, Any]) -> dict[str, Any] | None:
    """A calibration shipped with vidnas for exactly this campaign's quality setting, if there is one."""
    from vidnas.proxies import calibration_setting, packaged_calibrations

    setting = campaign_setting(campaign)
    if setting is None:
        return None
    for summary in packaged_calibrations():
        theirs = calibration_setting(summary)
        if theirs["supernet"] is None or setting["supernet"] is None:
            theirs = {**theirs, "supernet": None}
            setting = {**setting, "supernet": None}
        if theirs == setting:
            return summary
    return None


def quality_calibration(data: RunData) -> list[dict[str, Any]]:
    """Per quality objective of the campaign: its calibration (tau with its interval, the truth's
    reliability, how far the calibration's setting matches the campaign's), or why there is none."""
    from vidnas.proxies import calibration_setting

    rows = []
    setting = campaign_setting(data.campaign)
    for o in data.objectives:
        metric = o["metric"]
        info = parse_metric(metric, check=False)
        if info.is_cheap:
            continue
        if info.model_path is not None:
            rows.append(_model_calibration(metric, info.model_path, setting))
            continue
        name = info.proxy or "ensemble"
        cal = data.calibration
        stats = None
        if cal is not None and "unreadable" not in cal:
            stats = cal["ensemble"] if name == "ensemble" else cal["proxies"].get(name)
        if stats is None or "kendall" not in stats:
            why = (f"the calibration {cal['path']} is unreadable ({cal['unreadable']})" if cal and "unreadable" in cal
                   else "no calibration of this signal is attached or shipped for this setting")
            rows.append({"metric": metric, "calibrated": False, "why": why})
            continue
        theirs = calibration_setting(cal)
        mismatch = [k for k in ("space", "space_shape", "data") if setting and theirs.get(k) != setting.get(k)]
        if name.startswith("supernet") and setting and theirs.get("supernet") != setting.get("supernet"):
            mismatch.append("supernet")
        rel = cal.get("truth_reliability", {})
        rows.append({"metric": metric, "calibrated": True, "path": cal.get("path"), "kendall": stats["kendall"],
                     "kendall_ci": stats["kendall_ci"], "within_bins": stats.get("kendall_within_latency_bins"),
                     "n": cal["config"]["n"], "steps": cal["config"]["steps"],
                     "truth_kendall": rel.get("kendall_between_seeds"), "truth_n": rel.get("n"),
                     "flops_kendall": (cal["proxies"].get("flops") or {}).get("kendall"),
                     "mismatch": mismatch})
    return rows


def _model_calibration(metric: str, path: str, setting: dict[str, Any] | None) -> dict[str, Any]:
    """A learned quality model's own out-of-fold judgement, as a quality-calibration row."""
    from vidnas.proxies import QualityModel

    try:
        model = QualityModel.load(path)
    except SpecError as exc:
        return {"metric": metric, "calibrated": False, "why": f"the model file is unreadable ({exc})"}
    v = model.validation
    if "kendall" not in v:
        return {"metric": metric, "calibrated": False, "why": "the model carries no out-of-fold judgement"}
    mismatch = [k for k in ("space", "space_shape", "data") if setting and model.setting.get(k) != setting.get(k)]
    best = v.get("best_single_signal") or {}
    return {"metric": metric, "calibrated": True, "learned": True, "path": path, "kendall": v["kendall"],
            "kendall_ci": v["kendall_ci"], "n": v.get("n"), "folds": len(v.get("folds", [])),
            "best_single": best.get("kendall"), "beats": v.get("beats_best_single_signal"), "mismatch": mismatch}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(str(path), None, f"is not readable JSON ({type(exc).__name__})",
                        "`vidnas search --resume RUN_DIR` writes it again") from None
    if not isinstance(data, dict):
        raise SpecError(str(path), type(data).__name__, "must be a JSON object")
    return data


def _calibration(path: Path) -> dict[str, Any] | None:
    """A calibration summary with what the report draws, or a note saying why it is left out."""
    import math

    from vidnas.proxies import upgrade_summary

    def number(value: Any, *, nan: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        if not math.isfinite(value) and not (nan and math.isnan(value)):
            raise ValueError(f"{value!r} is not a finite number")
        return float(value)

    try:
        cal = upgrade_summary(json.loads(path.read_text(encoding="utf-8")))
        str(cal["config"]["space"])
        number(cal["config"]["n"]), number(cal["config"]["steps"])
        number(cal["truth_reliability"]["kendall_between_seeds"], nan=True), number(cal["truth_reliability"]["n"])
        if not isinstance(cal["proxies"], dict):
            raise ValueError("`proxies` is not a mapping")
        judged = [*cal["proxies"].values()] + ([cal["ensemble"]] if "kendall" in cal.get("ensemble", {}) else [])
        for stats in judged:
            low, high = stats["kendall_ci"]
            for key in ("kendall", "spearman", "partial_kendall_given_flops", "precision_at_top10"):
                number(stats[key])
            number(stats["kendall_within_latency_bins"], nan=True)  # undefined when no bin holds 3 architectures
            number(low), number(high)
    except Exception as exc:  # any malformed summary: the report goes on without this section
        return {"path": str(path), "unreadable": f"{type(exc).__name__}: {str(exc)[:200]}"}
    cal["path"] = str(path)
    return cal


def _coverage(campaign: dict[str, Any], table) -> dict[str, Any]:
    """How many of the units the campaign's space can produce the table holds."""
    from vidnas.latency_models import space_units
    from vidnas.search_space import get_space

    space_cfg = campaign["config"]["space"]
    space = get_space(space_cfg["name"], **{k: v for k, v in space_cfg.items() if k != "name" and v is not None})
    batch = campaign["config"]["target"]["batch"]
    needed = {u.signature_id for u in space_units(space)}
    present = {r["signature_id"] for r in table.rows() if r["batch"] == batch}
    return {"needed": len(needed), "present": len(needed & present), "batch": batch}


def objective_columns(data: RunData) -> list[str]:
    return [f"objective.{o['metric']}" for o in data.objectives]


def completed(data: RunData):
    t = data.trials
    return t[(t["state"] == "COMPLETE") & (~t["stale"])].copy()


def slot_frame(data: RunData):
    """Long table: Pareto rank, slot, op, predicted ms (one row per Pareto architecture and slot)."""
    import pandas as pd

    from vidnas.search_space import ArchSpec

    rows = []
    for entry in data.pareto:
        spec = ArchSpec.load(data.run_dir / "pareto" / entry["spec"])
        trial = data.trials[data.trials["number"] == entry["trial"]]
        slot_ms = {}
        if "attr.slot_ms" in trial and len(trial) and isinstance(trial["attr.slot_ms"].iloc[0], str):
            slot_ms = json.loads(trial["attr.slot_ms"].iloc[0])
        for info in spec.slots():
            choice = spec.temporal[info.name]
            rows.append({"rank": entry["rank"], "arch_id": entry["arch_id"], "slot": info.name, "stage": info.stage,
                         "level": info.level, "position": info.position, "op": choice.op,
                         "ms": slot_ms.get(info.name)})
    return pd.DataFrame(rows)


def accuracy_frame(data: RunData):
    """Predicted vs measured end-to-end latency: the table's fitting networks (and a validation, if stored)."""
    import pandas as pd

    from vidnas.latency_models import Correction

    rows = []
    if data.table_meta:
        corr = data.table_meta.get("correction")
        correction = Correction.from_dict(corr) if corr else None
        for r in data.table_meta.get("end_to_end", []) or []:
            measured = r.get("measured_ms") or r.get("median_ms")
            predicted = correction.apply(r["naive_ms"], r.get("units", 0)) if correction else r["naive_ms"]
            rows.append({"set": "correction fit", "arch_id": r["arch_id"], "naive_ms": r["naive_ms"],
                         "predicted_ms": predicted, "measured_ms": measured})
    validation = data.run_dir / "validation.json"
    if validation.exists():
        report = json.loads(validation.read_text())
        for r in report.get("rows", []):
            rows.append({"set": "held out", "arch_id": r["arch_id"], "naive_ms": r["naive_ms"],
                         "predicted_ms": r["corrected_ms"] if r.get("corrected_ms") is not None else r["naive_ms"],
                         "measured_ms": r["measured_ms"]})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["error"] = (frame["predicted_ms"] - frame["measured_ms"]) / frame["measured_ms"]
    return frame

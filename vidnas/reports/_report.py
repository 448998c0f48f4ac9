"""``write_report``: one self-contained HTML file per campaign (figures inline, no network)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from vidnas.reports import _figures as figs
from vidnas.reports._data import RunData, accuracy_frame, load_run, slot_frame
from vidnas.runners import parse_metric


def _environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in env.items():
        if key == "versions":
            rows.append(("versions", ", ".join(f"{k} {v}" for k, v in value.items() if v)))
        else:
            rows.append((key, str(value)))
    return rows


def trial_counts(trials) -> dict[str, int]:
    """Trials and failures as a user counts them: a stale trial (lost with its driver, worker or node, and
    re-queued) is a trial that failed, reported apart; a surplus one (never evaluated) is not a trial, nor is a
    screened one (ruled out by a cheap constraint before any evaluation), counted apart."""
    import pandas as pd

    absent = pd.Series(False, index=trials.index)
    stale = trials.get("stale", absent).astype(bool)
    surplus = trials.get("surplus", absent).astype(bool)  # runs written before budget claims have no column
    screened = trials.get("screened", absent).astype(bool)  # ruled out by a cheap constraint, never evaluated
    evaluated = trials[~stale & ~surplus & ~screened]
    failed_evaluations = int((evaluated["state"] == "FAIL").sum())
    n_stale = int(stale.sum())
    return {"trials": int(evaluated["state"].isin(["COMPLETE", "FAIL"]).sum()) + n_stale,
            "feasible": int(((evaluated["state"] == "COMPLETE") & evaluated["feasible"]).sum()),
            "failed": failed_evaluations + n_stale, "failed_evaluations": failed_evaluations, "stale": n_stale,
            "surplus": int(surplus.sum()), "screened": int(screened.sum())}


def render(data: RunData) -> str:
    import jinja2
    import yaml

    campaign = data.campaign
    slots = slot_frame(data)
    figures: dict[str, str | None] = {
        "pareto": figs.to_png_data_uri(figs.draw_pareto(figs.pareto_info(data)).figure),
        "hypervolume": figs.to_png_data_uri(figs.draw_hypervolume(figs.hypervolume_info(data)).figure),
        "placement": figs.to_png_data_uri(figs.draw_placement(figs.placement_info(slots)).figure),
        "schematic": figs.to_png_data_uri(figs.draw_schematic(slots).figure),
        "slot_latency": figs.to_png_data_uri(figs.draw_slot_latency(slots).figure),
        "accuracy": None, "errors": None, "noise": None, "calibration": None,
    }
    accuracy = accuracy_frame(data)
    if len(accuracy):
        figures["accuracy"] = figs.to_png_data_uri(figs.draw_accuracy(accuracy).figure)
        figures["errors"] = figs.to_png_data_uri(figs.draw_errors(accuracy).figure)
    if data.table_rows is not None and len(data.table_rows):
        figures["noise"] = figs.to_png_data_uri(figs.draw_table_noise(data.table_rows).figure)
    calibration_rows = []
    if data.calibration and not data.calibration.get("unreadable"):
        rows = dict(data.calibration["proxies"])
        if "kendall" in data.calibration.get("ensemble", {}):
            rows["ensemble (out of fold)"] = data.calibration["ensemble"]
        calibration_rows = list(rows.items())
        figures["calibration"] = figs.to_png_data_uri(figs.draw_calibration(rows).figure)
    tally = trial_counts(data.trials)
    pareto = []
    for entry in data.pareto:
        counts = entry["metrics"].get("op_counts") or {}
        ops = ", ".join(f"{op}×{n}" for op, n in sorted(counts.items()) if op != "none") or "none"
        pareto.append({**entry, "ops": ops})
    latency = campaign.get("latency", {})
    rows = data.table_rows
    env = jinja2.Environment(loader=jinja2.PackageLoader("vidnas.reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True))
    template = env.get_template("report.html.j2")
    return template.render(
        name=data.name, space=campaign["space"]["name"], status=campaign.get("status", ""),
        updated=campaign.get("updated", dt.datetime.now().isoformat(timespec="seconds")), run_dir=str(data.run_dir),
        **tally, pareto=pareto, objectives=data.objectives,
        latency_source="table" if latency.get("source") == "table" else "estimate", latency=latency,
        table_entries=len(rows) if rows is not None else (latency.get("meta") or {}).get("entries", "?"),
        table_untrusted=int((~rows["trusted"].astype(bool)).sum()) if rows is not None else "?",
        table_under_load=_under_load(rows),
        coverage=data.coverage, figures=figures, calibration=data.calibration, calibration_rows=calibration_rows,
        quality_calibration=data.quality_calibration, verification=data.verification,
        proxy_metrics=", ".join(o["metric"] for o in data.objectives
                                if not parse_metric(o["metric"], check=False).is_cheap) or "none",
        config_yaml=yaml.safe_dump(campaign["config"], sort_keys=False),
        environment=_environment_rows(campaign.get("environment", {})),
        reproduce="\n".join([f"vidnas search {data.run_dir / 'config.yaml'}", f"vidnas report {data.run_dir}",
                             f"vidnas export {data.run_dir} --format onnx,coreml"]),
    )


def write_report(run_dir: str | Path, out: str | Path | None = None, *, calibration: str | Path | None = None) -> Path:
    """Render the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``)."""
    data = load_run(run_dir, calibration)
    path = Path(out) if out else Path(run_dir) / "report.html"
    path.write_text(render(data), encoding="utf-8")
    return path


def _under_load(rows) -> int:
    """Table entries measured while other processes took the cores they needed (``--allow-load``)."""
    if rows is None or "under_load" not in rows:
        return 0
    return int(sum(1 for v in rows["under_load"] if v is True or v == 1))

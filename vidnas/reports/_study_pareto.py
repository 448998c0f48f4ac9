"""The study's Pareto section: which choice a campaign's Pareto set puts at each site, against the study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.reports._study_sites import Context, Site, choice_label
from vidnas.reports._study_terms import ATTN_3D, TEMPORAL_CLASSES, op_class
from vidnas.search_space import ArchSpec

# The Pareto set -----------------------------------------------------------------------------------------------


def pareto_section(ctx: Context, sites: list[Site], levels: list[dict[str, Any]], run_dir: Path) -> dict[str, Any]:
    from vidnas.reports._data import load_run

    data = load_run(run_dir)
    space_cfg = data.campaign["config"]["space"]
    if space_cfg.get("name") != ctx.space.name:
        raise SpecError("--run", str(run_dir), f"is a campaign over space `{space_cfg.get('name')}`, not "
                        f"`{ctx.space.name}`", f"pass --space {space_cfg.get('name')}, or a run of this space")
    run_shape = {k: v for k, v in space_cfg.items() if k != "name" and v is not None}
    site_of = {slot: site for site in sites for slot in site.slots}
    rows_of = {row["site"]: {c["choice"]: c for c in row["choices"]} for row in levels}
    counts: dict[str, dict[str, int]] = {site.name: {} for site in sites}
    unfit: list[dict[str, Any]] = []
    for entry in data.pareto:
        spec = ArchSpec.load(data.run_dir / "pareto" / entry["spec"])
        for slot, choice in spec.temporal.items():
            site = site_of.get(slot)
            if site is None:
                continue
            label = choice_label(choice, site.shape)
            counts[site.name][label] = counts[site.name].get(label, 0) + 1
            row = rows_of[site.name].get(label)
            if row is not None and row["fits"] is False:
                unfit.append({"rank": entry["rank"], "arch_id": entry["arch_id"], "slot": slot, "choice": label})
    out_sites = []
    for site in sites:
        seen = counts[site.name]
        total = sum(seen.values())
        ranked = sorted((r for r in rows_of[site.name].values() if r["op"] != "none"), key=lambda r: r["latency_ms"])
        order = [r["choice"] for r in ranked]
        favourite = max(seen.items(), key=lambda kv: (kv[1], kv[0]))[0] if seen else None
        active = {k: v for k, v in seen.items() if not k.startswith("none")}
        out_sites.append({"site": site.name, "label": site.label, "level": site.level, "counts": seen,
                          "placements": total, "favourite": favourite,
                          "favourite_latency_rank": order.index(favourite) + 1 if favourite in order else None,
                          "cheapest": order[0] if order else None,
                          "classes": _class_counts(active)})
    level_share = {}
    for level in sorted({s.level for s in sites}):
        merged: dict[str, int] = {}
        for row in out_sites:
            if row["level"] == level:
                for cls, n in row["classes"].items():
                    merged[cls] = merged.get(cls, 0) + n
        temporal = sum(n for cls, n in merged.items() if cls in TEMPORAL_CLASSES)
        offers = any(c.op_class == ATTN_3D and not c.probe for s in sites if s.level == level for c in s.choices)
        level_share[level] = {"temporal_layers": temporal, "offers_3d_attention": offers,
                              "attn3d_share": merged.get(ATTN_3D, 0) / temporal if temporal else None}
    return {"run_dir": str(run_dir), "name": data.name, "architectures": len(data.pareto), "run_shape": run_shape,
            "shape_differs": run_shape != dict(ctx.space.shape), "sites": out_sites,
            "levels": {str(k): v for k, v in level_share.items()}, "unfit_placements": unfit}


def _class_counts(counts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for label, n in counts.items():
        cls = op_class(label.split("(", 1)[0])
        out[cls] = out.get(cls, 0) + n
    return out

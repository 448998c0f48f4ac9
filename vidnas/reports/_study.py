"""``vidnas study``: the seed papers' design rules, re-derived on one target from what vidnas measures.

A study of a search space on a latency source (:mod:`._study_sources`) computes, without training:

1. *levels*: for every site (a resolution level and slot position: ``L0 36x64 C288 · res``) and every op
   choice the space offers there, the unit's latency (ms per call), FLOPs, latency per GFLOP, its own
   peak memory and the network's memory while it runs (weights plus every live activation), whether
   that fits the memory budget, the cheapest choice, and the rank correlation between FLOPs and
   latency across the site's choices, with the pair of choices FLOPs order most wrongly. Where the
   space lacks a 1-D temporal layer or 3-D attention at a level, a registry op is added as a *probe*
   (flagged) so that the seeds' rules can be judged;
2. *modifiers*: MobileVD's channel funnels (0.5, on attention and on convolutions / feed-forward),
   temporal multiscaling (stride 2) and dropping 70 % of the temporal blocks, each applied to the
   space's base architecture: FLOPs saved against latency saved, per whole network call;
3. *length*: every choice at the lowest-resolution level from 8 to 64 latent frames (fitted growth
   exponents), full against FreeNoise-windowed (16 / 4) and causal temporal attention, and the
   windowed model's overhead over the full one at the longest length;
4. *streaming*: time to the first chunk and steady decoded frames per second against chunk size and
   cache window, for the ``causvid`` space and for causal variants of the studied space;
5. *pareto* (with a campaign's run directory): which choice the Pareto set puts at each site;
6. *rules*: the seeds' rules with this target's verdicts (:mod:`._study_rules`).

Every section records the source its numbers came from; a comparison never mixes two sources.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Sequence
from typing import Any

from vidnas._errors import SpecError
from vidnas.reports._study_pareto import pareto_section
from vidnas.reports._study_rules import judge
from vidnas.reports._study_sites import Context, Site, StudyOptions, build_sites, shape_label
from vidnas.reports._study_sources import ProgressFn, Source
from vidnas.reports._study_stream import causal_variants, causvid_configs, stream_section
from vidnas.reports._study_terms import (
    FRAME_ATTENTION,
    FREENOISE,
    FUNNEL,
    FUNNEL_KIND,
    PRUNE_SHARE,
    STRIDE,
    TEMPORAL_CLASSES,
    op_class,
)
from vidnas.search_space import ArchSpec, SearchSpace, TemporalChoice, get_space, get_temporal_op

__all__ = ["StudyOptions", "run_study"]

STUDY_FORMAT = "vidnas.study"
STUDY_VERSION = 1

# 1. Levels -------------------------------------------------------------------------------------------------


def site_specs(base: ArchSpec, site: Site) -> dict[str, ArchSpec]:
    """Per choice, the base architecture with that choice at every slot of the site offering it."""
    return {c.label: base.replace_choices({slot: c.choice for slot in c.slots}) for c in site.choices}


def level_section(ctx: Context, sites: list[Site], specs: dict[str, dict[str, ArchSpec]]) -> list[dict[str, Any]]:
    from vidnas._stats import kendall, spearman

    out = []
    for site in sites:
        chosen = specs[site.name]

        def compute(src: Source, site: Site = site, chosen: dict[str, ArchSpec] = chosen):
            """The site's figures from ``src``; a probe it lacks is left out (the offered choices keep their
            source), an offered choice it lacks sends the whole site to the next source."""
            values = {c.label: src.unit_ms(chosen[c.label], c.slots[0]) for c in site.choices}
            missing = [c for c in site.choices if values[c.label] is None]
            network_ms = src.call_ms(ctx.base)
            if network_ms is None or any(not c.probe for c in missing):
                return None
            return {**values, "": network_ms}, [c.label for c in missing]

        (latency, left_out), source = ctx.first(compute)
        rows = []
        for c in site.choices:
            if c.label in left_out:
                continue
            spec = chosen[c.label]
            units = ctx.unit_counts(spec)
            unit = units[c.slots[0]]
            network = ctx.weights_bytes(spec) + max(units[s].live_bytes for s in c.slots)
            ms = latency[c.label]
            rows.append({"choice": c.label, "op": c.op, "params": dict(c.choice.params), "class": c.op_class,
                         "probe": c.probe, "slots": len(c.slots), "latency_ms": ms, "flops": unit.flops,
                         "ms_per_gflop": ms / (unit.flops / 1e9) if unit.flops else None,
                         "peak_bytes": unit.peak_bytes, "network_bytes": network,
                         "fits": None if ctx.budget is None else network <= ctx.budget})
        active = [r for r in rows if r["op"] != "none"]
        flops, ms = [float(r["flops"]) for r in active], [r["latency_ms"] for r in active]
        enough = len(active) >= 3
        out.append({**site.describe(), "source": source.describe(), "network_ms": latency[""], "choices": rows,
                    "probes_left_out": left_out,
                    "cheapest": min(active, key=lambda r: r["latency_ms"])["choice"] if active else None,
                    "not_fitting": [r["choice"] for r in rows if r["fits"] is False],
                    "spearman": _defined(spearman(flops, ms, undefined=math.nan)) if enough else None,
                    "kendall": _defined(kendall(flops, ms, undefined=math.nan)) if enough else None,
                    "misleading_pair": _misleading_pair(active)})
    return out


def _defined(value: float) -> float | None:
    return None if value != value else value


def _misleading_pair(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pair FLOPs order most wrongly: the choice with fewer FLOPs that is the most slower than one with more."""
    worst = None
    for a in rows:
        for b in rows:
            if a["flops"] < b["flops"] and a["latency_ms"] > b["latency_ms"] > 0:
                ratio = a["latency_ms"] / b["latency_ms"]
                if worst is None or ratio > worst["latency_ratio"]:
                    worst = {"fewer_flops": a["choice"], "more_flops": b["choice"], "latency_ratio": ratio,
                             "flops_ratio": b["flops"] / a["flops"] if a["flops"] else None}
    return worst


# 2. Modifiers ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Modifier:
    name: str
    label: str
    published: dict[str, Any]  # MobileVD's figures (Table 2 and its text)


# MobileVD (arXiv 2412.07583), per UNet call: Table 2 (TFLOPs, GPU ms, phone ms) and the text (funnels by kind).
MOBILEVD = "MobileVD (arXiv 2412.07583)"
MODIFIERS = (
    Modifier("funnel_attention", f"funnel {FUNNEL} on attention",
             {"flops_saved": 0.07, "latency_saved": 0.21, "where": "phone", "from": MOBILEVD + ", text"}),
    Modifier("funnel_convolution", f"funnel {FUNNEL} on convolutions (feed-forward in transformers)",
             {"flops_saved": 0.16, "latency_saved": 0.06, "where": "phone", "from": MOBILEVD + ", text"}),
    Modifier("funnel_all", f"funnel {FUNNEL} on every funnelled layer",
             {"flops_saved": 1 - 4.34 / 4.64, "latency_saved": 1 - 1780 / 2100, "gpu_latency_saved": 1 - 45 / 47,
              "where": "phone", "from": MOBILEVD + ", Table 2 (4.64 -> 4.34 TFLOPs, 2100 -> 1780 ms)"}),
    Modifier("multiscaling", f"temporal multiscaling (stride {STRIDE})",
             {"flops_saved": 1 - 5.42 / 8.24, "latency_saved": 1 - 2590 / 3630, "gpu_latency_saved": 1 - 59 / 76,
              "where": "phone", "from": MOBILEVD + ", Table 2 (8.24 -> 5.42 TFLOPs, 3630 -> 2590 ms)"}),
    Modifier("pruning", f"drop {100 * PRUNE_SHARE:.0f} % of the temporal blocks",
             {"flops_saved": 1 - 4.64 / 5.42, "latency_saved": 1 - 2100 / 2590, "gpu_latency_saved": 1 - 47 / 59,
              "where": "phone", "from": MOBILEVD + ", Table 2 (5.42 -> 4.64 TFLOPs, 2590 -> 2100 ms)"}),
)


def modified_spec(base: ArchSpec, name: str) -> tuple[ArchSpec, list[str]]:
    """The base architecture with one of MobileVD's modifiers applied, and the slots it changed."""
    slots = base.slots()
    changes: dict[str, TemporalChoice] = {}
    if name == "pruning":
        temporal = [s.name for s in slots if op_class(base.temporal[s.name].op) in TEMPORAL_CLASSES]
        keep_n = len(temporal) - round(PRUNE_SHARE * len(temporal))
        keep = {temporal[min(len(temporal) - 1, int((k + 0.5) * len(temporal) / keep_n))] for k in range(keep_n)}
        changes = {s: TemporalChoice("none") for s in temporal if s not in keep}
    else:
        update = {"temporal_stride": STRIDE} if name == "multiscaling" else {"funnel": FUNNEL}
        kinds = {"funnel_attention": ("attention",), "funnel_convolution": ("convolution",),
                 "funnel_all": ("attention", "convolution"), "multiscaling": None}[name]
        for info in slots:
            choice = base.temporal[info.name]
            if choice.op == "none" or (kinds is not None and FUNNEL_KIND.get(choice.op) not in kinds):
                continue
            if not any(p.name in update for p in get_temporal_op(choice.op).params):
                continue
            if any(choice.params.get(k) not in (None, 1, 1.0) for k in update):
                continue  # already funnelled or multiscaled: nothing to compare
            new = TemporalChoice(choice.op, {**choice.params, **update})
            try:
                changes[info.name] = new.canonical(info.shape, f"temporal.{info.name}")
            except SpecError:
                continue
    if not changes:
        return base, []
    return base.replace_choices(changes), sorted(changes)


def modifier_section(ctx: Context, variants: dict[str, tuple[ArchSpec, list[str]]]) -> list[dict[str, Any]]:
    out = []
    base_flops = ctx.counts(ctx.base).flops
    for mod in MODIFIERS:
        spec, changed = variants[mod.name]
        row: dict[str, Any] = {"name": mod.name, "label": mod.label, "published": mod.published,
                               "changed_slots": changed, "applicable": bool(changed)}
        if not changed:
            row["why"] = _not_applicable(mod.name)
            out.append(row)
            continue
        (before, after), source = ctx.first(lambda src, spec=spec: _pair(src.call_ms(ctx.base), src.call_ms(spec)))
        flops = ctx.counts(spec).flops
        flops_saved = 1 - flops / base_flops if base_flops else 0.0
        latency_saved = 1 - after / before
        row.update({"source": source.describe(), "ops": sorted({ctx.base.temporal[s].op for s in changed}),
                    "flops_before": base_flops, "flops_after": flops, "latency_ms_before": before,
                    "latency_ms_after": after, "flops_saved": flops_saved, "latency_saved": latency_saved,
                    "efficiency": latency_saved / flops_saved if flops_saved > 1e-9 else None})
        out.append(row)
    return out


def _pair(a: float | None, b: float | None) -> tuple[float, float] | None:
    return None if a is None or b is None else (a, b)


def _not_applicable(name: str) -> str:
    return {"funnel_attention": "no attention layer of the base architecture takes a funnel",
            "funnel_convolution": "no convolution (or feed-forward) layer of the base architecture takes a funnel",
            "funnel_all": "no layer of the base architecture takes a funnel",
            "multiscaling": "no temporal layer of the base architecture can run on half the frames",
            "pruning": "the base architecture has no temporal layer"}[name]


# 3. Length -------------------------------------------------------------------------------------------------


# Registry ops added to the length study (where the level's frames slots accept them): full, windowed
# (FreeNoise) and causal (Phenaki, CausVid) temporal attention.
LENGTH_PROBES = (("attn1d", {}), ("attn1d_window", FREENOISE), ("attn1d_causal", {}))


@dataclasses.dataclass(frozen=True)
class Series:
    site: Site
    label: str
    choice: TemporalChoice  # not canonical for probes (defaults filled at each length)
    probe: bool
    slot: str
    specs: dict[int, ArchSpec]  # frames -> the one-op network at that length (valid lengths only)


def _none_spec(base: ArchSpec) -> ArchSpec:
    return base.replace_choices({s.name: TemporalChoice("none") for s in base.slots()})


def _probe_label(op: str, params: dict[str, Any]) -> str:
    return op + (f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")


def length_series(base: ArchSpec, sites: list[Site], lengths: Sequence[int]) -> list[Series]:
    """Every choice at the lowest-resolution level (and the length probes) as a one-op network per length."""
    lowest = max(s.level for s in sites)
    at_level = [s for s in sites if s.level == lowest]
    empty = _none_spec(base)
    series: list[Series] = []
    seen: set[str] = set()
    candidates = [(site, c.label, c.choice, c.probe) for site in at_level for c in site.choices if c.op != "none"]
    frames_sites = sorted([s for s in at_level if s.shape.layout == "frames"], key=lambda s: s.position != "attn")
    if not frames_sites:  # a transformer whose frame-layout slots the space leaves alone: probe them there
        frames_sites = _unsearched_frame_sites(base, at_level[0])
    for op, params in LENGTH_PROBES:
        if frames_sites:
            candidates.append((frames_sites[0], _probe_label(op, params), TemporalChoice(op, params), True))
    for site, label, choice, probe in candidates:
        if label in seen:
            continue
        slot = site.slots[0]
        specs = {}
        for t in lengths:
            try:
                specs[t] = empty.with_shape(frames=t).replace_choices({slot: choice})
            except SpecError:
                continue
        if specs:
            seen.add(label)
            series.append(Series(site, label, choice, probe, slot, specs))
    return series


def _unsearched_frame_sites(base: ArchSpec, like: Site) -> list[Site]:
    """A site of the base's frame-layout slots at ``like``'s resolution (searched or not), for the length probes."""
    slots = [s for s in base.slots() if s.shape.layout == "frames" and s.shape.height == like.shape.height
             and s.shape.width == like.shape.width and s.shape.channels == like.shape.channels]
    if not slots:
        return []
    position = slots[0].position
    same = tuple(s.name for s in slots if s.position == position)
    return [Site(f"L{like.level}.{position}", f"{like.level_label} · {position}", like.level, like.level_label,
                 position, slots[0].shape, same, ())]


def freenoise_specs(base: ArchSpec, frames: int) -> tuple[ArchSpec, ArchSpec, list[str]] | str:
    """The base at ``frames`` latent frames with full (attn1d) and FreeNoise-windowed temporal attention at its
    temporal-attention slots (a transformer without any: at its frame-layout slots); why not, when it cannot."""
    infos = base.slots()
    targets = [s.name for s in infos if base.temporal[s.name].op in FRAME_ATTENTION]
    if not targets:
        targets = [s.name for s in infos if s.shape.layout == "frames" and base.temporal[s.name].op == "none"
                   and s.position != "res"]
    if not targets:
        return "the base architecture has no slot for temporal attention"
    try:
        long = base.with_shape(frames=frames)
    except SpecError as exc:
        return f"the base architecture is not valid at {frames} latent frames ({exc.problem})"
    try:
        full = long.replace_choices({s: TemporalChoice("attn1d") for s in targets})
        windowed = long.replace_choices({s: TemporalChoice("attn1d_window", FREENOISE) for s in targets})
    except SpecError as exc:
        return f"temporal attention does not fit its slots at {frames} latent frames ({exc.problem})"
    return full, windowed, targets


def length_section(ctx: Context, series: list[Series], freenoise) -> dict[str, Any]:
    def compute(src: Source):
        values = {}
        for s in series:
            for t, spec in s.specs.items():
                values[(s.label, t)] = src.unit_ms(spec, s.slot)
        if not isinstance(freenoise, str):
            values[("freenoise", "full")] = src.call_ms(freenoise[0])
            values[("freenoise", "windowed")] = src.call_ms(freenoise[1])
        return None if any(v is None for v in values.values()) else values

    values, source = ctx.first(compute)
    rows = []
    for s in series:
        frames = sorted(s.specs)
        ms = [values[(s.label, t)] for t in frames]
        flops = [ctx.unit_counts(s.specs[t])[s.slot].flops for t in frames]
        rows.append({"choice": s.label, "op": s.choice.op, "class": op_class(s.choice.op), "probe": s.probe,
                     "site": s.site.name, "frames": frames, "latency_ms": ms, "flops": flops,
                     "exponent": _exponent(frames, ms), "flops_exponent": _exponent(frames, flops)})
    by_label = {r["choice"]: r for r in rows}
    full = by_label.get("attn1d")
    windowed = by_label.get(_probe_label("attn1d_window", FREENOISE))
    causal = by_label.get("attn1d_causal")
    section: dict[str, Any] = {"source": source.describe(), "frames": list(ctx.options.lengths),
                               "level": series[0].site.level_label if series else None, "series": rows,
                               "windowed_vs_full": _ratios(windowed, full), "causal_vs_full": _ratios(causal, full)}
    if not isinstance(freenoise, str):
        f, w = values[("freenoise", "full")], values[("freenoise", "windowed")]
        section["freenoise_model"] = {"frames": freenoise[0].backbone.frames, "slots": freenoise[2],
                                      "full_ms": f, "windowed_ms": w, "overhead": w / f - 1}
        section["freenoise_model_why_not"] = None
    else:
        section["freenoise_model"] = None
        section["freenoise_model_why_not"] = freenoise
    return section


def _exponent(frames: Sequence[int], values: Sequence[float]) -> float | None:
    """Slope of log value against log frames (1: linear in frames, 2: quadratic); None with < 2 usable points."""
    pts = [(math.log(t), math.log(v)) for t, v in zip(frames, values) if v and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def _ratios(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """``a`` over ``b`` at every length both were computed at."""
    if a is None or b is None:
        return None
    common = [t for t in a["frames"] if t in b["frames"]]
    if not common:
        return None
    ratios = [a["latency_ms"][a["frames"].index(t)] / b["latency_ms"][b["frames"].index(t)] for t in common]
    return {"of": a["choice"], "over": b["choice"], "frames": common, "ratio": ratios,
            "exponent_difference": (None if a["exponent"] is None or b["exponent"] is None
                                    else a["exponent"] - b["exponent"])}


# The study -----------------------------------------------------------------------------------------------------


def run_study(space: SearchSpace, source: Source, *, fallback: Source | None = None,
              options: StudyOptions | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The whole study of ``space`` on ``source`` as one JSON-able document (see the module docstring)."""
    from vidnas._env import fingerprint
    from vidnas.reports._study_sources import default_memory_budget

    started = time.perf_counter()
    options = options or StudyOptions()
    if options.steps < 1:
        raise SpecError("--steps", options.steps, "must be >= 1")
    if len(options.lengths) < 2 or any(t < 1 for t in options.lengths):
        raise SpecError("--length-frames", list(options.lengths), "must list at least two positive frame counts")
    budget, budget_source = options.memory_budget, options.memory_budget_source or "given (--memory-budget)"
    if budget is None:
        budget, budget_source = default_memory_budget(source)
    ctx = Context(space, [source] + ([fallback] if fallback is not None else []), options, budget, budget_source)

    # Plan: every architecture the sections compare, so that a measuring source measures what it lacks at once.
    sites = build_sites(space)
    if not sites:
        raise SpecError("--space", space.name, "searches no slot: there is nothing to study")
    specs = {site.name: site_specs(ctx.base, site) for site in sites}
    variants = {m.name: modified_spec(ctx.base, m.name) for m in MODIFIERS}
    series = length_series(ctx.base, sites, sorted(set(options.lengths)))
    freenoise = freenoise_specs(ctx.base, max(options.lengths))
    units = [(source.plans(specs[site.name][c.label])[c.slots[0]], ctx.base.backbone)
             for site in sites for c in site.choices]
    units += [(source.plans(spec)[s.slot], spec.backbone) for s in series for spec in s.specs.values()]
    whole = [ctx.base, *(spec for spec, changed in variants.values() if changed)]
    whole += list(freenoise[:2]) if not isinstance(freenoise, str) else []
    _check_coverage(ctx, sites, specs)
    source.prepare(units, whole, progress)

    levels = level_section(ctx, sites, specs)
    modifiers = modifier_section(ctx, variants)
    length = length_section(ctx, series, freenoise)
    causvid_space = space if space.name == "causvid" else get_space("causvid")
    configs = causvid_configs(causvid_space) if space.name == "causvid" else [
        *causvid_configs(causvid_space), *causal_variants(space)]
    if space.name == "causvid":
        configs = [dataclasses.replace(c, measurable=True) for c in configs]
    streaming = stream_section(ctx, configs)
    pareto = pareto_section(ctx, sites, levels, options.run_dir) if options.run_dir is not None else None
    base_ms, base_source = ctx.first(lambda src: src.call_ms(ctx.base))
    base_counts = ctx.counts(ctx.base)
    document: dict[str, Any] = {
        "format": STUDY_FORMAT, "version": STUDY_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "space": {"name": space.name, "summary": space.summary, "shape": dict(space.shape), "family": ctx.base.family,
                  "base": ctx.base.name, "base_arch_id": ctx.base.arch_id, "frames": ctx.base.backbone.pixel_frames,
                  "height": ctx.base.backbone.pixel_height, "width": ctx.base.backbone.pixel_width,
                  "latent_frames": ctx.base.backbone.frames},
        "source": source.describe(), "fallback": fallback.describe() if fallback is not None else None,
        "memory_budget": {"bytes": budget, "source": budget_source, "dtype": ctx.mem_dtype},
        "network": {"per_call_ms": base_ms, "source": base_source.describe()["label"], "flops": base_counts.flops,
                    "params": base_counts.params, "weights_bytes": ctx.weights_bytes(ctx.base),
                    "activation_bytes": base_counts.activation_bytes},
        "levels": levels, "modifiers": modifiers, "length": length, "streaming": streaming, "pareto": pareto,
    }
    document["rules"] = judge(document)
    document["environment"] = fingerprint()
    document["seconds"] = time.perf_counter() - started
    return document


def _check_coverage(ctx: Context, sites: list[Site], specs: dict[str, dict[str, ArchSpec]]) -> None:
    """A table that holds none of the units the space can put at its slots was measured for something else."""
    from vidnas.reports._study_sources import BackendSource, TableSource

    source = ctx.sources[0]
    if not isinstance(source, TableSource) or isinstance(source, BackendSource):
        return
    needed = [(specs[site.name][c.label], c.slots[0]) for site in sites for c in site.choices
              if c.op != "none" and not c.probe]
    if needed and all(source.unit_ms(spec, slot) is None for spec, slot in needed):
        raise SpecError("--lut", str(source.path), f"holds none of the {len(needed)} units space `{ctx.space.name}` "
                        f"can put at its slots at {shape_label(ctx.base)}",
                        "it was measured for another space or shape: pass its --space/--frames/--height/--width, "
                        "or build one with `vidnas lut build`")

"""The seeds' design rules and this target's verdict on each, computed from a study's numbers.

Each rule is a function of the study document returning ``{id, source, rule, published, verdict, why,
evidence}``; ``verdict`` is ``holds``, ``fails`` or ``undecided`` (the study cannot tell: the space offers
nothing to compare, no memory budget is known, a roofline lower bound meets an absolute figure, or the
figures fall inside the band stated as too close to call). The thresholds a verdict uses are in
``evidence.thresholds``; none is an outcome written in advance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vidnas.reports._study_terms import ATTN_3D, FREENOISE, ONE_D, PRUNE_SHARE, matching_stream

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"

AFFORDABLE_SHARE = 0.10  # 3-D attention at every slot of a level is affordable when it adds at most this much
MISLEAD_SPEARMAN = 0.9  # FLOPs rank a site's layers like latency when Spearman's rho is at least this
PROPORTIONAL_BAND = (0.9, 1.1)  # latency saved / FLOPs saved inside this band: proportional, too close to call
MULTISCALING_EFFICIENCY = 0.5  # at least half of the FLOPs multiscaling saves must show as latency saved
FREENOISE_OVERHEAD = 0.25  # FreeNoise: about +17 %; windowing stays "cheap" up to +25 % of the model
LINEAR_EXPONENT = 1.25  # growth exponent of a layer "linear in frames"
CACHE_GROWTH = 1.10  # a chunk's cost "grows with the cache": the last chunk costs 10 % more than the second
CAUSAL_RATIO = 1.15  # causal attention costs "what full attention costs": at most 15 % more at every length
CAUSAL_EXPONENT = 0.15  # ... and grows no faster (exponent at most 0.15 higher)

Rule = Callable[[dict[str, Any]], dict[str, Any]]


def _rule(rule_id: str, seed: str, text: str, published: str, verdict: str, why: str,
          **evidence: Any) -> dict[str, Any]:
    return {"id": rule_id, "source": seed, "rule": text, "published": published, "verdict": verdict, "why": why,
            "evidence": evidence}


def _pct(x: float | None) -> str:
    """A signed change: ``+9.5 %``."""
    return "n/a" if x is None else f"{100 * x:+.1f} %"


def _share(x: float | None) -> str:
    """A share: ``9.5 %`` (negative when it is a loss)."""
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _level_rows(doc: dict[str, Any], level: int) -> list[dict[str, Any]]:
    """Every choice at one resolution level, with its site and source."""
    return [{**row, "site": site["site"], "site_slots": len(site["slots"]), "source": site["source"]["label"],
             "network_ms": site["network_ms"]}
            for site in doc["levels"] if site["level"] == level for row in site["choices"]]


def _cheapest(rows: list[dict[str, Any]], cls: str) -> dict[str, Any] | None:
    pool = [r for r in rows if r["class"] == cls]
    return min(pool, key=lambda r: r["latency_ms"]) if pool else None


def _levels(doc: dict[str, Any]) -> list[int]:
    return sorted({site["level"] for site in doc["levels"]})


def _level_label(doc: dict[str, Any], level: int) -> str:
    return next(site["level_label"] for site in doc["levels"] if site["level"] == level)


# SnapGen-V -----------------------------------------------------------------------------------------------------

SNAPGEN = "SnapGen-V"


def snapgen_high_res(doc: dict[str, Any]) -> dict[str, Any]:
    text = ("At the highest-resolution level a 1-D temporal layer (attention or convolution) costs less than 3-D "
            "attention.")
    published = "found by SnapGen-V's search on an iPhone 16 Pro Max (secondary notes)"
    level = _levels(doc)[0]
    rows = _level_rows(doc, level)
    one_d, three_d = _cheapest(rows, ONE_D), _cheapest(rows, ATTN_3D)
    thresholds = {"premium_above": 1.0}
    if one_d is None or three_d is None:
        return _rule("snapgen-v.high_res_1d", SNAPGEN, text, published, UNDECIDED,
                     f"the highest-resolution level ({_level_label(doc, level)}) has no "
                     f"{'1-D temporal layer' if one_d is None else '3-D attention'} to compare (the registry's "
                     "probe does not fit its slots, or the table does not hold it)",
                     level=_level_label(doc, level), thresholds=thresholds)
    if one_d["source"] != three_d["source"]:
        return _rule("snapgen-v.high_res_1d", SNAPGEN, text, published, UNDECIDED,
                     "the two layers' figures come from different sources", thresholds=thresholds)
    premium = three_d["latency_ms"] / one_d["latency_ms"] if one_d["latency_ms"] else None
    verdict = HOLDS if premium is not None and premium > 1.0 else FAILS
    why = (f"at {_level_label(doc, level)} the cheapest 3-D attention ({three_d['choice']}, "
           f"{three_d['latency_ms']:.3g} ms) costs {premium:.2f}x the cheapest 1-D layer ({one_d['choice']}, "
           f"{one_d['latency_ms']:.3g} ms)" if premium is not None else "the 1-D layer costs nothing")
    return _rule("snapgen-v.high_res_1d", SNAPGEN, text, published, verdict, why, level=_level_label(doc, level),
                 cheapest_1d={k: one_d[k] for k in ("choice", "site", "latency_ms", "flops")},
                 cheapest_3d_attention={k: three_d[k] for k in ("choice", "site", "latency_ms", "flops")},
                 premium=premium, source=one_d["source"], thresholds=thresholds)


def _extra_share(doc: dict[str, Any], level: int) -> dict[str, Any] | None:
    """What 3-D attention at every slot of its site adds over the cheapest 1-D layer, as a share of the network."""
    rows = _level_rows(doc, level)
    one_d, three_d = _cheapest(rows, ONE_D), _cheapest(rows, ATTN_3D)
    if one_d is None or three_d is None or one_d["source"] != three_d["source"]:
        return None
    extra_ms = three_d["site_slots"] * (three_d["latency_ms"] - one_d["latency_ms"])
    return {"level": _level_label(doc, level), "attention_3d": three_d["choice"], "layer_1d": one_d["choice"],
            "slots": three_d["site_slots"], "extra_ms": extra_ms, "network_ms": three_d["network_ms"],
            "extra_share": extra_ms / three_d["network_ms"], "source": one_d["source"]}


def snapgen_low_res(doc: dict[str, Any]) -> dict[str, Any]:
    text = ("3-D attention is affordable only at the low-resolution levels: at every slot of the lowest-resolution "
            f"level it adds at most {100 * AFFORDABLE_SHARE:.0f} % to the network's latency over the cheapest 1-D "
            "layer, at the highest-resolution level more.")
    published = "SnapGen-V: 1-D layers at high resolution, 3-D attention at low resolution (secondary notes)"
    thresholds = {"affordable_share": AFFORDABLE_SHARE}
    shares = [s for s in (_extra_share(doc, level) for level in _levels(doc)) if s is not None]
    if len(shares) < 2:
        return _rule("snapgen-v.low_res_3d", SNAPGEN, text, published, UNDECIDED,
                     "the space has one resolution level" if len(_levels(doc)) < 2 else
                     "fewer than two resolution levels have figures for both a 1-D layer and 3-D attention",
                     per_level=shares, thresholds=thresholds)
    high, low = shares[0], shares[-1]
    affordable_low = low["extra_share"] <= AFFORDABLE_SHARE
    costly_high = high["extra_share"] > AFFORDABLE_SHARE
    verdict = HOLDS if affordable_low and costly_high else FAILS
    why = (f"3-D attention adds {_share(high['extra_share'])} of the network's latency at {high['level']} and "
           f"{_share(low['extra_share'])} at {low['level']}")
    if not costly_high:
        why += f": affordable at the highest resolution too (at most {100 * AFFORDABLE_SHARE:.0f} %)"
    elif not affordable_low:
        why += f": not affordable even at the lowest resolution (over {100 * AFFORDABLE_SHARE:.0f} %)"
    return _rule("snapgen-v.low_res_3d", SNAPGEN, text, published, verdict, why, per_level=shares,
                 thresholds=thresholds)


def snapgen_memory(doc: dict[str, Any]) -> dict[str, Any]:
    text = ("Within the memory budget, 3-D attention runs out of memory at the highest-resolution level while 1-D "
            "layers fit (SnapGen-V drops the layers that run out of memory).")
    published = "SnapGen-V: configurations that run out of memory dropped from the table (secondary notes)"
    budget = doc["memory_budget"]
    thresholds = {"memory_budget_bytes": budget["bytes"], "budget_from": budget["source"]}
    if budget["bytes"] is None:
        return _rule("snapgen-v.memory", SNAPGEN, text, published, UNDECIDED, f"no memory budget: {budget['source']}",
                     thresholds=thresholds)
    level = _levels(doc)[0]
    rows = _level_rows(doc, level)
    one_d, three_d = [r for r in rows if r["class"] == ONE_D], [r for r in rows if r["class"] == ATTN_3D]
    if not one_d or not three_d:
        return _rule("snapgen-v.memory", SNAPGEN, text, published, UNDECIDED,
                     "the highest-resolution level has no 1-D layer or no 3-D attention to compare",
                     thresholds=thresholds)
    cheapest_1d = min(one_d, key=lambda r: r["network_bytes"])
    over = [r["choice"] for r in three_d if not r["fits"]]
    all_levels_fit = all(r["fits"] for site in doc["levels"] for r in site["choices"] if r["class"] == ATTN_3D)
    gib = 2 ** 30
    evidence = {"level": _level_label(doc, level), "attention_3d_over_budget": over,
                "attention_3d_bytes": {r["choice"]: r["network_bytes"] for r in three_d},
                "smallest_1d": cheapest_1d["choice"], "smallest_1d_bytes": cheapest_1d["network_bytes"],
                "every_3d_attention_fits_everywhere": all_levels_fit, "thresholds": thresholds,
                "counted": "weights plus every activation alive while the layer runs, attention fused (flash): a "
                           "kernel that materialises the attention scores needs more"}
    if not cheapest_1d["fits"]:
        return _rule("snapgen-v.memory", SNAPGEN, text, published, FAILS,
                     f"at {evidence['level']} even {cheapest_1d['choice']} needs "
                     f"{cheapest_1d['network_bytes'] / gib:.2f} GiB, over the {budget['bytes'] / gib:.2f} GiB budget: "
                     "the network does not fit whatever the temporal layer", **evidence)
    if over:
        worst = max(three_d, key=lambda r: r["network_bytes"])
        return _rule("snapgen-v.memory", SNAPGEN, text, published, HOLDS,
                     f"at {evidence['level']} {', '.join(over)} need up to {worst['network_bytes'] / gib:.2f} GiB, "
                     f"over the {budget['bytes'] / gib:.2f} GiB budget, while {cheapest_1d['choice']} needs "
                     f"{cheapest_1d['network_bytes'] / gib:.2f} GiB", **evidence)
    worst = max(three_d, key=lambda r: r["network_bytes"])
    return _rule("snapgen-v.memory", SNAPGEN, text, published, FAILS,
                 f"every 3-D attention fits at {evidence['level']} (at most {worst['network_bytes'] / gib:.2f} GiB of "
                 f"{budget['bytes'] / gib:.2f} GiB): the budget does not force 1-D layers there", **evidence)


# MobileVD ------------------------------------------------------------------------------------------------------

MOBILEVD = "MobileVD"


def mobilevd_flops(doc: dict[str, Any]) -> dict[str, Any]:
    text = ("FLOPs mislead about latency: ranking a level's temporal layers by FLOPs differs from ranking them by "
            f"latency (Spearman's rho below {MISLEAD_SPEARMAN} at some level).")
    published = "MobileVD: FLOPs are a poor predictor of phone latency (funnels: -7 % FLOPs / -21 % latency on " \
                "attention, -16 % / -6 % on convolutions)"
    thresholds = {"spearman_below": MISLEAD_SPEARMAN, "min_choices": 3}
    judged = [s for s in doc["levels"] if s["spearman"] is not None]
    if not judged:
        return _rule("mobilevd.flops_mislead", MOBILEVD, text, published, UNDECIDED,
                     "no site offers three or more temporal layers to rank", thresholds=thresholds)
    worst = min(judged, key=lambda s: s["spearman"])
    per_site = {s["site"]: s["spearman"] for s in judged}
    pair = worst["misleading_pair"]
    detail = ""
    if pair:
        flops = f"{pair['flops_ratio']:.2f}x fewer FLOPs" if pair["flops_ratio"] else "no FLOPs"
        detail = (f"; {pair['fewer_flops']} has {flops} than {pair['more_flops']} but takes "
                  f"{pair['latency_ratio']:.2f}x its time")
    verdict = HOLDS if worst["spearman"] < MISLEAD_SPEARMAN else FAILS
    why = f"Spearman's rho between FLOPs and latency is {worst['spearman']:.2f} at {worst['label']}{detail}"
    if verdict == FAILS:
        why = f"FLOPs rank the layers like latency at every site (lowest rho {worst['spearman']:.2f} at " \
              f"{worst['label']})"
    return _rule("mobilevd.flops_mislead", MOBILEVD, text, published, verdict, why, per_site=per_site,
                 worst_site=worst["site"], misleading_pair=pair, thresholds=thresholds)


def _modifier(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in doc["modifiers"] if m["name"] == name)


def _efficiency_rule(doc: dict[str, Any], name: str, rule_id: str, text: str, decide) -> dict[str, Any]:
    mod = _modifier(doc, name)
    pub = mod["published"]
    published = (f"MobileVD ({pub['where']}): FLOPs {_pct(-pub['flops_saved'])}, latency "
                 f"{_pct(-pub['latency_saved'])}")  # as changes: -7 %, -21 %
    low, high = PROPORTIONAL_BAND
    thresholds = {"proportional_band": [low, high], "multiscaling_efficiency": MULTISCALING_EFFICIENCY}
    if not mod["applicable"]:
        return _rule(rule_id, MOBILEVD, text, published, UNDECIDED, mod["why"], thresholds=thresholds)
    e = mod["efficiency"]
    evidence = {k: mod[k] for k in ("flops_saved", "latency_saved", "efficiency", "latency_ms_before",
                                    "latency_ms_after", "changed_slots", "ops")}
    evidence["published_efficiency"] = pub["latency_saved"] / pub["flops_saved"]
    evidence["source"] = mod["source"]["label"]
    if e is None:
        return _rule(rule_id, MOBILEVD, text, published, UNDECIDED, "it saves no FLOPs here", **evidence,
                     thresholds=thresholds)
    verdict = decide(e, mod)
    why = (f"{mod['label']} saves {_share(mod['flops_saved'])} of the FLOPs and {_share(mod['latency_saved'])} of the "
           f"latency (latency saved / FLOPs saved = {e:.2f}; MobileVD {evidence['published_efficiency']:.2f})")
    if verdict == UNDECIDED:
        why += f": inside the band [{low}, {high}] where the two are too close to call"
    return _rule(rule_id, MOBILEVD, text, published, verdict, why, **evidence, thresholds=thresholds)


def _above(e: float, mod) -> str:
    low, high = PROPORTIONAL_BAND
    return HOLDS if e >= high else FAILS if e <= low else UNDECIDED


def _below(e: float, mod) -> str:
    low, high = PROPORTIONAL_BAND
    return HOLDS if e <= low else FAILS if e >= high else UNDECIDED


def mobilevd_funnel_attention(doc: dict[str, Any]) -> dict[str, Any]:
    return _efficiency_rule(doc, "funnel_attention", "mobilevd.funnel_attention",
                            "Funnels on attention save more latency than FLOPs (latency saved / FLOPs saved above "
                            f"{PROPORTIONAL_BAND[1]}).", _above)


def mobilevd_funnel_convolution(doc: dict[str, Any]) -> dict[str, Any]:
    return _efficiency_rule(doc, "funnel_convolution", "mobilevd.funnel_convolution",
                            "Funnels on convolutions save less latency than FLOPs (latency saved / FLOPs saved below "
                            f"{PROPORTIONAL_BAND[0]}).", _below)


def mobilevd_multiscaling(doc: dict[str, Any]) -> dict[str, Any]:
    def decide(e: float, mod) -> str:
        return HOLDS if e >= MULTISCALING_EFFICIENCY and mod["latency_saved"] > 0 else FAILS

    return _efficiency_rule(doc, "multiscaling", "mobilevd.multiscaling",
                            "Temporal multiscaling (half the frames inside the temporal layers) turns at least half "
                            f"of the FLOPs it saves into latency saved (ratio at least {MULTISCALING_EFFICIENCY}).",
                            decide)


def mobilevd_pruning(doc: dict[str, Any]) -> dict[str, Any]:
    def decide(e: float, mod) -> str:
        return HOLDS if e >= PROPORTIONAL_BAND[0] else FAILS

    return _efficiency_rule(doc, "pruning", "mobilevd.pruning",
                            f"Dropping {100 * PRUNE_SHARE:.0f} % of the temporal blocks saves latency at least in "
                            f"proportion to the FLOPs it saves (ratio at least {PROPORTIONAL_BAND[0]}).", decide)


# FreeNoise -----------------------------------------------------------------------------------------------------

FREENOISE_SOURCE = "FreeNoise"
WINDOW_LABEL = f"attn1d_window(window={FREENOISE['window']}, window_stride={FREENOISE['window_stride']})"


def freenoise_overhead(doc: dict[str, Any]) -> dict[str, Any]:
    text = (f"Windowed temporal attention (window {FREENOISE['window']}, stride {FREENOISE['window_stride']}) costs "
            "little over full temporal attention on a long video: at most "
            f"+{100 * FREENOISE_OVERHEAD:.0f} % on the whole network.")
    published = "FreeNoise: about +17 % time over the base model"
    length = doc["length"]
    model = length.get("freenoise_model")
    thresholds = {"overhead_at_most": FREENOISE_OVERHEAD}
    if model is None:
        return _rule("freenoise.overhead", FREENOISE_SOURCE, text, published, UNDECIDED,
                     length.get("freenoise_model_why_not") or "no long-video network to compare",
                     thresholds=thresholds)
    unit = length.get("windowed_vs_full")
    verdict = HOLDS if model["overhead"] <= FREENOISE_OVERHEAD else FAILS
    why = (f"at {model['frames']} latent frames the windowed network takes {model['windowed_ms']:.4g} ms against "
           f"{model['full_ms']:.4g} ms ({_pct(model['overhead'])}; FreeNoise +17 %)")
    if unit:
        why += f"; the layer alone {unit['ratio'][-1]:.2f}x at {unit['frames'][-1]} frames"
    return _rule("freenoise.overhead", FREENOISE_SOURCE, text, published, verdict, why, **model,
                 layer_ratio=unit, source=length["source"]["label"], thresholds=thresholds)


def freenoise_linear(doc: dict[str, Any]) -> dict[str, Any]:
    text = f"Windowed temporal attention grows linearly with the number of frames (exponent at most {LINEAR_EXPONENT})."
    published = "FreeNoise: windows of 16 frames every 4, so cost linear in the video's length"
    length = doc["length"]
    rows = {r["choice"]: r for r in length["series"]}
    windowed, full = rows.get(WINDOW_LABEL), rows.get("attn1d")
    thresholds = {"exponent_at_most": LINEAR_EXPONENT}
    if windowed is None or windowed["exponent"] is None:
        return _rule("freenoise.linear", FREENOISE_SOURCE, text, published, UNDECIDED,
                     "no slot at the lowest-resolution level takes windowed temporal attention at two lengths",
                     thresholds=thresholds)
    verdict = HOLDS if windowed["exponent"] <= LINEAR_EXPONENT else FAILS
    why = f"its latency grows as frames^{windowed['exponent']:.2f} from {windowed['frames'][0]} to " \
          f"{windowed['frames'][-1]} frames"
    if full is not None and full["exponent"] is not None:
        why += f" (full temporal attention: frames^{full['exponent']:.2f})"
    return _rule("freenoise.linear", FREENOISE_SOURCE, text, published, verdict, why, frames=windowed["frames"],
                 latency_ms=windowed["latency_ms"], exponent=windowed["exponent"],
                 full_exponent=full["exponent"] if full else None, source=length["source"]["label"],
                 thresholds=thresholds)


# CausVid and Self Forcing -----------------------------------------------------------------------------------------

CAUSVID = "CausVid"


def _stream(doc: dict[str, Any], system: str) -> dict[str, Any] | None:
    return matching_stream(doc["streaming"]["configs"], system, growth=True)


def causvid_growth(doc: dict[str, Any]) -> dict[str, Any]:
    text = ("With block-causal attention and a KV cache, a chunk costs more the longer the cache: the last chunk costs "
            f"at least {CACHE_GROWTH}x the second.")
    published = "CausVid: attention cost grows with the cache"
    row = _stream(doc, "CausVid")
    thresholds = {"growth_at_least": CACHE_GROWTH}
    if row is None or row["growth"] is None:
        return _rule("causvid.cache_growth", CAUSVID, text, published, UNDECIDED,
                     "no block-causal stream of three chunks or more", thresholds=thresholds)
    verdict = HOLDS if row["growth"] >= CACHE_GROWTH else FAILS
    why = (f"{row['config']} at {row['shape']}: chunk 2 takes {row['per_chunk_ms'][1]:.4g} ms, chunk "
           f"{row['chunks']} {row['per_chunk_ms'][-1]:.4g} ms ({row['growth']:.2f}x)")
    return _rule("causvid.cache_growth", CAUSVID, text, published, verdict, why, config=row["config"],
                 per_chunk_ms=row["per_chunk_ms"], growth=row["growth"], source=row["source"]["label"],
                 thresholds=thresholds)


def causvid_realtime(doc: dict[str, Any]) -> dict[str, Any]:
    gap = next((g for g in doc["streaming"]["gaps"] if g["system"] == "CausVid"), None)
    text = ("A block-causal Wan 1.3B streams at CausVid's pace: the first chunk within 1.3 s, then at least 9.4 "
            "frames/s.")
    published = "CausVid: 1.3 s to the first frame, 9.4 FPS after, on one GPU"
    thresholds = {"first_chunk_ms_at_most": 1300.0, "fps_at_least": 9.4}
    if gap is None:
        return _rule("causvid.realtime", CAUSVID, text, published, UNDECIDED, "no CausVid stream was computed",
                     thresholds=thresholds)
    meets = gap["target_first_chunk_ms"] <= 1300.0 and gap["target_fps"] >= 9.4
    estimate = gap["source_kind"] == "roofline estimate"
    verdict = FAILS if not meets else (UNDECIDED if estimate else HOLDS)
    if not gap["at_paper_shape"]:
        verdict = UNDECIDED
    why = (f"first chunk {gap['target_first_chunk_ms']:.4g} ms ({gap['first_chunk_ratio']:.2f}x CausVid's 1.3 s), "
           f"{gap['target_fps']:.3g} frames/s ({gap['fps_ratio']:.2f}x its 9.4) at {gap['shape']}")
    if not gap["at_paper_shape"]:
        why += f", not at the paper's {gap['paper_shape']}: no comparison"
    elif verdict == UNDECIDED:
        why += ": a roofline lower bound meets the figures, which does not show that the device does"
    elif estimate:
        why += ": even the roofline lower bound misses them"
    return _rule("causvid.realtime", CAUSVID, text, published, verdict, why, **{k: gap[k] for k in (
        "config", "shape", "paper_shape", "target_first_chunk_ms", "target_fps", "first_chunk_ratio", "fps_ratio",
        "caveat", "source")}, thresholds=thresholds)


def self_forcing_rolling(doc: dict[str, Any]) -> dict[str, Any]:
    text = ("A rolling KV cache (a window of earlier chunks) keeps the cost per chunk flat once the window is full: "
            f"the last chunk costs less than {CACHE_GROWTH}x the first with a full window.")
    published = "Self Forcing: rolling KV cache; 0.69 s latency, 17 FPS on one GPU"
    row = _stream(doc, "Self Forcing")
    thresholds = {"growth_below": CACHE_GROWTH}
    if row is None or row["growth_after_window"] is None:
        return _rule("self-forcing.rolling_cache", "Self Forcing", text, published, UNDECIDED,
                     "no rolling-cache stream longer than its window", thresholds=thresholds)
    verdict = HOLDS if row["growth_after_window"] < CACHE_GROWTH else FAILS
    why = (f"{row['config']}: chunk {row['window'] + 1} takes {row['per_chunk_ms'][row['window']]:.4g} ms, the last "
           f"{row['per_chunk_ms'][-1]:.4g} ms ({row['growth_after_window']:.2f}x)")
    return _rule("self-forcing.rolling_cache", "Self Forcing", text, published, verdict, why, config=row["config"],
                 per_chunk_ms=row["per_chunk_ms"], growth_after_window=row["growth_after_window"],
                 source=row["source"]["label"], thresholds=thresholds)


# Phenaki ---------------------------------------------------------------------------------------------------------


def phenaki_causal(doc: dict[str, Any]) -> dict[str, Any]:
    text = ("Causal-in-time attention handles videos of any length at the cost of full temporal attention: at most "
            f"{CAUSAL_RATIO}x its latency at every length and growing no faster (exponent at most "
            f"+{CAUSAL_EXPONENT}).")
    published = "Phenaki: causal attention in time encodes videos of any length"
    ratios = doc["length"].get("causal_vs_full")
    thresholds = {"ratio_at_most": CAUSAL_RATIO, "exponent_difference_at_most": CAUSAL_EXPONENT}
    if ratios is None:
        return _rule("phenaki.causal_any_length", "Phenaki", text, published, UNDECIDED,
                     "no slot at the lowest-resolution level takes both causal and full temporal attention",
                     thresholds=thresholds)
    worst = max(ratios["ratio"])
    diff = ratios["exponent_difference"]
    verdict = HOLDS if worst <= CAUSAL_RATIO and (diff is None or diff <= CAUSAL_EXPONENT) else FAILS
    why = (f"causal over full temporal attention: {min(ratios['ratio']):.2f}x to {worst:.2f}x from "
           f"{ratios['frames'][0]} to {ratios['frames'][-1]} frames"
           + (f", exponent {diff:+.2f}" if diff is not None else ""))
    return _rule("phenaki.causal_any_length", "Phenaki", text, published, verdict, why, **ratios,
                 source=doc["length"]["source"]["label"], thresholds=thresholds)


# The campaign's own Pareto set ---------------------------------------------------------------------------------


def pareto_rule(doc: dict[str, Any]) -> dict[str, Any]:
    pareto = doc["pareto"]
    text = ("The campaign's Pareto set follows the cost study: it never places a layer that does not fit the memory "
            "budget, and it uses 3-D attention no more at the highest-resolution level than at the lowest.")
    published = "this campaign"
    if not pareto["architectures"]:
        return _rule("pareto.follows_study", "this campaign", text, published, UNDECIDED, "no Pareto architecture",
                     thresholds={})
    levels = pareto["levels"]
    keys = sorted((k for k in levels if levels[k]["offers_3d_attention"]), key=int)  # where the space offers it
    high = levels[keys[0]]["attn3d_share"] if keys else None
    low = levels[keys[-1]]["attn3d_share"] if keys else None
    pattern = None if len(keys) < 2 or high is None or low is None else high <= low
    fits = not pareto["unfit_placements"]
    verdict = HOLDS if fits and pattern is not False else FAILS
    parts = [f"{len(pareto['unfit_placements'])} placements over the memory budget" if not fits
             else "no placement over the memory budget"]
    if pattern is not None:
        parts.append(f"3-D attention is {_share(high)} of its temporal layers at the highest-resolution level "
                     f"offering it, {_share(low)} at the lowest")
    else:
        parts.append("fewer than two resolution levels offer 3-D attention: no placement pattern to check")
    return _rule("pareto.follows_study", "this campaign", text, published, verdict, "; ".join(parts),
                 attn3d_share_highest=high, attn3d_share_lowest=low, unfit_placements=pareto["unfit_placements"][:20],
                 thresholds={"placements_over_budget_at_most": 0,
                             "attn3d_share": "highest-resolution level <= lowest (levels offering it)"})


RULES: tuple[Rule, ...] = (
    snapgen_high_res, snapgen_low_res, snapgen_memory, mobilevd_flops, mobilevd_funnel_attention,
    mobilevd_funnel_convolution, mobilevd_multiscaling, mobilevd_pruning, freenoise_overhead, freenoise_linear,
    causvid_growth, causvid_realtime, self_forcing_rolling, phenaki_causal,
)


def judge(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rule's verdict on the study ``doc`` (and the Pareto set's, when the study has one)."""
    rules = [rule(doc) for rule in RULES]
    if doc.get("pareto") is not None:
        rules.append(pareto_rule(doc))
    return rules

"""The study's figures: each drawn from the study document's tidy rows by one function returning the Axes, and
stamped with the provenance of its numbers (measured, synthetic or roofline estimate; device and versions)."""

from __future__ import annotations

import math
from typing import Any

from vidnas.reports._figures import op_colour, placeholder, plt, to_png_data_uri

MARKERS = "osD^v<>ph*"


def stamp(ax, text: str) -> None:
    """Write the figure's provenance above it, so that the image carries it wherever it goes."""
    offset = 20 if ax.get_title() else 4  # clear of a one-line title
    ax.annotate(text, xy=(0, 1), xycoords="axes fraction", xytext=(0, offset), textcoords="offset points",
                fontsize=6.5, color="#5b6475", ha="left", va="bottom")


def _sources(*labels: str) -> str:
    return "; ".join(dict.fromkeys(label for label in labels if label))


# 1. Levels ---------------------------------------------------------------------------------------------------


def draw_levels(levels: list[dict[str, Any]], ax=None):
    """Heatmap: sites x choices, coloured by log latency, each cell its ms; OOM where it does not fit."""
    import numpy as np

    columns = list(dict.fromkeys(c["choice"] for site in levels for c in site["choices"]))
    if not columns:
        return placeholder("no site to draw")
    grid = np.full((len(levels), len(columns)), np.nan)
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for i, site in enumerate(levels):
        for c in site["choices"]:
            j = columns.index(c["choice"])
            cells[(i, j)] = c
            if c["latency_ms"] > 0:  # an identity (none) costs nothing: left white
                grid[i, j] = math.log10(c["latency_ms"])
    ax = ax or plt.subplots(figsize=(max(6.4, 0.62 * len(columns) + 2.5), 0.42 * len(levels) + 2.0))[1]
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="YlOrRd")
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), c in cells.items():
        text = f"{c['latency_ms']:.3g}" + ("*" if c["probe"] else "")
        if c["fits"] is False:
            text += "\nOOM"
        dark = np.isfinite(grid[i, j]) and grid[i, j] > middle
        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                color="#ffffff" if dark else ("#8b0000" if c["fits"] is False else "#1d2330"))
    ax.set_yticks(range(len(levels)), [s["label"] for s in levels], fontsize=7)
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=7)
    plt.colorbar(image, ax=ax, label="log10 ms per layer")
    stamp(ax, _sources(*(s["source"]["label"] for s in levels)))
    return ax


def draw_flops_latency(levels: list[dict[str, Any]], ax=None):
    """Every choice at every site: FLOPs against latency (log-log), coloured by op, one marker per level."""
    rows = [(site, c) for site in levels for c in site["choices"] if c["op"] != "none"]
    if not rows:
        return placeholder("no temporal layer to draw")
    positive = [c["flops"] for _, c in rows if c["flops"] > 0]
    zero_x = min(positive) / 4 if positive else 1.0
    ax = ax or plt.subplots(figsize=(6.8, 4.4))[1]
    level_labels = list(dict.fromkeys(site["level_label"] for site, _ in rows))
    for site, c in rows:
        marker = MARKERS[level_labels.index(site["level_label"]) % len(MARKERS)]
        ax.scatter(c["flops"] if c["flops"] > 0 else zero_x, c["latency_ms"], c=op_colour(c["op"]), marker=marker,
                   s=30, edgecolors="k" if c["probe"] else "none", linewidths=0.6)
    if len(positive) < len(rows):
        ax.axvline(zero_x, color="#999999", ls=":", lw=0.8)
        ax.annotate("0 FLOPs", (zero_x, ax.get_ylim()[1]), fontsize=7, rotation=90, va="top", ha="right")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs per call (torch.utils.flop_counter's count)")
    ax.set_ylabel("ms per call")
    ops = sorted({c["op"] for _, c in rows})
    handles = [plt.Line2D([], [], ls="", marker="o", color=op_colour(op)) for op in ops]
    handles += [plt.Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="#555555")
                for i in range(len(level_labels))]
    ax.legend(handles, ops + level_labels, fontsize=6.5, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    rho = ", ".join(f"{s['site']} {s['spearman']:.2f}" for s in levels if s["spearman"] is not None)
    ax.set_title(f"Spearman's rho, FLOPs vs latency: {rho or 'n/a'}", fontsize=8)
    stamp(ax, _sources(*(s["source"]["label"] for s in levels)))
    return ax


# 2. Modifiers ------------------------------------------------------------------------------------------------


def draw_modifiers(modifiers: list[dict[str, Any]], ax=None):
    """Per modifier: the share of FLOPs and of latency it saves here, beside MobileVD's published shares."""
    import numpy as np

    rows = [m for m in modifiers if m["applicable"]]
    if not rows:
        return placeholder("no modifier applies to this space's base architecture")
    ax = ax or plt.subplots(figsize=(6.8, 0.75 * len(rows) + 1.4))[1]
    y = np.arange(len(rows))
    height = 0.2
    bars = [("FLOPs saved (here)", [m["flops_saved"] for m in rows], "#4e79a7", None),
            ("latency saved (here)", [m["latency_saved"] for m in rows], "#e15759", None),
            ("FLOPs saved (MobileVD)", [m["published"]["flops_saved"] for m in rows], "#a0cbe8", "//"),
            ("latency saved (MobileVD, phone)", [m["published"]["latency_saved"] for m in rows], "#ff9d9a", "//")]
    for k, (label, values, colour, hatch) in enumerate(bars):
        ax.barh(y + (k - 1.5) * height, [100 * v for v in values], height, color=colour, hatch=hatch, label=label)
    ax.set_yticks(y, [m["label"] for m in rows], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("share saved per network call, %")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    stamp(ax, _sources(*(m["source"]["label"] for m in rows)) + "; MobileVD: arXiv 2412.07583, Table 2 and text")
    return ax


# 3. Length ------------------------------------------------------------------------------------------------------


def draw_length(length: dict[str, Any], ax=None):
    """Latency against frames (log-log) per choice at the lowest-resolution level; probes dashed."""
    rows = length["series"]
    if not rows:
        return placeholder("no layer at the lowest-resolution level")
    ax = ax or plt.subplots(figsize=(6.8, 4.2))[1]
    for r in rows:
        exponent = "n/a" if r["exponent"] is None else f"{r['exponent']:.2f}"
        ax.plot(r["frames"], r["latency_ms"], ls="--" if r["probe"] else "-", marker="o", ms=3,
                color=op_colour(r["op"]), label=f"{r['choice']} (x^{exponent})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"latent frames ({length['level']})")
    ax.set_ylabel("ms per layer call")
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    stamp(ax, length["source"]["label"])
    return ax


# 4. Streaming ------------------------------------------------------------------------------------------------


def draw_stream_chunks(streaming: dict[str, Any]):
    """Per configuration, each chunk's time (ms): the cache's cost as the video grows; one panel per space."""
    rows = streaming["configs"]
    if not rows:
        return placeholder("no causal configuration to stream")
    spaces = list(dict.fromkeys(r["space"] for r in rows))
    fig, axes = plt.subplots(1, len(spaces), figsize=(6.4 * len(spaces), 3.8), squeeze=False)
    for ax, space in zip(axes[0], spaces):
        for r in (r for r in rows if r["space"] == space):
            ax.plot(range(1, len(r["per_chunk_ms"]) + 1), r["per_chunk_ms"], marker="o", ms=3, label=r["config"])
        ax.set_xlabel("chunk")
        ax.set_ylabel(f"ms per chunk ({streaming['passes_per_chunk']} passes)")
        ax.set_title(f"{space} ({rows[[r['space'] for r in rows].index(space)]['shape']})", fontsize=8)
        ax.legend(fontsize=6, ncol=1)
        ax.grid(alpha=0.3)
    stamp(axes[0][0], _sources(*(r["source"]["label"] for r in rows)))
    return axes[0][0]


def draw_stream_pace(streaming: dict[str, Any], ax=None):
    """Time to the first chunk against steady decoded frames per second, with the papers' figures."""
    rows = streaming["configs"]
    if not rows:
        return placeholder("no causal configuration to stream")
    ax = ax or plt.subplots(figsize=(6.4, 4.2))[1]
    spaces = list(dict.fromkeys(r["space"] for r in rows))
    for r in rows:
        ax.scatter(r["first_chunk_ms"] / 1000, r["steady_fps"], s=22,
                   marker=MARKERS[spaces.index(r["space"]) % len(MARKERS)], c="#4e79a7" if r["window"] is None
                   else "#59a14f")
    for p in streaming["published"]:
        ax.scatter(p["first_frame_ms"] / 1000, p["fps"], marker="*", s=120, c="#e15759")
        ax.annotate(f"{p['system']} ({p['where']})", (p["first_frame_ms"] / 1000, p["fps"]), fontsize=7,
                    textcoords="offset points", xytext=(5, 4))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time to the first chunk, s")
    ax.set_ylabel("steady decoded frames per second")
    handles = [plt.Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="#555555")
               for i in range(len(spaces))]
    handles += [plt.Line2D([], [], ls="", marker="o", color=c) for c in ("#4e79a7", "#59a14f")]
    ax.legend(handles, spaces + ["full cache", "rolling cache"], fontsize=7)
    ax.grid(alpha=0.3, which="both")
    stamp(ax, _sources(*(r["source"]["label"] for r in rows)) + "; papers: their own figures on one GPU")
    return ax


# 5. Pareto --------------------------------------------------------------------------------------------------


def draw_pareto_placement(pareto: dict[str, Any], ax=None):
    """Sites x choices: how many Pareto architectures put each choice at each site."""
    import numpy as np

    sites = [s for s in pareto["sites"] if s["placements"]]
    columns = list(dict.fromkeys(label for s in sites for label in s["counts"]))
    if not columns:
        return placeholder("no Pareto architectures")
    grid = np.zeros((len(sites), len(columns)))
    for i, s in enumerate(sites):
        for label, n in s["counts"].items():
            grid[i, columns.index(label)] = n
    ax = ax or plt.subplots(figsize=(max(6.4, 0.6 * len(columns) + 2.5), 0.4 * len(sites) + 2.0))[1]
    image = ax.imshow(grid, aspect="auto", cmap="Blues")
    for i in range(len(sites)):
        for j in range(len(columns)):
            if grid[i, j]:
                ax.text(j, i, int(grid[i, j]), ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(sites)), [s["label"] for s in sites], fontsize=7)
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=7)
    plt.colorbar(image, ax=ax, label="slots in Pareto architectures")
    stamp(ax, f"campaign {pareto['name']}: {pareto['architectures']} Pareto architectures")
    return ax


def study_figures(doc: dict[str, Any]) -> dict[str, str | None]:
    """Every figure of the study page as an inline PNG data URI."""
    figures: dict[str, str | None] = {
        "levels": to_png_data_uri(draw_levels(doc["levels"]).figure),
        "flops_latency": to_png_data_uri(draw_flops_latency(doc["levels"]).figure),
        "modifiers": to_png_data_uri(draw_modifiers(doc["modifiers"]).figure),
        "length": to_png_data_uri(draw_length(doc["length"]).figure),
        "stream_chunks": to_png_data_uri(draw_stream_chunks(doc["streaming"]).figure),
        "stream_pace": to_png_data_uri(draw_stream_pace(doc["streaming"]).figure),
        "pareto": None,
    }
    if doc.get("pareto") is not None:
        figures["pareto"] = to_png_data_uri(draw_pareto_placement(doc["pareto"]).figure)
    return figures

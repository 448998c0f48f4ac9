"""The report's figures: each prepared as data by one function and drawn by another that returns the Axes."""

from __future__ import annotations

import base64
import io
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vidnas._pareto import hypervolume, non_dominated  # noqa: E402
from vidnas.reports._data import RunData, completed, objective_columns  # noqa: E402


def op_colour(op: str) -> str:
    """The colour an op registered for figures (a grey for an op that gave none, or an unknown name)."""
    from vidnas.search_space import TEMPORAL_OPS

    colour = TEMPORAL_OPS.get(op).colour if op in TEMPORAL_OPS else None
    return colour or "#7f7f7f"


def placeholder(message: str, size: tuple[float, float] = (6.4, 1.6)):
    """An Axes that only says why there is nothing to draw."""
    ax = plt.subplots(figsize=size)[1]
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#5b6475")
    ax.set_axis_off()
    return ax


def to_png_data_uri(fig) -> str:
    """The figure as an inline PNG (data URI), then closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# 1. Pareto front -------------------------------------------------------------------------------


class ParetoInfo(NamedTuple):
    x_label: str
    y_label: str
    feasible: Any  # DataFrame with x, y
    infeasible: Any
    front: Any  # DataFrame with x, y, rank


def pareto_info(data: RunData) -> ParetoInfo:
    cols = objective_columns(data)
    done = completed(data)
    x, y = cols[0], cols[1] if len(cols) > 1 else cols[0]
    frame = done.assign(x=done[x], y=done[y])
    front = frame[frame["pareto"]].copy()
    ranks = {e["trial"]: e["rank"] for e in data.pareto}
    front["rank"] = front["number"].map(ranks)
    return ParetoInfo(x.split(".", 1)[1], y.split(".", 1)[1], frame[frame["feasible"]], frame[~frame["feasible"]],
                      front.sort_values("x"))


def draw_pareto(info: ParetoInfo, ax=None):
    if len(info.feasible) + len(info.infeasible) == 0:
        return placeholder("no completed trials", (6.4, 4.2))
    ax = ax or plt.subplots(figsize=(6.4, 4.2))[1]
    ax.scatter(info.feasible["x"], info.feasible["y"], s=18, c="#4e79a7", alpha=0.6, label="feasible trials")
    if len(info.infeasible):
        ax.scatter(info.infeasible["x"], info.infeasible["y"], s=22, c="#bbbbbb", marker="x",
                   label="infeasible (over a budget)")
    ax.plot(info.front["x"], info.front["y"], "-o", c="#e15759", ms=6, label="Pareto front", drawstyle="steps-post")
    for _, row in info.front.iterrows():
        ax.annotate(str(int(row["rank"])), (row["x"], row["y"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel(info.x_label)
    ax.set_ylabel(info.y_label)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


# 2. Hypervolume ------------------------------------------------------------------------------------


HV_MARGIN = 1.1  # the reference point: 1.1 x the observed range past the worst value of each objective


def hypervolume_info(data: RunData):
    """Hypervolume of the feasible front after each trial, as a share of the box it can fill (so in [0, 1]).

    Each objective is normalised to [0, 1] over the feasible complete trials (0 = the best
    value seen); the reference point is ``HV_MARGIN`` in every objective, and the hypervolume
    is divided by the box's volume ``HV_MARGIN ** d``: 1 would be one trial best in every objective.
    """
    import numpy as np
    import pandas as pd

    cols = objective_columns(data)
    signs = [1 if o["direction"] == "minimize" else -1 for o in data.objectives]
    trials = data.trials.sort_values("number")
    ok = trials[(trials["state"] == "COMPLETE") & trials["feasible"]]
    if len(ok) == 0:
        return pd.DataFrame({"trial": [], "hypervolume": []})
    values = ok[cols].to_numpy(float) * np.asarray(signs)
    lo, hi = values.min(axis=0), values.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = (values - lo) / span
    ref = np.full(len(cols), HV_MARGIN)
    box = HV_MARGIN ** len(cols)
    row_of = {number: i for i, number in enumerate(ok["number"])}
    out, hv = [], 0.0
    front: list[np.ndarray] = []  # the feasible front so far: the hypervolume of all points seen
    screened = trials.get("screened", pd.Series(False, index=trials.index)).astype(bool)
    for number in trials.loc[~screened, "number"]:  # screened trials were never evaluated: no step on the curve
        if number in row_of:
            candidates = [*front, norm[row_of[number]]]
            front = [p for p, keep in zip(candidates, non_dominated(candidates)) if keep]
            hv = hypervolume(front, ref) / box
        out.append({"trial": int(number), "hypervolume": hv})
    return pd.DataFrame(out)


def draw_hypervolume(frame, ax=None):
    if len(frame) == 0:
        return placeholder("no feasible trials")
    ax = ax or plt.subplots(figsize=(6.4, 3.2))[1]
    ax.plot(frame["trial"], frame["hypervolume"], c="#4e79a7")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume share")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    return ax


# 3. Where each op lands ------------------------------------------------------------------------------


def placement_info(slots):
    """Slot x op counts over the Pareto set."""
    if len(slots) == 0:
        return slots
    counts = slots.pivot_table(index="slot", columns="op", values="rank", aggfunc="count", fill_value=0)
    order = list(dict.fromkeys(slots["slot"]))
    return counts.reindex(order)


def draw_placement(counts, ax=None):
    if len(counts) == 0:
        return placeholder("no Pareto architectures")
    ax = ax or plt.subplots(figsize=(6.4, max(3.0, 0.22 * len(counts) + 1)))[1]
    image = ax.imshow(counts.to_numpy(), aspect="auto", cmap="Blues")
    ax.set_yticks(range(len(counts.index)), counts.index, fontsize=7)
    ax.set_xticks(range(len(counts.columns)), counts.columns, rotation=45, ha="right", fontsize=8)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts.iat[i, j]:
                ax.text(j, i, int(counts.iat[i, j]), ha="center", va="center", fontsize=7)
    plt.colorbar(image, ax=ax, label="Pareto architectures")
    return ax


def draw_schematic(slots, ax=None):
    """One row per Pareto architecture, one cell per slot in execution order, coloured by op."""
    if len(slots) == 0:
        return placeholder("no Pareto architectures")
    ranks = sorted(slots["rank"].unique())
    order = list(dict.fromkeys(slots["slot"]))
    ax = ax or plt.subplots(figsize=(max(6.4, 0.25 * len(order) + 2), 0.35 * len(ranks) + 1.6))[1]
    for i, rank in enumerate(ranks):
        part = slots[slots["rank"] == rank].set_index("slot")
        for j, slot in enumerate(order):
            op = part.loc[slot, "op"]
            ax.add_patch(plt.Rectangle((j, i), 0.95, 0.9, color=op_colour(op)))
    levels = [order[j].split(".")[0][0] + order[j].split(".")[1] for j in range(len(order))]
    ax.set_xlim(0, len(order))
    ax.set_ylim(len(ranks), 0)
    ax.set_yticks([i + 0.45 for i in range(len(ranks))], [f"#{r}" for r in ranks], fontsize=8)
    ax.set_xticks([j + 0.47 for j in range(len(order))], levels, fontsize=6)
    ax.set_xlabel("slots in execution order (first letter of a slot name, then its index: d1 = down.1, b3 = block.3)")
    used = sorted(set(slots["op"]))
    handles = [plt.Rectangle((0, 0), 1, 1, color=op_colour(op)) for op in used]
    ax.legend(handles, used, fontsize=7, ncol=min(6, len(used)), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return ax


# 4. Latency per slot -------------------------------------------------------------------------------


def draw_slot_latency(slots, ax=None):
    """Stacked bars: each Pareto architecture's predicted temporal latency, per op type."""
    import pandas as pd

    data = slots.dropna(subset=["ms"]) if len(slots) else slots
    if len(data) == 0:
        return placeholder("no per-slot latency: no Pareto architectures, or no table")
    ax = ax or plt.subplots(figsize=(6.4, 3.4))[1]
    per_op = data.pivot_table(index="rank", columns="op", values="ms", aggfunc="sum", fill_value=0.0)
    bottom = pd.Series(0.0, index=per_op.index)
    for op in per_op.columns:
        ax.bar([f"#{r}" for r in per_op.index], per_op[op], bottom=bottom, color=op_colour(op), label=op)
        bottom += per_op[op]
    ax.set_ylabel("temporal layers, predicted ms")
    ax.legend(fontsize=7, ncol=3)
    return ax


# 5. Predictor accuracy and table noise ---------------------------------------------------------------


def draw_accuracy(frame, ax=None):
    ax = ax or plt.subplots(figsize=(4.2, 4.0))[1]
    for name, part in frame.groupby("set"):
        ax.scatter(part["measured_ms"], part["predicted_ms"], s=18, label=name)
    lo = min(frame["measured_ms"].min(), frame["predicted_ms"].min())
    hi = max(frame["measured_ms"].max(), frame["predicted_ms"].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.fill_between([lo, hi], [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color="#cccccc", alpha=0.4, label="+-10 %")
    ax.set_xlabel("measured ms")
    ax.set_ylabel("predicted ms")
    ax.legend(fontsize=8)
    return ax


def draw_errors(frame, ax=None):
    ax = ax or plt.subplots(figsize=(4.2, 4.0))[1]
    ax.hist(100 * frame["error"], bins=15, color="#4e79a7")
    ax.axvline(-10, color="k", ls=":")
    ax.axvline(10, color="k", ls=":")
    ax.set_xlabel("prediction error, %")
    ax.set_ylabel("networks")
    return ax


def draw_table_noise(rows, ax=None):
    ax = ax or plt.subplots(figsize=(6.4, 3.0))[1]
    values = 100 * rows["cv"].astype(float)
    trusted = rows["trusted"].astype(bool)
    ax.hist([values[trusted], values[~trusted]], bins=20, stacked=True, color=["#59a14f", "#e15759"],
            label=["trusted", "flagged noisy"])
    ax.set_xlabel("coefficient of variation of an entry's samples, %")
    ax.set_ylabel("table entries")
    ax.legend(fontsize=8)
    return ax


def draw_calibration(proxies: dict[str, Any], ax=None):
    names = list(proxies)
    taus = [proxies[n]["kendall"] for n in names]
    lows = [proxies[n]["kendall"] - proxies[n]["kendall_ci"][0] for n in names]
    highs = [proxies[n]["kendall_ci"][1] - proxies[n]["kendall"] for n in names]
    ax = ax or plt.subplots(figsize=(6.4, 0.3 * len(names) + 1.2))[1]
    ax.barh(names, taus, xerr=[lows, highs], color=["#4e79a7" if t >= 0 else "#e15759" for t in taus])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("Kendall tau with held-out quality (95 % bootstrap interval)")
    ax.invert_yaxis()
    return ax

"""Markdown tables for RESULTS.md, read from the benchmark JSON files (nothing typed by hand).

    python benchmarks/summarize.py latency benchmarks/results/latency-*.json
    python benchmarks/summarize.py calibration benchmarks/results/calibration-tiny.json
    python benchmarks/summarize.py search benchmarks/results/search.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _acc(r: dict) -> str:
    return f"{100 * r['within_10pct']:.0f} % / {r['spearman']:.3f} / {100 * r['mape']:.1f} %"


def _shape(space: str, overrides: dict) -> str:
    """frames x height x width in decoded pixels (the preset's own where not overridden)."""
    from vidnas.search_space import get_space

    bb = get_space(space, **{k: v for k, v in overrides.items() if k != "width_mult"}).base.backbone
    return f"{bb.frames}x{bb.latent_height * bb.vae_scale_factor}x{bb.latent_width * bb.vae_scale_factor}"


def latency(paths: list[Path]) -> None:
    from vidnas.latency_models._network import AccuracyReport

    print("| run | space (shape) | backend | entries (noisy) | build | naive sum | corrected (the predictor) "
          "| corrected, trusted measurements only (n) | raw ms, corrected | in-session 5-fold "
          "| rebuild: ratio within 5 % or flagged | rebuild: ms within 5 % or "
          "flagged (machine speed shift) | archs/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in paths:
        d = json.loads(path.read_text())
        v = d["validation"]
        shape = _shape(d["space"], d["space_shape"])
        if d["space_shape"].get("width_mult"):
            shape += f", width x{d['space_shape']['width_mult']}"
        rep = d.get("repeatability")
        trusted = [r for r in v["rows"] if r["measured_trusted"]]
        subset = AccuracyReport.from_pairs([r["corrected_ms"] for r in trusted], [r["measured_ms"] for r in trusted],
                                           [r["arch_id"] for r in trusted]).to_dict() if len(trusted) > 2 else None
        only = (_acc(subset) + f" ({len(trusted)})") if subset else f"- ({len(trusted)})"
        print(f"| {path.stem.removeprefix('latency-')} | {d['space']} ({shape}) | "
              f"{d['backend']} {d['device']}, {d['threads']} thread | "
              f"{d['entries']} ({d['untrusted_entries']}) | {d['build_seconds']:.0f} s | {_acc(v['naive'])} | "
              f"{_acc(v['corrected'])} | {only} | "
              f"{_acc(v['raw_corrected']) if 'raw_corrected' in v else '-'} | "
              f"{_acc(d['in_session_cv'])} | "
              + (f"{100 * rep['ratio']['within_5pct_or_flagged']:.0f} % ({100 * rep['ratio']['within_5pct']:.0f} % "
                 f"within) | {100 * rep['ms']['within_5pct_or_flagged']:.0f} % "
                 f"({100 * rep['reference_shift']:+.1f} %) | " if rep else "- | - | ")
              + f"{d['prediction_speed']['vectorised_archs_per_s']:.1e} |")
    print()
    print("Each cell: share within +-10 % / Spearman / MAPE, over the held-out architectures.")
    for path in paths:
        d = json.loads(path.read_text())
        c = d["correction"]
        print(f"- {path.name}: correction `{c['model']}` (slope {c['slope']:.3f}, "
              f"intercept {c['intercept_ms']:.2f} ms, "
              f"per unit {c.get('per_unit_ms', 0.0):.3f} ms) fitted on {c['n']} architectures, leave-one-out error "
              f"{100 * c['loo_error']:.1f} %; {d['n']} held-out architectures; fit {d['fit_seconds']:.0f} s, "
              f"validation {d['validate_seconds']:.0f} s; {d['environment']['cpu']}, "
              f"{d['environment']['backend'].get('versions')}.")


def calibration(path: Path) -> None:
    d = json.loads(path.read_text())
    cfg = d["config"]
    noise = d["noise_ceiling"]
    print(f"{cfg['n']} architectures of `{cfg['space']}` at {cfg['space_shape']}, {cfg['steps']} training steps, "
          f"{cfg.get('truth_seeds', 1)} training seed(s) for the truth (sample seed {cfg['seed']}); "
          f"noise ceiling (tau between two seeds on {noise['n']} architectures): {noise['kendall_between_seeds']:.2f}.")
    print()
    print("| proxy | kind | Kendall tau [95 % CI] | Spearman [95 % CI] | tau within latency bins | "
          "partial tau given FLOPs | precision at top 10 % | s per arch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = [(name, r) for name, r in d["proxies"].items()] + [("ensemble", {**d["ensemble"], "kind": "ensemble"})]
    for name, r in rows:
        seconds = f"{r['seconds_median']:.3f}" if "seconds_median" in r else "-"
        print(f"| {name} | {r['kind']} | {r['kendall']:+.2f} [{r['kendall_ci'][0]:+.2f}, {r['kendall_ci'][1]:+.2f}] | "
              f"{r['spearman']:+.2f} [{r['spearman_ci'][0]:+.2f}, {r['spearman_ci'][1]:+.2f}] | "
              f"{r['kendall_within_latency_bins']:+.2f} | {r['partial_kendall_given_flops']:+.2f} | "
              f"{r['precision_at_top10']:.2f} | {seconds} |")


def search(path: Path) -> None:
    d = json.loads(path.read_text())
    print(f"Space of {d['space_size']} architectures, exhaustive front {d['true_front_size']} "
          f"(exhaustive search {d['exhaustive_seconds']:.0f} s); objectives latency (table) and `{d['proxy']}`.")
    print()
    print("| sampler | budget | seeds | hypervolume share, median (min-max) | true Pareto set recovered, mean |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in d["search_quality"].items():
        print(f"| {name} | {r['budget']} | {r['seeds']} | {r['hypervolume_share_median']:.3f} "
              f"({r['hypervolume_share_min']:.3f}-{r['hypervolume_share_max']:.3f}) | "
              f"{100 * r['pareto_recovered_mean']:.0f} % |")
    print()
    print("| workers | trials | wall s | trials/min | evaluation s, median | driver+Optuna+Ray s per trial, "
          "median (p90) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for workers, r in d["overhead"].items():
        print(f"| {workers} | {r['trials']} | {r['wall_seconds']:.1f} | {r['trials_per_minute']:.0f} | "
              f"{r['eval_seconds_median']:.3f} | {r['overhead_seconds_median']:.4f} "
              f"({r['overhead_seconds_p90']:.4f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=("latency", "calibration", "search"))
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    if args.kind == "latency":
        latency(args.paths)
    elif args.kind == "calibration":
        for p in args.paths:
            calibration(p)
    else:
        for p in args.paths:
            search(p)


if __name__ == "__main__":
    main()

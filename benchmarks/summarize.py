"""Markdown tables for RESULTS.md, read from the benchmark JSON files (nothing typed by hand).

    python benchmarks/summarize.py latency benchmarks/results/latency-*.json
    python benchmarks/summarize.py adapt benchmarks/results/adapt-*.json
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


def _answer(v: dict) -> tuple[dict, str]:
    """The figure a validation stands behind, and its basis (files from before the choice: rescaled)."""
    if v.get("answer"):
        return v["answer"], v["answer_basis"]["basis"]
    return v["corrected"] or v["naive"], "rescaled (fixed)"


def latency(paths: list[Path]) -> None:
    from vidnas.latency_models import AccuracyReport

    print("| run | space (shape) | backend | entries (noisy) | build | answer: the tool's figure (basis) "
          "| reference-rescaled, corrected | plain, corrected | FLOPs-linear | params-linear | roofline (scaled) "
          "| table MAPE / FLOPs-linear MAPE | networks noisy (re-measured) "
          "| rebuild: ratio within 5 % or flagged | archs/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in paths:
        d = json.loads(path.read_text())
        v = d["validation"]
        shape = _shape(d["space"], d["space_shape"])
        if d["space_shape"].get("width_mult"):
            shape += f", width x{d['space_shape']['width_mult']}"
        rep = d.get("repeatability")
        answer, basis = _answer(v)
        base = (v.get("baselines") or {}).get("baselines") or {}
        cells = [_acc(base[n]) if n in base else "-" for n in ("flops_linear", "params_linear", "roofline")]
        ratio = f"{answer['mape'] / base['flops_linear']['mape']:.2f}" if "flops_linear" in base else "-"
        load = f" + load `{d['load']['kind']}`" if d.get("load") else ""
        bases = d.get("entry_bases")
        noisy = f"{d['entries']} ({d['untrusted_entries']})" + (
            f" [{bases['paired']} paired, {bases.get('level', 0)} level, {bases['plain']} plain]" if bases else "")
        rescaled = _acc(v["corrected"]) if v.get("corrected") else "-"
        plain = _acc(v["raw_corrected"]) if v.get("raw_corrected") else "-"
        print(f"| {path.stem.removeprefix('latency-')} | {d['space']} ({shape}) | "
              f"{d['backend']} {d['device']}, {d['threads']} thread(s){load} | {noisy} | {d['build_seconds']:.0f} s | "
              f"{_acc(answer)} ({basis}) | {rescaled} | {plain} | {' | '.join(cells)} | {ratio} | "
              f"{v['untrusted_measurements']} ({v.get('remeasured', '-')}) | "
              + (f"{100 * rep['ratio']['within_5pct_or_flagged']:.0f} % ({100 * rep['ratio']['within_5pct']:.0f} % "
                 f"within) | " if rep else "- | ")
              + f"{d['prediction_speed']['vectorised_archs_per_s']:.1e} |")
    print()
    print("Each cell: share within +-10 % / Spearman / MAPE, over the held-out architectures. Baselines are fitted "
          "on the table's correction networks and judged against the answer's figures.")
    for path in paths:
        d = json.loads(path.read_text())
        c = d["correction"]
        v = d["validation"]
        trusted = [r for r in v["rows"] if r["measured_trusted"]]
        subset = AccuracyReport.from_pairs([r["corrected_ms"] for r in trusted], [r["measured_ms"] for r in trusted],
                                           [r["arch_id"] for r in trusted]).to_dict() if len(trusted) > 2 else None
        why = v.get("answer_basis", {}).get("reason", "rescaled figures (before the per-group choice)")
        timing = (f"total {d['total_seconds'] / 60:.0f} min (estimated {d['estimate']['total_seconds'] / 60:.0f})"
                  if "total_seconds" in d else "")
        load = d.get("load")
        loaded = (f" Load: `{load['kind']}` process PID {load['pid']}, {load['cpu_seconds']:.0f} CPU s over "
                  f"{load['wall_seconds']:.0f} s." if load and load.get("cpu_seconds") is not None else "")
        print(f"- {path.name}: correction `{c['model']}` (slope {c['slope']:.3f}, "
              f"intercept {c['intercept_ms']:.2f} ms, per unit {c.get('per_unit_ms', 0.0):.3f} ms) fitted on "
              f"{c['n']} architectures, leave-one-out error {100 * (c['loo_error'] or 0):.1f} %; {d['n']} held-out "
              f"architectures, trusted measurements only: {_acc(subset) if subset else '-'} ({len(trusted)}); "
              f"answer basis: {why}; fit {d['fit_seconds']:.0f} s, validation {d['validate_seconds']:.0f} s"
              f"{'; ' + timing if timing else ''}; {d['environment']['cpu']}, "
              f"{d['environment']['backend'].get('versions')}.{loaded}")


def adapt(paths: list[Path]) -> None:
    print("| pair | space | source -> target | K | model chosen | adapted | scale only | per-op forced "
          "| FLOPs-linear on the same K | source table as is | full build on the target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in paths:
        d = json.loads(path.read_text())
        src, tgt = d["source"], d["target"]
        sides = f"{src['backend']} x{src['threads']} -> {tgt['backend']} x{tgt['threads']}"
        full = _acc(d["full_build"]) if d.get("full_build") else "-"
        for k in map(str, d["ks"]):
            e = d["by_k"][k]
            models = e["models"]
            print(f"| {d['pair']} | {d['space']} | {sides} | {k} | {e['chosen']['model']} | {_acc(e['chosen'])} | "
                  f"{_acc(models['scale']) if 'scale' in models else '-'} | "
                  f"{_acc(models['per_op']) if 'per_op' in models else '-'} | {_acc(e['flops_linear_on_k'])} | "
                  f"{_acc(d['no_adaptation'])} | {full} |")
    print()
    print("Each cell: share within +-10 % / Spearman / MAPE on the held-out networks measured on the target.")
    for path in paths:
        d = json.loads(path.read_text())
        m = d["target_measurements"]
        print(f"- {path.name}: {d['held_out']} held-out networks ({m['basis']['basis']} figures; {m['untrusted']} "
              f"still noisy, {m['remeasured']} re-measured); source table {d['source']['entries']} entries "
              f"({d['source']['untrusted_entries']} noisy); total {d['total_seconds'] / 60:.0f} min (estimated "
              f"{d['estimate']['total_seconds'] / 60:.0f}); `{d['command']}`.")


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
    if d.get("format") != "vidnas.bench_search":
        return search_v1(d)
    for name, space in d["spaces"].items():
        lat, q = space["latency"], space["quality"]
        sn = q.get("supernet", {})
        print(f"- `{name}`: {space['size']:,} architectures, exhaustive front {space['true_front_size']}; latency "
              f"from a {lat['backend']} {lat['device']} table ({lat['entries']} entries, quick harness, "
              f"{lat['correction']}); quality `{q['metric']}` at {_shape_text(q['space_shape'])}, supernet trained "
              f"{sn.get('step', '?')} steps on a backbone pretrained {q['pretrain_config']['steps']} steps, "
              f"{q['supernet_config']['heldout_clips']} held-out clips.")
    print()
    print("| space | budget | sampler | seeds | hypervolume share, median [IQR] | front recovered, median [IQR] "
          "| p vs random (Wilcoxon, one-sided) | ms per trial |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for g in d["groups"]:
        for name, r in g["samplers"].items():
            p = r["p_value_vs_random"]
            p_text = "-" if p is None else (f"{p:.1e}" if p < 0.001 else f"{p:.3f}")
            hv, fr = r["hypervolume_share_iqr"], r["front_recovered_iqr"]
            print(f"| {g['space']} | {100 * g['budget_fraction']:g} % ({g['budget']}) | {name} | {r['seeds']} | "
                  f"{r['hypervolume_share_median']:.3f} [{hv[0]:.3f}, {hv[1]:.3f}] | "
                  f"{100 * r['front_recovered_median']:.0f} % [{100 * fr[0]:.0f}, {100 * fr[1]:.0f}] | {p_text} | "
                  f"{1000 * r['seconds_per_trial_median']:.1f} |")
    print()
    overhead = d.get("overhead")
    if overhead:
        print(f"Overhead of screened-ehvi on `{overhead['space']}` ({overhead['space_size']:.3g} architectures, "
              f"pool of {overhead['pool_candidates']:,}, {overhead['trials']} trials, {overhead['latency']}, "
              f"{overhead['quality']}): {1000 * overhead['choice_seconds_median']:.1f} ms per choice, median "
              f"(p90 {1000 * overhead['choice_seconds_p90']:.1f}, max {1000 * overhead['choice_seconds_max']:.1f}); "
              f"screening the pool once: {overhead['pool_seconds_first_trial']:.2f} s.")
        print()
    for t in d.get("target_checks", []):
        numbers = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items()
                            if k not in ("target", "met") and v is not None)
        print(f"- {'met' if t['met'] else '**missed**'}: {t['target']} ({numbers})")


def _shape_text(shape: dict) -> str:
    return f"{shape.get('frames', '?')} frames of {shape.get('height', '?')}x{shape.get('width', '?')} pixels"


def search_v1(d: dict) -> None:
    """The first search benchmark's file (125 architectures, one budget)."""
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
    parser.add_argument("kind", choices=("latency", "adapt", "calibration", "search"))
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    if args.kind == "latency":
        latency(args.paths)
    elif args.kind == "adapt":
        adapt(args.paths)
    elif args.kind == "calibration":
        for p in args.paths:
            calibration(p)
    else:
        for p in args.paths:
            search(p)


if __name__ == "__main__":
    main()

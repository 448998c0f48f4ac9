"""Calibration tables, and extra one-shot signals scored on a calibration's architectures.

    # score the calibration's architectures with a supernet variant (a column of extra.parquet)
    python benchmarks/bench_calibration.py score benchmarks/results/calibration-a-tiny-shapes \
        --supernet-dir DIR --label supernet_4000 [--score-noises 4] [--eval-timesteps 50,...] \
        [--finetune-steps 20]
    # the table (markdown) and a JSON of every figure
    python benchmarks/bench_calibration.py table benchmarks/results/calibration-a-tiny-shapes \
        [--dev 20] --out benchmarks/results/calibration-a-tiny-shapes/table.json

Signals are judged against the truth of every architecture (``all``) and, separately, of the
architectures outside the development subset (``held out``: all but the first ``--dev``, which
the truth's second seed also covers). Choices among signal variants (training steps, scoring
noises) are made on the development subset only; the held-out column is the one that says
whether a choice generalises. The learned model is judged out of fold (5 folds): every
architecture is scored by a model fitted without it; ``fitted_on`` and ``judged_on`` are in the
calibration's summary and in this script's JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def _rows(folder: Path):
    import pandas as pd

    rows = pd.read_parquet(folder / "rows.parquet")
    extra = folder / "extra.parquet"
    if extra.exists():
        rows = rows.merge(pd.read_parquet(extra), on="arch_id", how="left")
    return rows


def score(args: argparse.Namespace) -> None:
    import pandas as pd
    import torch

    from vidnas.proxies import PretrainConfig, Supernet, SupernetConfig, pretrain_backbone
    from vidnas.search_space import ArchSpec, get_space

    torch.set_num_threads(1)
    summary = json.loads((args.calibration / "summary.json").read_text())
    cfg = summary["config"]
    space = get_space(cfg["space"], **cfg["space_shape"])
    pretrain = PretrainConfig(**cfg["pretrain"])
    backbone = pretrain_backbone(space.base, pretrain)
    meta = json.loads((args.supernet_dir / "supernet.json").read_text())
    config = SupernetConfig.from_dict({**meta["identity"]["config"], "steps": meta["step"],
                                       "heldout_clips": args.heldout_clips,
                                       "score_noises": args.score_noises, "finetune_steps": args.finetune_steps,
                                       **({"eval_timesteps": tuple(int(t) for t in args.eval_timesteps.split(","))}
                                          if args.eval_timesteps else {})})
    supernet = Supernet(space, backbone, config).load(args.supernet_dir / "supernet.safetensors")
    rows = pd.read_parquet(args.calibration / "rows.parquet")
    specs = [ArchSpec.from_json(s) for s in rows["spec"]]
    supernet.score(specs[0])  # held-out problems prepared once
    values, seconds = [], []
    for spec in specs:
        t0 = time.perf_counter()
        values.append(supernet.score_finetuned(spec) if args.finetune_steps else supernet.score(spec))
        seconds.append(time.perf_counter() - t0)
    path = args.calibration / "extra.parquet"
    extra = pd.DataFrame({"arch_id": rows["arch_id"]})
    if path.exists():  # earlier variants, aligned on the calibration's architectures (it may have grown)
        extra = extra.merge(pd.read_parquet(path), on="arch_id", how="left")
    extra[f"proxy.{args.label}"] = values
    extra[f"seconds.{args.label}"] = seconds
    extra.to_parquet(path, index=False)
    notes = args.calibration / "extra.json"
    described = json.loads(notes.read_text()) if notes.exists() else {}
    described[args.label] = {"supernet_dir": str(args.supernet_dir), "supernet_step": meta["step"],
                             "heldout_clips": args.heldout_clips, "score_noises": args.score_noises,
                             "eval_timesteps": list(config.eval_timesteps), "finetune_steps": args.finetune_steps,
                             "seconds_median": sorted(seconds)[len(seconds) // 2], "threads": 1}
    notes.write_text(json.dumps(described, indent=2))
    print(json.dumps(described[args.label]))


def table(args: argparse.Namespace) -> None:
    from vidnas._stats import bootstrap_interval, kendall
    from vidnas.proxies._calibration import partial_kendall, precision_at_top, within_bins_kendall
    from vidnas.proxies._fit import out_of_fold
    from vidnas.proxies._registry import get_proxy, list_proxies

    summary = json.loads((args.calibration / "summary.json").read_text())
    frame = _rows(args.calibration)
    records = frame.to_dict("records")
    n = len(records)
    truth = [-float(r["heldout_loss"]) for r in records]
    flops = [float(r["flops"]) for r in records]
    latency = [float(r["latency"]) for r in records]
    ordered = sorted(latency)
    edges = [ordered[int(n * q / 4)] for q in range(1, 4)]
    bins = [sum(v > e for e in edges) for v in latency]
    held = list(range(args.dev, n))
    extra_notes = json.loads((args.calibration / "extra.json").read_text()) if (
        args.calibration / "extra.json").exists() else {}
    signals = [c[len("proxy."):] for c in frame.columns if c.startswith("proxy.")]

    def oriented(name: str) -> list[float]:
        base = name if name in list_proxies() else ("supernet_ft" if "_ft" in name else "supernet")
        sign = 1.0 if get_proxy(base).higher_is_better else -1.0
        out = []
        for r in records:
            v = float(r[f"proxy.{name}"])
            out.append(sign * (v if math.isfinite(v) else math.copysign(1e300, v)))
        return out

    def stats(values: list[float]) -> dict:
        sub_v, sub_t = [values[i] for i in held], [truth[i] for i in held]
        return {"kendall": kendall(values, truth), "kendall_ci": bootstrap_interval(values, truth, kendall),
                "kendall_held_out": kendall(sub_v, sub_t),
                "kendall_held_out_ci": bootstrap_interval(sub_v, sub_t, kendall),
                "within_bins": within_bins_kendall(values, truth, bins),
                "partial_given_flops": partial_kendall(values, truth, flops),
                "precision_at_top10": precision_at_top(values, truth)}

    out = {"calibration": str(args.calibration), "n": n, "dev": args.dev, "held_out": len(held),
           "truth_reliability": summary["truth_reliability"], "config": summary["config"], "signals": {}}
    for name in signals:
        seconds = frame.get(f"seconds.{name}")
        out["signals"][name] = {**stats(oriented(name)),
                                "seconds_median": float(seconds.median()) if seconds is not None else math.nan,
                                "variant": extra_notes.get(name)}
    setting = {"space": summary["config"]["space"], "space_shape": summary["config"]["space_shape"]}
    groups = {"learned: every signal": [s for s in signals if s in list_proxies()],
              "learned: training-free signals": [s for s in signals if s in list_proxies()
                                                 and get_proxy(s).kind in ("count", "zero_cost", "temporal")
                                                 and s != "temporal_order_gap"]}
    for label, names in groups.items():
        v = out_of_fold(records, signals=names, setting=setting, folds=5, seed=0)
        out["signals"][label] = {**stats(v["scores"]), "seconds_median": math.nan,
                                 "folds": [{k: f[k] for k in ("fold", "fitted_on", "judged_on", "groups", "alpha")}
                                           for f in v["folds"]], "signals": names}
        best = v.get("best_single_signal")
        if best:
            out["signals"][label.replace("learned", "best single signal (out of fold)")] = {
                **stats(best["scores"]), "seconds_median": math.nan, "chosen_per_fold": best["chosen_per_fold"]}
    rel = summary["truth_reliability"]
    lo, hi = rel["kendall_between_seeds_ci"]
    print(f"{n} architectures of `{summary['config']['space']}` at {summary['config']['space_shape']}, "
          f"{summary['config']['steps']} steps; truth reliability (tau between two seeds on {rel['n']}): "
          f"{rel['kendall_between_seeds']:.2f} [{lo:.2f}, {hi:.2f}]; held out = all but the first {args.dev}.")
    print()
    print("| signal | tau, all [95 % CI] | tau, held out [95 % CI] | tau within latency bins | partial tau given FLOPs "
          "| precision at top 10 % | s per candidate |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, s in out["signals"].items():
        sec = "-" if not math.isfinite(s["seconds_median"]) else f"{s['seconds_median']:.3f}"
        print(f"| {name} | {s['kendall']:+.2f} [{s['kendall_ci'][0]:+.2f}, {s['kendall_ci'][1]:+.2f}] | "
              f"{s['kendall_held_out']:+.2f} [{s['kendall_held_out_ci'][0]:+.2f}, {s['kendall_held_out_ci'][1]:+.2f}]"
              f" | {s['within_bins']:+.2f} | {s['partial_given_flops']:+.2f} | {s['precision_at_top10']:.2f} | {sec} |")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score")
    s.add_argument("calibration", type=Path)
    s.add_argument("--supernet-dir", type=Path, required=True)
    s.add_argument("--label", required=True)
    s.add_argument("--heldout-clips", type=int, default=32)
    s.add_argument("--score-noises", type=int, default=1)
    s.add_argument("--eval-timesteps", default="")
    s.add_argument("--finetune-steps", type=int, default=0)
    t = sub.add_parser("table")
    t.add_argument("calibration", type=Path)
    t.add_argument("--dev", type=int, default=20)
    t.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    {"score": score, "table": table}[args.command](args)


if __name__ == "__main__":
    main()

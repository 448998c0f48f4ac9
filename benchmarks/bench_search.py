"""Search quality against the exhaustive front, and the driver's overhead per trial.

    python benchmarks/bench_search.py --lut TABLE.parquet --out benchmarks/results/search.json

1. Exhaustive campaign over ``tiny-enum`` (125 architectures): latency from the table,
   quality from a proxy; its Pareto front is the truth.
2. NSGA-II, TPE and random, each given a tenth of that budget (13 trials), 10 seeds each,
   replaying the exhaustive campaign's values: hypervolume reached (share of the true
   front's) and share of the true Pareto set recovered.
3. Overhead: the same campaign on local Ray with 1 and 2 workers; per trial, the time the
   driver, Optuna and Ray add around the evaluation, and trials per minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lut", required=True, type=Path)
    parser.add_argument("--proxy", default="synflow")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--overhead-trials", type=int, default=40)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import numpy as np
    import optuna
    import pandas as pd

    from vidnas._env import fingerprint
    from vidnas._pareto import hypervolume, non_dominated
    from vidnas.runners import parse_config, run_campaign
    from vidnas.search_space import get_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = args.out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    base = {"space": {"name": "tiny-enum"}, "target": {"backend": "torch", "lut": str(args.lut)},
            "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                           {"metric": f"proxy:{args.proxy}", "direction": "maximize"}],
            "proxy": {"clips": 2, "seed": 0}}
    result: dict = {"environment": fingerprint(), "lut": str(args.lut), "proxy": args.proxy}

    # 1. Exhaustive truth
    run = work / "exhaustive"
    if not (run / "trials.parquet").exists():
        import shutil

        shutil.rmtree(run, ignore_errors=True)
        start = time.perf_counter()
        run_campaign(parse_config({**base, "name": "exhaustive", "sampler": {"name": "exhaustive"}, "workers": 2}),
                     run, local=False)
        result["exhaustive_seconds"] = time.perf_counter() - start
    trials = pd.read_parquet(run / "trials.parquet")
    trials = trials[trials["state"] == "COMPLETE"]
    value = {a: (lat, q) for a, lat, q in zip(trials["attr.arch_id"], trials["objective.latency_ms"],
                                              trials[f"objective.proxy:{args.proxy}"])}
    pts = np.array([(lat, -q) for lat, q in value.values()])
    lo, hi = pts.min(axis=0), pts.max(axis=0)

    def norm(p):
        return (np.asarray(p) - lo) / np.where(hi > lo, hi - lo, 1)

    ref = np.array([1.1, 1.1])
    def front_of(archs) -> set[str]:
        archs = list(archs)
        return {a for a, keep in zip(archs, non_dominated([(value[a][0], -value[a][1]) for a in archs])) if keep}

    true_front = front_of(value)
    true_hv = hypervolume(norm([(value[a][0], -value[a][1]) for a in true_front]), ref)
    result["space_size"] = len(value)
    result["true_front_size"] = len(true_front)

    # 2. Samplers at a tenth of the budget, replaying the exhaustive values
    space = get_space("tiny-enum")
    budget = -(-len(value) // 10)
    samplers = {
        "nsga2": lambda s: optuna.samplers.NSGAIISampler(population_size=6, seed=s),
        "tpe": lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True, n_startup_trials=5),
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
    }
    quality = {}
    for name, make in samplers.items():
        hvs, recovered = [], []
        for seed in range(args.seeds):
            study = optuna.create_study(directions=["minimize", "maximize"], sampler=make(seed))
            seen = []
            for _ in range(budget):
                trial = study.ask()
                arch = space.sample(trial).arch_id
                seen.append(arch)
                study.tell(trial, list(value[arch]))
            found = front_of(set(seen))
            hvs.append(hypervolume(norm([(value[a][0], -value[a][1]) for a in found]), ref) / true_hv)
            recovered.append(len(found & true_front) / len(true_front))
        quality[name] = {"budget": budget, "seeds": args.seeds, "hypervolume_share_median": statistics.median(hvs),
                         "hypervolume_share_min": min(hvs), "hypervolume_share_max": max(hvs),
                         "pareto_recovered_median": statistics.median(recovered),
                         "pareto_recovered_mean": statistics.fmean(recovered)}
        print(f"{name}: HV share {statistics.median(hvs):.3f}, Pareto recovered {statistics.fmean(recovered):.2f}",
              file=sys.stderr)
    result["search_quality"] = quality

    # 3. Overhead with 1 and 2 workers
    overhead = {}
    for workers in (1, 2):
        run = work / f"overhead-{workers}"
        import shutil

        shutil.rmtree(run, ignore_errors=True)
        config = parse_config({**base, "space": {"name": "tiny"}, "name": f"overhead{workers}",
                               "sampler": {"name": "random", "seed": 1}, "trials": args.overhead_trials,
                               "workers": workers})
        start = time.perf_counter()
        run_campaign(config, run, local=False)
        wall = time.perf_counter() - start
        t = pd.read_parquet(run / "trials.parquet")
        t = t[t["state"] == "COMPLETE"]
        extra = t["attr.turnaround_seconds"] - t["attr.eval_seconds"]
        overhead[workers] = {"trials": len(t), "wall_seconds": wall, "trials_per_minute": 60 * len(t) / wall,
                             "eval_seconds_median": float(t["attr.eval_seconds"].median()),
                             "overhead_seconds_median": float(extra.median()),
                             "overhead_seconds_p90": float(extra.quantile(0.9))}
        print(f"workers {workers}: {overhead[workers]}", file=sys.stderr)
    result["overhead"] = overhead
    args.out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

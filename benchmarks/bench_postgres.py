"""Two drivers on one PostgreSQL study against one driver: throughput, duplicates, lost trials.

    python benchmarks/bench_postgres.py --trials 200 --workers 2 --out benchmarks/results/postgres.json

Starts a throwaway PostgreSQL server on loopback (tests/pgserver.py: Debian's `postgresql`
package, installed when missing and running as root), or uses ``--url``. Then, on fresh
studies of the same campaign (``tiny-enum``, debug-backend latency table, a backbone pretrained
20 steps, ``--train-steps`` steps of the short-training proxy per trial, or parameter count with 0):

1. one driver (`vidnas search --storage URL`, local Ray, ``--workers`` evaluations in flight);
2. two drivers at once (two processes, as two machines would), each with ``--workers``.

For each: wall seconds from the first start to the last exit, trials per minute, and the
bookkeeping that must hold: duplicates (evaluations told beyond the trials counted), lost
trials (budget minus trials finished), stale and surplus trials. JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def campaign(path: Path, name: str, trials: int, workers: int, train_steps: int) -> Path:
    quality = ({"metric": "proxy:heldout_loss_short", "direction": "minimize"} if train_steps
               else {"metric": "params", "direction": "maximize"})
    path.write_text(json.dumps({
        "name": name, "space": {"name": "tiny-enum"},
        "target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": True}},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"}, quality],
        "proxy": {"clips": 2, "seed": 0, "train_steps": max(1, train_steps), "pretrain_steps": 20},
        "sampler": {"name": "random", "seed": 0}, "trials": trials, "workers": workers,
    }))
    return path


def drivers(config: Path, url: str, runs: list[Path]) -> tuple[float, list[dict]]:
    """Run one driver per run directory at once; wall seconds and each driver's JSON result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "vidnas.cli", "search", str(config), "--storage", url,
                               "--out", str(run), "--no-report", "--json"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for run in runs]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a driver failed (exit {proc.returncode}):\n{err[-3000:]}")
        results.append(json.loads(out))
    return time.perf_counter() - start, results


def bookkeeping(name: str, url: str, trials: int, results: list[dict]) -> dict:
    import optuna

    from vidnas.runners._trials import counts, is_stale, is_surplus

    study = optuna.load_study(study_name=name, storage=url)
    finished = [t for t in study.trials if counts(t) and t.state.name in ("COMPLETE", "FAIL")]
    told = sum(r["evaluated_here"] for r in results)
    return {"trials_finished": len(finished), "evaluations_told": told,
            "evaluations_per_driver": [r["evaluated_here"] for r in results],
            "duplicates": told - len(finished), "lost": trials - len(finished),
            "stale": sum(is_stale(t) for t in study.trials), "surplus": sum(is_surplus(t) for t in study.trials),
            "failed": sum(t.state.name == "FAIL" for t in finished),
            "left_running_or_waiting": sum(t.state.name in ("RUNNING", "WAITING") for t in study.trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="evaluations in flight per driver")
    parser.add_argument("--train-steps", type=int, default=0, help="short-training proxy steps per trial (0: "
                                                                   "parameter count, no training)")
    parser.add_argument("--url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import PostgresServer, unavailable

    from vidnas._env import fingerprint

    work = args.out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    server = None
    if args.url is None:
        reason = unavailable()
        if reason:
            raise SystemExit(f"no PostgreSQL server: {reason}")
        server = PostgresServer().start()
    url = args.url or server.url
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result: dict = {"environment": fingerprint(), "trials": args.trials, "workers_per_driver": args.workers,
                    "train_steps": args.train_steps, "storage": "postgresql (throwaway, loopback)"
                    if server else "postgresql (--url)", "runs": {}}
    try:
        import psycopg

        with psycopg.connect(url) as connection:
            result["postgresql"] = connection.execute("select version()").fetchone()[0]
        for label, n_drivers in (("one_driver", 1), ("two_drivers", 2)):
            name = f"bench-{label}-{stamp}"
            config = campaign(work / f"{label}.yaml", name, args.trials, args.workers, args.train_steps)
            runs = [work / f"{label}-{stamp}-{i}" for i in range(n_drivers)]
            seconds, results = drivers(config, url, runs)
            result["runs"][label] = {"drivers": n_drivers, "wall_seconds": seconds,
                                     "trials_per_minute": 60 * args.trials / seconds,
                                     "driver_seconds": [r["seconds"] for r in results],
                                     **bookkeeping(name, url, args.trials, results)}
            print(f"{label}: {seconds:.0f} s, {60 * args.trials / seconds:.1f} trials/min, "
                  f"{json.dumps({k: v for k, v in result['runs'][label].items() if k in ('duplicates', 'lost')})}")
        one, two = result["runs"]["one_driver"], result["runs"]["two_drivers"]
        result["speedup_two_drivers"] = two["trials_per_minute"] / one["trials_per_minute"]
    finally:
        if server is not None:
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

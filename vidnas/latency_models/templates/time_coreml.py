"""Time the Core ML models of a vidnas bundle on this Mac (or an attached device's Mac host).

Usage (macOS, with coremltools and numpy installed):

    python time_coreml.py [--compute-units ALL] [--out results.csv]

Reads manifest.json beside this script, times every unit with the same procedure as
vidnas's harness (warm-up, grouped calls, samples until the median's 95 % interval is
within the target or the budget is spent) and writes a CSV that
`vidnas lut import results.csv --out TABLE.parquet` turns into a latency table.
`--simulate` replaces Core ML by a small NumPy workload, to check the pipeline anywhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def median_interval(values, confidence=0.95):
    ordered = sorted(values)
    n = len(ordered)
    if n < 6:
        return ordered[0], ordered[-1]
    j = 0
    while j + 1 <= n // 2 and 2 * sum(math.comb(n, i) for i in range(j + 1)) / 2**n <= 1 - confidence:
        j += 1
    j = max(j, 1)
    return ordered[j - 1], ordered[n - j]


def quantile(values, q):
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure(run, harness):
    warm, last, t_start = 0, 0.0, time.perf_counter()
    while warm < harness["warmup_runs"] or time.perf_counter() - t_start < harness["warmup_seconds"]:
        t0 = time.perf_counter()
        run()
        last = time.perf_counter() - t0
        warm += 1
    inner = max(1, math.ceil(harness["min_sample_seconds"] / last)) if last > 0 else 1
    samples, start = [], time.perf_counter()
    while len(samples) < harness["max_runs"]:
        t0 = time.perf_counter()
        for _ in range(inner):
            run()
        samples.append((time.perf_counter() - t0) * 1000 / inner)
        if len(samples) >= harness["min_runs"]:
            if time.perf_counter() - start > harness["max_seconds"]:
                break
            lo, hi = median_interval(samples)
            med = statistics.median(samples)
            if len(samples) % 5 == 0 and (hi - lo) / 2 / med <= harness["target_rel_ci"]:
                break
    med = statistics.median(samples)
    mean = statistics.fmean(samples)
    cv = statistics.pstdev(samples) / mean if mean else 0.0
    lo, hi = median_interval(samples)
    rel = (hi - lo) / 2 / med if med else math.inf
    reasons = []
    if rel > harness["target_rel_ci"]:
        reasons.append(f"median 95% interval +-{100 * rel:.1f}%")
    if cv > harness["max_cv"]:
        reasons.append(f"CV {100 * cv:.1f}%")
    return {"median_ms": med, "p10_ms": quantile(samples, 0.1), "p90_ms": quantile(samples, 0.9), "mean_ms": mean,
            "cv": cv, "ci_low_ms": lo, "ci_high_ms": hi, "runs": len(samples), "inner_loops": inner,
            "warmup_runs": warm, "trusted": not reasons, "reason": "; ".join(reasons)}


def main():
    parser = argparse.ArgumentParser(description="Time a vidnas Core ML bundle.")
    parser.add_argument("--compute-units", default=None, help="ALL, CPU_ONLY, CPU_AND_GPU or CPU_AND_NE")
    parser.add_argument("--out", default=str(HERE / "results.csv"))
    parser.add_argument("--simulate", action="store_true", help="time a NumPy stand-in instead of Core ML")
    args = parser.parse_args()
    import numpy as np

    manifest = json.loads((HERE / "manifest.json").read_text())
    units_choice = args.compute_units or manifest["compute_units"]
    if not args.simulate:
        import coremltools as ct
    rows = []
    for unit in manifest["units"]:
        if unit.get("error"):
            print(f"skipping {unit['signature_id']}: conversion failed ({unit['error']})")
            continue
        feeds = {i["name"]: np.random.default_rng(0).standard_normal(i["shape"]).astype(np.float32)
                 for i in unit["inputs"]}
        if args.simulate:
            weight = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)

            def run(feeds=feeds, weight=weight):
                for value in feeds.values():
                    flat = value.reshape(-1)[: 64 * 64]
                    np.dot(np.resize(flat, (64, 64)), weight)
        else:
            model = ct.models.MLModel(str(HERE / unit["package"]),
                                      compute_units=getattr(ct.ComputeUnit, units_choice))

            def run(model=model, feeds=feeds):
                model.predict(feeds)
        result = measure(run, manifest["harness"])
        rows.append({"signature_id": unit["signature_id"], "batch": unit["batch"], "kind": unit["kind"],
                     "op": unit["op"], "signature": unit["signature"], **result,
                     "source": "simulated" if args.simulate else "coreml-device",
                     "backend": "coreml", "device": units_choice.lower(),
                     "device_name": "simulated" if args.simulate else platform.platform(),
                     "dtype": manifest["precision"], "threads": ""})
        print(f"{unit['signature_id']} {unit['op']:<20} {result['median_ms']:.3f} ms")
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()

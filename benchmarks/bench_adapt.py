"""`lut adapt` accuracy against K: a table mapped onto a new target from K networks measured there.

    python benchmarks/bench_adapt.py --pair threads --space tiny --out benchmarks/results/adapt-tiny-threads.json
    python benchmarks/bench_adapt.py --pair backend --space tiny --out benchmarks/results/adapt-tiny-backend.json

Pairs: ``threads`` maps an ONNX Runtime table at 1 thread onto ONNX Runtime at every core;
``backend`` maps a torch table (1 thread) onto ONNX Runtime (1 thread). ``--source-*`` and
``--target-*`` override either side.

1. builds the source table (full harness) and fits its correction on ``--source-fit``
   networks measured on the source;
2. measures ``max(--ks)`` pool networks and ``--held-out`` other networks on the target,
   interleaved with the reference workload, once (the basis, paired or plain, is decided
   per measurement group, as everywhere);
3. for each K in ``--ks``: fits the map on the first K pool networks (the model chosen by
   leave-one-out, and each candidate model forced) and reports MAPE, share within +-10 %,
   Spearman and Kendall on the held-out networks; beside it the source table used as is
   (no adaptation) and a FLOPs-linear fit on the same K target networks (what counting
   gives with the same measurements);
4. with ``--full-build``: a full table built on the target, its correction fitted on the
   first 10 pool networks, validated on the same held-out networks (what adapting saves).

An estimate of the duration is printed at the start. One JSON file with full provenance;
``python benchmarks/summarize.py adapt FILES`` tabulates it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PAIRS = {
    "threads": ({"backend": "onnxruntime", "threads": "1"}, {"backend": "onnxruntime", "threads": "all"}),
    "backend": ({"backend": "torch", "threads": "1"}, {"backend": "onnxruntime", "threads": "1"}),
}


def main() -> None:
    from _common import estimate_seconds, now, probe_network, threads_arg

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), required=True)
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--width-mult", type=float)
    parser.add_argument("--source-backend")
    parser.add_argument("--source-threads")
    parser.add_argument("--target-backend")
    parser.add_argument("--target-threads")
    parser.add_argument("--ks", default="3,5,10,20", help="comma-separated K values")
    parser.add_argument("--held-out", type=int, default=30)
    parser.add_argument("--source-fit", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--full-build", action="store_true", help="also build a full table on the target")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from vidnas._env import fingerprint
    from vidnas.latency_models import (
        AccuracyReport,
        Correction,
        HarnessConfig,
        LatencyPredictor,
        answer_basis,
        build_table,
        fingerprint_id,
        fit_adaptation,
        fit_baseline,
        fit_correction,
        get_backend,
        measure_networks,
        space_units,
    )
    from vidnas.latency_models._adapt import network_features
    from vidnas.latency_models._baselines import baseline_features, closest_datasheet
    from vidnas.search_space import get_space

    ks = sorted({int(k) for k in args.ks.split(",")})
    if ks[0] < 3:
        raise SystemExit("--ks: every K must be >= 3")
    src_cfg, tgt_cfg = (dict(side) for side in PAIRS[args.pair])
    src_cfg.update({k: v for k, v in (("backend", args.source_backend), ("threads", args.source_threads)) if v})
    tgt_cfg.update({k: v for k, v in (("backend", args.target_backend), ("threads", args.target_threads)) if v})
    space = get_space(args.space, frames=args.frames, height=args.height, width=args.width,
                      width_mult=args.width_mult)
    source_backend = get_backend(src_cfg["backend"], threads=threads_arg(src_cfg["threads"]))
    target_backend = get_backend(tgt_cfg["backend"], threads=threads_arg(tgt_cfg["threads"]))
    config = HarnessConfig(max_seconds=args.max_seconds)
    work = args.out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if fingerprint_id(source_backend.fingerprint()) == fingerprint_id(target_backend.fingerprint()):
        raise SystemExit(f"source and target are the same ({src_cfg}); nothing to adapt")
    pool, held = max(ks), args.held_out
    probe = probe_network(space, source_backend, work / "artefacts-source")
    estimate = estimate_seconds(probe, units=len(space_units(space)), networks=args.source_fit + pool + held,
                                max_seconds=args.max_seconds, rebuilds=2 if args.full_build else 1)
    log(f"estimated duration: ~{estimate['total_seconds'] / 60:.0f} min (source table ~"
        f"{estimate['build_seconds'] / 60:.0f} min, {args.source_fit + pool + held} networks ~"
        f"{estimate['networks_seconds'] / 60:.0f} min)")
    started = time.perf_counter()
    result: dict = {"pair": args.pair, "space": space.name, "space_shape": dict(space.shape), "ks": ks,
                    "held_out": held, "source_fit": args.source_fit, "seed": args.seed, "harness": config.to_dict(),
                    "command": " ".join(sys.argv), "started_at": now(), "estimate": {**estimate, "probe": probe},
                    "source": {"backend": src_cfg["backend"], "threads": source_backend.threads,
                               "fingerprint": source_backend.fingerprint()},
                    "target": {"backend": tgt_cfg["backend"], "threads": target_backend.threads,
                               "fingerprint": target_backend.fingerprint()},
                    "environment": fingerprint()}

    # 1. Source table and its correction
    source_path = work / "source.parquet"
    source_path.unlink(missing_ok=True)
    start = time.perf_counter()
    source = build_table(space, source_backend, source_path, config=config,
                         progress=lambda i, n, plan, row: log(f"source unit {i}/{n}"))
    fit_correction(source, space, source_backend, n=args.source_fit, seed=args.seed + 1000, config=config,
                   progress=lambda i, n: log(f"source fit {i}/{n}"), artefacts=work / "artefacts-source")
    source.save(source_path)
    result["source_seconds"] = time.perf_counter() - start
    result["source"]["entries"] = len(source)
    result["source"]["untrusted_entries"] = sum(not r["trusted"] for r in source.rows())

    # 2. The target's networks, measured once
    start = time.perf_counter()
    excluded = set(source.meta.correction["arch_ids"])
    specs = [s for s in space.random_specs(pool + held + len(excluded), args.seed) if s.arch_id not in excluded]
    specs = specs[: pool + held]
    measured = measure_networks(specs, target_backend, config=config, artefacts=work / "artefacts-target",
                                progress=lambda i, n: log(f"target network {i}/{n}"))
    result["target_seconds"] = time.perf_counter() - start
    refs = [m.reference.median_ms for m in measured if m.reference is not None]
    reference_ms = sorted(refs)[len(refs) // 2] if refs else None
    basis = answer_basis(measured, reference_ms)
    figures = [m.rescaled_ms(reference_ms) if basis["basis"] == "rescaled" else m.plain_ms for m in measured]
    result["target_measurements"] = {"basis": basis, "untrusted": sum(not m.trusted for m in measured),
                                     "remeasured": sum(m.passes > 1 for m in measured),
                                     "rows": [{"arch_id": s.arch_id, "measured_ms": y, "plain_ms": m.plain_ms,
                                               "basis": m.basis, "trusted": m.trusted, "passes": m.passes}
                                              for s, m, y in zip(specs, measured, figures)]}
    feats = [network_features(source, s) for s in specs]
    held_specs, held_feats, held_truth = specs[pool:], feats[pool:], figures[pool:]
    held_ids = [s.arch_id for s in held_specs]
    device, dtype = closest_datasheet(source.meta)
    flops = [baseline_features(s, batch=1, device=device, dtype=dtype)["flops"] for s in specs]

    def accuracy(predicted: list[float]) -> dict:
        return AccuracyReport.from_pairs(predicted, held_truth, held_ids).to_dict()

    # 3. Accuracy against K
    result["no_adaptation"] = accuracy([f.predicted_ms for f in held_feats])
    result["by_k"] = {}
    for k in ks:
        chosen = fit_adaptation(feats[:k], figures[:k])
        entry = {"chosen": {"model": chosen.model, "ridge": chosen.ridge, "loo_errors": chosen.loo_errors,
                            **accuracy([chosen.predict(f) for f in held_feats])},
                 "models": {}}
        for model in ("scale", "affine", "affine+units", "per_op"):
            forced = fit_adaptation(feats[:k], figures[:k], models=(model,))
            if forced.model == model:
                entry["models"][model] = accuracy([forced.predict(f) for f in held_feats])
        baseline = fit_baseline("flops_linear", flops[:k], figures[:k])
        entry["flops_linear_on_k"] = accuracy([baseline.predict(x) for x in flops[pool:]])
        result["by_k"][str(k)] = entry
        log(f"K={k}: {chosen.model}, held-out within +-10% {100 * entry['chosen']['within_10pct']:.0f}%, "
            f"MAPE {100 * entry['chosen']['mape']:.1f}%")

    # 4. A full build on the target, for comparison
    if args.full_build:
        start = time.perf_counter()
        target_path = work / "target-full.parquet"
        target_path.unlink(missing_ok=True)
        full = build_table(space, target_backend, target_path, config=config,
                           progress=lambda i, n, plan, row: log(f"target unit {i}/{n}"))
        fit_k = min(10, pool)
        naive = [LatencyPredictor(full, correction=None).predict(s) for s in specs]
        correction = Correction.fit([p.naive_ms for p in naive[:fit_k]], figures[:fit_k],
                                    [s.arch_id for s in specs[:fit_k]], [p.unit_count for p in naive[:fit_k]])
        result["full_build"] = {"seconds": time.perf_counter() - start, "entries": len(full),
                                "untrusted_entries": sum(not r["trusted"] for r in full.rows()),
                                "correction_fitted_on": fit_k,
                                **accuracy([correction.apply(p.naive_ms, p.unit_count) for p in naive[pool:]])}

    result["total_seconds"] = time.perf_counter() - started
    result["finished_at"] = now()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    for k in ks:
        e = result["by_k"][str(k)]["chosen"]
        print(f"| {args.pair} | {space.name} | K={k} | {e['model']} | {100 * e['within_10pct']:.0f}% / "
              f"{e['spearman']:.3f} / {100 * e['mape']:.1f}% |")


if __name__ == "__main__":
    main()

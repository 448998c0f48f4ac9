"""Latency-table accuracy against baselines, repeatability, build time and prediction speed, one space and backend.

    python benchmarks/bench_latency.py --space tiny --backend onnxruntime --threads 1 --n 50 --fit 16 \
        --out benchmarks/results/latency-tiny-onnxruntime-t1.json

1. builds the table for the space (timed);
2. fits the correction on ``--fit`` sampled architectures measured end to end;
3. measures ``--n`` *other* sampled architectures end to end (with ``--load KIND``, while
   a second process keeps one core busy: its PID and CPU time are recorded) and compares
   them with the naive (sum of units) and corrected predictions, against both the
   reference-rescaled and the plain figures, and the one the tool stands behind
   (``answer``, with the reason); beside them the FLOPs-linear, params-linear and scaled
   roofline baselines fitted on the same ``--fit`` networks: MAPE, share within +-10 %,
   Spearman, Kendall;
4. rebuilds the table from scratch into a second file (``--no-repeat`` skips it) and
   reports the share of entries that reproduce within +-5 % or are flagged noisy;
5. times predictions: the vectorised space predictor on 1M random architectures and the
   per-spec predictor on 200 specs.

``--threads all`` uses every core. An estimate of the duration (from a probe of the
space's base network) is printed at the start and stored with the actual durations.
Everything goes into one JSON file (with the environment fingerprint) and a Markdown
row on stdout; ``python benchmarks/summarize.py latency FILES`` tabulates several.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def in_session_cross_validation(rows: list[dict], folds: int = 5, key: str = "measured_ms") -> dict:
    """The correction fitted and tested within the held-out session (5-fold): the predictor's
    own error once the machine's drift between sessions is taken out."""
    from vidnas.latency_models import AccuracyReport, Correction

    predicted = [0.0] * len(rows)
    order = list(range(len(rows)))
    for f in range(folds):
        test = order[f::folds]
        train = [i for i in order if i not in test]
        corr = Correction.fit([rows[i]["naive_ms"] for i in train], [rows[i][key] for i in train],
                              [rows[i]["arch_id"] for i in train])
        for i in test:
            predicted[i] = corr.apply(rows[i]["naive_ms"])
    return AccuracyReport.from_pairs(predicted, [r[key] for r in rows], [r["arch_id"] for r in rows]).to_dict()


def repeatability(table, rebuild) -> dict:
    """Share of entries a second build reproduces within +-5 %, or that either build flagged noisy.

    ``ratio``: the stored figure, the entry's paired ratio to the reference workload.
    ``ms``: the value predictions use, ratio x each table's own reference speed; it also
    moves with the whole machine's speed between the two builds (``reference_shift``).
    """
    out: dict = {"entries": len(table), "reference_shift": rebuild.reference_ms / table.reference_ms - 1}
    for name, value in (("ratio", lambda t, r: r["ratio"]), ("ms", lambda t, r: t.latency_ms(r))):
        agree = flagged = 0
        deviations = []
        for row in table.rows():
            other = rebuild.get(row["signature_id"], row["batch"])
            dev = abs(value(rebuild, other) / value(table, row) - 1)
            deviations.append(dev)
            if dev <= 0.05:
                agree += 1
            elif not (row["trusted"] and other["trusted"]):
                flagged += 1
        out[name] = {"within_5pct": agree / len(deviations), "outside_but_flagged": flagged / len(deviations),
                     "within_5pct_or_flagged": (agree + flagged) / len(deviations),
                     "median_abs_deviation": statistics.median(deviations), "max_abs_deviation": max(deviations)}
    return out


def main() -> None:
    from _common import LOADS, background_load, estimate_seconds, now, probe_network, threads_arg

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--width-mult", type=float)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=threads_arg, default=1, help="an integer, or `all` for every core")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--fit", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--basis", default="auto", choices=("auto", "paired", "level", "plain"))
    parser.add_argument("--load", choices=sorted(LOADS), help="load one core with a second process during "
                                                              "validation (busy loop or matmul loop)")
    parser.add_argument("--no-repeat", action="store_true", help="skip the repeatability rebuild")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recompute-repeatability", action="store_true",
                        help="recompute --out's repeatability from its two stored tables, measuring nothing")
    args = parser.parse_args()
    if args.recompute_repeatability:
        from vidnas.latency_models import LatencyTable

        work = args.out.with_suffix("")
        result = json.loads(args.out.read_text())
        result["repeatability"] = repeatability(LatencyTable.load(work / "table.parquet"),
                                                LatencyTable.load(work / "table-rebuild.parquet"))
        args.out.write_text(json.dumps(result, indent=2, default=str))
        print(json.dumps(result["repeatability"], indent=2))
        return

    from vidnas._env import fingerprint
    from vidnas.latency_models import (
        HarnessConfig,
        LatencyPredictor,
        build_table,
        fit_correction,
        get_backend,
        space_units,
        validate_table,
    )
    from vidnas.search_space import get_space

    space = get_space(args.space, frames=args.frames, height=args.height, width=args.width,
                      width_mult=args.width_mult)
    backend = get_backend(args.backend, device=args.device, threads=args.threads)
    config = HarnessConfig(max_seconds=args.max_seconds, basis=args.basis)
    work = args.out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    table_path = work / "table.parquet"
    for stale in (table_path, work / "table-rebuild.parquet"):
        stale.unlink(missing_ok=True)
    artefacts = work / "artefacts"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # 0. Estimate
    probe = probe_network(space, backend, artefacts)
    estimate = estimate_seconds(probe, units=len(space_units(space)), networks=args.fit + args.n,
                                max_seconds=args.max_seconds, rebuilds=1 if args.no_repeat else 2)
    log(f"estimated duration: ~{estimate['total_seconds'] / 60:.0f} min (table builds ~"
        f"{estimate['build_seconds'] / 60:.0f} min, {args.fit + args.n} networks ~"
        f"{estimate['networks_seconds'] / 60:.0f} min; base network: prepared in {probe['prepare_seconds']:.1f} s, "
        f"{probe['call_ms']:.1f} ms per call)")
    result: dict = {"space": space.name, "space_shape": dict(space.shape), "backend": args.backend,
                    "device": args.device, "threads": args.threads, "n": args.n, "fit": args.fit,
                    "seed": args.seed, "harness": config.to_dict(), "started_at": now(),
                    "command": " ".join(sys.argv), "estimate": {**estimate, "probe": probe},
                    "environment": fingerprint(backend=backend.fingerprint())}
    started = time.perf_counter()

    # 1. Build
    start = time.perf_counter()
    table = build_table(space, backend, table_path, config=config,
                        progress=lambda i, n, plan, row: log(f"unit {i}/{n} {plan.name if plan else ''}"))
    result["build_seconds"] = time.perf_counter() - start
    result["entries"] = len(table)
    result["untrusted_entries"] = sum(not r["trusted"] for r in table.rows())
    result["entry_bases"] = {b: sum(r.get("basis") == b for r in table.rows()) for b in ("paired", "level", "plain")}
    log(f"built {len(table)} entries in {result['build_seconds']:.0f}s")

    # 2. Correction
    start = time.perf_counter()
    correction = fit_correction(table, space, backend, n=args.fit, seed=args.seed + 1000, config=config,
                                progress=lambda i, n: log(f"fit {i}/{n}"), artefacts=artefacts)
    table.save(table_path)
    result["fit_seconds"] = time.perf_counter() - start
    result["correction"] = correction.to_dict()

    # 3. Held-out validation (under load if asked)
    start = time.perf_counter()
    with background_load(args.load) as load:
        report = validate_table(table, space, backend, n=args.n, seed=args.seed, config=config,
                                progress=lambda i, n: log(f"validate {i}/{n}"), artefacts=artefacts)
    result["load"] = load
    result["validate_seconds"] = time.perf_counter() - start
    result["validation"] = report
    result["in_session_cv"] = in_session_cross_validation(report["rows"], key="rescaled_measured_ms") \
        if all(r["rescaled_measured_ms"] is not None for r in report["rows"]) else None
    result["in_session_cv_raw"] = in_session_cross_validation(report["rows"], key="raw_measured_ms")
    result["in_session_cv_answer"] = in_session_cross_validation(report["rows"], key="measured_ms")

    # 4. Repeatability
    if not args.no_repeat:
        rebuild = build_table(space, backend, work / "table-rebuild.parquet", config=config,
                              progress=lambda i, n, plan, row: log(f"rebuild {i}/{n}"))
        result["repeatability"] = repeatability(table, rebuild)

    # 5. Prediction speed
    predictor = LatencyPredictor(table)
    fast = predictor.compile(space)
    indices = fast.random_indices(1_000_000, seed=1)
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        fast.predict_indices(indices)
        rates.append(1_000_000 / (time.perf_counter() - t0))
    specs = space.random_specs(min(200, space.size), seed=7)
    t0 = time.perf_counter()
    for spec in specs:
        predictor.predict(spec)
    result["prediction_speed"] = {"vectorised_archs_per_s": statistics.median(rates),
                                  "per_spec_archs_per_s": len(specs) / (time.perf_counter() - t0)}
    result["total_seconds"] = time.perf_counter() - started
    result["finished_at"] = now()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    answer, basis = report["answer"], report["answer_basis"]
    base = report["baselines"].get("baselines", {})
    flops = base.get("flops_linear")
    print(f"| {space.name} {json.dumps(dict(space.shape))} | {args.backend} {args.device} x{args.threads}"
          f"{' + load' if args.load else ''} | {result['entries']} ({result['untrusted_entries']} noisy) | "
          f"{result['build_seconds']:.0f} s | answer ({basis['basis']}): {100 * answer['within_10pct']:.0f}% / "
          f"{answer['spearman']:.3f} / {100 * answer['mape']:.1f}% | "
          + (f"FLOPs-linear {100 * flops['within_10pct']:.0f}% / {flops['spearman']:.3f} / "
             f"{100 * flops['mape']:.1f}% | " if flops else "- | ")
          + f"{result['total_seconds'] / 60:.0f} min (estimated {estimate['total_seconds'] / 60:.0f}) |")


if __name__ == "__main__":
    main()

"""ONNX Runtime's spinning intra-op threads against the harness's interleaved calls.

    python benchmarks/bench_ort_spinning.py --threads 2 --out benchmarks/results/ort-spinning.json

The harness calls several sessions in turn (a unit, the reference workload, a group's other
units). With ``session.intra_op.allow_spinning`` on (ONNX Runtime's default), a session's
threads keep spinning after its call and take the cores from the next one. For each setting
(``spinning`` off / on, alternating, ``--repeats`` times), the `tiny` space's first resblock
unit and the reference workload are timed alone (one session after the other, ``--calls``
calls each) and interleaved (one call of each in turn): median milliseconds per call, and the
interleaved-over-alone ratio. Writes JSON with the environment fingerprint.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _time(run) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from vidnas._env import fingerprint
    from vidnas.latency_models import OnnxRuntimeBackend
    from vidnas.latency_models._reference import reference_runner
    from vidnas.latency_models._units import unit_runner
    from vidnas.search_space import build_plan, preset_spec

    spec = preset_spec("tiny")
    plan = next(p for p in build_plan(spec) if p.kind == "resblock")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for spinning in (False, True):
                backend = OnnxRuntimeBackend(threads=args.threads, spinning=spinning, cache_dir=Path(tmp))
                runners = {"unit": unit_runner(plan, backend, 1, spec.backbone, artefacts=Path(tmp) / "u"),
                           "reference": reference_runner(backend, Path(tmp) / "r")}
                for run in runners.values():
                    for _ in range(10):
                        run()
                alone = {name: [_time(run) for _ in range(args.calls)] for name, run in runners.items()}
                together: dict[str, list[float]] = {name: [] for name in runners}
                for _ in range(args.calls):
                    for name, run in runners.items():
                        together[name].append(_time(run))
                row = {"repeat": repeat, "spinning": spinning}
                for name in runners:
                    a, t = statistics.median(alone[name]), statistics.median(together[name])
                    row.update({f"{name}_alone_ms": a, f"{name}_interleaved_ms": t, f"{name}_ratio": t / a})
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    summary = {}
    for spinning in (False, True):
        mine = [r for r in rows if r["spinning"] == spinning]
        summary["on" if spinning else "off"] = {
            key: {"median": statistics.median(r[key] for r in mine), "min": min(r[key] for r in mine),
                  "max": max(r[key] for r in mine)}
            for key in mine[0] if key.endswith(("_ms", "_ratio"))}
    result = {"command": "python benchmarks/bench_ort_spinning.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items()),
              "unit": plan.name, "threads": args.threads, "calls": args.calls, "repeats": args.repeats,
              "rows": rows, "summary": summary,
              "environment": fingerprint(backend=OnnxRuntimeBackend(threads=args.threads).fingerprint())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""The seeds' design rules on a phone's roofline and on this CPU, measured: ``vidnas study`` per configuration.

    python benchmarks/bench_study.py                       # every configuration below, skipping finished ones
    python benchmarks/bench_study.py --only roofline       # the roofline ones only (no timing of the machine)
    python benchmarks/bench_study.py --only measured       # the ONNX Runtime ones (run on a quiet machine)
    python benchmarks/bench_study.py --summarize           # the Markdown tables from the results written

Each configuration runs ``vidnas study ... --json`` in a subprocess and writes
``benchmarks/results/study-NAME.json``: the command, its wall time, the load average before and after,
and the study's whole document (its HTML page goes to ``benchmarks/results/study-pages/NAME/``, not
committed). Resumable at two levels: a configuration whose result exists is skipped (``--force`` runs
it again), and a measured one killed midway resumes its measurements from vidnas's cache (the space's
latency table and the study's further units are saved after every entry).

The measured configurations pair with roofline ones at the *same* shape, so that a verdict that
differs between the phone's roofline and this CPU differs by device, not by shape; the summary lists
those differences with the numbers behind both verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PAGES = RESULTS / "study-pages"

SNAPGEN_SMALL = ["--frames", "8", "--height", "128", "--width", "128", "--width-mult", "0.25"]
WAN_SMALL = ["--frames", "17", "--height", "128", "--width", "128"]
ORT = ["--backend", "onnxruntime", "--threads", "1"]

# name -> (kind, arguments of `vidnas study` after --space)
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "snapgen-v-phone-npu": ("roofline", ["--space", "snapgen-v", "--roofline", "phone-npu"]),
    "snapgen-v-small-phone-npu": ("roofline", ["--space", "snapgen-v", "--roofline", "phone-npu", *SNAPGEN_SMALL]),
    "snapgen-v-small-onnxruntime": ("measured", ["--space", "snapgen-v", *ORT, *SNAPGEN_SMALL]),
    # the same again: every figure from the cache (the target "with a built table, within 1 minute")
    "snapgen-v-small-onnxruntime-again": ("measured", ["--space", "snapgen-v", *ORT, *SNAPGEN_SMALL]),
    "wan-mobile-phone-npu": ("roofline", ["--space", "wan-mobile", "--roofline", "phone-npu"]),
    "wan-mobile-small-phone-npu": ("roofline", ["--space", "wan-mobile", "--roofline", "phone-npu", *WAN_SMALL]),
    "wan-mobile-small-onnxruntime": ("measured", ["--space", "wan-mobile", *ORT, *WAN_SMALL]),
    "wan-mobile-small-onnxruntime-again": ("measured", ["--space", "wan-mobile", *ORT, *WAN_SMALL]),
}
# a measured configuration and the roofline one at its shape
PAIRS = {"snapgen-v-small-onnxruntime": "snapgen-v-small-phone-npu",
         "wan-mobile-small-onnxruntime": "wan-mobile-small-phone-npu"}


def run_config(name: str, force: bool) -> Path:
    path = RESULTS / f"study-{name}.json"
    if path.exists() and not force:
        print(f"{name}: {path} exists, skipped (--force runs it again)", file=sys.stderr)
        return path
    kind, args = CONFIGS[name]
    command = ["vidnas", "study", *args, "--out", str(PAGES / name), "--json"]
    print(f"{name}: {' '.join(command)}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: `vidnas study` exited with {done.returncode}")
    record = {"config": name, "kind": kind, "command": command, "wall_seconds": seconds,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count(),
              "study": json.loads(done.stdout)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    print(f"{name}: {seconds:.1f} s -> {path}", file=sys.stderr)
    return path


def _short(source: dict) -> str:
    if source["kind"] == "roofline estimate":
        return f"roofline {source['device']} ({source['dtype']})"
    return f"{source['kind']}: {source['backend']} {source['device']}, {source['threads']} thread(s)"


def summarize(names: list[str]) -> str:
    """Markdown: the verdicts of every configuration written, then the differences within each pair."""
    records = {}
    for name in names:
        path = RESULTS / f"study-{name}.json"
        if path.exists():
            records[name] = json.loads(path.read_text())
    if not records:
        return "no results yet"
    lines = ["| configuration | source | wall | load before | " + " | ".join(
        r["id"] for r in next(iter(records.values()))["study"]["rules"]) + " |"]
    lines.append("|" + " --- |" * (4 + len(next(iter(records.values()))["study"]["rules"])))
    for name, rec in records.items():
        study = rec["study"]
        verdicts = {r["id"]: r["verdict"] for r in study["rules"]}
        lines.append(f"| {name} | {_short(study['source'])} | {rec['wall_seconds']:.0f} s | "
                     f"{rec['loadavg_before'][0]:.1f} | " + " | ".join(verdicts.get(r["id"], "-") for r in
                                                                       next(iter(records.values()))["study"]["rules"])
                     + " |")
    for measured, roofline in PAIRS.items():
        if measured not in records or roofline not in records:
            continue
        a = {r["id"]: r for r in records[roofline]["study"]["rules"]}
        b = {r["id"]: r for r in records[measured]["study"]["rules"]}
        differ = [rid for rid in a if rid in b and a[rid]["verdict"] != b[rid]["verdict"]]
        lines.append("")
        lines.append(f"**{roofline} against {measured}** ({len(differ)} verdicts differ):")
        lines.append("")
        for rid in differ:
            lines.append(f"- `{rid}`: phone roofline **{a[rid]['verdict']}** ({a[rid]['why']}); this CPU "
                         f"**{b[rid]['verdict']}** ({b[rid]['why']})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("roofline", "measured"), default=None)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="run only these (repeatable)")
    parser.add_argument("--force", action="store_true", help="run configurations whose result exists again")
    parser.add_argument("--summarize", action="store_true", help="only print the summary of written results")
    args = parser.parse_args()
    names = args.config or [n for n, (kind, _) in CONFIGS.items() if args.only in (None, kind)]
    if not args.summarize:
        for name in names:
            run_config(name, args.force)
    print(summarize(list(CONFIGS)))


if __name__ == "__main__":
    main()

"""Whole-process time and peak memory of counting SVD's UNet at 14x576x1024.

Compares, in one run and interleaved, three ways of counting params/FLOPs/memory:

* ``vidnas space show svd`` (closed-form costs; the default),
* ``vidnas space show svd --method trace`` (fake tensors + torch.utils.flop_counter),
* the reference: diffusers' ``UNetSpatioTemporalConditionModel`` built on the meta device
  and run under fake tensors with ``torch.utils.flop_counter``.

Each is a fresh process measured with GNU time (wall seconds, max RSS); medians and the
p10-p90 spread over --repeats runs are printed as a Markdown table.

    python benchmarks/bench_counting.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE = """
import torch
from diffusers import UNetSpatioTemporalConditionModel
from vidnas.search_space._tracing import _fake_mode, count_module_call
with torch.device("meta"):
    m = UNetSpatioTemporalConditionModel()
params = sum(p.numel() for p in m.parameters())
with _fake_mode():
    m = m.to_empty(device="cpu")
    args = (torch.empty(1, 14, 8, 72, 128), torch.empty(1), torch.empty(1, 1, 1024), torch.empty(1, 3))
    flops, peak = count_module_call(m, args, args)
print(params, flops, peak)
"""


def timed(cmd: list[str]) -> tuple[float, float, str]:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        out = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tf.name, *cmd], capture_output=True, text=True,
                             check=True)
        wall, rss_kb = tf.read().split()[-2:]
    return float(wall), int(rss_kb) / 1024, out.stdout


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    vidnas = [sys.executable, "-m", "vidnas.cli", "space", "show", "svd", "--frames", "14", "--height", "576",
              "--width", "1024", "--json"]
    cases = {
        "vidnas space show svd (analytic)": vidnas,
        "vidnas space show svd --method trace": [*vidnas, "--method", "trace"],
        "diffusers reference, fake tensors": [sys.executable, "-c", REFERENCE],
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    outputs: dict[str, str] = {}
    for _ in range(args.repeats):  # interleaved: noise hits every case alike
        for name, cmd in cases.items():
            wall, rss, out = timed(cmd)
            results[name].append((wall, rss))
            outputs[name] = out
    analytic = json.loads(outputs["vidnas space show svd (analytic)"])
    traced = json.loads(outputs["vidnas space show svd --method trace"])
    ref_params, ref_flops, ref_peak = (int(v) for v in outputs["diffusers reference, fake tensors"].split())

    from vidnas._env import fingerprint

    env = fingerprint()
    print(f"Environment: {env['cpu']}, {env['cpu_count']} cores, {env['os']}, Python {env['python']}, "
          f"torch {env['versions']['torch']}; {args.repeats} interleaved runs per case\n")
    print("| counting method | wall s, median (p10-p90) | peak RSS MiB, median | params | FLOPs/call | "
          "activation GiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = {
        "vidnas space show svd (analytic)": (analytic["params"], analytic["flops"], analytic["activation_bytes"]),
        "vidnas space show svd --method trace": (traced["params"], traced["flops"], traced["activation_bytes"]),
        "diffusers reference, fake tensors": (ref_params, ref_flops, ref_peak),
    }
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        rss = [r for _, r in runs]
        p, f, a = rows[name]
        print(f"| {name} | {statistics.median(walls):.2f} ({quantile(walls, 0.1):.2f}-{quantile(walls, 0.9):.2f}) | "
              f"{statistics.median(rss):.0f} | {p:,} | {f / 1e12:.3f} T | {a / 2**30:.2f} |")
    print(f"\nFLOPs, vidnas / reference: {analytic['flops'] / ref_flops:.5f}")


if __name__ == "__main__":
    Path(__file__).resolve()
    main()

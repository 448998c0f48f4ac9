"""Shared pieces of the benchmark scripts: background load, duration estimates, thread counts.

Imported by the scripts in this folder (``python benchmarks/bench_*.py`` puts the folder on
the import path); not part of the vidnas package.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOADS = {
    # one core kept busy by a pure-Python loop (no memory traffic to speak of)
    "busy": "while True:\n    pass\n",
    # one core multiplying 256x256 matrices (single-threaded BLAS): compute and cache pressure
    "matmul": "import numpy as np\na = np.random.default_rng(0).random((256, 256))\nwhile True:\n    a @ a\n",
}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def threads_arg(value: str) -> int:
    """``--threads``: a positive integer, or ``all`` for every core of the machine."""
    if value == "all":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise SystemExit(f"--threads must be a positive integer or `all`, not {value!r}") from None
    if n < 1:
        raise SystemExit(f"--threads must be >= 1, not {n}")
    return n


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def background_load(kind: str | None) -> Iterator[dict[str, Any] | None]:
    """A second process loading one core while the block runs (None: no load).

    Yields the record written into the benchmark's JSON: kind, PID, command, start and
    stop times and the CPU seconds the load process got (so a load that was starved or
    never ran shows).
    """
    if kind is None:
        yield None
        return
    if kind not in LOADS:
        raise SystemExit(f"--load must be one of {sorted(LOADS)}, not {kind!r}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", LOADS[kind]], env=env, stdin=subprocess.DEVNULL)
    record: dict[str, Any] = {"kind": kind, "pid": proc.pid, "command": [sys.executable, "-c", LOADS[kind]],
                              "cores": 1, "started_at": now()}
    started = time.perf_counter()
    print(f"background load `{kind}` started: PID {proc.pid}", file=sys.stderr, flush=True)
    try:
        yield record
    finally:
        record["cpu_seconds"] = _cpu_seconds(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        record["stopped_at"] = now()
        record["wall_seconds"] = time.perf_counter() - started
        print(f"background load stopped: PID {proc.pid}", file=sys.stderr, flush=True)


def probe_network(space, backend, artefacts: Path) -> dict[str, float]:
    """Seconds to prepare the space's base network and milliseconds per call (median of 5)."""
    import statistics

    from vidnas.latency_models import network_runner

    start = time.perf_counter()
    run = network_runner(space.base, backend, artefacts=artefacts)
    prepare = time.perf_counter() - start
    run()
    calls = []
    for _ in range(5):
        t0 = time.perf_counter()
        run()
        calls.append((time.perf_counter() - t0) * 1000)
    return {"prepare_seconds": prepare, "call_ms": statistics.median(calls)}


def estimate_seconds(probe: dict[str, float], *, units: int, networks: int, max_seconds: float,
                     rebuilds: int = 1) -> dict[str, float]:
    """A rough duration, from the probe: table builds (two passes and some re-measures) and networks.

    Units are taken as a network's time and preparation spread over its units (about a third
    of the space's units run in one network); each item samples until its median is pinned
    down, about 40 rounds on a quiet machine, never longer than the budget ``max_seconds``
    per item in its group; a fifth of the items are measured again.
    """
    per_net_units = max(1.0, units / 3)
    unit_ms = probe["call_ms"] / per_net_units
    unit_prepare = max(0.3, probe["prepare_seconds"] / per_net_units)
    rounds = 40

    def sampling(ms: float) -> float:
        return min(max_seconds, rounds * ms / 1000)

    build = units * (2 * unit_prepare + 2 * (0.25 + sampling(unit_ms))) * 1.2 * rebuilds
    nets = networks * (probe["prepare_seconds"] + 0.25 + sampling(probe["call_ms"])) * 1.2
    return {"build_seconds": build, "networks_seconds": nets, "total_seconds": build + nets}


def add_space_args(parser, *, frames: int = 8, height: int = 64, width: int = 64) -> None:
    """The options naming a search space at a shape, and its data source (proxy benchmarks)."""
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--frames", type=int, default=frames)
    parser.add_argument("--height", type=int, default=height)
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--width-mult", type=float, default=None)
    parser.add_argument("--data", default="shapes")

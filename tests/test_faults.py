"""Faults: `vidnas lut build` killed with SIGKILL at random moments loses at most the entry in flight,
never leaves a corrupt table, and resumes to the same table as an uninterrupted build."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLEEP_MS = 60  # the debug backend sleeps this long preparing each unit, so that kills land mid-build


def build_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "vidnas.cli", "lut", "build", "--space", "tiny", "--backend", "debug",
            "-O", f"sleep_ms={SLEEP_MS}", "--quick", "--fit", "0", "--out", str(out), "--json"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def snapshot(path: Path) -> tuple[set[str], set[str]]:
    """(entries, entries re-checked) of the table at ``path``; it must always load."""
    from vidnas.latency_models import LatencyTable

    if not path.exists():
        return set(), set()
    table = LatencyTable.load(path)  # a corrupt or truncated file would raise here
    rows = table.rows()
    return ({r["signature_id"] for r in rows}, {r["signature_id"] for r in rows if r.get("recheck_median_ms")})


def test_lut_build_survives_sigkill_at_random_moments(tmp_path):
    rng = random.Random(13)
    out = tmp_path / "table.parquet"
    kills = []
    seen: tuple[set[str], set[str]] = (set(), set())
    # what to wait for before each kill: entries measured (pass 1, 49 units), then entries re-checked
    # (pass 2 re-measures in groups of 16 and saves after each group: the last kill lands in its second group)
    for kind, target in ((0, 3), (0, 17), (0, 33), (1, 16)):
        proc = subprocess.Popen(build_command(out), env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if len(snapshot(out)[kind]) >= target:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 2 * SLEEP_MS / 1000))  # a random moment within the next entry or two
        if proc.poll() is not None:  # it finished first: nothing to kill at this point
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        entries, rechecked = snapshot(out)
        assert entries >= seen[0] and rechecked >= seen[1], "a kill lost entries or re-checks saved before it"
        kills.append((len(entries), len(rechecked)))
        seen = (entries, rechecked)
    assert len(kills) >= 3, kills  # kills landed at several points of the build
    assert any(0 < r < e for e, r in kills), f"no kill landed during the re-check pass: {kills}"
    done = subprocess.run(build_command(out), env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["coverage"]["present"] == summary["coverage"]["needed"] == summary["entries"]
    assert not list(tmp_path.glob(".table.parquet.tmp*")), "temporary files of killed saves were left behind"
    # the resumed table holds what an uninterrupted build measures (the debug backend is deterministic)
    from vidnas.latency_models import DebugBackend, HarnessConfig, LatencyTable, build_table
    from vidnas.search_space import get_space

    clean = build_table(get_space("tiny"), DebugBackend(threads=None), tmp_path / "reference.parquet",
                        config=HarnessConfig.quick())
    resumed = LatencyTable.load(out)
    assert {(r["signature_id"], r["batch"]): r["median_ms"] for r in resumed.rows()} == \
        {(r["signature_id"], r["batch"]): r["median_ms"] for r in clean.rows()}

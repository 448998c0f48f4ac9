"""A busy machine is noticed before and during measurement; progress reads well in a log.

Measuring commands stop with exit code 2 naming the load and the processes when other processes
take the cores the measurement needs, unless ``--allow-load`` (then every figure is flagged);
away from a terminal, long work prints a line per task at most every few seconds, its total fixed.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time

import pytest

from vidnas._progress import LogProgress
from vidnas.latency_models import (
    BuildWatch,
    LoadGuard,
    LoadReport,
    MachineBusyError,
    _load,
    build_table,
    get_backend,
    table_summary,
)
from vidnas.search_space import get_space

QUIET = LoadReport(cores=2, others=0.1, needed=1, seconds=1.0)
BUSY = LoadReport(cores=2, others=1.9, needed=1, seconds=1.0, processes=((4242, "spinner", 1.0),))


def test_busy_means_the_measurements_threads_and_the_others_load_exceed_the_cores():
    assert not LoadReport(cores=2, others=1.0, needed=1, seconds=1).busy  # one thread beside one busy process
    assert LoadReport(cores=2, others=1.5, needed=1, seconds=1).busy
    assert LoadReport(cores=2, others=0.5, needed=2, seconds=1).busy  # all threads tolerate nobody
    assert not LoadReport(cores=2, others=0.2, needed=2, seconds=1).busy  # housekeeping is tolerated
    text = BUSY.describe()
    assert "1.90 of 2 cores" in text and "spinner (pid 4242" in text


@pytest.fixture
def load(monkeypatch):
    """Make the sampled load whatever the test says (no real sampling, no sleeping)."""
    state = {"report": QUIET}

    def fake(seconds=1.0, *, needed=1):
        time.sleep(0.01)
        return LoadReport(state["report"].cores, state["report"].others, needed, seconds, state["report"].processes)

    monkeypatch.setattr(_load, "sample_load", fake)
    monkeypatch.delenv("VIDNAS_ALLOW_LOAD", raising=False)
    return state


def _quick():
    from vidnas.latency_models import HarnessConfig

    return HarnessConfig.quick()


def test_a_busy_machine_stops_a_build_before_it_measures(load, tmp_path):
    load["report"] = BUSY
    with pytest.raises(MachineBusyError, match="spinner"), LoadGuard(1, what="lut build", interval=0.05) as guard:
        build_table(get_space("tiny-enum"), get_backend("debug"), tmp_path / "t.parquet", config=_quick(),
                    watch=BuildWatch(load=guard))
    assert not (tmp_path / "t.parquet").exists()


def test_load_arriving_mid_build_stops_it_and_keeps_what_was_measured_before(load, tmp_path):
    path = tmp_path / "t.parquet"
    seen = []

    def progress(i, n, plan, row):
        seen.append(i)
        if i == 3:
            load["report"] = BUSY  # something starts beside the build
            time.sleep(0.2)  # the watcher samples it

    with pytest.raises(MachineBusyError), LoadGuard(1, interval=0.05) as guard:
        build_table(get_space("tiny-enum"), get_backend("debug"), path, config=_quick(),
                    watch=BuildWatch(progress=progress, load=guard))
    from vidnas.latency_models import LatencyTable

    kept = LatencyTable.load(path)
    assert 3 <= len(kept.rows()) < len(seen) + 1 and not any(r.get("under_load") for r in kept.rows())


def test_with_load_allowed_every_entry_measured_under_load_is_flagged(load, tmp_path):
    load["report"] = BUSY
    with LoadGuard(1, allow_load=True, interval=0.05) as guard:
        table = build_table(get_space("tiny-enum"), get_backend("debug"), tmp_path / "t.parquet", config=_quick(),
                            watch=BuildWatch(load=guard))
    summary = table_summary(table)
    assert summary["under_load"] >= 1
    assert table.meta.harness["load"]["allow_load"] and table.meta.harness["load"]["worst"]["busy"]


def test_a_quiet_machine_flags_nothing(load, tmp_path):
    with LoadGuard(1, interval=0.05) as guard:
        table = build_table(get_space("tiny-enum"), get_backend("debug"), tmp_path / "t.parquet", config=_quick(),
                            watch=BuildWatch(load=guard))
    assert table_summary(table)["under_load"] == 0 and table.meta.harness["load"]["busy_intervals"] == 0


def _spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"]) for _ in range(n)]


def test_the_command_line_refuses_to_measure_beside_busy_processes_and_names_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VIDNAS_ALLOW_LOAD"}
    spin = _spinners(os.cpu_count() or 2)
    try:
        time.sleep(0.5)
        cmd = [sys.executable, "-m", "vidnas.cli", "latency", "measure", "tiny", "--backend", "onnxruntime",
               "--threads", "1", "--quick", "--max-seconds", "0.2", "--frames", "4", "--height", "64", "--width", "64"]
        refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert refused.returncode == 2, refused.stderr
        assert "busy" in refused.stderr and "--allow-load" in refused.stderr
        assert any(f"pid {p.pid}" in refused.stderr for p in spin), refused.stderr
        allowed = subprocess.run([*cmd, "--allow-load", "--json"], capture_output=True, text=True, env=env,
                                 timeout=300)
        assert allowed.returncode == 0, allowed.stderr
        payload = json.loads(allowed.stdout)
        assert payload["under_load"] is True and payload["load"]["busy_intervals"] >= 1
    finally:
        for p in spin:
            p.kill()
            p.wait()


# Progress in a log ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_prints_at_most_one_line_per_interval_and_the_last_one():
    out, clock = io.StringIO(), Clock()
    with LogProgress("lut build", stream=out, interval=5.0, clock=clock) as bar:
        task = bar.add_task("measure", total=100, item="")
        for i in range(1, 101):
            clock.t = i * 0.25  # 25 s in all
            bar.update(task, completed=i, item=f"unit {i}")
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 7, lines
    assert all(re.search(r"measure: \d+/100 ", line) for line in lines)  # one total, never moving
    assert lines[-1].startswith("lut build | measure: 100/100 (100 %)") and "took 25 s" in lines[-1]
    assert "eta" in lines[1] and "/s" in lines[1]


def test_the_command_line_away_from_a_terminal_writes_few_lines_with_fixed_totals(tmp_path):
    env = {**os.environ, "VIDNAS_PROGRESS_INTERVAL": "1000"}
    done = subprocess.run([sys.executable, "-m", "vidnas.cli", "lut", "build", "--space", "tiny-enum", "--backend",
                           "debug", "--quick", "--fit", "0", "--out", str(tmp_path / "t.parquet"), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [x for x in done.stderr.splitlines() if "lut build tiny-enum" in x]
    stages = {}
    for line in lines:
        stage, count = re.search(r"\| ([a-z-]+): \d+/(\d+)", line).groups()
        stages.setdefault(stage, set()).add(count)
    assert "measure" in stages and all(len(totals) == 1 for totals in stages.values()), lines
    assert len(lines) <= 3 * len(stages) + 2, lines  # a start and an end per pass, not a line per entry


def test_the_reference_level_falling_behind_is_recorded_not_acted_on(load):
    with LoadGuard(1, interval=0.05) as guard:
        guard.note_reference(1.0)
        assert guard.item_under_load() is False
        guard.note_reference(1.6)  # 1.6x slower than the build's first reference
        assert guard.item_under_load() is False
    summary = guard.summary()
    assert summary["reference_slowdowns"] == 1 and summary["reference_slowdown_max"] == pytest.approx(1.6)

"""Network exposure and Ctrl-C, proven on real campaigns run as subprocesses of the `vidnas` command.

* Every socket that any process of a local campaign listens on (the driver, Ray's GCS, raylet,
  agents and workers, sampled with psutil while trials run) is on loopback. Known exceptions
  would be listed by name in ``BEYOND_LOOPBACK``; with Ray 2.60 there are none.
* SIGINT to the campaign's process group (what Ctrl-C in a terminal sends) stops it cleanly: the
  trials in flight are recorded as stale with the reason and re-queued, every process the
  campaign started is gone within 10 s, a line says how to resume, and ``--resume`` finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from procs import tree

from vidnas.runners._ray import is_loopback

ROOT = Path(__file__).resolve().parents[1]
# Ray components that listen beyond loopback in a local session, by process name (none in Ray 2.60).
BEYOND_LOOPBACK: frozenset[str] = frozenset()


def campaign_file(tmp_path: Path, trials: int, train_steps: int | None = None) -> Path:
    """A campaign of fast trials, or with ``train_steps`` of a short training proxy that takes seconds."""
    path = tmp_path / "campaign.yaml"
    quality = ({"metric": "proxy:heldout_loss_short", "direction": "minimize"} if train_steps
               else {"metric": "params", "direction": "maximize"})
    path.write_text(json.dumps({
        "name": "net", "space": {"name": "tiny-enum"},
        "target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False}},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"}, quality],
        "proxy": {"clips": 2, "seed": 0, "train_steps": train_steps or 1, "pretrain_steps": 2},
        "sampler": {"name": "random", "seed": 0}, "trials": trials, "workers": 2,
    }))
    return path


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "-m", "vidnas.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def listening(processes: list[psutil.Process]) -> dict[tuple[str, str, int], str]:
    """(process name, ip, port) -> protocol, for LISTEN TCP sockets and bound UDP sockets."""
    found = {}
    for p in processes:
        try:
            name = p.name()
            connections = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for c in connections:
            if c.laddr and (c.status == psutil.CONN_LISTEN or (c.type == 2 and not c.raddr)):
                found[(name, c.laddr.ip, c.laddr.port)] = "tcp" if c.type == 1 else "udp"
    return found


def test_a_local_campaign_listens_on_loopback_only(tmp_path):
    run = tmp_path / "run"
    proc = start(["search", str(campaign_file(tmp_path, trials=6)), "--out", str(run),
                  "--no-report", "--json"])
    seen: dict[tuple[str, str, int], str] = {}
    names: set[str] = set()
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        processes = tree(proc.pid)
        with contextlib.suppress(psutil.Error):
            names |= {p.name() for p in processes}
        seen.update(listening(processes))
        time.sleep(0.3)
    out, err = finish(proc, timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert {"gcs_server", "raylet"} <= names, names  # the scan did see Ray running
    assert any(name.startswith("ray::") for name, _, _ in seen), seen  # ... and its workers listening
    exposed = {key for key in seen if not is_loopback(key[1])}
    assert {name for name, _, _ in exposed} <= BEYOND_LOOPBACK, f"listening beyond loopback: {sorted(exposed)}"
    record = json.loads((run / "campaign.json").read_text())["ray"]["network"]
    assert record["beyond_loopback"] == [] and record["listening"]
    assert record["guard"] == "Ray token authentication"


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path):
    import optuna

    run = tmp_path / "run"
    proc = start(["search", str(campaign_file(tmp_path, trials=4, train_steps=10)), "--out", str(run),
                  "--no-report"])
    started: dict[int, float] = {}
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        for p in tree(proc.pid)[1:]:
            with contextlib.suppress(psutil.Error):
                started.setdefault(p.pid, p.create_time())
        with contextlib.suppress(psutil.Error):
            if sum(1 for p in tree(proc.pid) if p.name() == "ray::evaluate_on_node") >= 2:
                break  # two trials in flight
        time.sleep(0.2)
    assert proc.poll() is None, finish(proc, 60)[1][-3000:]
    time.sleep(0.5)
    interrupted = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, err = finish(proc, timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert f"vidnas search --resume {run}" in err
    assert "Traceback" not in err
    while time.time() < interrupted + 10 and any(_alive(pid, t) for pid, t in started.items()):
        time.sleep(0.2)
    left = [pid for pid, t in started.items() if _alive(pid, t)]
    assert not left, f"processes of the campaign still running 10 s after SIGINT: {left}"
    from vidnas.runners._config import load_config
    from vidnas.runners._driver import open_storage

    config = load_config(run / "config.yaml")
    study = optuna.load_study(study_name="net", storage=open_storage(config, run))
    stale = [t for t in study.trials if t.user_attrs.get("stale")]
    assert stale and all("interrupted (SIGINT)" in t.user_attrs["fail_reason"] for t in stale)
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert {t.user_attrs["requeued_from"] for t in waiting} == {t.number for t in stale}
    assert json.loads((run / "campaign.json").read_text())["status"] == "interrupted"
    resumed = start(["search", "--resume", str(run), "--no-report", "--json"])
    out, err = finish(resumed, timeout=900)
    assert resumed.returncode == 0, err[-3000:]
    result = json.loads(out)
    assert result["trials"] == 4 and result["stale"] == len(stale)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for a campaign; past ``timeout`` end it and every process it started (by PID), then fail."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in reversed(tree(proc.pid)):
            with contextlib.suppress(psutil.Error):
                p.kill()
        raise


def _alive(pid: int, started: float) -> bool:
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

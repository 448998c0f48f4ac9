"""PostgreSQL storage, for real: a server from Debian's `postgresql` package on loopback (tests/pgserver.py),
a campaign with `--storage postgresql://...`, two drivers (two processes, as two machines would) on one
study, and one of them killed with SIGKILL mid-campaign. Skipped, with the reason, where no server can be had.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from pgserver import PostgresServer, unavailable, wait_for
from procs import alive, tree

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 12


@pytest.fixture(scope="module")
def postgres():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


def campaign(tmp_path: Path, name: str, train_steps: int | None = None, trials: int = TOTAL) -> Path:
    """Fast trials, or (``train_steps``) trials of a short training proxy that take a few seconds each."""
    quality = ({"metric": "proxy:heldout_loss_short", "direction": "minimize"} if train_steps
               else {"metric": "params", "direction": "maximize"})
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({
        "name": name, "space": {"name": "tiny-enum"},
        "target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False}},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"}, quality],
        "proxy": {"clips": 2, "seed": 0, "train_steps": train_steps or 1, "pretrain_steps": 2},
        "sampler": {"name": "random", "seed": 0}, "trials": trials, "workers": 1,
        "heartbeat_s": 1, "stale_after_s": 4,
    }))
    return path


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "-m", "vidnas.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def end(processes: list[psutil.Process]) -> None:
    """Kill these processes (ones this test started, by PID) if they still run."""
    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.kill()


def finish(proc: subprocess.Popen, timeout: float = 900) -> dict:
    started = tree(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end(tree(proc.pid) + started)
        raise
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def study_of(name: str, url: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def driver_of(run: Path) -> str:
    return json.loads((run / "driver.json").read_text())["driver"]


def front(run: Path) -> list[tuple[int, str]]:
    return [(e["trial"], e["arch_id"]) for e in json.loads((run / "pareto" / "pareto.json").read_text())["pareto"]]


def counted(study) -> list:
    from vidnas.runners._trials import counts

    return [t for t in study.trials if counts(t) and t.state.name in ("COMPLETE", "FAIL")]


@pytest.mark.slow
def test_a_campaign_on_postgresql_with_its_run_directory_and_report(postgres, tmp_path):
    run = tmp_path / "run"
    result = finish(start("search", str(campaign(tmp_path, "single", trials=6)), "--storage", postgres.url,
                          "--out", str(run), "--json"))
    assert result["trials"] == 6 and result["failed"] == 0 and result["evaluated_here"] == 6
    assert len(counted(study_of("single", postgres.url))) == 6
    assert not (run / "journal.log").exists() and (run / "report.html").exists()
    assert json.loads((run / "campaign.json").read_text())["config"]["storage"] == postgres.url
    again = finish(start("search", "--resume", str(run), "--json"))  # a finished campaign resumes to itself
    assert again["trials"] == 6 and again["evaluated_here"] == 0 and front(run) == [
        (e["trial"], e["arch_id"]) for e in result["pareto"]]
    report = subprocess.run([sys.executable, "-m", "vidnas.cli", "report", str(run), "--json"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert report.returncode == 0 and "6 trials, 0 failed" in (run / "report.html").read_text()


@pytest.mark.slow
def test_two_drivers_share_one_study(postgres, tmp_path):
    config = campaign(tmp_path, "pair", train_steps=3)
    a = start("search", str(config), "--storage", postgres.url, "--out", str(tmp_path / "a"), "--no-report", "--json")
    b = start("search", str(config), "--storage", postgres.url, "--out", str(tmp_path / "b"), "--no-report", "--json")
    result_a, result_b = finish(a), finish(b)
    study = study_of("pair", postgres.url)
    done = counted(study)
    assert len(done) == TOTAL  # the count is exact
    assert result_a["evaluated_here"] + result_b["evaluated_here"] == TOTAL  # no trial evaluated twice
    assert result_a["evaluated_here"] > 0 and result_b["evaluated_here"] > 0  # both drivers took part
    drivers = {driver_of(tmp_path / "a"), driver_of(tmp_path / "b")}
    assert {t.user_attrs["driver"] for t in done} == drivers
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    assert front(tmp_path / "a") == front(tmp_path / "b") and front(tmp_path / "a")  # both see the same front
    assert result_a["trials"] == result_b["trials"] == TOTAL


@pytest.mark.slow
def test_a_driver_killed_mid_campaign(postgres, tmp_path):
    """SIGKILL one driver: the other declares its trials stale (no heartbeat), re-runs them and finishes;
    `--resume` of the dead driver's run directory then sees the finished campaign. Nothing finished is lost."""
    total = 8  # fewer than the two-driver test: after the kill one driver runs the rest alone
    config = campaign(tmp_path, "killed", train_steps=3, trials=total)
    a = start("search", str(config), "--storage", postgres.url, "--out", str(tmp_path / "a"), "--no-report", "--json")
    b = start("search", str(config), "--storage", postgres.url, "--out", str(tmp_path / "b"), "--no-report", "--json")
    b_processes: list[psutil.Process] = []
    try:
        def b_is_busy() -> bool:
            nonlocal b_processes
            b_processes = tree(b.pid) or b_processes
            if not (tmp_path / "b" / "driver.json").exists():
                return False
            mine = driver_of(tmp_path / "b")
            trials = study_of("killed", postgres.url).trials
            return (any(t.state.name == "COMPLETE" and t.user_attrs.get("driver") == mine for t in trials)
                    and any(t.state.name == "RUNNING" and t.user_attrs.get("driver") == mine for t in trials))

        assert wait_for(b_is_busy, timeout=600), "driver b never had a trial finished and one running"
        b_id = driver_of(tmp_path / "b")
        before = study_of("killed", postgres.url)
        finished_before = {t.number: t.values for t in before.trials if t.state.name == "COMPLETE"}
        in_flight = {t.number for t in before.trials if t.state.name == "RUNNING" and t.user_attrs["driver"] == b_id}
        os.kill(b.pid, signal.SIGKILL)  # the driver only: its Ray processes are left as a crash leaves them
        b.wait()
        result_a = finish(a)
    finally:
        end(tree(a.pid))
    study = study_of("killed", postgres.url)
    assert len(counted(study)) == total and result_a["trials"] == total
    after = {t.number: t for t in study.trials}
    assert all(after[n].values == v for n, v in finished_before.items())  # nothing finished was lost
    lost = [after[n] for n in in_flight if after[n].user_attrs.get("stale")]
    assert lost, "the killed driver's running trials were not declared stale"
    for t in lost:
        assert f"no heartbeat from its driver ({b_id})" in t.user_attrs["fail_reason"]
        (again,) = [r for r in study.trials if r.user_attrs.get("requeued_from") == t.number]
        assert again.state.name == "COMPLETE" and again.params == t.params  # re-queued and evaluated
    resumed = finish(start("search", "--resume", str(tmp_path / "b"), "--no-report", "--json"))
    assert resumed["trials"] == total and front(tmp_path / "b") == front(tmp_path / "a")
    leftover = [p for p in b_processes[1:] if alive(p)]
    end(leftover)  # the resume ended the ones it recorded; anything else the crash left is ended here
    assert not leftover, [p.pid for p in leftover]

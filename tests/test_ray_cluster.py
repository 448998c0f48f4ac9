"""A campaign on a Ray cluster of two nodes (a head and a worker node, both on loopback: tests/raycluster.py):
per-trial resources are honoured, trials land on both nodes, and when the worker node dies mid-campaign
the campaign still finishes, every trial completed or failed with its reason and re-queued, nothing
finished lost."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from raycluster import Cluster

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cluster():
    """Head: 1 CPU, label `head_node`. Worker node: 1 CPU, 1 GPU (a logical one: Ray counts it, no device
    is needed), label `worker_node`."""
    c = Cluster()
    try:
        c.start_head(cpus=1, resources={"head_node": 1})
        c.add_node(cpus=1, gpus=1, resources={"worker_node": 2})
        yield c
    finally:
        c.stop()


def campaign(tmp_path: Path, name: str, trials: int, ray: dict, train_steps: int = 3) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({
        "name": name, "space": {"name": "tiny-enum"},
        "target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False}},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "proxy:heldout_loss_short", "direction": "minimize"}],
        "proxy": {"clips": 2, "seed": 0, "train_steps": train_steps, "pretrain_steps": 2},
        "sampler": {"name": "random", "seed": 0}, "trials": trials, "workers": 2, "ray": ray,
    }))
    return path


def search(cluster: Cluster, config: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidnas.cli", "search", str(config), "--ray-address",
                             cluster.address, "--out", str(run), "--no-report", "--json"], env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 900) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def trials_of(run: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(run / "journal.log"))))


def nodes_of(run: Path) -> dict[str, dict]:
    """node id -> resources, from the campaign record."""
    return {n["node_id"]: n["resources"] for n in json.loads((run / "campaign.json").read_text())["ray"]["nodes"]}


@pytest.mark.slow
def test_trials_on_two_nodes_resources_and_a_lost_node(cluster, tmp_path):
    # 1. Per-trial resources: a GPU share and the worker node's label put every trial there.
    run = tmp_path / "placed"
    result = finish(search(cluster, campaign(tmp_path, "placed", 2, {"cpus_per_trial": 1, "gpus_per_trial": 0.5,
                                                                   "resources": {"worker_node": 1}},
                                             train_steps=1), run))
    assert result["trials"] == 2 and result["failed"] == 0
    nodes = nodes_of(run)
    worker_id = next(n for n, r in nodes.items() if "worker_node" in r)
    head_id = next(n for n, r in nodes.items() if "head_node" in r)
    for t in trials_of(run, "placed").trials:
        assert t.user_attrs["ray_node_id"] == worker_id
        assert t.user_attrs["ray_resources"] == {"CPU": 1.0, "GPU": 0.5, "worker_node": 1.0}

    # 2. Spread over both nodes; the worker node is killed while it evaluates a trial.
    run = tmp_path / "spread"
    proc = search(cluster, campaign(tmp_path, "spread", 6, {"cpus_per_trial": 1}), run)
    worker = cluster.nodes[1]
    deadline = time.time() + 600
    busy = False
    while time.time() < deadline and proc.poll() is None:
        done_there = [t for t in _finished(run, "spread") if t.user_attrs.get("ray_node_id") == worker_id]
        busy = bool(done_there) and any(_name(p) == "ray::evaluate_on_node" for p in worker.processes())
        if busy:
            break
        time.sleep(0.3)
    assert busy, "the worker node never finished a trial and started another"
    # the kill follows the detection at once (a trial takes over a second, the gap is milliseconds)
    killed_at = datetime.datetime.now()  # optuna's trial times are naive local times
    killed = worker.kill()
    assert killed
    before = {t.number: t.values for t in _finished(run, "spread") if t.state.name == "COMPLETE"}
    result = finish(proc)
    study = trials_of(run, "spread")
    assert result["trials"] == 6
    after = {t.number: t for t in study.trials}
    assert all(after[n].values == v for n, v in before.items())  # nothing finished was lost
    on_nodes = {t.user_attrs.get("ray_node_id") for t in study.trials if t.state.name == "COMPLETE"}
    assert {head_id, worker_id} <= on_nodes  # trials ran on both nodes
    lost = [t for t in study.trials if t.user_attrs.get("stale")]
    assert lost, "no trial was in flight on the node that died"
    for t in lost:  # failed with the reason, and re-queued with the same parameters
        assert t.state.name == "FAIL" and t.user_attrs["fail_reason"].endswith("; re-queued")
        (again,) = [r for r in study.trials if r.user_attrs.get("requeued_from") == t.number]
        assert again.state.name == "COMPLETE" and again.params == t.params
    counted = [t for t in study.trials if not t.user_attrs.get("stale")]
    assert all(t.state.name == "COMPLETE" for t in counted) and len(counted) == 6
    # what started after the kill ran on the head
    assert all(t.user_attrs["ray_node_id"] == head_id for t in counted if t.datetime_start > killed_at)


def _finished(run: Path, name: str) -> list:
    if not (run / "journal.log").exists():
        return []
    try:
        return [t for t in trials_of(run, name).trials if t.state.name in ("COMPLETE", "FAIL")]
    except Exception:  # the study is not created yet
        return []


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def test_the_loopback_cluster_listens_on_loopback_only(cluster):
    from vidnas.runners._ray import listening_sockets

    pids = [p.pid for node in cluster.nodes for p in node.processes()]
    sockets = listening_sockets(pids)
    assert {s["process"] for s in sockets} >= {"gcs_server", "raylet"}
    assert [s for s in sockets if not s["loopback"]] == []

"""A Ray cluster of several nodes on one machine, on loopback, for tests: ``ray start`` per node.

Each node is one ``ray start --block`` process with its own temporary directory (short paths:
Unix socket names are limited) and its own resources label, so that tests can tell nodes apart
and steer tasks. Every node listens on 127.0.0.1 only:

* ``ray start --node-ip-address=127.0.0.1`` alone is not enough in Ray 2.60: Ray replaces a
  loopback node address by the machine's external one (``services.resolve_ip_for_localhost``),
  since a real cluster's nodes must reach each other. Here all nodes are on one machine, so the
  nodes are started through ``ray.scripts.scripts.main`` with that replacement turned off;
  everything else is Ray's own ``ray start``.
* Token authentication: the nodes and the drivers share a fresh token through ``RAY_AUTH_MODE=token``
  and ``RAY_AUTH_TOKEN`` (``env``), never the user's ``~/.ray/auth_token``.

``Node.processes()`` lists the processes a node started (by PID), so that a test can kill exactly
one node; ``Cluster.stop()`` ends every process the cluster started, by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RAY_START = """
import sys
import ray._private.services as services
services.resolve_ip_for_localhost = lambda host: host  # every node of this cluster is on this machine
from ray.scripts.scripts import main
sys.argv[0] = "ray"
main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, proc: subprocess.Popen, temp_dir: Path, label: str) -> None:
        self.proc, self.temp_dir, self.label = proc, temp_dir, label
        self.known: dict[int, float] = {}

    def processes(self) -> list[psutil.Process]:
        """The node's processes now (the `ray start` process and its descendants); remembered for stop()."""
        try:
            root = psutil.Process(self.proc.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            found = []
        for p in found:
            with contextlib.suppress(psutil.Error):
                self.known.setdefault(p.pid, p.create_time())
        return found

    def kill(self) -> list[int]:
        """SIGKILL every process of the node (as a machine that loses power), by PID."""
        victims = self.processes()
        for p in victims:
            with contextlib.suppress(psutil.Error):
                p.kill()
        return [p.pid for p in victims]

    def stop(self, timeout: float = 20) -> None:
        self.processes()
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()  # `ray start --block` stops the node's processes on SIGTERM
        deadline = time.time() + timeout
        while time.time() < deadline and any(_same(pid, t) for pid, t in self.known.items()):
            time.sleep(0.2)
        for pid, started in self.known.items():
            process = _same(pid, started)
            if process is not None:
                with contextlib.suppress(psutil.Error):
                    process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _same(pid: int, started: float):
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > 0.01 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


class Cluster:
    """``Cluster().start_head(...)`` then ``add_node(...)``; ``address`` for drivers, ``env`` for their environment."""

    def __init__(self) -> None:
        self.port = free_port()
        self.nodes: list[Node] = []
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, label: str, args: list[str], resources: dict[str, float]) -> Node:
        temp_dir = Path(f"/tmp/vidnas-{label}-{os.getpid()}")
        shutil.rmtree(temp_dir, ignore_errors=True)
        command = [sys.executable, "-c", RAY_START, "start", "--block", "--node-ip-address=127.0.0.1",
                   f"--temp-dir={temp_dir}", "--disable-usage-stats", f"--resources={json.dumps(resources)}",
                   *args]
        proc = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        node = Node(proc, temp_dir, label)
        self.nodes.append(node)
        return node

    def start_head(self, *, cpus: int, resources: dict[str, float]) -> Node:
        node = self._start("rh", ["--head", f"--port={self.port}", f"--num-cpus={cpus}",
                                  "--include-dashboard=false"], resources)
        self._wait(lambda: _connects(self.port), node, "the head's GCS port")
        return node

    def add_node(self, *, cpus: int, gpus: int = 0, resources: dict[str, float]) -> Node:
        node = self._start(f"rw{len(self.nodes)}", [f"--address={self.address}", f"--num-cpus={cpus}",
                                                     f"--num-gpus={gpus}"], resources)
        self._wait(lambda: self.alive_nodes() >= len(self.nodes), node, "the node to join")
        return node

    def alive_nodes(self) -> int:
        """Nodes the GCS reports alive (asked from a subprocess: this process keeps no Ray connection)."""
        probe = (f"import ray, json; ray.init(address='{self.address}', log_to_driver=False); "
                 "print(json.dumps(sum(n['Alive'] for n in ray.nodes())))")
        env = {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # keep the loopback address
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0

    def _wait(self, ready, node: Node, what: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while not ready():
            node.processes()
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray start exited ({node.proc.returncode}) before {what} was up")
            if time.time() > deadline:
                raise RuntimeError(f"{what} was not up after {timeout:.0f} s")
            time.sleep(0.5)
        node.processes()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def _connects(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False

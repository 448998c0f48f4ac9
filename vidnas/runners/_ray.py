"""Starting and stopping Ray for a campaign, cleanly.

A local Ray binds to loopback only, with no dashboard and usage statistics off, its
temporary files under the run directory (or a short path linked from it: Unix socket
paths are limited to 107 bytes). The PIDs of the processes it starts are recorded in
``ray.pids``; stopping shuts Ray down and then ends any of those processes still alive,
and only those. With ``address`` it connects to an existing cluster and leaves it running.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

MAX_TEMP_DIR = 40  # Ray appends ~60 characters of session and socket names


class RaySession:
    def __init__(self, run_dir: Path, *, address: str | None = None, num_cpus: float | None = None,
                 num_gpus: float | None = None, resources: dict[str, float] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = resources
        self.pids: list[int] = []
        self.temp_dir: Path | None = None

    def _temp_dir(self) -> Path:
        inside = (self.run_dir / "ray").resolve()
        if len(str(inside)) <= MAX_TEMP_DIR:
            return inside
        short = Path("/tmp") / f"vidnas-ray-{hashlib.sha256(str(inside).encode()).hexdigest()[:8]}"
        short.mkdir(parents=True, exist_ok=True)
        link = self.run_dir / "ray"
        if not link.exists():
            link.symlink_to(short, target_is_directory=True)
        return short

    def start(self) -> RaySession:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import psutil
        import ray

        kill_recorded(self.run_dir)  # a previous driver killed mid-run may have left its Ray behind
        if self.address:
            _use_token_auth_if_available()
            try:
                ray.init(address=self.address, include_dashboard=False, configure_logging=False,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError) as exc:
                from vidnas._errors import SpecError

                raise SpecError("ray.address", self.address, f"could not be joined ({exc})",
                                "check the head's address (ray status on the head prints it); a cluster with token "
                                "authentication needs its token in RAY_AUTH_TOKEN or ~/.ray/auth_token") from exc
            return self
        self.temp_dir = self._temp_dir()
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=self.num_cpus,
                 num_gpus=self.num_gpus, resources=self.resources, _temp_dir=str(self.temp_dir),
                 configure_logging=False, log_to_driver=False)
        self.pids = [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in before]
        (self.run_dir / "ray.pids").write_text(json.dumps({"pids": self.pids, "temp_dir": str(self.temp_dir)}))
        return self

    def describe(self) -> dict[str, Any]:
        """The cluster's nodes (id, address, resources, alive) as seen now, for the campaign record."""
        import ray

        if not ray.is_initialized():
            return {}
        try:
            nodes = [{"node_id": n["NodeID"], "address": n.get("NodeManagerAddress"), "alive": n.get("Alive"),
                      "resources": n.get("Resources", {})} for n in ray.nodes()]
        except Exception:  # a cluster going down: the record says so rather than failing the campaign
            nodes = []
        return {"address": self.address or "local", "nodes": nodes}

    def stop(self) -> list[int]:
        """Shut Ray down; return the PIDs that had to be killed."""
        import ray

        if ray.is_initialized():
            ray.shutdown()
        killed = _end(self.pids, str(self.temp_dir) if self.temp_dir else None)
        (self.run_dir / "ray.pids").unlink(missing_ok=True)
        return killed

    def __enter__(self) -> RaySession:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _use_token_auth_if_available() -> None:
    """Present the cluster token when one is available and the user has not chosen a mode.

    ``ray start`` enables token authentication by default, but a driver joining with
    ``ray.init(address=...)`` does not pick the token up by itself.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


def _ours(pid: int, marker: str | None) -> bool:
    """A recorded PID may have been reused: only processes whose command line names our temp dir."""
    if marker is None:
        return True
    try:
        import psutil

        return marker in " ".join(psutil.Process(pid).cmdline())
    except Exception:
        return False


def _end(pids: list[int], marker: str | None, timeout: float = 10.0) -> list[int]:
    deadline = time.time() + timeout
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    killed = []
    for pid in pids:
        if _alive(pid) and _ours(pid, marker):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def kill_recorded(run_dir: Path) -> list[int]:
    """End the Ray processes a previous driver of this run recorded, if any are still alive."""
    record = Path(run_dir) / "ray.pids"
    if not record.exists():
        return []
    data = json.loads(record.read_text())
    killed = _end(data.get("pids", []), data.get("temp_dir"), timeout=0.5)
    record.unlink(missing_ok=True)
    return killed

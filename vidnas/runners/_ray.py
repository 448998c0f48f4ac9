"""Starting and stopping Ray for a campaign, cleanly and on loopback.

**A local Ray listens on loopback only.** ``ray.init(_node_ip_address="127.0.0.1")`` is
not enough in Ray 2.60: Ray replaces a loopback node address by the machine's external
one (``services.resolve_ip_for_localhost``), and its C++ servers (GCS, raylet, every
worker's core worker) then listen on all interfaces while the runtime-env agent listens
on the external address. Ray has one switch for a single-machine node,
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (the default on macOS and Windows), under which the
node address is 127.0.0.1 and every component binds to it: the GCS, the raylet (node
manager and object manager), the core worker of the driver and of each worker, and the
runtime-env agent. The dashboard is not started; the dashboard agent runs in its minimal
mode, without HTTP or metrics listeners. A local session turns the switch on for the time
it runs (and off again, so that a later ``--ray-address`` session advertises a reachable
address), and :func:`listening_sockets` records what every process of the session
listens on, for the campaign's environment record. No Ray component of a local session
listens beyond loopback (``tests/test_network.py`` proves it during a campaign);
Ray's token authentication, on by default, guards the loopback ports against other
local users.

**Joining a cluster** (``address``): a cluster reached at a loopback address runs on this
machine, so the same switch is on while the driver is connected (else Ray would rewrite
``127.0.0.1:PORT`` to the machine's external address, where a loopback-only cluster does
not listen). ``ray start`` enables token authentication; a joining driver presents the
token from ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.

**Stopping.** Temporary files go under the run directory (or a short path linked from
it: Unix socket paths are limited to 107 bytes). The processes the session starts are
recorded in ``ray.pids`` (PID and start time, so a reused PID is never taken for ours);
stopping shuts Ray down, waits a few seconds, and ends whichever of them are still
alive, and only those. With ``address`` a session joins an existing cluster and leaves
it running.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

MAX_TEMP_DIR = 40  # Ray appends ~60 characters of session and socket names
GRACE_S = 5.0  # after ray.shutdown, how long the session's processes get to exit before they are killed


class RaySession:
    def __init__(self, run_dir: Path, *, address: str | None = None, num_cpus: float | None = None,
                 num_gpus: float | None = None, resources: dict[str, float] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = resources
        self.processes: list[tuple[int, float]] = []  # (pid, create_time) of what the session started
        self.temp_dir: Path | None = None
        self._before: set[int] = set()
        self._cluster_switch: bool | None = None

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
            if _loopback_address(self.address):  # a cluster on this machine: keep its loopback address
                self._cluster_switch = _single_machine(True)
            try:
                ray.init(address=self.address, include_dashboard=False, configure_logging=False,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError) as exc:
                from vidnas._errors import SpecError

                self.stop()
                raise SpecError("ray.address", self.address, f"could not be joined ({exc})",
                                "check the head's address (ray status on the head prints it); a cluster with token "
                                "authentication needs its token in RAY_AUTH_TOKEN or ~/.ray/auth_token") from exc
            return self
        self.temp_dir = self._temp_dir()
        self._before = {p.pid for p in psutil.Process().children(recursive=True)}
        self._cluster_switch = _single_machine(True)
        try:
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=self.num_cpus,
                     num_gpus=self.num_gpus, resources=self.resources, _temp_dir=str(self.temp_dir),
                     configure_logging=False, log_to_driver=False)
        except BaseException:
            self.stop()
            raise
        self._record()
        return self

    def _started(self) -> list[Any]:
        import psutil

        return [p for p in psutil.Process().children(recursive=True) if p.pid not in self._before]

    def _record(self) -> None:
        """Write down the session's processes (also those started since the last call: agents start late)."""
        known = dict(self.processes)
        for p in self._started():
            with contextlib.suppress(Exception):
                known.setdefault(p.pid, p.create_time())
        self.processes = sorted(known.items())
        (self.run_dir / "ray.pids").write_text(json.dumps({"processes": self.processes,
                                                           "temp_dir": str(self.temp_dir)}))

    def listening(self) -> list[dict[str, Any]]:
        """Every socket the session's processes (and this driver) listen on, now."""
        import psutil

        if self.address:
            return []
        self._record()
        return listening_sockets([psutil.Process().pid] + [pid for pid, _ in self.processes])

    def describe(self) -> dict[str, Any]:
        """The cluster's nodes (id, address, resources, alive) and, for a local session, what it listens on."""
        import ray

        if not ray.is_initialized():
            return {}
        try:
            nodes = [{"node_id": n["NodeID"], "address": n.get("NodeManagerAddress"), "alive": n.get("Alive"),
                      "resources": n.get("Resources", {})} for n in ray.nodes()]
        except Exception:  # a cluster going down: the record says so rather than failing the campaign
            nodes = []
        info: dict[str, Any] = {"address": self.address or "local", "nodes": nodes}
        if not self.address:
            sockets = self.listening()
            info["network"] = {"listening": sockets,
                               "beyond_loopback": [s for s in sockets if not s["loopback"]],
                               "guard": "Ray token authentication" if _token_auth_on() else "none"}
        return info

    def stop(self) -> list[int]:
        """Shut Ray down; return the PIDs that had to be killed."""
        import ray

        if not self.address and self.temp_dir is not None:
            self._record()
        if ray.is_initialized():
            with contextlib.suppress(Exception):  # a half-dead cluster (SIGINT reached it too): end it below
                ray.shutdown()
        if self._cluster_switch is not None:
            _single_machine(self._cluster_switch)
            self._cluster_switch = None
        killed = _end(self.processes, GRACE_S)
        (self.run_dir / "ray.pids").unlink(missing_ok=True)
        return killed

    def __enter__(self) -> RaySession:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _single_machine(on: bool) -> bool:
    """Set Ray's single-machine switch (node address 127.0.0.1); return its previous state.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is imported, into
    ``ray_constants.ENABLE_RAY_CLUSTER``; the node address is decided from that constant
    when a node starts, so it is set there for the time of the local session.
    """
    from ray._private import ray_constants

    previous = not ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = not on
    return previous


def _loopback_address(address: str) -> bool:
    """``127.0.0.1:6379``, ``localhost:6379``, ``[::1]:6379``: a cluster reached over loopback."""
    if "://" in address:  # ray://host:port is Ray Client, which has its own connection
        return False
    host = address.rsplit(":", 1)[0].strip("[]") if address.count(":") else address
    return host == "localhost" or is_loopback(host)


def _token_auth_on() -> bool:
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:
        return False
    try:
        return bool(is_token_auth_enabled())
    except Exception:
        return False


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4-mapped loopback (``::ffff:127.0.0.1``, what dual-stack sockets show)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def listening_sockets(pids: list[int]) -> list[dict[str, Any]]:
    """TCP sockets in LISTEN state and bound UDP sockets of ``pids``: process, address, port, loopback or not."""
    import psutil

    out = []
    for pid in dict.fromkeys(pids):
        try:
            process = psutil.Process(pid)
            name = process.name()
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for c in connections:
            listening = c.status == psutil.CONN_LISTEN or (c.type == 2 and not c.raddr)  # SOCK_DGRAM: bound
            if listening and c.laddr:
                out.append({"pid": pid, "process": name, "ip": c.laddr.ip, "port": c.laddr.port,
                            "protocol": "tcp" if c.type == 1 else "udp", "loopback": is_loopback(c.laddr.ip)})
    return out


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


def _same(pid: int, started: float):
    """The process ``pid`` if it is still the one started at ``started`` (not a reused PID), else None."""
    import psutil

    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > 0.01 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def _end(processes: list[tuple[int, float]], grace_s: float) -> list[int]:
    """Wait up to ``grace_s`` for the processes to exit, then SIGKILL the ones still running."""
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_same(pid, t) for pid, t in processes):
        time.sleep(0.1)
    killed = []
    for pid, started in processes:
        if _same(pid, started) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def kill_recorded(run_dir: Path) -> list[int]:
    """End the Ray processes a previous driver of this run recorded, if any are still alive."""
    record = Path(run_dir) / "ray.pids"
    if not record.exists():
        return []
    try:
        data = json.loads(record.read_text())
        processes = [(int(pid), float(t)) for pid, t in data.get("processes", [])]
    except (ValueError, TypeError, AttributeError):  # unreadable: written by a driver killed mid-write
        processes = []
    killed = _end(processes, grace_s=0.5)
    record.unlink(missing_ok=True)
    return killed

"""A throwaway PostgreSQL server on loopback, from Debian's `postgresql` package (for tests and benchmarks).

``PostgresServer.start()`` finds ``initdb``/``pg_ctl`` under /usr/lib/postgresql/*/bin (installing the
package with apt-get when running as root and it is missing), creates a data directory in a fresh
temporary directory, and starts the server listening on 127.0.0.1 only, on a free port, with its Unix
socket in that directory and password-less (trust) authentication, which is safe on loopback of a
test machine only. As root, PostgreSQL refuses to run: the server then runs as the ``postgres`` system
user (created by the package), which owns the temporary directory. ``stop()`` stops it and deletes
everything. ``unavailable()`` says why a server cannot be had here (None when it can).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "vidnas"  # the database role (superuser of this throwaway cluster)
DATABASE = "vidnas"


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _install() -> None:
    """Debian's package, as the report test installs Chromium: only as root, only with apt-get."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    if subprocess.run(command, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900)
        subprocess.run(command, env=env, capture_output=True, timeout=900)


def _system_user() -> str | None:
    import pwd

    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return None


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's driver for postgresql:// URLs)
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]'; it is in the test extra)"
    if _binaries() is None:
        _install()
    if _binaries() is None:
        return ("PostgreSQL is not installed and could not be installed (apt-get install postgresql needs root "
                "and a Debian mirror)")
    if os.geteuid() == 0 and (_system_user() is None or not shutil.which("runuser")):
        return "running as root without a `postgres` system user (or runuser) to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.root: Path | None = None
        self.port: int | None = None
        self.bin = _binaries()

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            command = ["runuser", "-u", _system_user() or "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=check,
                              env={**os.environ, "LC_ALL": "C.UTF-8"})

    def start(self) -> PostgresServer:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        self.bin = _binaries()
        self.root = Path(tempfile.mkdtemp(prefix="vidnas-pg-", dir="/tmp"))  # short: the socket path is limited
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(_system_user() or "postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        self.port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def server_pids(self) -> list[int]:
        """The postmaster's PID (from its pid file), for checks that it really is ours."""
        pid_file = self.root / "data" / "postmaster.pid" if self.root else None
        if pid_file is None or not pid_file.exists():
            return []
        return [int(pid_file.read_text().splitlines()[0])]

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout: float, period: float = 0.2) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return False

"""A busy machine, noticed before and during measurement.

A latency measured while other processes take the cores it needs is wrong in a way nothing
downstream can undo (paired ratios absorb a steady load, not one that comes and goes). So every
command that measures first samples the CPU time the rest of the machine takes (psutil: the
whole machine's busy time less this process tree's), and keeps sampling while it measures.

The machine is *busy* when the measurement's threads plus the others' load exceed the cores
available (plus a quarter core of slack for the system's own housekeeping): one thread on two
cores tolerates one other busy process, all threads tolerate none. A busy machine stops the
command (:class:`MachineBusyError`, exit code 2) with the load and the processes behind it, unless
the user allows it (``--allow-load``); then every figure measured under load is flagged
(``under_load`` on the table's rows, and in reports). The reference workload's level is watched
too: items where it ran far slower than at the start of the build are counted in the record.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any

from vidnas._errors import VidnasError

__all__ = ["LOAD_SLACK_CORES", "LoadGuard", "LoadReport", "LoadWatcher", "MachineBusyError", "check_quiet",
           "load_guard",
           "sample_load"]

LOAD_SLACK_CORES = 0.25  # the system's own housekeeping, tolerated
# the reference workload this much slower than at the start of a build: recorded (another VM, thermal
# throttling: load the process list does not show), not acted on, since eager runtimes' levels move too
REFERENCE_SLOWDOWN = 1.3
# "1": measure under load, flagged (the test suite sets it: its own workers load the cores)
ALLOW_LOAD_ENV = "VIDNAS_ALLOW_LOAD"


class MachineBusyError(VidnasError):
    """Other processes take the cores a measurement needs."""

    def __init__(self, report: LoadReport, what: str) -> None:
        self.report = report
        super().__init__(f"the machine is busy: {report.describe()}; {what} would measure the load, not the "
                         f"network. Stop those processes, or pass --allow-load to measure anyway (every figure "
                         f"then flagged as measured under load)")


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """Others' CPU load over one sampling interval, against what a measurement needs."""

    cores: int  # cores this process may run on
    others: float  # cores' worth of CPU time the rest of the machine took
    needed: int  # the measurement's threads
    seconds: float  # the sampling interval
    processes: tuple[tuple[int, str, float], ...] = ()  # (pid, name, cores), the heaviest other processes
    reference_slowdown: float | None = None  # the reference workload's level against the build's first

    @property
    def busy(self) -> bool:
        slow = self.reference_slowdown is not None and self.reference_slowdown > REFERENCE_SLOWDOWN
        return slow or self.others + self.needed > self.cores + LOAD_SLACK_CORES

    def describe(self) -> str:
        if self.reference_slowdown is not None:
            return (f"the reference workload ran {self.reference_slowdown:.2f}x slower than at the start of this "
                    f"build (more than {REFERENCE_SLOWDOWN}x)")
        names = ", ".join(f"{name} (pid {pid}, {cores:.1f} cores)" for pid, name, cores in self.processes[:5])
        return (f"other processes took {self.others:.2f} of {self.cores} cores over {self.seconds:.1f} s while "
                f"this measurement needs {self.needed}" + (f": {names}" if names else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"cores": self.cores, "others_cores": round(self.others, 3), "needed": self.needed,
                "seconds": round(self.seconds, 2), "busy": self.busy, "reference_slowdown": self.reference_slowdown,
                "processes": [{"pid": p, "name": n, "cores": round(c, 2)} for p, n, c in self.processes]}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _own_tree() -> set[int]:
    import psutil

    me = psutil.Process()
    return {me.pid, *(c.pid for c in me.children(recursive=True))}


def _busy_seconds() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))


def _label(info: dict[str, Any]) -> str:
    """A process's name; for an interpreter, what it runs (``python3 -m pytest``)."""
    name = info.get("name") or "?"
    cmdline = info.get("cmdline") or []
    if name.startswith("python") and len(cmdline) > 1:
        args = [a for a in cmdline[1:] if a not in ("-B", "-u")][:2]
        if args and args[0] == "-c":  # a worker started with code on its command line (multiprocessing)
            return f"{name} worker of pid {info.get('ppid')}"
        name = " ".join([name, *(os.path.basename(a) if "/" in a else a for a in args)])
    return name[:60]


def _process_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every readable process, with a label."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cpu_times"]):
        info = proc.info
        if info.get("cpu_times") is not None:
            out[info["pid"]] = (_label(info), info["cpu_times"].user + info["cpu_times"].system)
    return out


def sample_load(seconds: float = 1.0, *, needed: int = 1) -> LoadReport:
    """Others' load over ``seconds`` (this process and its children excluded)."""
    own = _own_tree()
    busy0, procs0, wall0 = _busy_seconds(), _process_seconds(), time.monotonic()
    time.sleep(seconds)
    busy1, procs1, wall1 = _busy_seconds(), _process_seconds(), time.monotonic()
    own |= _own_tree()
    wall = max(wall1 - wall0, 1e-6)
    own_seconds = sum(procs1[p][1] - procs0[p][1] for p in own if p in procs0 and p in procs1)
    others = max(0.0, (busy1 - busy0 - own_seconds) / wall)
    heavy = sorted(((pid, procs1[pid][0], (procs1[pid][1] - procs0[pid][1]) / wall)
                    for pid in procs1 if pid in procs0 and pid not in own), key=lambda r: -r[2])
    return LoadReport(available_cores(), others, needed, wall, tuple(r for r in heavy if r[2] >= 0.1))


def load_allowed(allow_load: bool | None) -> bool:
    """The user's choice, or the environment's (``VIDNAS_ALLOW_LOAD=1``) when not given."""
    return bool(allow_load) if allow_load is not None else os.environ.get(ALLOW_LOAD_ENV) == "1"


def check_quiet(threads: int | None, *, allow_load: bool | None = None, what: str = "this command",
                seconds: float = 1.0) -> LoadReport:
    """Sample the load before measuring; raise :class:`MachineBusyError` when busy and not allowed."""
    needed = threads if threads else available_cores()
    report = sample_load(seconds, needed=min(needed, available_cores()))
    if report.busy and not load_allowed(allow_load):
        raise MachineBusyError(report, what)
    return report


class LoadWatcher:
    """Samples the others' load in a background thread while a measurement runs.

    ``busy`` says whether any interval since the last :meth:`take` was busy; :meth:`take`
    returns (and forgets) the busiest report of those intervals.
    """

    def __init__(self, threads: int | None, *, interval: float = 2.0) -> None:
        self.needed = min(threads if threads else available_cores(), available_cores())
        self.interval = interval
        self._worst: LoadReport | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidnas-load-watcher", daemon=True)

    def __enter__(self) -> LoadWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = sample_load(self.interval, needed=self.needed)
            except Exception:  # a process vanished mid-listing, permissions: skip this interval
                continue
            with self._lock:
                if report.busy and (self._worst is None or report.others > self._worst.others):
                    self._worst = report

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._worst is not None

    def take(self) -> LoadReport | None:
        with self._lock:
            worst, self._worst = self._worst, None
        return worst


def load_guard(backend: Any, threads: int | None, *, allow_load: bool, what: str):
    """The busy-machine guard of a measurement on ``backend`` (an instance, or its class before one is
    made), or a no-op context for a backend that does not time on this machine's clock (``debug``).
    ``allow_load`` False leaves the choice to ``VIDNAS_ALLOW_LOAD``."""
    import contextlib

    if not getattr(backend, "wall_clock", True):
        return contextlib.nullcontext(None)
    return LoadGuard(threads, allow_load=True if allow_load else None, what=what)


class LoadGuard:
    """What a measuring command does about load: a check before, a watch during, a verdict per item.

    ``with LoadGuard(threads, allow_load=..., what="lut build") as guard`` samples the load first
    (raising :class:`MachineBusyError` when busy and not allowed), then watches it; after each
    measured item, :meth:`item_under_load` raises when a busy interval fell inside the item and
    load is not allowed, or says whether it did (the item is then flagged). ``events`` keeps every
    busy report seen, for the record.
    """

    def __init__(self, threads: int | None, *, allow_load: bool | None = None, what: str = "this command",
                 interval: float = 2.0) -> None:
        self.threads = threads
        self.allowed = load_allowed(allow_load)
        self.what = what
        self.interval = interval
        self.events: list[LoadReport] = []
        self._watcher: LoadWatcher | None = None
        self._reference_ms: float | None = None
        self._slow: LoadReport | None = None
        self.slowdowns: list[LoadReport] = []  # items whose reference ran > REFERENCE_SLOWDOWN x its first level

    def __enter__(self) -> LoadGuard:
        report = check_quiet(self.threads, allow_load=self.allowed, what=self.what)
        if report.busy:
            self.events.append(report)
        self._pending_start = report if report.busy else None
        self._watcher = LoadWatcher(self.threads, interval=self.interval).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watcher is not None:
            self._watcher.__exit__(*exc)

    def note_reference(self, median_ms: float | None) -> None:
        """The reference workload's median in the item just measured: its level against the first
        one seen is a load signal the process list may miss."""
        if median_ms is None or median_ms <= 0:
            return
        if self._reference_ms is None:
            self._reference_ms = median_ms
        elif median_ms > REFERENCE_SLOWDOWN * self._reference_ms:
            self._slow = LoadReport(available_cores(), 0.0, 0, 0.0, reference_slowdown=median_ms / self._reference_ms)

    def item_under_load(self) -> bool:
        """Whether the item just measured overlapped a busy interval (raises if that is not allowed)."""
        report = self._watcher.take() if self._watcher is not None else None
        if self._slow is not None:  # recorded, not acted on: eager runtimes' levels also move on a quiet machine
            self.slowdowns.append(self._slow)
            self._slow = None
        if report is None and self._pending_start is not None:
            report, self._pending_start = self._pending_start, None
        if report is None:
            return False
        if report not in self.events:
            self.events.append(report)
        if not self.allowed:
            raise MachineBusyError(report, self.what)
        return True

    def summary(self) -> dict[str, Any]:
        """For a table's or a run's record: whether load was allowed and the busiest interval seen."""
        worst = max(self.events, key=lambda r: r.others, default=None)
        slowest = max((r.reference_slowdown or 0 for r in self.slowdowns), default=None)
        return {"allow_load": self.allowed, "busy_intervals": len(self.events),
                "worst": worst.to_dict() if worst else None,
                "reference_slowdowns": len(self.slowdowns), "reference_slowdown_max": slowest}

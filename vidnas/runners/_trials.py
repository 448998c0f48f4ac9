"""Trial bookkeeping shared by every driver of a study: the budget, stale trials, heartbeats.

One study may have several drivers at once (processes on several machines sharing a
PostgreSQL storage), and a driver may die at any moment. The rules that keep the count
exact and lose nothing:

* **Counted trials.** A trial counts against the budget unless it is *stale* (a FAIL
  whose evaluation never finished: its driver died or was interrupted, or its Ray worker
  or node died; its parameters are re-queued), *surplus* (claimed by a driver after
  the budget was full; never evaluated) or *screened* (PRUNED: its architecture breaks a
  constraint the cheap metrics decide, so it was never evaluated; see ``runners._screen``).
* **Claiming.** Trial numbers are assigned by the storage, in order. After ``ask`` a
  driver counts the counting trials numbered below its own; when they already fill the
  budget, its trial is surplus. Two drivers asking at once therefore never both take
  the last slot.
* **Heartbeats.** On a storage with heartbeats (any RDB storage: PostgreSQL, SQLite) a
  driver records one for each trial in flight every ``heartbeat_s``. A RUNNING trial
  silent for ``stale_after_s`` is declared stale by whichever driver notices first (the
  storage lets exactly one driver move it to FAIL, and only that driver re-queues it).
* A journal file has no heartbeats: it serves one driver at a time, and ``--resume``
  declares every trial left RUNNING stale.

Every stale, surplus or failed trial carries a ``fail_reason``; re-queued trials carry
``requeued_from`` (the number of the trial they replace).
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Iterable
from typing import Any

__all__ = [
    "HeartbeatKeeper",
    "claim",
    "counted_trials",
    "counts",
    "driver_id",
    "fail_heartbeat_stale",
    "is_screened",
    "is_stale",
    "is_surplus",
    "mark_stale",
    "open_budget",
    "requeue_stale",
    "supports_heartbeat",
]


def driver_id() -> str:
    """This driver process: ``host:pid:start`` (the start time tells a reused PID apart)."""
    import psutil

    return f"{socket.gethostname()}:{os.getpid()}:{int(psutil.Process().create_time())}"


def driver_alive(identity: str) -> bool:
    """Whether the driver ``identity`` is a live process on this host (False for other hosts)."""
    import psutil

    try:
        host, pid, start = identity.rsplit(":", 2)
        if host != socket.gethostname():
            return False
        return int(psutil.Process(int(pid)).create_time()) == int(start)
    except (ValueError, psutil.Error):
        return False


def is_stale(trial) -> bool:
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get("stale"))


def is_surplus(trial) -> bool:
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get("surplus"))


def is_screened(trial) -> bool:
    from optuna.trial import TrialState

    return trial.state == TrialState.PRUNED and bool(trial.user_attrs.get("screened"))


def counts(trial) -> bool:
    """Whether the trial counts against the budget (any state)."""
    return not is_stale(trial) and not is_surplus(trial) and not is_screened(trial)


def counted_trials(study) -> int:
    """Finished trials that count against the budget."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
               if counts(t))


def open_budget(study, total: int) -> bool:
    """Whether a driver may ask for a trial: the budget has room, or re-queued trials wait."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return (sum(1 for t in trials if counts(t)) < total
            or any(t.state == TrialState.WAITING for t in trials))


def claim(study, trial, total: int) -> bool:
    """Whether ``trial`` (just asked) is within the budget; if not, it is recorded as surplus."""
    from optuna.trial import TrialState

    before = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and counts(t))
    if before < total:
        return True
    trial.set_user_attr("surplus", True)
    trial.set_user_attr("fail_reason", "the budget was already claimed by other trials; not evaluated")
    study.tell(trial, state=TrialState.FAIL)
    return False


SAMPLED = "sampled"  # user attribute: the trial's whole architecture was sampled


def mark_sampled(trial) -> None:
    """Record that ``trial`` holds a whole architecture (set by the driver right after sampling)."""
    trial.set_user_attr(SAMPLED, True)


def _params_of(trial) -> dict[str, Any]:
    """The parameters to re-queue: the sampled ones once the whole architecture was sampled, else
    those the trial was enqueued with. A trial stopped part way through sampling holds only its
    first choices; re-queuing those would fix an arbitrary part of a new architecture, so a fresh
    trial takes its place instead (nothing)."""
    if trial.user_attrs.get(SAMPLED):
        return dict(trial.params)
    return dict(trial.system_attrs.get("fixed_params") or {})


def mark_stale(study, trial_id: int, number: int, params: dict[str, Any], reason: str, *,
               requeues: int = 1) -> bool:
    """Mark a RUNNING trial stale (FAIL, with ``reason``) and re-queue its parameters.

    ``requeues`` is recorded on the waiting trial (``requeue_count``): how many times these
    parameters have been re-queued, so that a failure that repeats can be stopped.

    Returns False when another driver finished or claimed the trial first (nothing done).
    Attributes are written before the state: a trial is never FAIL without its reason.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        storage.set_trial_user_attr(trial_id, "stale", True)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    if params:
        study.enqueue_trial(params, user_attrs={"requeued_from": number, "requeue_reason": reason,
                                                "requeue_count": requeues}, skip_if_exists=False)
    return True


def requeue_stale(study, *, only: Iterable[int] | None = None,
                  reason: str = "driver stopped while the trial ran; re-queued") -> list[int]:
    """Mark RUNNING trials stale and re-queue them; ``only``: just these trial numbers.

    A trial killed before its whole architecture was sampled has no parameters to re-queue: it
    is marked stale (so it does not count) and a fresh trial takes its place. Returns the numbers
    of the trials this call marked.
    """
    from optuna.trial import TrialState

    wanted = None if only is None else set(only)
    marked = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if wanted is not None and trial.number not in wanted:
            continue
        params = _params_of(trial)
        why = reason if params else "driver stopped before the trial's whole architecture was sampled; not counted"
        if mark_stale(study, trial._trial_id, trial.number, params, why):
            marked.append(trial.number)
    return marked


def supports_heartbeat(storage) -> bool:
    from optuna.storages._heartbeat import BaseHeartbeat

    return isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None


def fail_heartbeat_stale(study) -> list[int]:
    """Declare stale (and re-queue) the RUNNING trials whose heartbeat stopped; their numbers."""
    if not supports_heartbeat(study._storage):
        return []
    stale_ids = set(study._storage._get_stale_trial_ids(study._study_id))
    if not stale_ids:
        return []
    from optuna.trial import TrialState

    marked = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id in stale_ids:
            owner = trial.user_attrs.get("driver", "unknown driver")
            reason = f"no heartbeat from its driver ({owner}); re-queued"
            if mark_stale(study, trial._trial_id, trial.number, _params_of(trial), reason):
                marked.append(trial.number)
    return marked


class HeartbeatKeeper:
    """A background thread recording a heartbeat for each trial in flight (RDB storages only)."""

    def __init__(self, storage, period_s: float) -> None:
        self.storage = storage
        self.period_s = period_s
        self.enabled = supports_heartbeat(storage)
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        if not self.enabled:
            return
        self.storage.record_heartbeat(trial_id)  # at once: a trial with no heartbeat is never declared stale
        with self._lock:
            self._ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # a lost connection must not kill the thread; the next beat retries
                    warnings.warn(f"heartbeat of trial id {trial_id} not recorded: {exc}", stacklevel=1)

    def __enter__(self) -> HeartbeatKeeper:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="vidnas-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


"""Where trial evaluations run: in the driver (tests) or as Ray tasks, behind one small interface.

An executor has ``slots`` (evaluations it runs at once), ``submit(spec_json) -> key``,
``collect(timeout) -> [(key, Outcome)]`` (the evaluations that finished, failed or timed
out) and ``cancel_all()``. An :class:`Outcome` says whether a failure belongs to the
architecture (an exception in the evaluation, a timeout: the trial FAILs and counts) or
to the infrastructure (a Ray worker or node died, an object was lost: the trial is
re-queued).

Ray tasks record where they ran (``ray_node_id``, ``host``, ``worker_pid``) and the
resources Ray assigned them (``ray_resources``), so that placement can be checked.

Each process that evaluates keeps one :class:`~vidnas.runners._evaluate.EvalCache` across its
trials: :class:`LocalExecutor` uses the settings' own (the driver's); for Ray, the task function
is a closure over an (empty) cache, and Ray unpickles a task function once per worker process,
so each worker fills its own and reuses it for the trials it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import socket
import time
from typing import Any

from vidnas.runners._evaluate import EvalCache, EvalSettings, evaluate


@dataclasses.dataclass(frozen=True)
class Outcome:
    result: dict[str, Any] | None  # the metrics, or None on failure
    reason: str | None  # why it failed
    seconds: float  # from submission to outcome
    infrastructure: bool = False  # the failure was the machine's, not the architecture's: re-queue


class LocalExecutor:
    """Evaluates in the driver process, one at a time (for tests and debugging)."""

    slots = 1

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self._jobs: dict[int, str] = {}
        self._keys = itertools.count()

    def submit(self, spec_json: str) -> int:
        key = next(self._keys)
        self._jobs[key] = spec_json
        return key

    def collect(self, timeout: float) -> list[tuple[int, Outcome]]:
        if not self._jobs:
            return []
        key = next(iter(self._jobs))
        spec_json = self._jobs.pop(key)
        t0 = time.perf_counter()
        try:
            outcome = Outcome(evaluate(spec_json, self.settings), None, 0.0)
        except Exception as exc:  # the campaign goes on; the trial records why it failed
            outcome = Outcome(None, f"{type(exc).__name__}: {exc}", 0.0)
        return [(key, dataclasses.replace(outcome, seconds=time.perf_counter() - t0))]

    def cancel_all(self) -> None:
        self._jobs.clear()


def evaluate_in_task(spec_json: str, settings: EvalSettings, cache: EvalCache | None = None) -> dict[str, Any]:
    """:func:`evaluate` inside a Ray task, plus where it ran and the resources Ray assigned it."""
    import ray

    context = ray.get_runtime_context()
    out = evaluate(spec_json, settings, cache)
    out.update(ray_node_id=context.get_node_id(), host=socket.gethostname(), worker_pid=os.getpid(),
               ray_resources={k: float(v) for k, v in context.get_assigned_resources().items()})
    return out


def worker_task(cache: EvalCache):
    """The function a Ray task runs: :func:`evaluate_in_task` with ``cache``, which it closes over.

    Ray pickles the function once and each worker process unpickles it once, with its own
    (empty) copy of ``cache``: every trial that worker runs then shares it. Ray names the worker
    process after it: ``ray::evaluate_on_node``."""

    def evaluate_on_node(spec_json: str, settings: EvalSettings) -> dict[str, Any]:
        return evaluate_in_task(spec_json, settings, cache)

    return evaluate_on_node


# Ray's errors that say the machine failed, not the evaluation (looked up by name: they vary across releases).
_INFRASTRUCTURE_ERRORS = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
                          "ObjectReconstructionFailedError", "LocalRayletDiedError", "RaySystemError",
                          "OutOfMemoryError", "ObjectFetchTimedOutError", "ActorDiedError", "TaskUnschedulableError",
                          "RuntimeEnvSetupError", "ReferenceCountingAssertionError")


def is_infrastructure_failure(exc: BaseException) -> bool:
    import ray.exceptions as rex

    kinds = tuple(getattr(rex, name) for name in _INFRASTRUCTURE_ERRORS if hasattr(rex, name))
    if isinstance(exc, rex.RayTaskError):  # the evaluation's own exception, wrapped
        return isinstance(getattr(exc, "cause", None), kinds)
    return isinstance(exc, kinds)


def describe_failure(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0][:500] if text else ''}"


class RayExecutor:
    """Evaluations as Ray tasks with per-trial resources; ``timeout_s`` cancels a task that runs too long."""

    def __init__(self, settings: EvalSettings, *, workers: int, cpus: float, gpus: float,
                 resources: dict[str, float], timeout_s: float) -> None:
        import ray

        self.slots = workers
        self.timeout_s = timeout_s
        self.task = ray.remote(num_cpus=cpus, num_gpus=gpus, resources=resources or None,
                               max_retries=0)(worker_task(EvalCache()))
        self.settings_ref = ray.put(settings)
        self.pending: dict[Any, float] = {}  # ref -> submission time

    def submit(self, spec_json: str):
        ref = self.task.remote(spec_json, self.settings_ref)
        self.pending[ref] = time.perf_counter()
        return ref

    def collect(self, timeout: float) -> list[tuple[Any, Outcome]]:
        import ray

        if not self.pending:
            return []
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        now = time.perf_counter()
        out = []
        for ref in list(self.pending):
            t0 = self.pending[ref]
            if ref in ready:
                try:
                    outcome = Outcome(ray.get(ref), None, now - t0)
                except Exception as exc:  # RayTaskError wraps the evaluation's exception; others are Ray's own
                    outcome = Outcome(None, describe_failure(exc), now - t0, is_infrastructure_failure(exc))
            elif now - t0 > self.timeout_s:
                ray.cancel(ref, force=True)
                outcome = Outcome(None, f"timed out after {self.timeout_s:.0f} s", now - t0)
            else:
                continue
            del self.pending[ref]
            out.append((ref, outcome))
        return out

    def cancel_all(self) -> None:
        import ray

        for ref in list(self.pending):
            with contextlib.suppress(Exception):  # already finished, or Ray is going down: nothing left to stop
                ray.cancel(ref, force=True)
        self.pending.clear()

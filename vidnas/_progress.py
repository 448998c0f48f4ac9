"""Progress that reads well in a log.

On a terminal, long work shows rich's live bar (``vidnas.cli``'s ``progress_bar``). Away from one (a CI log, a
file, ``nohup``), a live bar would be one line per update; there the same calls print one plain
line per task at most every ``interval`` seconds, and when a task finishes:

    lut build tiny on onnxruntime/cpu | measure: 84/98 (86 %), 1.9/s, eta 7 s, up.1.0.attn

A task's total is the one it was given: when work grows (noisy entries measured again), the
caller starts a new task for it rather than moving the goal under the reader.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["LogProgress", "log_interval", "pass_tasks"]

DEFAULT_INTERVAL = 5.0  # seconds between two lines of one task (VIDNAS_PROGRESS_INTERVAL overrides)


def log_interval() -> float:
    """Seconds between two log lines of one task (``VIDNAS_PROGRESS_INTERVAL``, default 5)."""
    raw = os.environ.get("VIDNAS_PROGRESS_INTERVAL")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    fields: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    last_line: float | None = None
    finished: bool = False


class LogProgress:
    """rich.progress.Progress's calls (``add_task``, ``update``, ``advance``, ``console``, a context),
    written as throttled plain lines: done, total, rate, ETA and the task's fields."""

    def __init__(self, description: str, *, stream: TextIO | None = None, interval: float | None = None,
                 clock=time.monotonic, write=None) -> None:
        self.description = description
        self.stream = stream or sys.stderr
        self._emit = write  # a function taking one line (e.g. a campaign's log), instead of the stream
        self.interval = log_interval() if interval is None else interval
        self._clock = clock
        self._tasks: dict[int, _Task] = {}

    # rich's Progress interface ------------------------------------------------------------------

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks.values():  # the last state of every task that did not say it was done
            if not task.finished and task.last_line is not None and exc[0] is None:
                self._write(task, self._clock())

    @property
    def console(self) -> LogProgress:
        return self

    def print(self, *objects: Any, **_: Any) -> None:
        """A message between progress lines (rich markup stripped)."""
        from rich.text import Text

        self._line(" ".join(Text.from_markup(str(o)).plain for o in objects))

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task_id = len(self._tasks)
        self._tasks[task_id] = _Task(description, total, fields=dict(fields), started=self._clock())
        return task_id

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **fields: Any) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        task.fields.update(fields)
        now = self._clock()
        done = task.total is not None and task.completed >= task.total
        if done and not task.finished:
            task.finished = True
            self._write(task, now)
        elif not done and (task.last_line is None or now - task.last_line >= self.interval):
            self._write(task, now)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    # lines ----------------------------------------------------------------------------------------

    def line(self, task: _Task, now: float) -> str:
        elapsed = max(now - task.started, 1e-9)
        done = task.completed
        parts = [f"{self.description} | {task.description}: "]
        if task.total:
            parts.append(f"{_count(done)}/{_count(task.total)} ({100 * done / task.total:.0f} %)")
        else:
            parts.append(_count(done))
        rate = done / elapsed
        if done > 0:
            parts.append(f", {rate:.3g}/s" if rate >= 1 else f", {1 / rate:.3g} s each")
        if task.total and done > 0:
            left = (task.total - done) / rate
            parts.append(f", eta {_duration(left)}" if left > 0 else f", took {_duration(elapsed)}")
        extra = ", ".join(str(v) for v in task.fields.values() if v not in ("", None))
        if extra:
            parts.append(f", {extra}")
        return "".join(parts)

    def _write(self, task: _Task, now: float) -> None:
        task.last_line = now
        self._line(self.line(task, now))

    def _line(self, text: str) -> None:
        if self._emit is not None:
            self._emit(text)
            return
        self.stream.write(text + "\n")
        self.stream.flush()


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pass_tasks(bar: Any, item_field: str | None = None):
    """``(stage, progress)`` callbacks of a table build (``BuildWatch``) for ``bar`` (rich's Progress or
    :class:`LogProgress`): one task (line) per pass, its total fixed; ``item_field`` names the task
    field that shows the unit being measured, if the bar has one."""
    current: dict[str, Any] = {}

    def fields(plan: Any) -> dict[str, Any]:
        return {} if item_field is None else {item_field: "" if plan is None else plan.name}

    def stage(name: str, total: int) -> None:
        current["task"] = bar.add_task(name, total=total, **fields(None))

    def progress(i: int, n: int, plan: Any, row: Any) -> None:
        if "task" in current:
            bar.update(current["task"], completed=i, **fields(plan))

    return stage, progress

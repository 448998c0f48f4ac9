"""Processes a test started: the tree under a PID, and whether one still runs."""

from __future__ import annotations

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants (empty once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(p: psutil.Process) -> bool:
    """Still running and not a zombie (False for a process gone or reaped while we looked)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

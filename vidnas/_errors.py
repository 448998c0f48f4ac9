"""Errors shared by every part of vidnas.

Every error a user can cause names the offending field (a dotted path when the
value sits inside a spec or config), shows the value, and says how to fix it.
"""

from __future__ import annotations

from typing import Any


class VidnasError(Exception):
    """Base class of every error vidnas raises on purpose."""


class SpecError(VidnasError, ValueError):
    """An invalid value in an architecture spec, search space, config or CLI option.

    Args:
        field: Dotted path of the offending field, e.g. ``temporal.down.0.1.res.params.heads``.
        value: The value that was given.
        problem: What is wrong with it.
        hint: How to fix it (optional).
    """

    def __init__(self, field: str, value: Any, problem: str, hint: str | None = None) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.hint = hint
        message = f"`{field}` = {value!r}: {problem}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class MissingDependencyError(VidnasError, ImportError):
    """An optional library needed by the requested feature is not installed."""

    def __init__(self, package: str, feature: str, install: str | None = None) -> None:
        install = install or f"pip install {package}"
        super().__init__(f"{feature} needs the package `{package}`; install it with `{install}`")

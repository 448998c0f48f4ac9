"""Import optional libraries only when a feature needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from vidnas._errors import MissingDependencyError


def require(module: str, *, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise an error that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the package
        raise MissingDependencyError(package or module.split(".")[0], feature) from exc

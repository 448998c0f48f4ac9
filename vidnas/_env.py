"""The environment fingerprint stored with every measured figure."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

_PACKAGES = ("vidnas", "torch", "onnxruntime", "onnx", "coremltools", "optuna", "ray", "numpy", "pandas")


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo or the platform module."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def fingerprint(**extra: Any) -> dict[str, Any]:
    """Host, OS, CPU, cores and library versions, plus any ``extra`` fields (backend, threads, dtype ...)."""
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": package_versions(),
        **extra,
    }

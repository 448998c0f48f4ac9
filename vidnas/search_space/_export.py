"""Export modules to ONNX and convert them to Core ML.

Both take a module and example inputs. Core ML conversion goes through
``torch.export`` + ``run_decompositions({})``, which converts more than tracing; on
systems other than macOS the model is converted but not loaded (Core ML can only run
and compile on Apple platforms).
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

from vidnas._imports import require

COREML_COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
COREML_PRECISIONS = ("float16", "float32")


def onnx_input_name(index: int) -> str:
    return f"input_{index}"


_TORCHLIB_REGISTRIES: dict[tuple, Any] = {}


def _reuse_torchlib_registry() -> None:
    """Build torch.onnx's table of ATen-to-ONNX functions once per process, not once per export.

    ``torch.onnx.export`` (the dynamo exporter) rebuilds that table on every call, re-parsing the
    source of about 500 onnxscript functions: roughly a third of exporting one small unit, and a
    table build exports every unit of a space. The table depends only on the opset, so it is
    built once per opset and every export gets its own copy (the exporter adds a caller's custom
    translations to the copy it is handed, never to the shared one). Where this torch has no such
    table method, nothing is changed.
    """
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return
    registry_cls = getattr(_registration, "ONNXRegistry", None)
    method = getattr(registry_cls, "__dict__", {}).get("from_torchlib")
    if not isinstance(method, classmethod) or getattr(method.__func__, "vidnas_reused", False):
        return
    build = method.__func__

    def from_torchlib(cls, *args: Any, **kwargs: Any) -> Any:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _TORCHLIB_REGISTRIES:
            _TORCHLIB_REGISTRIES[key] = build(cls, *args, **kwargs)
        shared = _TORCHLIB_REGISTRIES[key]
        functions = getattr(shared, "functions", None)
        if not isinstance(functions, dict):  # not the layout this was written for: build afresh
            return build(cls, *args, **kwargs)
        copy = cls.__new__(cls)
        copy.__dict__.update(shared.__dict__)
        copy.functions = {name: list(entries) for name, entries in functions.items()}
        return copy

    from_torchlib.vidnas_reused = True  # type: ignore[attr-defined]
    from_torchlib.__wrapped__ = build  # type: ignore[attr-defined]
    from_torchlib.__doc__ = build.__doc__
    registry_cls.from_torchlib = classmethod(from_torchlib)


def export_onnx(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: str | Path, *,
                opset: int | None = None, optimize: bool = True) -> Path:
    """Write ``module`` as a single-file ONNX model (weights embedded) and return the path.

    Inputs are named ``input_0``, ``input_1``, ... in the order of ``args``; inputs the
    graph does not use are left out of the model.
    """
    require("onnxscript", feature="ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"dynamo": True, "external_data": False, "verbose": False, "optimize": optimize,
                              "input_names": [onnx_input_name(i) for i in range(len(args))]}
    if opset is not None:
        kwargs["opset_version"] = opset
    args = tuple(a.contiguous() for a in args)  # memory layout is an eager-PyTorch detail
    _reuse_torchlib_registry()
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about optional torchvision ops on every export
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), args, str(path), **kwargs)
    finally:
        exporter_log.setLevel(level)
    return path


def coreml_can_run() -> bool:
    """Core ML models can be loaded, compiled and timed only on macOS."""
    return platform.system() == "Darwin"


def convert_coreml(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: str | Path | None = None, *,
                   compute_units: str = "ALL", precision: str = "float16", minimum_ios: int = 17) -> Any:
    """Convert ``module`` to a Core ML ML Program; save it as ``path`` (``.mlpackage``) if given.

    Returns the ``coremltools`` model. Prediction needs macOS; elsewhere the model is
    converted with ``skip_model_load=True``.
    """
    from vidnas._errors import SpecError

    ct = require("coremltools", feature="Core ML conversion")
    if compute_units not in COREML_COMPUTE_UNITS:
        raise SpecError("compute_units", compute_units, "is not a Core ML compute unit",
                        f"choose one of {list(COREML_COMPUTE_UNITS)}")
    if precision not in COREML_PRECISIONS:
        raise SpecError("precision", precision, "is not supported", f"choose one of {list(COREML_PRECISIONS)}")
    args = tuple(a.contiguous() for a in args)  # Core ML rejects non-contiguous dim orders
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(module.eval(), args).run_decompositions({})
        model = ct.convert(
            program,
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, f"iOS{minimum_ios}"),
            compute_precision=ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32,
            compute_units=getattr(ct.ComputeUnit, compute_units),
            skip_model_load=not coreml_can_run(),
        )
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(path))
    return model

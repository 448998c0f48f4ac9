"""Export modules to ONNX and convert them to Core ML.

Both take a module and example inputs. Core ML conversion goes through
``torch.export`` + ``run_decompositions({})``, which converts more than tracing; on
systems other than macOS the model is converted but not loaded (Core ML can only run
and compile on Apple platforms).
"""

from __future__ import annotations

import contextlib
import io
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

from vidnas._imports import require

COREML_COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
COREML_PRECISIONS = ("float16", "float32")


def export_onnx(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: str | Path, *,
                opset: int | None = None) -> Path:
    """Write ``module`` as a single-file ONNX model (weights embedded) and return the path."""
    require("onnxscript", feature="ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"dynamo": True, "external_data": False, "verbose": False}
    if opset is not None:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), **kwargs)
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

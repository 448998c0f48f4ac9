"""Latency: the measurement harness, backends, lookup tables, the predictor and its validation."""

from vidnas.latency_models._accuracy import AccuracyReport
from vidnas.latency_models._adapt import ADAPT_MODELS, Adaptation, adapt_table, check_adaptation, fit_adaptation
from vidnas.latency_models._backends import (
    BACKENDS,
    Backend,
    BackendDef,
    BackendOption,
    BackendUnavailableError,
    BundleExporter,
    fingerprint_id,
    get_backend,
    get_backend_def,
    list_backends,
    register_backend,
)
from vidnas.latency_models._baselines import BASELINES, Baseline, baseline_reports, closest_datasheet, fit_baseline
from vidnas.latency_models._builder import BuildWatch, build_table, measure_units, open_table, space_units, spec_units
from vidnas.latency_models._coreml_bundle import export_coreml_bundle
from vidnas.latency_models._harness import (
    GroupTiming,
    HarnessConfig,
    compare,
    measure,
    measure_group,
    measure_interleaved,
)
from vidnas.latency_models._load import LoadGuard, LoadReport, MachineBusyError, check_quiet, load_guard, sample_load
from vidnas.latency_models._network import (
    NetworkMeasurement,
    answer_basis,
    answer_figures,
    fit_correction,
    measure_frame_scaling,
    measure_network,
    measure_networks,
    measure_streaming,
    memory_bytes,
    network_runner,
    rescaled_figures,
    validate_table,
)
from vidnas.latency_models._pairing import BASES, Basis, Ratio, Series, Timing, combine, decide_basis
from vidnas.latency_models._predictor import (
    CFG_MODES,
    Correction,
    LatencyPredictor,
    MissingEntriesError,
    Prediction,
    SpacePredictor,
    video_cost,
)
from vidnas.latency_models._roofline import (
    DeviceSpec,
    get_device,
    load_devices,
    roofline_estimate,
    roofline_stream_estimate,
)
from vidnas.latency_models._stats import Measurement, median_interval, quantile
from vidnas.latency_models._table import LatencyTable, TableMeta, TableMismatchError, table_summary

__all__ = [
    "BuildWatch",
    "LoadGuard",
    "LoadReport",
    "MachineBusyError",
    "check_quiet",
    "load_guard",
    "sample_load",
    "check_adaptation",
    "ADAPT_MODELS",
    "BACKENDS",
    "BASELINES",
    "BASES",
    "CFG_MODES",
    "AccuracyReport",
    "Adaptation",
    "Backend",
    "BackendDef",
    "BackendOption",
    "BackendUnavailableError",
    "BundleExporter",
    "Baseline",
    "Basis",
    "CoreMLBackend",
    "Correction",
    "DebugBackend",
    "DeviceSpec",
    "GroupTiming",
    "HarnessConfig",
    "LatencyPredictor",
    "LatencyTable",
    "Measurement",
    "MissingEntriesError",
    "NetworkMeasurement",
    "OnnxRuntimeBackend",
    "Prediction",
    "Ratio",
    "Series",
    "SpacePredictor",
    "TableMeta",
    "TableMismatchError",
    "Timing",
    "TorchBackend",
    "adapt_table",
    "answer_basis",
    "answer_figures",
    "rescaled_figures",
    "baseline_reports",
    "build_table",
    "closest_datasheet",
    "combine",
    "compare",
    "decide_basis",
    "export_coreml_bundle",
    "fingerprint_id",
    "fit_adaptation",
    "fit_baseline",
    "fit_correction",
    "get_backend",
    "get_backend_def",
    "get_device",
    "list_backends",
    "load_devices",
    "measure",
    "measure_frame_scaling",
    "measure_group",
    "measure_interleaved",
    "measure_networks",
    "measure_network",
    "measure_streaming",
    "measure_units",
    "median_interval",
    "memory_bytes",
    "network_runner",
    "open_table",
    "quantile",
    "register_backend",
    "roofline_estimate",
    "roofline_stream_estimate",
    "space_units",
    "spec_units",
    "table_summary",
    "validate_table",
    "video_cost",
]

# The built-in backends' classes, imported on first use: their modules register the backends and are
# loaded through vidnas's entry points (group ``vidnas.backends``), like any plugin's.
_BACKEND_CLASSES = {"TorchBackend": "torch_eager", "OnnxRuntimeBackend": "onnx_runtime",
                    "CoreMLBackend": "coreml", "DebugBackend": "debug"}


def __getattr__(name: str):
    """``TorchBackend``, ``OnnxRuntimeBackend``, ``CoreMLBackend``, ``DebugBackend``: from their modules."""
    module = _BACKEND_CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    BACKENDS.load()  # the built-in backends first, in their declared order
    return getattr(import_module(f"vidnas.latency_models.backends.{module}"), name)

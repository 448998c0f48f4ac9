"""Latency: the measurement harness, backends, lookup tables, the predictor and its validation."""

from vidnas.latency_models._backends import (
    BACKENDS,
    Backend,
    BackendUnavailableError,
    CoreMLBackend,
    DebugBackend,
    OnnxRuntimeBackend,
    TorchBackend,
    fingerprint_id,
    get_backend,
)
from vidnas.latency_models._builder import build_table, measure_units, open_table, space_units, spec_units
from vidnas.latency_models._coreml_bundle import export_coreml_bundle
from vidnas.latency_models._harness import HarnessConfig, Ratio, compare, measure, measure_interleaved
from vidnas.latency_models._network import (
    AccuracyReport,
    fit_correction,
    measure_frame_scaling,
    measure_network,
    measure_networks,
    measure_streaming,
    memory_bytes,
    network_runner,
    validate_table,
)
from vidnas.latency_models._predictor import (
    CFG_MODES,
    Correction,
    LatencyPredictor,
    MissingEntriesError,
    Prediction,
    SpacePredictor,
    video_cost,
)
from vidnas.latency_models._roofline import DeviceSpec, get_device, load_devices, roofline_estimate
from vidnas.latency_models._stats import Measurement, median_interval, quantile
from vidnas.latency_models._table import LatencyTable, TableMeta, TableMismatchError, table_summary

__all__ = [
    "BACKENDS",
    "CFG_MODES",
    "AccuracyReport",
    "Backend",
    "BackendUnavailableError",
    "CoreMLBackend",
    "Correction",
    "DebugBackend",
    "DeviceSpec",
    "HarnessConfig",
    "LatencyPredictor",
    "LatencyTable",
    "Measurement",
    "MissingEntriesError",
    "OnnxRuntimeBackend",
    "Prediction",
    "Ratio",
    "SpacePredictor",
    "TableMeta",
    "TableMismatchError",
    "TorchBackend",
    "build_table",
    "compare",
    "export_coreml_bundle",
    "fingerprint_id",
    "fit_correction",
    "get_backend",
    "get_device",
    "load_devices",
    "measure",
    "measure_frame_scaling",
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
    "roofline_estimate",
    "space_units",
    "spec_units",
    "table_summary",
    "validate_table",
    "video_cost",
]

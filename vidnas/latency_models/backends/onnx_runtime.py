"""``onnxruntime``: the module exported to ONNX, run by an ``InferenceSession``.

The CPU or CUDA execution provider, at a recorded graph-optimisation level (option
``graph_optimization``); on a GPU with I/O binding: inputs and outputs stay on the device.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from vidnas._env import cpu_model, package_versions
from vidnas._errors import SpecError, VidnasError
from vidnas._registry import Option
from vidnas.latency_models._backends import (
    BackendUnavailableError,
    _check_device,
    _check_threads,
    device_name,
    host_fingerprint,
    register_backend,
)

ORT_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
OPTIONS = (
    Option("graph_optimization", str, "all", "ONNX Runtime's graph optimisation level",
           choices=ORT_OPTIMIZATION_LEVELS),
    Option("cache_dir", Path, None, "where exported ONNX models are kept (default: a temporary directory)"),
    Option("dtype", str, "float32", "floating-point type (float32 only)", choices=("float32",)),
    Option("optimize_export", bool, True, "the exporter's own graph optimisation (false: faster export)"),
    Option("spinning", bool, False, "intra-op threads spin-wait between calls (a deployment that keeps it on, "
                                    "called alone)"),
)


@dataclasses.dataclass
class OnnxRuntimeBackend:
    """ONNX Runtime. Modules are exported to single-file ONNX models (cached by ``key``)."""

    device: str = "cpu"
    threads: int | None = None
    graph_optimization: str = "all"
    cache_dir: Path | None = None
    dtype: str = "float32"
    optimize_export: bool = True  # the exporter's own graph optimisation (False: faster export)
    # ONNX Runtime's intra-op threads spin-wait for work after each call unless told not to. The harness
    # interleaves sessions (a unit, the reference workload, a group's other units): a session's threads
    # still spinning take the cores from the next call. Measured here, 2 threads on 2 cores, two sessions
    # called in turn: each call 1.5x slower than alone with spinning, 1.0-1.1x without
    # (benchmarks/bench_ort_spinning.py, RESULTS.md).
    # Off by default; `spinning=true` measures a deployment that keeps it on, called alone.
    spinning: bool = False
    name: str = "onnxruntime"

    def __post_init__(self) -> None:
        self.device = _check_device(self.device)
        self.threads = _check_threads(self.threads)
        if self.graph_optimization not in ORT_OPTIMIZATION_LEVELS:
            raise SpecError("graph_optimization", self.graph_optimization, "is not an ONNX Runtime level",
                            f"choose one of {list(ORT_OPTIMIZATION_LEVELS)}")
        if self.dtype != "float32":
            raise SpecError("dtype", self.dtype, "is not supported by the onnxruntime backend", "use float32")
        if not isinstance(self.spinning, bool):
            raise SpecError("spinning", self.spinning, "must be true or false")

    @property
    def provider(self) -> str:
        return "CUDAExecutionProvider" if self.device.startswith("cuda") else "CPUExecutionProvider"

    @property
    def device_id(self) -> int:
        return int(self.device.split(":", 1)[1]) if ":" in self.device else 0

    def _ort(self):
        from vidnas._imports import require

        ort = require("onnxruntime", feature="the onnxruntime backend")
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"ONNX Runtime here has no {self.provider} (available: {ort.get_available_providers()}); "
                "install onnxruntime-gpu for CUDA"
            )
        return ort

    def fingerprint(self) -> dict[str, Any]:
        ort = self._ort()
        name = device_name(self.device) if self.device.startswith("cuda") else cpu_model()
        return {"backend": self.name, "device": self.device, "device_name": name,
                "threads": self.threads or os.cpu_count(), "dtype": self.dtype,
                "options": {"provider": self.provider, "graph_optimization": self.graph_optimization,
                            "optimize_export": self.optimize_export, "spinning": self.spinning,
                            **({"device_id": self.device_id, "io_binding": "inputs and outputs on the device"}
                               if self.device.startswith("cuda") else {})},
                "versions": {"onnxruntime": ort.__version__, **package_versions(("onnx", "torch"))},
                **host_fingerprint()}

    def session_options(self):
        ort = self._ort()
        opts = ort.SessionOptions()
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        opts.graph_optimization_level = levels[self.graph_optimization]
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        opts.log_severity_level = 3  # errors only (constant-folding notices are not actionable)
        return opts

    def export(self, module, inputs, key: str | None) -> Path:
        from vidnas.search_space import export_onnx

        directory = self.cache_dir or Path(tempfile.mkdtemp(prefix="vidnas-onnx-"))
        path = Path(directory) / f"{key or 'model'}.onnx"
        if key is None or not path.exists():
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            export_onnx(module, inputs, tmp, optimize=self.optimize_export)
            os.replace(tmp, path)
        return path

    def prepare(self, module, inputs, *, key=None):
        ort = self._ort()
        path = self.export(module, inputs, key)
        cuda = self.device.startswith("cuda")
        providers = [(self.provider, {"device_id": self.device_id})] if cuda else [self.provider]
        session = ort.InferenceSession(str(path), self.session_options(), providers=providers)
        arrays = [t.detach().cpu().numpy() for t in inputs]
        names = [i.name for i in session.get_inputs()]
        feeds = _match_feeds(names, module, arrays)
        if cuda:
            # Inputs copied to the GPU once and outputs left there: a call times the model,
            # not host-device copies. The session synchronises its stream at the end of a
            # run; synchronize_outputs makes the wait explicit before the host clock stops.
            binding = session.io_binding()
            on_device = {name: ort.OrtValue.ortvalue_from_numpy(value, "cuda", self.device_id)
                         for name, value in feeds.items()}
            for name, value in on_device.items():
                binding.bind_ortvalue_input(name, value)
            for out in session.get_outputs():
                binding.bind_output(out.name, "cuda", self.device_id)

            def run_cuda() -> None:
                session.run_with_iobinding(binding)
                binding.synchronize_outputs()

            run_cuda.inputs_on_device = on_device  # type: ignore[attr-defined]  # kept alive with the runner
            return run_cuda

        def run() -> None:
            session.run(None, feeds)

        return run


def _match_feeds(names: list[str], module, arrays: list) -> dict[str, Any]:
    """Feeds for the inputs the exported graph kept (named ``input_<index>``)."""
    feeds = {}
    for name in names:
        index = int(name.rsplit("_", 1)[1]) if name.startswith("input_") else -1
        if not 0 <= index < len(arrays):
            raise VidnasError(f"ONNX input `{name}` does not name one of the {len(arrays)} inputs")
        feeds[name] = arrays[index]
    return feeds


register_backend("onnxruntime", summary="ONNX Runtime, CPU or CUDA execution provider", devices=("cpu", "cuda"),
                 options=OPTIONS)(OnnxRuntimeBackend)

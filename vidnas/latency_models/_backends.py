"""Backends that run a module on a device, behind one small protocol.

A backend turns ``(module, example inputs)`` into a *runner*: a no-argument callable
that runs the module once on those inputs and returns when the work is done. The
harness times runners; it never sees the library underneath. Each backend imports its
library only when used and describes itself in :meth:`Backend.fingerprint`.

* ``torch``: eager PyTorch on ``cpu`` or ``cuda`` (on a GPU each call is timed with CUDA
  events, after synchronisation, not with the host clock; float16 and bfloat16 recorded);
* ``onnxruntime``: the module exported to ONNX, run by an ``InferenceSession`` with the
  CPU or CUDA execution provider at a recorded graph-optimisation level (on a GPU with
  I/O binding: inputs and outputs stay on the device);
* ``coreml``: converted with coremltools on any OS; timed only on macOS (elsewhere
  :class:`BackendUnavailableError`, and ``vidnas lut export --backend coreml`` writes a
  bundle to time on the device);
* ``debug``: no real work; a synthetic latency from the closed-form FLOPs advanced on a
  virtual clock, for tests that need deterministic timings.

Each backend is one :func:`register_backend` registration; :func:`get_backend` is the
front door. Third-party backends register through the ``vidnas.backends`` entry point
group (see :mod:`vidnas._plugins`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import platform
import random
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vidnas._env import cpu_model, package_versions
from vidnas._errors import SpecError, VidnasError
from vidnas._plugins import load_plugins, note_registration

if TYPE_CHECKING:
    import torch

BACKENDS = ("torch", "onnxruntime", "coreml", "debug")  # the built-in ones; ``list_backends()`` for all registered
ORT_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class BackendUnavailableError(VidnasError):
    """The backend cannot run here (missing library, device, or operating system)."""


@runtime_checkable
class Backend(Protocol):
    """Turns a module and example inputs into a runner that the harness can time."""

    name: str
    device: str

    def fingerprint(self) -> dict[str, Any]:
        """Device, library versions and options: stored with every figure."""
        ...

    def prepare(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], *,
                key: str | None = None) -> Callable[[], None]:
        """A runner executing ``module(*inputs)`` once per call. ``key`` names cached artefacts."""
        ...


def _check_device(device: str) -> str:
    if device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise SpecError("device", device, "is not a device", "use cpu, cuda or cuda:N")


def _check_threads(threads: int | None) -> int | None:
    if threads is not None and threads < 1:
        raise SpecError("threads", threads, "must be >= 1")
    return threads


def device_name(device: str) -> str:
    """Hardware name: the CPU model, or the GPU's name for CUDA devices."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"device `{device}` was asked for but CUDA is not available here")
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def _host() -> dict[str, Any]:
    return {"os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short stable hash of the parts of a fingerprint that decide whether figures compare."""
    keys = ("backend", "device_name", "threads", "dtype", "options")
    key = repr([(k, fingerprint.get(k)) for k in keys])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


# torch ----------------------------------------------------------------------------------


@dataclasses.dataclass
class TorchBackend:
    """Eager PyTorch. ``threads`` fixes intra-op threads (set again before each use)."""

    device: str = "cpu"
    threads: int | None = None
    dtype: str = "float32"
    name: str = "torch"

    def __post_init__(self) -> None:
        self.device = _check_device(self.device)
        self.threads = _check_threads(self.threads)
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise SpecError("dtype", self.dtype, "is not supported", "choose float32, float16 or bfloat16")

    def _set_threads(self) -> None:
        import torch

        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def fingerprint(self) -> dict[str, Any]:
        import torch

        self._set_threads()
        return {"backend": self.name, "device": self.device, "device_name": device_name(self.device),
                "threads": torch.get_num_threads(), "dtype": self.dtype,
                "options": self._options(), "versions": package_versions(("torch",)), **_host()}

    def _options(self) -> dict[str, Any]:
        import torch

        options: dict[str, Any] = {"mode": "eager", "cuda": None}
        if self.device.startswith("cuda"):
            # What changes a GPU's figures besides the dtype: library versions, TF32 for float32
            # matmuls and convolutions, cuDNN's autotuner, the compute capability; timed with CUDA events.
            options.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                           tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                           tf32_cudnn=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark,
                           capability=list(torch.cuda.get_device_capability(torch.device(self.device))),
                           timer="cuda_events")
        return options

    def prepare(self, module, inputs, *, key=None):
        import torch

        self._set_threads()
        device_name(self.device)  # fail early on a missing GPU
        dtype = getattr(torch, self.dtype)
        module = module.to(self.device).eval()
        if self.dtype != "float32":
            module = module.to(dtype)
        inputs = tuple(t.to(self.device, dtype) if t.is_floating_point() else t.to(self.device) for t in inputs)
        if not self.device.startswith("cuda"):

            def run() -> None:
                with torch.inference_mode():
                    module(*inputs)

            return run
        return _cuda_runner(module, inputs, torch.device(self.device))


def _cuda_runner(module, inputs, device) -> Callable[[], None]:
    """A runner on a GPU: each call returns after the device has finished; ``run.time_calls(n)``
    times ``n`` calls with CUDA events, each call bracketed by its own pair of events and
    waited for, so that no call overlaps the next and the host clock is not involved."""
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def run() -> None:
        with torch.inference_mode(), torch.cuda.device(device):
            module(*inputs)
        torch.cuda.synchronize(device)

    def time_calls(n: int) -> float:
        """Milliseconds per call over ``n`` calls, by CUDA events."""
        torch.cuda.synchronize(device)  # nothing earlier still in flight
        total = 0.0
        with torch.inference_mode(), torch.cuda.device(device):
            for _ in range(n):
                start.record()
                module(*inputs)
                end.record()
                end.synchronize()
                total += start.elapsed_time(end)
        return total / n

    run.time_calls = time_calls  # type: ignore[attr-defined]
    return run


# ONNX Runtime ------------------------------------------------------------------------------


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
                "versions": {"onnxruntime": ort.__version__, **package_versions(("onnx", "torch"))}, **_host()}

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


# Core ML ------------------------------------------------------------------------------------


@dataclasses.dataclass
class CoreMLBackend:
    """Core ML: converted anywhere, timed only where Core ML runs (macOS)."""

    device: str = "ane"  # the compute-unit family timed: recorded, chosen by ``compute_units``
    compute_units: str = "ALL"
    precision: str = "float16"
    threads: int | None = None
    name: str = "coreml"

    def __post_init__(self) -> None:
        from vidnas.search_space import COREML_COMPUTE_UNITS, COREML_PRECISIONS

        if self.compute_units not in COREML_COMPUTE_UNITS:
            raise SpecError("compute_units", self.compute_units, "is not a Core ML compute unit",
                            f"choose one of {list(COREML_COMPUTE_UNITS)}")
        if self.precision not in COREML_PRECISIONS:
            raise SpecError("precision", self.precision, "is not supported", f"choose one of {list(COREML_PRECISIONS)}")

    @property
    def dtype(self) -> str:
        return self.precision

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "device_name": platform.machine() + " " + cpu_model(),
                "threads": None, "dtype": self.precision,
                "options": {"compute_units": self.compute_units, "precision": self.precision},
                "versions": package_versions(("coremltools", "torch")), **_host()}

    def convert(self, module, inputs, path: Path | None = None):
        from vidnas.search_space import convert_coreml

        return convert_coreml(module, inputs, path, compute_units=self.compute_units, precision=self.precision)

    def prepare(self, module, inputs, *, key=None):
        from vidnas.search_space import coreml_can_run

        if not coreml_can_run():
            raise BackendUnavailableError(
                "Core ML models can be converted here but timed only on macOS; run `vidnas lut export --backend "
                "coreml --space SPACE --out DIR` to write the models with a timing script, time them on the Mac or "
                "device, then `vidnas lut import RESULTS.csv` to bring the table back"
            )
        model = self.convert(module, inputs)
        names = [i.name for i in model.get_spec().description.input]
        feeds = dict(zip(names, (t.detach().cpu().numpy() for t in inputs)))

        def run() -> None:
            model.predict(feeds)

        return run


# Debug --------------------------------------------------------------------------------------


class VirtualClock:
    """A clock that only moves when the debug backend says work was done."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class DebugBackend:
    """Synthetic timings without running anything: for tests of tables, predictors and resumption.

    A unit's latency is ``overhead_ms + flops / (gflops * 1e6)``; a whole network's is
    ``network_overhead_ms + fusion * sum(units)``, so a correction has something real to
    learn. ``noise`` is the relative standard deviation of each sample; ``sleep_ms``
    really sleeps in :meth:`prepare` (to test interrupted builds).
    """

    device: str = "cpu"
    gflops: float = 50.0
    overhead_ms: float = 0.05
    network_overhead_ms: float = 0.4
    fusion: float = 0.9
    noise: float = 0.0
    seed: int = 0
    sleep_ms: float = 0.0
    threads: int | None = 1
    dtype: str = "float32"
    name: str = "debug"

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "device_name": "debug", "threads": self.threads,
                "dtype": self.dtype,
                "options": {"gflops": self.gflops, "overhead_ms": self.overhead_ms,
                            "network_overhead_ms": self.network_overhead_ms, "fusion": self.fusion},
                "versions": package_versions(("vidnas",)), **_host()}

    def latency_ms(self, module, inputs) -> float:
        """The synthetic latency of a unit harness or a network harness on ``inputs``."""
        from vidnas.search_space import get_family, unit_cost

        plan = getattr(module, "plan", None)
        rows = inputs[0].shape[0] if inputs else 1
        if plan is not None:  # a UnitHarness
            batch = get_family(plan.family).batch_of(plan, inputs)
            return self.overhead_ms + unit_cost(plan, batch).flops / (self.gflops * 1e6)
        plans = getattr(module, "network_plan", None)
        if plans is None:
            raise VidnasError("the debug backend times only units and networks built by vidnas")
        total = sum(self.overhead_ms + unit_cost(p, rows).flops / (self.gflops * 1e6)
                    for p in plans if not p.is_identity)
        return self.network_overhead_ms + self.fusion * total

    def prepare(self, module, inputs, *, key=None):
        import time

        if self.sleep_ms:
            time.sleep(self.sleep_ms / 1000)
        base = self.latency_ms(module, inputs)
        rng = random.Random(f"{self.seed}-{key}")
        clock = VirtualClock()

        def run() -> None:
            clock.now += max(0.0, base * (1 + self.noise * rng.gauss(0, 1))) / 1000

        run.clock = clock  # type: ignore[attr-defined]
        return run


# The registry ----------------------------------------------------------------------------------

BackendFactory = Callable[..., Backend]


@dataclasses.dataclass(frozen=True)
class BackendDef:
    """A registered backend: ``factory(device=..., threads=..., **options) -> Backend``."""

    name: str
    factory: BackendFactory
    summary: str
    devices: tuple[str, ...]  # the devices it can time (informational; the factory checks)
    options: tuple[str, ...] | None  # constructor options beyond device and threads (None: not checked)
    measures_here: bool = True  # False: converts here, times elsewhere (e.g. Core ML off macOS)


_BACKENDS: dict[str, BackendDef] = {}


def register_backend(name: str, *, summary: str, devices: tuple[str, ...] = ("cpu",),
                     options: tuple[str, ...] | None = None,
                     measures_here: bool = True) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator registering ``factory(device=..., threads=..., **options) -> Backend`` as backend ``name``.

    A dataclass works as its own factory; its fields other than ``name``, ``device`` and
    ``threads`` are then the accepted options unless ``options`` says otherwise.
    Registering a name twice replaces the backend and warns.
    """

    def decorate(factory: BackendFactory) -> BackendFactory:
        accepted = options
        if accepted is None and dataclasses.is_dataclass(factory):
            accepted = tuple(f.name for f in dataclasses.fields(factory) if f.name not in ("name", "device", "threads"))
        if name in _BACKENDS:
            warnings.warn(f"backend `{name}` is registered again; the new definition replaces it", stacklevel=2)
        _BACKENDS[name] = BackendDef(name, factory, summary, tuple(devices), accepted, measures_here)
        note_registration("vidnas.backends", name, getattr(factory, "__module__", None))
        return factory

    return decorate


def _ensure_plugins() -> None:
    load_plugins("vidnas.backends")


def list_backends(pattern: str = "*") -> list[str]:
    """Names of registered backends matching a shell-style ``pattern``, in registration order."""
    _ensure_plugins()
    return [n for n in _BACKENDS if fnmatch.fnmatch(n, pattern)]


def get_backend_def(name: str, field: str = "backend") -> BackendDef:
    """The registration of backend ``name``, or a :class:`SpecError` listing the known ones."""
    _ensure_plugins()
    if name not in _BACKENDS:
        raise SpecError(field, name, "is not a backend", f"choose one of {list(_BACKENDS)}")
    return _BACKENDS[name]


def get_backend(name: str, *, device: str = "cpu", threads: int | None = None, field: str = "backend",
                **options: Any) -> Backend:
    """A backend by name; ``options`` go to its constructor (e.g. ``graph_optimization``)."""
    definition = get_backend_def(name, field)
    if definition.options is not None:
        for key, value in options.items():
            if key not in definition.options:
                raise SpecError(f"{field} option {key}", value, f"is not an option of backend `{name}`",
                                f"its options are {list(definition.options)}")
    backend = definition.factory(device=device, threads=threads, **options)
    if not isinstance(backend, Backend):
        raise VidnasError(f"backend `{name}`'s factory returned a {type(backend).__name__}, which lacks the "
                          "Backend protocol (name, device, fingerprint(), prepare())")
    return backend


register_backend("torch", summary="eager PyTorch (CPU, CUDA)", devices=("cpu", "cuda"))(TorchBackend)
register_backend("onnxruntime", summary="ONNX Runtime, CPU or CUDA execution provider",
                 devices=("cpu", "cuda"))(OnnxRuntimeBackend)


@register_backend("coreml", summary="Core ML: converted anywhere, timed on macOS (elsewhere: lut export bundle)",
                  devices=("ane", "gpu", "cpu"), options=("compute_units", "precision"),
                  measures_here=platform.system() == "Darwin")
def _coreml(*, device: str = "ane", threads: int | None = None, **options: Any) -> CoreMLBackend:
    # The compute units choose where Core ML runs; the device argument of other backends has no meaning here.
    return CoreMLBackend(threads=threads, **options)


register_backend("debug", summary="synthetic latency from FLOPs on a virtual clock (tests)",
                 devices=("cpu",))(DebugBackend)

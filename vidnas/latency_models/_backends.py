"""Backends that run a module on a device, behind one small protocol, and their registry.

A backend turns ``(module, example inputs)`` into a *runner*: a no-argument callable
that runs the module once on those inputs and returns when the work is done. The
harness times runners; it never sees the library underneath. Each backend imports its
library only when used and describes itself in :meth:`Backend.fingerprint`.

The built-in backends live in :mod:`vidnas.latency_models.backends`, one module each
(``torch``, ``onnxruntime``, ``coreml``, ``debug``); each registers itself with
:func:`register_backend` when imported, and vidnas declares them as entry points of the
``vidnas.backends`` group exactly as a third-party package declares its plugins (see
:mod:`vidnas._registry`). This module is the registry and what backends share; it never
imports an implementation. :func:`get_backend` is the front door.

A registration (:class:`BackendDef`) says what the rest of vidnas may ask of a backend
without naming it: its options (a typed :class:`~vidnas._registry.Option` schema, checked
with errors naming ``FIELD.KEY`` and the value), whether it can time here
(``measures_here``), the datasheet device that stands for its hardware in roofline
baselines (``datasheet``), and, for a backend that times elsewhere, how to write a bundle
of models to time there (``bundle``: ``vidnas lut export --backend NAME``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vidnas._env import cpu_model
from vidnas._errors import SpecError, VidnasError
from vidnas._registry import Option, Registry, check_options

if TYPE_CHECKING:
    import torch

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendDef",
    "BackendOption",
    "BackendUnavailableError",
    "BundleExporter",
    "VirtualClock",
    "device_name",
    "fingerprint_id",
    "get_backend",
    "get_backend_def",
    "host_fingerprint",
    "list_backends",
    "register_backend",
]


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


# Shared helpers --------------------------------------------------------------------------------


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


def host_fingerprint() -> dict[str, Any]:
    """The host's part of a fingerprint: operating system, machine, CPU, core count, Python."""
    return {"os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short stable hash of the parts of a fingerprint that decide whether figures compare."""
    keys = ("backend", "device_name", "threads", "dtype", "options")
    key = repr([(k, fingerprint.get(k)) for k in keys])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class VirtualClock:
    """A clock that only moves when a synthetic backend says work was done."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# The registry ----------------------------------------------------------------------------------

BackendFactory = Callable[..., Backend]
BackendOption = Option  # a backend's option: the common typed schema (vidnas._registry.Option)
RESERVED = ("name", "device", "threads")  # every factory's own arguments (and a backend's name), never options
_NOT_OPTIONS = (*RESERVED, "field", "options_field")  # also get_backend's own arguments


@dataclasses.dataclass(frozen=True)
class BundleExporter:
    """How a backend that times elsewhere writes a bundle of models to time there.

    ``write(space, out_dir, *, batch, progress, **options)`` writes the bundle and returns
    its manifest: a mapping with ``units``, one entry per unit (``signature_id``, ``op``,
    and ``error`` for a unit that could not be written). ``next_steps`` says what to do
    with the bundle (``{out}`` is its directory).
    """

    write: Callable[..., Mapping[str, Any]]
    next_steps: str


@dataclasses.dataclass(frozen=True)
class BackendDef:
    """A registered backend: ``factory(device=..., threads=..., **options) -> Backend``."""

    name: str
    factory: BackendFactory
    summary: str
    devices: tuple[str, ...]  # the devices it can time (informational; the factory checks)
    options: tuple[Option, ...] | None  # its options beyond device and threads (None: not declared, not checked)
    measures_here: bool = True  # False: converts here, times elsewhere (e.g. Core ML off macOS)
    datasheet: str | None = None  # the datasheet device standing for its hardware in roofline baselines
    #                               (None: chosen from the table's device: laptop-cpu, or the GPU's)
    bundle: BundleExporter | None = None  # writes models to time elsewhere (`vidnas lut export --backend NAME`)

    @property
    def owner(self) -> str:
        return f"backend `{self.name}`"

    def check_options(self, given: Mapping[str, Any], field: str = "options") -> dict[str, Any]:
        """``given`` checked against the declared options, with the defaults filled in (declaration order).

        An unknown key or a bad value is a :class:`SpecError` naming ``field.KEY`` and the value.
        Options whose default is ``None`` (the library's own) are left out unless given.
        Undeclared options (``options is None``) are passed through unchecked.
        """
        if not isinstance(given, Mapping):
            raise SpecError(field, given, "must be a mapping of option -> value",
                            f"options of {self.owner}: {self.option_names()}")
        if self.options is None:
            return dict(given)
        checked = check_options(given, self.options, field, self.owner)
        return {k: v for k, v in checked.items() if v is not None or k in given}

    def option_names(self) -> list[str] | None:
        return None if self.options is None else [o.name for o in self.options]

    def create(self, *, device: str = "cpu", threads: int | None = None, options: Mapping[str, Any] | None = None,
               options_field: str = "options") -> Backend:
        """A backend with ``options`` checked (only the given ones reach the factory, coerced)."""
        given = dict(options or {})
        checked = self.check_options(given, options_field)
        backend = self.factory(device=device, threads=threads, **{k: checked[k] for k in given})
        if not isinstance(backend, Backend):
            raise VidnasError(f"{self.owner}'s factory returned a {type(backend).__name__}, which lacks the "
                              "Backend protocol (name, device, fingerprint(), prepare())")
        return backend

    def describe(self, origin: str | None = None) -> dict[str, Any]:
        """A JSON-able description (``vidnas lut backends``)."""
        out = {"name": self.name, "summary": self.summary, "devices": list(self.devices),
               "options": None if self.options is None else [o.describe() for o in self.options],
               "measures_here": self.measures_here, "datasheet": self.datasheet,
               "exports_bundle": self.bundle is not None}
        if origin is not None:
            out["source"] = origin
        return out


BACKENDS: Registry[BackendDef] = Registry("vidnas.backends", "latency backend", unknown="is not a backend",
                                          field="backend")


def register_backend(name: str, *, summary: str, devices: tuple[str, ...] = ("cpu",),
                     options: tuple[Option | str, ...] | None = None, measures_here: bool = True,
                     datasheet: str | None = None,
                     bundle: BundleExporter | None = None) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator registering ``factory(device=..., threads=..., **options) -> Backend`` as backend ``name``.

    ``options`` is the typed schema of the options beyond device and threads. A dataclass
    works as its own factory: without ``options``, its fields other than ``name``, ``device``
    and ``threads`` are the options (typed by their annotations). A bare name in ``options``
    declares an untyped option (the older form). A plain function without ``options`` takes
    any options, unchecked. Registering a name twice replaces the backend and warns.
    """

    def decorate(factory: BackendFactory) -> BackendFactory:
        declared = options
        if declared is None and dataclasses.is_dataclass(factory):
            declared = _dataclass_options(factory)
        schema = None if declared is None else tuple(_as_option(o) for o in declared)
        reserved = [o.name for o in schema or () if o.name in _NOT_OPTIONS]
        if reserved:
            raise SpecError(f"backend {name} option", reserved[0], "is reserved",
                            f"{list(_NOT_OPTIONS)} are not options (device and threads are every backend's own)")
        definition = BackendDef(name, factory, summary, tuple(devices), schema, measures_here, datasheet, bundle)
        BACKENDS.register(name, definition, module=getattr(factory, "__module__", None))
        return factory

    return decorate


def _as_option(option: Option | str) -> Option:
    if isinstance(option, Option):
        return option
    if isinstance(option, str):
        return Option(option, object, None, "(undocumented)")
    raise SpecError("backend option", option, "must be a vidnas._registry.Option or an option name")


_KINDS = {"bool": bool, "int": int, "float": float, "str": str}


def _dataclass_options(cls: type) -> tuple[Option, ...]:
    """A dataclass's fields (but ``name``, ``device``, ``threads``) as options, typed by their annotations."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name in RESERVED or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is None and f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kinds = [_KINDS[p.strip()] for p in annotation.split("|") if p.strip() in _KINDS]
        kind = kinds[0] if kinds else type(default) if isinstance(default, (bool, int, float, str)) else object
        out.append(Option(f.name, kind, default, ""))
    return tuple(out)


def list_backends(pattern: str = "*") -> list[str]:
    """Names of registered backends matching a shell-style ``pattern``, in registration order."""
    return BACKENDS.names(pattern)


def get_backend_def(name: str, field: str = "backend") -> BackendDef:
    """The registration of backend ``name``, or a :class:`SpecError` listing the known ones."""
    return BACKENDS.get(name, field)


def find_backend_def(name: str) -> BackendDef | None:
    """The registration of backend ``name``, or None (e.g. a table imported from a backend not installed here)."""
    return BACKENDS.get(name) if name in BACKENDS else None


def get_backend(name: str, *, device: str = "cpu", threads: int | None = None, field: str = "backend",
                options_field: str = "options", **options: Any) -> Backend:
    """A backend by name; ``options`` are checked against its schema (errors name ``options_field.KEY``)."""
    return get_backend_def(name, field).create(device=device, threads=threads, options=options,
                                               options_field=options_field)

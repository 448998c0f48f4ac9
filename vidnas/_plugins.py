"""Third-party plugins: Python entry points that register temporal ops, proxies, backends, samplers, families.

A plugin package declares entry points in one of the groups of :data:`GROUPS`, e.g. in
its ``pyproject.toml``::

    [project.entry-points."vidnas.temporal_ops"]
    my_ops = "my_package.ops"              # a module: importing it registers (decorators)

    [project.entry-points."vidnas.samplers"]
    my_sampler = "my_package:register"      # a callable: called once with no arguments

Each group is loaded once per process, the first time its registry is used (listing or
looking up a name), so that library users, the command line and Ray worker processes
all see the same registrations. Loading is idempotent and re-entrant (a plugin may use
the registries while it loads). A plugin that fails to load, or whose entry point is
neither a module nor a callable, gives a :class:`PluginWarning` naming it, never a crash;
the rest of vidnas keeps working.

Registries call :func:`note_registration` so that listings can say which plugin a
registration came from (``vidnas`` for the built-in ones).
"""

from __future__ import annotations

import dataclasses
import types
import warnings
from typing import Any

__all__ = [
    "GROUPS",
    "PluginFailure",
    "PluginWarning",
    "load_plugins",
    "note_registration",
    "origin",
    "plugin_failures",
]

# group -> what its registrations are
GROUPS: dict[str, str] = {
    "vidnas.temporal_ops": "temporal op",
    "vidnas.proxies": "proxy",
    "vidnas.backends": "latency backend",
    "vidnas.samplers": "sampler",
    "vidnas.families": "backbone family",
    "vidnas.presets": "preset",
    "vidnas.spaces": "search space",
}
BUILTIN = "vidnas"


class PluginWarning(UserWarning):
    """A plugin could not be loaded; vidnas goes on without it."""


@dataclasses.dataclass(frozen=True)
class PluginFailure:
    group: str
    name: str  # the entry point's name
    value: str  # module[:attribute]
    distribution: str | None
    error: str


_loaded: set[str] = set()
_failures: list[PluginFailure] = []
_origins: dict[tuple[str, str], str] = {}  # (group, registered name) -> plugin label
_current: list[str] = []  # the plugin being loaded (a stack: a plugin may trigger another group's loading)


def _label(ep: Any) -> str:
    dist = _dist(ep)
    if dist == BUILTIN:
        return BUILTIN
    return f"{dist}:{ep.name}" if dist else ep.name


def load_plugins(group: str | None = None) -> None:
    """Load the entry points of ``group`` (every group when ``None``), each group once per process.

    vidnas's own entry points (its built-in ops, families, spaces ...) load first, so that a
    third-party plugin may replace a built-in."""
    from importlib.metadata import entry_points

    groups = list(GROUPS) if group is None else [group]
    todo = [g for g in groups if g not in _loaded]
    if not todo:
        return
    _loaded.update(todo)  # before loading: a plugin that lists a registry must not load itself again
    for g in todo:
        others = [ep for ep in entry_points(group=g) if _dist(ep) != BUILTIN]
        for ep in [*builtin_entry_points(g), *others]:
            _load_one(g, ep)


def _dist(ep: Any) -> str | None:
    return getattr(getattr(ep, "dist", None), "name", None)


def builtin_entry_points(group: str) -> list[Any]:
    """vidnas's own entry points of ``group``.

    Read from the ``pyproject.toml`` beside the package when vidnas runs from a source checkout
    (an editable install whose metadata predates the checkout, or the checkout on ``PYTHONPATH``),
    else from the installed distribution's metadata: the same declarations either way.
    """
    declared = _source_declarations()
    if declared is not None:
        from importlib.metadata import EntryPoint

        return [_Builtin(EntryPoint(name, value, group)) for name, value in declared.get(group, {}).items()]
    from importlib.metadata import entry_points

    return [ep for ep in entry_points(group=group) if _dist(ep) == BUILTIN]


class _Builtin:
    """An entry point read from vidnas's own ``pyproject.toml`` (no distribution object)."""

    class _Dist:
        name = BUILTIN

    def __init__(self, ep: Any) -> None:
        self._ep = ep
        self.name, self.value, self.group = ep.name, ep.value, ep.group
        self.dist = self._Dist()

    def load(self) -> Any:
        return self._ep.load()


_SOURCE: list[dict[str, dict[str, str]] | None] = []


def _source_declarations() -> dict[str, dict[str, str]] | None:
    """``project.entry-points`` of the source checkout's ``pyproject.toml``, or None without one."""
    if not _SOURCE:
        from pathlib import Path

        import vidnas

        path = Path(vidnas.__file__).resolve().parent.parent / "pyproject.toml"
        found = None
        if path.is_file():
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                tomllib = None
            if tomllib is not None:
                project = tomllib.loads(path.read_text()).get("project", {})
                if project.get("name") == BUILTIN:
                    found = {g: dict(eps) for g, eps in project.get("entry-points", {}).items()}
        _SOURCE.append(found)
    return _SOURCE[0]


def _load_one(group: str, ep: Any) -> None:
    label = _label(ep)
    _current.append(label)
    try:
        target = ep.load()
        if not isinstance(target, types.ModuleType):
            if not callable(target):
                raise TypeError(f"the entry point is a {type(target).__name__}, not a module or a callable")
            target()
    except Exception as exc:  # any error inside third-party code: warn and go on
        dist = getattr(getattr(ep, "dist", None), "name", None)
        failure = PluginFailure(group, ep.name, ep.value, dist, f"{type(exc).__name__}: {exc}")
        _failures.append(failure)
        warnings.warn(f"vidnas plugin `{label}` ({ep.value}, group {group}) was not loaded: {failure.error}",
                      PluginWarning, stacklevel=2)
    finally:
        _current.pop()


def note_registration(group: str, name: str, module: str | None = None) -> None:
    """Record where the registration of ``name`` in ``group`` came from.

    ``module`` is the module that defined the registered object: one inside vidnas is built-in
    (vidnas's own modules may be imported while a plugin loads). Otherwise the entry point
    being loaded names it (``vidnas`` when it is one of vidnas's own), else the module itself
    (a registration made by user code), else ``user``.
    """
    if module is not None and (module == BUILTIN or module.startswith(BUILTIN + ".")):
        _origins[(group, name)] = BUILTIN
    elif _current:
        _origins[(group, name)] = _current[-1]
    else:
        _origins[(group, name)] = module or "user"


def origin(group: str, name: str) -> str:
    """``vidnas`` for built-in registrations, else ``distribution:entry-point`` of the plugin."""
    return _origins.get((group, name), BUILTIN)


def plugin_failures() -> list[PluginFailure]:
    """The plugins that failed to load in this process so far."""
    return list(_failures)

"""One registry for every extension point, and one typed option schema.

Every place a user or a plugin can extend vidnas (temporal ops, weight-sharing rules, backbone
families, presets, search spaces, proxies, samplers, latency backends) is a :class:`Registry`:

- ``register(name, item)`` adds ``item``; registering a name again replaces it and warns;
- ``get(name, field)`` returns it, or a :class:`~vidnas.SpecError` naming ``field``, the value
  and the known names;
- ``names(pattern)`` lists the registered names (registration order), ``origin(name)`` says
  which plugin registered one (``vidnas`` for the built-in ones).

A registry never imports its implementations: the first lookup or listing loads its entry
point group (:func:`vidnas._plugins.load_plugins`), where vidnas declares its own built-in
modules exactly as a third-party package declares its plugins (vidnas's first, so that a
plugin may replace a built-in).

:class:`Option` is the one schema for the options of anything registered (an op's
hyper-parameters, a sampler's or a backend's settings): type, default, bounds, choices, and
a check that coerces a value or names the field and the value it refuses.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from vidnas._errors import SpecError
from vidnas._plugins import load_plugins, note_registration, origin

__all__ = ["Option", "Registry", "check_options"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its type (bool, int, float, str), default, bounds, allowed values and meaning.

    ``default`` may be a value or, where the owner says so (an op's hyper-parameters), a
    function of the context it is used in. A ``None`` default makes the option optional:
    ``None`` is then accepted (the library's own default applies).
    """

    name: str
    kind: type
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def default_for(self, context: Any) -> Any:
        """The default, evaluated on ``context`` when it is a function of it."""
        return self.default(context) if callable(self.default) else self.default

    def check(self, value: Any, field: str) -> Any:
        """``value`` coerced to :attr:`kind`, or a :class:`SpecError` naming ``field`` and the value."""
        from vidnas._coerce import coerce_scalar

        value = coerce_scalar(self.kind, value, field, optional=self.default is None)
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            raise SpecError(field, value, "is not allowed", f"choose one of {list(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise SpecError(field, value, f"must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise SpecError(field, value, f"must be <= {self.maximum}")
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (for listings and ``--help``)."""
        out: dict[str, Any] = {"name": self.name, "type": self.kind.__name__, "doc": self.doc}
        if not callable(self.default):
            out["default"] = self.default
        for key in ("choices", "minimum", "maximum"):
            if getattr(self, key) is not None:
                out[key] = list(self.choices) if key == "choices" else getattr(self, key)
        return out


def check_options(given: Mapping[str, Any], options: tuple[Option, ...], field: str, owner: str) -> dict[str, Any]:
    """``given`` checked against ``options``, the defaults filled in, in declaration order.

    An unknown key is refused naming ``field.key``; ``owner`` says whose options these are
    (e.g. "sampler `tpe`"). Defaults that are functions are left for the owner to evaluate.
    """
    known = [o.name for o in options]
    for key, value in given.items():
        if key not in known:
            hint = f"its options are {known}" if known else "it takes no options"
            raise SpecError(f"{field}.{key}", value, f"is not an option of {owner}", hint)
    return {o.name: o.check(given[o.name], f"{field}.{o.name}") if o.name in given else o.default
            for o in options}


class Registry(Generic[T]):
    """Named items of one kind, filled by entry points (built-in and third-party alike)."""

    def __init__(self, group: str, what: str, *, unknown: str = "is not a registered {what}",
                 field: str = "name") -> None:
        self.group = group  # the entry point group (``vidnas.temporal_ops`` ...)
        self.what = what  # what one item is, for messages ("temporal op")
        self._unknown = unknown.format(what=what)
        self._field = field
        self._items: dict[str, T] = {}

    # Registration -----------------------------------------------------------------------------

    def register(self, name: str, item: T, *, module: str | None = None) -> T:
        """Add ``item`` under ``name`` (replacing, with a warning, another item of that name)."""
        if not isinstance(name, str) or not name:
            raise SpecError(f"{self.what} name", name, "must be a non-empty string")
        previous = self._items.get(name)
        if previous is not None and previous is not item:
            warnings.warn(f"{self.what} `{name}` is registered again; the new definition replaces it", stacklevel=3)
        self._items[name] = item
        note_registration(self.group, name, module if module is not None else _module_of(item))
        return item

    def decorator(self, name: str, make: Callable[[Any], T]) -> Callable[[Any], Any]:
        """A decorator registering ``make(fn)`` under ``name`` and returning ``fn`` unchanged."""

        def decorate(fn: Any) -> Any:
            self.register(name, make(fn), module=getattr(fn, "__module__", None))
            return fn

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests, and plugins that withdraw an item); unknown names are ignored."""
        self._items.pop(name, None)

    # Lookup -----------------------------------------------------------------------------------

    def load(self) -> None:
        """Load this registry's entry point group (once per process)."""
        load_plugins(self.group)

    def get(self, name: str, field: str | None = None) -> T:
        """The item ``name``, or a :class:`SpecError` naming ``field``, the value and the known names."""
        self.load()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise SpecError(field or self._field, name, self._unknown,
                            f"known: {list(self._items)}") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, in registration order."""
        self.load()
        return [n for n in self._items if fnmatch.fnmatch(n, pattern)]

    def items(self) -> list[tuple[str, T]]:
        self.load()
        return list(self._items.items())

    def origin(self, name: str) -> str:
        """``vidnas`` for a built-in item, else ``distribution:entry-point`` of the plugin."""
        return origin(self.group, name)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.group!r}, {len(self._items)} {self.what}s)"


def _module_of(item: Any) -> str | None:
    """The module that defined ``item``: a function's or class's own module, else its type's
    unless that type is vidnas's (a plugin's instance of a vidnas class is the plugin's; the
    plugin being loaded then names it)."""
    if isinstance(item, type) or callable(item) and hasattr(item, "__qualname__"):
        return getattr(item, "__module__", None)
    module = type(item).__module__
    return None if module == "vidnas" or module.startswith("vidnas.") else module

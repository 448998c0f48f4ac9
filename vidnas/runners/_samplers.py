"""The sampler registry: how a campaign chooses the next architecture.

A sampler is registered once with :func:`register_sampler`: a factory
``factory(options, context) -> optuna.samplers.BaseSampler``, the options it accepts
(each an :class:`~vidnas._registry.Option`: typed, with a default and bounds, so that a
campaign's ``sampler:`` section is checked field by field, e.g.
``{name: tpe, n_startup_trials: 20, multivariate: true}``) and whether it is *exhaustive*: the
driver then enqueues every architecture of the space and the budget is the size of the space.
The factory receives the options with defaults filled in, and a :class:`SamplerContext` (seed,
space, objective directions, metrics, constraints) that may grow new fields without breaking
existing factories.

:data:`SAMPLERS` is a :class:`~vidnas._registry.Registry` of the ``vidnas.samplers`` entry point
group: the built-in samplers (``nsga2``, the default, ``tpe``, ``random``, ``exhaustive`` and
``screened-ehvi``; :mod:`vidnas.runners._builtin_samplers`) are declared there exactly as a
third-party package declares its own (see :mod:`vidnas._plugins`), and load on the first lookup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from vidnas._errors import SpecError
from vidnas._registry import Option, Registry, check_options

__all__ = [
    "SAMPLERS",
    "SamplerContext",
    "SamplerDef",
    "SamplerOption",
    "get_sampler",
    "list_samplers",
    "register_sampler",
]

SamplerOption = Option  # the name sampler options had before the common option schema (kept for plugins)


@dataclasses.dataclass(frozen=True)
class SamplerContext:
    """What a sampler factory may know about the campaign besides its options."""

    seed: int
    space: Any  # the campaign's SearchSpace
    directions: tuple[str, ...]  # "minimize" / "maximize" per objective
    metrics: tuple[str, ...] = ()  # the objectives' metric names, in order
    constraints: Mapping[str, float] = dataclasses.field(default_factory=dict)  # metric -> upper bound
    cheap: Any = None  # the campaign's CheapModel (vectorised cheap metrics of the space), when it has one


SamplerFactory = Callable[[Mapping[str, Any], SamplerContext], Any]


@dataclasses.dataclass(frozen=True)
class SamplerDef:
    name: str
    factory: SamplerFactory
    options: tuple[Option, ...]
    exhaustive: bool
    summary: str

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise KeyError(name)

    def canonical_options(self, given: Mapping[str, Any], field: str) -> dict[str, Any]:
        """``given`` checked against the declared options, defaults filled in, in declaration order."""
        return check_options(given, self.options, field, f"sampler `{self.name}`")

    def create(self, options: Mapping[str, Any], context: SamplerContext, field: str = "config.sampler"):
        """The Optuna sampler for ``options`` (checked and completed here)."""
        return self.factory(self.canonical_options(options, field), context)


SAMPLERS: Registry[SamplerDef] = Registry("vidnas.samplers", "sampler", unknown="is not a sampler",
                                          field="config.sampler.name")


def register_sampler(name: str, *, options: tuple[Option, ...] = (), exhaustive: bool = False,
                     summary: str = "") -> Callable[[SamplerFactory], SamplerFactory]:
    """Decorator registering ``factory(options, context) -> optuna sampler`` as sampler ``name``.

    ``name`` and ``seed`` are reserved: every sampler gets the campaign's seed through the context.
    Registering a name twice replaces the sampler and warns.
    """
    reserved = [o.name for o in options if o.name in ("name", "seed")]
    if reserved:
        raise SpecError(f"sampler {name} option", reserved[0], "is reserved", "every sampler has `name` and `seed`")
    return SAMPLERS.decorator(name, lambda factory: SamplerDef(name, factory, tuple(options), exhaustive, summary))


def list_samplers(pattern: str = "*") -> list[str]:
    """Names of registered samplers matching a shell-style ``pattern``, in registration order."""
    return SAMPLERS.names(pattern)


def get_sampler(name: str, field: str = "config.sampler.name") -> SamplerDef:
    """The registered sampler ``name``, or a :class:`SpecError` listing the known ones."""
    return SAMPLERS.get(name, field)

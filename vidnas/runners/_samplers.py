"""The sampler registry: how a campaign chooses the next architecture.

A sampler is registered once with :func:`register_sampler`: a factory
``factory(options, context) -> optuna.samplers.BaseSampler``, the options it accepts
(each typed, with a default and bounds, so that a campaign's ``sampler:`` section is
checked field by field, e.g. ``{name: tpe, n_startup_trials: 20, multivariate: true}``)
and whether it is *exhaustive*: the driver then enqueues every architecture of the space
and the budget is the size of the space. The factory receives the options with defaults
filled in, and a :class:`SamplerContext` (seed, space, objective directions, metrics,
constraints) that may grow new fields without breaking existing factories.

Built-in: ``nsga2`` (the default), ``tpe``, ``random``, ``exhaustive`` and ``screened-ehvi``
(:mod:`vidnas.runners._screened_ehvi`). Third-party
packages register theirs through the ``vidnas.samplers`` entry point group (see
:mod:`vidnas._plugins`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from vidnas._coerce import coerce_scalar
from vidnas._errors import SpecError
from vidnas._plugins import load_plugins, note_registration

__all__ = [
    "SamplerContext",
    "SamplerDef",
    "SamplerOption",
    "get_sampler",
    "list_samplers",
    "register_sampler",
]


@dataclasses.dataclass(frozen=True)
class SamplerOption:
    """One option of a sampler: its type (bool, int, float, str), default, bounds and meaning.

    A ``None`` default makes the option optional (``None`` is then accepted: the
    library's own default applies).
    """

    name: str
    kind: type
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any, field: str) -> Any:
        """``value`` coerced to :attr:`kind`, or a :class:`SpecError` naming ``field`` and the value."""
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
    options: tuple[SamplerOption, ...]
    exhaustive: bool
    summary: str

    def option(self, name: str) -> SamplerOption:
        for o in self.options:
            if o.name == name:
                return o
        raise KeyError(name)

    def canonical_options(self, given: Mapping[str, Any], field: str) -> dict[str, Any]:
        """``given`` checked against the declared options, defaults filled in, in declaration order."""
        known = [o.name for o in self.options]
        for key, value in given.items():
            if key not in known:
                hint = f"its options are {known}" if known else "it takes no options"
                raise SpecError(f"{field}.{key}", value, f"is not an option of sampler `{self.name}`", hint)
        return {o.name: o.check(given[o.name], f"{field}.{o.name}") if o.name in given else o.default
                for o in self.options}

    def create(self, options: Mapping[str, Any], context: SamplerContext, field: str = "config.sampler"):
        """The Optuna sampler for ``options`` (checked and completed here)."""
        return self.factory(self.canonical_options(options, field), context)


_SAMPLERS: dict[str, SamplerDef] = {}


def register_sampler(name: str, *, options: tuple[SamplerOption, ...] = (), exhaustive: bool = False,
                     summary: str = "") -> Callable[[SamplerFactory], SamplerFactory]:
    """Decorator registering ``factory(options, context) -> optuna sampler`` as sampler ``name``.

    ``name`` and ``seed`` are reserved: every sampler gets the campaign's seed through the context.
    Registering a name twice replaces the sampler and warns.
    """
    reserved = [o.name for o in options if o.name in ("name", "seed")]
    if reserved:
        raise SpecError(f"sampler {name} option", reserved[0], "is reserved", "every sampler has `name` and `seed`")

    def decorate(factory: SamplerFactory) -> SamplerFactory:
        if name in _SAMPLERS:
            warnings.warn(f"sampler `{name}` is registered again; the new definition replaces it", stacklevel=2)
        _SAMPLERS[name] = SamplerDef(name, factory, tuple(options), exhaustive, summary)
        note_registration("vidnas.samplers", name, getattr(factory, "__module__", None))
        return factory

    return decorate


def list_samplers(pattern: str = "*") -> list[str]:
    """Names of registered samplers matching a shell-style ``pattern``, in registration order."""
    load_plugins("vidnas.samplers")
    return [n for n in _SAMPLERS if fnmatch.fnmatch(n, pattern)]


def get_sampler(name: str, field: str = "config.sampler.name") -> SamplerDef:
    """The registered sampler ``name``, or a :class:`SpecError` listing the known ones."""
    load_plugins("vidnas.samplers")
    if name not in _SAMPLERS:
        raise SpecError(field, name, "is not a sampler", f"choose one of {list(_SAMPLERS)}")
    return _SAMPLERS[name]


# Built-in samplers -------------------------------------------------------------------------------

_UNIT = {"minimum": 0.0, "maximum": 1.0}


@register_sampler("nsga2", summary="NSGA-II: a genetic algorithm over populations (Optuna's NSGAIISampler)",
                  options=(
                      SamplerOption("population_size", int, 16, "trials per generation", minimum=2),
                      SamplerOption("mutation_prob", float, None, "probability of mutating each parameter "
                                                                  "(default: 1 / number of parameters)", **_UNIT),
                      SamplerOption("crossover_prob", float, 0.9, "probability of a crossover", **_UNIT),
                      SamplerOption("swapping_prob", float, 0.5, "probability of swapping each parameter in a "
                                                                 "uniform crossover", **_UNIT),
                  ))
def _nsga2(options: Mapping[str, Any], context: SamplerContext):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=context.seed, **options)


@register_sampler("tpe", summary="multi-objective TPE (Optuna's TPESampler)", options=(
    SamplerOption("n_startup_trials", int, 10, "random trials before the model is used", minimum=0),
    SamplerOption("multivariate", bool, True, "model the parameters jointly"),
    SamplerOption("constant_liar", bool, True, "count running trials as bad (keeps parallel workers apart)"),
    SamplerOption("group", bool, False, "decompose the space by which parameters appear together"),
    SamplerOption("n_ei_candidates", int, 24, "candidates scored per suggestion", minimum=1),
))
def _tpe(options: Mapping[str, Any], context: SamplerContext):
    import warnings as _warnings

    import optuna

    with _warnings.catch_warnings():  # multivariate/group/constant_liar are marked experimental in Optuna
        _warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=context.seed, **options)


@register_sampler("random", summary="uniformly random architectures")
def _random(options: Mapping[str, Any], context: SamplerContext):
    import optuna

    return optuna.samplers.RandomSampler(seed=context.seed)


@register_sampler("exhaustive", exhaustive=True,
                  summary="every architecture of the space once (enqueued; the budget is the space's size)")
def _exhaustive(options: Mapping[str, Any], context: SamplerContext):
    import optuna

    # Every trial is enqueued with its parameters; the sampler only fills a trial no queue entry covers.
    return optuna.samplers.RandomSampler(seed=context.seed)


@register_sampler("screened-ehvi", summary="screens a pool of candidates by the cheap objectives and constraints, "
                                          "then picks each expensive evaluation by expected hypervolume "
                                          "improvement under a Bayesian linear surrogate", options=(
    SamplerOption("pool_size", int, 100_000, "candidates screened (the whole space when it has fewer)", minimum=1),
    SamplerOption("n_startup_trials", int, None, "space-filling trials before the surrogate is used (default: "
                                                 "enough to try every option once, at least 5)", minimum=1),
    SamplerOption("surrogate", str, "ard", "Bayesian linear regression on one-hot choices with one prior precision "
                                           "per slot group (ard) or one for all (ridge)", choices=("ard", "ridge")),
    SamplerOption("warp", str, "log", "the expensive objective as modelled: log-warped towards its best values "
                                      "(log) or as measured (none)", choices=("log", "none")),
    SamplerOption("exploration", float, 0.5, "multiplier of the surrogate's predictive standard deviation "
                                             "(1: plain expected improvement; larger explores more)", minimum=0.0),
    SamplerOption("neighbours", bool, True, "add every one-choice change of the current front to the candidates "
                                            "(spaces larger than the pool)"),
))
def _screened_ehvi(options: Mapping[str, Any], context: SamplerContext):
    from vidnas.runners._screened_ehvi import ScreenedEHVISampler

    return ScreenedEHVISampler(space=context.space, cheap=context.cheap, metrics=context.metrics,
                               directions=context.directions, constraints=context.constraints, seed=context.seed,
                               **options)

"""vidnas's own samplers, registered when the ``vidnas.samplers`` entry point group loads.

``nsga2`` (the default), ``tpe``, ``random``, ``exhaustive`` and ``screened-ehvi``
(:mod:`vidnas.runners._screened_ehvi`). vidnas declares this module in its ``pyproject.toml``
exactly as a plugin declares its own, so the registry never imports it by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vidnas._registry import Option
from vidnas.runners._samplers import SamplerContext, register_sampler

_UNIT = {"minimum": 0.0, "maximum": 1.0}


@register_sampler("nsga2", summary="NSGA-II: a genetic algorithm over populations (Optuna's NSGAIISampler)",
                  options=(
                      Option("population_size", int, 16, "trials per generation", minimum=2),
                      Option("mutation_prob", float, None, "probability of mutating each parameter "
                                                           "(default: 1 / number of parameters)", **_UNIT),
                      Option("crossover_prob", float, 0.9, "probability of a crossover", **_UNIT),
                      Option("swapping_prob", float, 0.5, "probability of swapping each parameter in a "
                                                          "uniform crossover", **_UNIT),
                  ))
def _nsga2(options: Mapping[str, Any], context: SamplerContext):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=context.seed, **options)


@register_sampler("tpe", summary="multi-objective TPE (Optuna's TPESampler)", options=(
    Option("n_startup_trials", int, 10, "random trials before the model is used", minimum=0),
    Option("multivariate", bool, True, "model the parameters jointly"),
    Option("constant_liar", bool, True, "count running trials as bad (keeps parallel workers apart)"),
    Option("group", bool, False, "decompose the space by which parameters appear together"),
    Option("n_ei_candidates", int, 24, "candidates scored per suggestion", minimum=1),
))
def _tpe(options: Mapping[str, Any], context: SamplerContext):
    import warnings

    import optuna

    with warnings.catch_warnings():  # multivariate/group/constant_liar are marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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
    Option("pool_size", int, 100_000, "candidates screened (the whole space when it has fewer)", minimum=1),
    Option("n_startup_trials", int, None, "space-filling trials before the surrogate is used (default: "
                                          "enough to try every option once, at least 5)", minimum=1),
    Option("surrogate", str, "ard", "Bayesian linear regression on one-hot choices with one prior precision "
                                    "per slot group (ard) or one for all (ridge)", choices=("ard", "ridge")),
    Option("warp", str, "log", "the expensive objective as modelled: log-warped towards its best values "
                               "(log) or as measured (none)", choices=("log", "none")),
    Option("exploration", float, 0.5, "multiplier of the surrogate's predictive standard deviation "
                                      "(1: plain expected improvement; larger explores more)", minimum=0.0),
    Option("neighbours", bool, True, "add every one-choice change of the current front to the candidates "
                                     "(spaces larger than the pool)"),
))
def _screened_ehvi(options: Mapping[str, Any], context: SamplerContext):
    from vidnas.runners._screened_ehvi import EHVIOptions, ScreenedEHVISampler

    return ScreenedEHVISampler(context, EHVIOptions(**options))

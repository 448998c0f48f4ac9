"""``demo_random``: uniformly random trials with a seed offset option."""

from __future__ import annotations

from vidnas.runners import SamplerOption, register_sampler


@register_sampler("demo_random", summary="random with a seed offset (demo plugin)",
                  options=(SamplerOption("seed_offset", int, 0, "added to the campaign's seed", minimum=0),))
def demo_random(options, context):
    import optuna

    return optuna.samplers.RandomSampler(seed=context.seed + options["seed_offset"])

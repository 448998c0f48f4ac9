"""Search spaces: define-by-run sampling, enumeration, seeded random specs."""

from __future__ import annotations

import optuna
import pytest

from vidnas._errors import SpecError
from vidnas.search_space import OpOption, SearchSpace, get_space, list_spaces, preset_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("name", list_spaces())
def test_every_named_space_samples_valid_specs(name):
    space = get_space(name)
    specs = space.random_specs(3, seed=0)
    assert len({s.arch_id for s in specs}) == 3
    for spec in specs:
        assert set(spec.temporal) == set(space.base.temporal)


def test_random_specs_are_reproducible():
    a = [s.arch_id for s in get_space("tiny").random_specs(5, seed=7)]
    b = [s.arch_id for s in get_space("tiny").random_specs(5, seed=7)]
    c = [s.arch_id for s in get_space("tiny").random_specs(5, seed=8)]
    assert a == b and a != c


def test_optuna_trial_sampling_is_define_by_run_and_invertible():
    space = get_space("tiny")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        spec = space.sample(trial)
        assert space.params_of(spec) == trial.params
        # A parameter of an op appears only when that op was chosen.
        for name in trial.params:
            if ":" in name and not name.endswith(":op"):
                group, rest = name.split(":")
                assert trial.params[f"{group}:op"] == rest.split(".")[0]
        study.tell(trial, 0.0)


def test_enqueued_params_reproduce_the_spec():
    space = get_space("tiny")
    spec = space.random_specs(1, seed=3)[0]
    study = optuna.create_study()
    study.enqueue_trial(space.params_of(spec))
    assert space.sample(study.ask()).arch_id == spec.arch_id


def test_enumeration_covers_the_space_exactly():
    space = get_space("tiny-enum")
    ids = [s.arch_id for s in space.enumerate()]
    assert len(ids) == space.size == 125 and len(set(ids)) == 125
    # Tied slots share one choice.
    spec = next(space.enumerate())
    level1_attn = [spec.temporal[s] for s in spec.temporal if s.endswith(".attn")]
    assert all(c == level1_attn[0] for c in level1_attn)


def test_space_validation_names_the_problem():
    base = preset_spec("tiny")
    with pytest.raises(SpecError, match="window"):
        SearchSpace.from_rules("bad", base, [("*.attn", [OpOption("attn1d_window", {"window": (16,)})])])
    with pytest.raises(SpecError, match="matches no slot"):
        SearchSpace.from_rules("bad", base, [("down.9.*", [OpOption("none")])])
    with pytest.raises(SpecError, match="twice"):
        SearchSpace.from_rules("bad", base, [("*", [OpOption("none"), OpOption("none")])])
    with pytest.raises(SpecError) as info:
        get_space("tiny-enum").random_specs(126)
    assert info.value.field == "n"
    with pytest.raises(SpecError) as info:
        get_space("nope")
    assert info.value.field == "space" and "tiny" in str(info.value)

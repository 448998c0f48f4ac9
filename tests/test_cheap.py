"""Vectorised cheap metrics equal the per-spec evaluation's, exactly, on several spaces and latency sources."""

from __future__ import annotations

import numpy as np
import pytest

from vidnas._errors import SpecError
from vidnas.latency_models import DebugBackend, HarnessConfig, build_table
from vidnas.runners import EvalSettings
from vidnas.runners._cheap import CheapModel
from vidnas.runners._evaluate import cheap_metrics
from vidnas.search_space import get_space

NAMES = ("latency_ms", "video_ms", "params", "flops", "memory_bytes")


def settings(table=None, *, cfg: str = "none", batch: int = 1, steps: int = 5) -> EvalSettings:
    return EvalSettings(metrics=(), table=(table.meta.to_dict(), table.rows()) if table is not None else None,
                        roofline=None if table is not None else "laptop-cpu", roofline_dtype="float32", batch=batch,
                        steps=steps, cfg=cfg, proxy_clips=1, proxy_seed=0, proxy_train_steps=1, threads=1)


def assert_matches(space, s: EvalSettings, n: int = 8, names=NAMES) -> None:
    model = CheapModel.for_settings(space, s)
    specs = space.random_specs(n, seed=4)
    indices = np.stack([model.encode(x) for x in specs])
    vectorised = model.metrics(list(names), indices)
    for i, spec in enumerate(specs):
        one = cheap_metrics(spec, s)
        for name in names:
            assert vectorised[name][i] == pytest.approx(one[name], rel=1e-12, abs=0), (name, spec.arch_id)


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    return build_table(get_space("tiny"), DebugBackend(), tmp_path_factory.mktemp("lut") / "t.parquet",
                       config=HarnessConfig.quick())


def test_table_latency_and_counts_match_the_evaluation(tiny_table):
    assert_matches(get_space("tiny"), settings(tiny_table))


@pytest.mark.parametrize("space, cfg, batch", [("tiny", "none", 1), ("tiny", "batched", 1), ("tiny", "sequential", 2),
                                               ("flops-mislead", "none", 1), ("dit-tiny", "none", 1)])
def test_roofline_latency_and_counts_match_the_evaluation(space, cfg, batch):
    assert_matches(get_space(space), settings(cfg=cfg, batch=batch), n=6)


def test_choice_indices_follow_the_enumeration_and_round_trip():
    space = get_space("tiny-enum")
    model = CheapModel(space)
    everything = model.enumerate_indices()
    specs = list(space.enumerate())
    assert len(everything) == space.size == len(specs)
    for row in (0, 7, 63, 124):
        assert model.spec(everything[row]).arch_id == specs[row].arch_id
        assert (model.encode(specs[row]) == everything[row]).all()
        assert model.params_of(everything[row]) == space.params_of(specs[row])
    assert len(set(model.codes(everything).tolist())) == space.size


def test_expensive_or_unavailable_metrics_are_refused():
    model = CheapModel(get_space("tiny-enum"))  # no table, no roofline
    rows = model.enumerate_indices()[:2]
    assert model.metric("params", rows).shape == (2,)
    with pytest.raises(SpecError):
        model.metric("latency_ms", rows)
    with pytest.raises(SpecError):
        model.metric("proxy:synflow", rows)


def test_violations_are_value_minus_bound():
    space = get_space("tiny-enum")
    model = CheapModel.for_settings(space, settings())
    rows = model.enumerate_indices()
    v = model.violations(rows, {"params": 1_450_000, "latency_ms": 1e9})
    assert v.shape == (space.size, 2)
    assert np.allclose(v[:, 0], model.metric("params", rows) - 1_450_000) and (v[:, 1] < 0).all()
    assert 0 < (v[:, 0] <= 0).sum() < space.size  # the bound splits the space (used by the screening tests)


@pytest.mark.parametrize("name", ["tiny", "snapgen-v"])
def test_memory_of_many_identity_patterns_from_one_table_equals_the_count(name, monkeypatch):
    """Past EXACT_PATTERNS distinct identity patterns, peak memory comes from the all-active table (checked
    separable first); it must equal the per-spec count for every architecture."""
    space = get_space(name, frames=4, height=64, width=64) if name == "snapgen-v" else get_space(name)
    s = settings()
    model = CheapModel.for_settings(space, s)
    monkeypatch.setattr(CheapModel, "EXACT_PATTERNS", 2)
    specs = space.random_specs(12, seed=9)
    indices = np.stack([model.encode(x) for x in specs])
    memory = model.metrics(["memory_bytes"], indices)["memory_bytes"]
    assert model._cache.get("separable") is not None  # the one-table path was taken
    for i, spec in enumerate(specs):
        assert memory[i] == pytest.approx(cheap_metrics(spec, s)["memory_bytes"], rel=1e-12, abs=0), spec.arch_id

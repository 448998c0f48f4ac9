"""Typed campaign metrics: what each is, what it costs, and the errors that name a bad one."""

from __future__ import annotations

import pytest

from vidnas._errors import SpecError
from vidnas.runners import CHEAP_METRICS, parse_config, parse_metric


@pytest.mark.parametrize("name", list(CHEAP_METRICS))
def test_cheap_metrics_are_cheap_and_lower_is_better(name):
    metric = parse_metric(name)
    assert metric.is_cheap and metric.better == "lower" and metric.proxy is None and metric.ensemble_path is None


def test_a_proxy_is_expensive_and_knows_its_sense():
    synflow, supernet = parse_metric("proxy:synflow"), parse_metric("proxy:supernet")
    assert not synflow.is_cheap and synflow.kind == "proxy" and synflow.proxy == "synflow"
    assert synflow.better == "higher" and supernet.better == "lower"


def test_an_ensemble_is_expensive_and_its_file_is_checked(tmp_path):
    path = tmp_path / "summary.json"
    with pytest.raises(SpecError) as info:
        parse_metric(f"ensemble:{path}", "config.objectives[1].metric")
    assert info.value.field == "config.objectives[1].metric" and "summary" in info.value.problem
    path.write_text("{}")
    metric = parse_metric(f"ensemble:{path}")
    assert metric.kind == "ensemble" and metric.ensemble_path == str(path) and not metric.is_cheap


@pytest.mark.parametrize("text, problem", [("accuracy", "is not a metric"), ("proxy:magic", "no registered proxy"),
                                           ("latency", "is not a metric"), (3, "must be a metric name")])
def test_unknown_metrics_name_the_field_and_value(text, problem):
    with pytest.raises(SpecError) as info:
        parse_metric(text, "config.objectives[0].metric")
    assert info.value.field == "config.objectives[0].metric" and info.value.value == text
    assert problem in info.value.problem


def test_a_campaign_lists_its_metrics_typed_objectives_first():
    config = parse_config({"objectives": [{"metric": "latency_ms", "direction": "minimize"},
                                          {"metric": "proxy:synflow", "direction": "maximize"}],
                           "constraints": {"memory_bytes": 1e9, "latency_ms": 50}})
    assert [m.name for m in config.metrics()] == ["latency_ms", "proxy:synflow", "memory_bytes"]
    assert [m.is_cheap for m in config.metrics()] == [True, False, True]
    assert config.objectives[1].info.proxy == "synflow"


def test_only_cheap_metrics_can_be_constrained():
    with pytest.raises(SpecError) as info:
        parse_config({"constraints": {"proxy:synflow": 1.0}})
    assert info.value.field == "config.constraints.proxy:synflow" and "cheap" in info.value.hint

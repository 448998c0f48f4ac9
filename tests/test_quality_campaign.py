"""Campaigns whose quality objective is the supernet score: backbone and supernet prepared before the
trials (cached), quality at a stated proxy scale, memory predicted before a proxy runs."""

from __future__ import annotations

import json

import pytest

from vidnas._errors import SpecError
from vidnas.runners import parse_config, run_campaign

QUALITY = {
    "name": "quality",
    "space": {"name": "tiny", "frames": 4, "height": 128, "width": 128},
    "target": {"roofline": "phone-npu"},
    "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                   {"metric": "proxy:supernet", "direction": "minimize"}],
    "sampler": {"name": "random", "seed": 0},
    "trials": 4,
    "workers": 1,
    "proxy": {"pretrain_steps": 2, "scale": {"height": 64, "width": 64},
              "supernet": {"steps": 3, "batch_size": 2, "heldout_clips": 2, "finetune_steps": 1}},
}


def config(**overrides):
    data = json.loads(json.dumps(QUALITY))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data)


def test_supernet_objective_campaign_records_its_proxy_scale_and_reuses_the_cache(tmp_path):
    result = run_campaign(config(), tmp_path / "run", local=True)
    assert result.complete == 4 and result.failed == 0
    campaign = json.loads((tmp_path / "run" / "campaign.json").read_text())
    quality = campaign["quality"]
    assert quality["scale"]["height"] == 64 and quality["supernet_training"]["step"] == 3
    assert quality["backbone"]["config"]["steps"] == 2
    import pandas as pd

    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert done["objective.proxy:supernet"].notna().all()
    assert (done["attr.proxy_arch_id"] != done["attr.arch_id"]).all()  # quality at the proxy scale
    logs: list[str] = []
    run_campaign(config(name="again"), tmp_path / "run2", local=True, log=logs.append)
    assert any("cached" in line for line in logs) and any("resuming" in line for line in logs)


def test_a_proxy_over_the_memory_budget_is_never_started(tmp_path):
    result = run_campaign(config(proxy={**QUALITY["proxy"], "memory_budget_bytes": 1000.0}), tmp_path / "run",
                          local=True)
    assert result.failed == 4
    import pandas as pd

    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    reasons = set(trials["attr.fail_reason"])
    assert all("proxy.memory_budget_bytes" in r and "1000" in r for r in reasons)


@pytest.mark.parametrize("proxy, field", [
    ({"data": "/no/such/videos"}, "config.proxy.data"),
    ({"supernet": {"sampling": "greedy"}}, "config.proxy.supernet.sampling"),
    ({"scale": {"height": 100}}, "config.proxy.scale.height"),
    ({"scale": {"auto": True, "height": 64}}, "config.proxy.scale.auto"),
    ({"memory_budget_bytes": 0}, "config.proxy.memory_budget_bytes"),
    ({"calibration": "/no/summary.json"}, "config.proxy.calibration"),
])
def test_quality_settings_errors_name_the_field(proxy, field):
    with pytest.raises(SpecError) as info:
        config(proxy=proxy)
    assert info.value.field == field


def test_report_states_the_quality_objectives_calibration_or_its_absence(tmp_path):
    from vidnas.proxies import PretrainConfig, SupernetConfig, TrainConfig, calibrate
    from vidnas.reports import write_report
    from vidnas.search_space import get_space

    run_campaign(config(), tmp_path / "plain", local=True)
    html = write_report(tmp_path / "plain").read_text()
    assert "has no calibration" in html and "proxy:supernet" in html
    # A calibration of the same setting (space at the proxy scale, data, backbone, supernet).
    space = get_space("tiny", frames=4, height=64, width=64)
    result = calibrate(space, n=4, steps=1, proxies=("flops", "supernet"),
                       train=TrainConfig(batch_size=2, train_clips=4, heldout_clips=2),
                       pretrain=PretrainConfig(steps=2), supernet=SupernetConfig(steps=3, batch_size=2,
                                                                                 heldout_clips=2, finetune_steps=1))
    summary = result.save(tmp_path / "cal") / "summary.json"
    run_campaign(config(proxy={**QUALITY["proxy"], "calibration": str(summary)}), tmp_path / "calibrated",
                 local=True)
    html = write_report(tmp_path / "calibrated").read_text()
    assert "Quality objective <code>proxy:supernet</code>: Kendall tau" in html
    assert "tau between two training seeds" in html and "another setting" not in html


def test_automatic_proxy_scale_fits_the_budgets_or_names_them():
    from vidnas.proxies._scale import choose_scale, ladder, supernet_bytes

    real = {"frames": 8, "height": 128, "width": 128, "width_mult": None}
    scales = ladder("tiny", real)
    assert len(scales) > 3 and scales[0].height == 128  # largest first; smaller sizes rounded to what fits
    budget = 0.6 * supernet_bytes(scales[0].space("tiny", real), batch_size=2)
    choice = choose_scale("tiny", real, memory_budget_bytes=budget, seconds_budget=1e9, steps=10, batch_size=2)
    assert choice.predicted_bytes <= budget and choice.scale != scales[0]
    with pytest.raises(SpecError) as info:
        choose_scale("tiny", real, memory_budget_bytes=1e6, seconds_budget=1e9, steps=10, batch_size=2)
    assert info.value.field == "proxy.memory_budget_bytes" and "GiB" in str(info.value)
    with pytest.raises(SpecError) as info:  # over the time budget at the smallest scale: refused, not run for hours
        choose_scale("tiny", real, memory_budget_bytes=1e12, seconds_budget=1e-3, steps=10, batch_size=2)
    assert info.value.field == "proxy.seconds_budget" and "fit" in str(info.value)


def test_training_free_proxies_need_no_pretrained_backbone(tmp_path):
    """SynFlow sees the network at random initialisation in a campaign as in a calibration: nothing is
    pretrained for it (the default campaign pays no backbone training), and the proxy scale still holds."""
    from vidnas.proxies import ProxyBatch, score
    from vidnas.search_space import get_space

    logs: list[str] = []
    result = run_campaign(config(objectives=[{"metric": "latency_ms", "direction": "minimize"},
                                             {"metric": "proxy:synflow", "direction": "maximize"}]),
                          tmp_path / "run", local=True, log=logs.append)
    assert result.complete == 4
    quality = json.loads((tmp_path / "run" / "campaign.json").read_text())["quality"]
    assert quality["pretrain"] is None and quality["backbone_path"] is None and quality["scale"]["height"] == 64
    assert not any("pretrained backbone" in line for line in logs)

    class Marker:  # a backbone a training-free proxy must never touch
        backbone_id = "marker"

        def __getattr__(self, name):
            raise AssertionError(f"a training-free proxy used the backbone ({name})")

    spec = get_space("tiny", frames=4, height=64, width=64).base
    batch = ProxyBatch.procedural(spec, clips=1, seed=0)
    marked = ProxyBatch(batch.clips, batch.train, backbone=Marker())
    assert score(spec, ["synflow"], marked)["synflow"]["value"] == score(spec, ["synflow"], batch)["synflow"]["value"]

"""The learned quality model (fit, file, judgement out of fold, use as an objective) and `vidnas verify`."""

from __future__ import annotations

import json
import math

import pytest

from vidnas._errors import SpecError
from vidnas.proxies._fit import QualityModel, fit_quality_model, out_of_fold
from vidnas.search_space import count_spec, get_space

SETTING = {"space": "tiny", "space_shape": {"frames": 4, "height": 64, "width": 64}, "data": "shapes",
           "pretrain": None, "supernet": None, "protocol_id": "p1"}


def synthetic_rows(n=30, seed=0, noise=0.0):
    """Calibration rows whose truth is a known function of the architecture: every temporal attention
    slot lowers the loss, plus a little seeded noise."""
    import random

    rng = random.Random(seed)
    space = get_space("tiny", frames=4, height=64, width=64)
    rows = []
    for spec in space.random_specs(n, seed=seed):
        attention = sum(1 for c in spec.temporal.values() if c.op.startswith(("attn", "xattn")))
        report = count_spec(spec)
        rows.append({"arch_id": spec.arch_id, "spec": spec.to_json(), "heldout_loss": 1.0 - 0.05 * attention
                     + noise * rng.random(), "proxy.flops": float(report.flops), "proxy.params": float(report.params)})
    return rows


def test_fitted_model_file_round_trips_and_predicts_the_same(tmp_path):
    rows = synthetic_rows()
    model = fit_quality_model(rows, signals=["flops", "params"], setting=SETTING)
    path = model.save(tmp_path / "m.json")
    text = path.read_text()
    assert json.loads(text)["format"] == "vidnas.quality_model" and "pickle" not in text
    again = QualityModel.load(path)
    assert again.features == model.features and again.fitted_on == [r["arch_id"] for r in rows]
    for r in rows[:5]:
        values = {"flops": r["proxy.flops"], "params": r["proxy.params"]}
        assert again.predict(r["spec"], values) == pytest.approx(model.predict(r["spec"], values))
    # The model learnt the rule: more attention slots, lower predicted rank.
    from vidnas._stats import kendall

    predicted = [model.predict(r["spec"], {"flops": r["proxy.flops"], "params": r["proxy.params"]}) for r in rows]
    assert kendall(predicted, [r["heldout_loss"] for r in rows]) > 0.6


def test_model_file_refuses_another_setting_and_malformed_contents(tmp_path):
    model = fit_quality_model(synthetic_rows(12), signals=["flops"], setting=SETTING,
                              groups=("signals", "counts"))
    path = model.save(tmp_path / "m.json")
    model.check_setting({**SETTING})  # the same setting passes
    with pytest.raises(SpecError) as info:
        QualityModel.load(path).check_setting({**SETTING, "space_shape": {"frames": 8, "height": 64, "width": 64}})
    assert info.value.field.endswith("setting.space_shape")
    with pytest.raises(SpecError) as info:
        QualityModel.load(path).check_setting({**SETTING, "space": "tiny-enum"})
    assert info.value.field.endswith("setting.space") and info.value.value == "tiny"
    with pytest.raises(SpecError) as info:
        QualityModel.load(path).check_setting({**SETTING, "protocol_id": "another"})
    assert info.value.field.endswith("setting.protocol_id")
    data = json.loads(path.read_text())
    for change, field in (({"format": "vidnas.calibration"}, "format"), ({"version": 9}, "version"),
                          ({"weights": [*data["weights"], 1.0]}, "weights"),
                          ({"mean": ["x"] * len(data["mean"])}, "mean")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(SpecError) as info:
            QualityModel.load(tmp_path / "bad.json")
        assert info.value.field.endswith(field)
    with pytest.raises(SpecError):
        QualityModel.load(tmp_path / "missing.json")
    values = {"params": 1.0}
    with pytest.raises(SpecError) as info:
        model.predict(synthetic_rows(1)[0]["spec"], values)
    assert info.value.value == "flops"


def test_out_of_fold_judgement_never_judges_an_architecture_it_was_fitted_on():
    rows = synthetic_rows(30, noise=0.02)
    result = out_of_fold(rows, signals=["flops", "params"], setting=SETTING, folds=5)
    judged = []
    for fold in result["folds"]:
        assert not set(fold["fitted_on"]) & set(fold["judged_on"])
        assert len(fold["fitted_on"]) + len(fold["judged_on"]) == 30
        judged += fold["judged_on"]
    assert sorted(judged) == sorted(r["arch_id"] for r in rows)  # every architecture judged exactly once
    # the truth follows the op counts, which no single count signal sees: the model beats the best signal
    assert result["kendall"] > 0.3 and result["kendall"] > result["best_single_signal"]["kendall"] + 0.15
    assert len(result["kendall_ci"]) == 2
    assert all(math.isfinite(v) for v in result["scores"])
    # The same rows twice would let a fold judge what it was fitted on: refused.
    with pytest.raises(SpecError):
        out_of_fold(rows + rows[:1], signals=["flops"], setting=SETTING, folds=5)


def test_proxies_fit_command_writes_a_model_with_its_out_of_fold_judgement(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from vidnas.cli._app import app

    rows = synthetic_rows(20, noise=0.01)
    folder = tmp_path / "cal"
    folder.mkdir()
    pd.DataFrame(rows).to_parquet(folder / "rows.parquet")
    (folder / "summary.json").write_text(json.dumps({"format": "vidnas.calibration", "version": 2, "config": {
        "space": "tiny", "space_shape": SETTING["space_shape"], "train": {"data": "shapes"}, "pretrain": None,
        "supernet": None, "protocol_id": "p1"}}))
    result = CliRunner().invoke(app, ["proxies", "fit", str(folder), "--out", str(tmp_path / "m.json"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n"] == 20 and payload["signals"] == ["flops", "params"]
    assert "beats_best_single_signal" in payload["validation"]
    model = QualityModel.load(tmp_path / "m.json")
    assert model.validation["n"] == 20 and model.setting["space_shape"] == SETTING["space_shape"]
    bad = CliRunner().invoke(app, ["proxies", "fit", str(folder), "--out", str(tmp_path / "x.json"),
                                   "--signals", "synflow"])
    assert bad.exit_code == 2 and "--signals" in bad.output and "synflow" in bad.output


CAMPAIGN = {
    "name": "learned",
    "space": {"name": "tiny", "frames": 4, "height": 64, "width": 64},
    "target": {"roofline": "phone-npu"},
    "objectives": [{"metric": "latency_ms", "direction": "minimize"}],
    "sampler": {"name": "random", "seed": 0},
    "trials": 6,
    "workers": 1,
    "proxy": {"scale": {"frames": 4, "height": 64, "width": 64}},
}


def _campaign(objective, **extra):
    from vidnas.runners import parse_config

    data = json.loads(json.dumps(CAMPAIGN))
    data["objectives"] = [*data["objectives"], objective]
    data.update(extra)
    return parse_config(data)


def test_a_learned_model_is_a_campaign_objective_and_another_settings_model_is_refused(tmp_path):
    import pandas as pd

    from vidnas.proxies._fit import fit_and_judge
    from vidnas.runners import run_campaign

    model = fit_and_judge(synthetic_rows(16), signals=["flops"], setting={**SETTING, "protocol_id": None})
    path = model.save(tmp_path / "m.json")
    metric = f"quality:{path}"
    run_campaign(_campaign({"metric": metric, "direction": "minimize"}), tmp_path / "run", local=True)
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) == 6 and done[f"objective.{metric}"].notna().all()
    from vidnas.reports import write_report

    html = write_report(tmp_path / "run").read_text()
    assert "(a learned model)" in html and "judged out of fold" in html
    other = fit_quality_model(synthetic_rows(16), signals=["flops"],
                              setting={**SETTING, "space_shape": {"frames": 8, "height": 64, "width": 64}})
    other_path = other.save(tmp_path / "other.json")
    with pytest.raises(SpecError) as info:
        run_campaign(_campaign({"metric": f"quality:{other_path}", "direction": "minimize"}), tmp_path / "run2",
                     local=True)
    assert "setting.space_shape" in info.value.field


FAST = {"steps": 3, "batch_size": 2, "train_clips": 4, "heldout_clips": 2}


def test_verify_trains_the_front_first_resumes_and_reports(tmp_path):
    from vidnas.proxies import PretrainConfig, TrainConfig
    from vidnas.reports import write_report
    from vidnas.runners import run_campaign
    from vidnas.runners._verify import verify

    run_dir = tmp_path / "run"
    run_campaign(_campaign({"metric": "proxy:params", "direction": "maximize"}), run_dir, local=True)
    train, pretrain = TrainConfig(**FAST), PretrainConfig(steps=2, batch_size=2, train_clips=4)
    calls = []
    result = verify(run_dir, k=4, train=train, pretrain=pretrain, workers=1, seconds_budget=1e6,
                    progress=lambda stage, i, n: calls.append((stage, i, n)))
    archs = result["architectures"]
    assert result["k"] == 4 and len({a["arch_id"] for a in archs}) == 4
    front = [a["pareto"] for a in archs]
    assert front == sorted(front, reverse=True) and front[0]  # the Pareto set comes first
    assert -1 <= result["kendall"] <= 1 and len(result["kendall_ci"]) == 2
    assert all(math.isfinite(a["heldout_loss"]) for a in archs)
    assert (run_dir / "verify" / "verify.json").exists()
    assert ("truth runs", 4, 4) in calls
    again = []
    verify(run_dir, k=4, train=train, pretrain=pretrain, workers=1, seconds_budget=1e6,
           progress=lambda stage, i, n: again.append((stage, i, n)))
    assert [c for c in again if c[0] == "truth runs"][0] == ("truth runs", 4, 4)  # all four reused, none trained
    html = write_report(run_dir).read_text()
    assert "Does the quality axis hold? Verification" in html and "held-out loss (truth)" in html


def test_verify_refuses_a_budget_it_cannot_fit_and_trains_nothing(tmp_path):
    from vidnas.proxies import PretrainConfig, TrainConfig
    from vidnas.runners import run_campaign
    from vidnas.runners._verify import verify

    run_dir = tmp_path / "run"
    run_campaign(_campaign({"metric": "proxy:params", "direction": "maximize"}), run_dir, local=True)
    with pytest.raises(SpecError) as info:
        verify(run_dir, k=4, train=TrainConfig(**{**FAST, "steps": 100000}),
               pretrain=PretrainConfig(steps=2, batch_size=2, train_clips=4), workers=1, seconds_budget=5)
    assert info.value.field == "seconds_budget" and info.value.value == 5 and "would fit" in str(info.value)
    assert not (run_dir / "verify" / "truth").exists()
    with pytest.raises(SpecError) as info:
        verify(run_dir, k=1)
    assert info.value.field == "k"
    with pytest.raises(SpecError) as info:
        verify(tmp_path / "nothing", k=4)
    assert info.value.field == "RUN_DIR"


def test_campaign_verify_setting_is_checked():
    with pytest.raises(SpecError) as info:
        _campaign({"metric": "proxy:params", "direction": "maximize"}, proxy={"verify": 1})
    assert info.value.field == "config.proxy.verify"


def test_verify_command_names_the_budget_it_cannot_fit(tmp_path):
    from typer.testing import CliRunner

    from vidnas.cli._app import app
    from vidnas.runners import run_campaign

    run_dir = tmp_path / "run"
    run_campaign(_campaign({"metric": "proxy:params", "direction": "maximize"}), run_dir, local=True)
    result = CliRunner().invoke(app, ["verify", str(run_dir), "--k", "4", "--steps", "100000", "--seconds-budget",
                                      "5", "--workers", "1"])
    assert result.exit_code == 2, result.output
    assert "seconds_budget" in result.output and "5" in result.output and "nothing was trained" in result.output
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "none")])
    assert result.exit_code == 2 and "RUN_DIR" in result.output

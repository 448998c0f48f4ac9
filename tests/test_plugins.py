"""Third-party plugins through entry points: a real package (tests/plugin_demo) is pip-installed into a
temporary directory and used from the command line (its op, proxy, backend and sampler, and its backbone
family ``demo-conv`` with a preset and a search space); the shared test suites pick its registrations up;
a broken entry point is a one-line warning naming it, never a crash.

The package is installed with ``pip install --target`` into a directory put on ``PYTHONPATH`` of the
subprocesses only, so the environment running the tests is never changed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIDNAS = [sys.executable, "-m", "vidnas.cli"]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """An environment whose Python finds vidnas (this checkout) and the installed demo plugin."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "src"
    shutil.copytree(ROOT / "tests" / "plugin_demo", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = base / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(source)]
    if importlib.util.find_spec("setuptools") is not None:  # else pip fetches a build backend from the index
        command.insert(5, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(site.glob("vidnas_demo_plugin-*.dist-info/entry_points.txt"))
    path = os.pathsep.join([str(ROOT), str(site), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}


def vidnas(env, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VIDNAS, *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


def listed(env, *args: str) -> tuple[dict, str]:
    done = vidnas(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_listings_show_the_plugins_and_a_broken_one_warns(plugin_env):
    ops, stderr = listed(plugin_env, "space", "ops")
    assert {o["name"]: o["source"] for o in ops["ops"]}["demo_prev"] == "vidnas-demo-plugin:demo"
    assert {o["name"]: o["source"] for o in ops["ops"]}["conv1d"] == "vidnas"
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "vidnas-demo-plugin:broken" in warnings[0] and "Traceback" not in stderr
    proxies, _ = listed(plugin_env, "proxies", "list")
    assert {p["name"]: p["source"] for p in proxies["proxies"]}["demo_params"] == "vidnas-demo-plugin:demo"
    backends, _ = listed(plugin_env, "lut", "backends")
    assert {b["name"]: b["source"] for b in backends["backends"]}["demo_debug"] == "vidnas-demo-plugin:demo"
    samplers, _ = listed(plugin_env, "search", "--list-samplers")
    demo = next(s for s in samplers["samplers"] if s["name"] == "demo_random")
    assert demo["source"] == "vidnas-demo-plugin:demo" and demo["options"][0]["name"] == "seed_offset"


def test_without_the_plugin_its_names_are_refused(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = vidnas(env, "lut", "build", "--space", "tiny", "--backend", "demo_debug", "--out", str(tmp_path / "t"))
    assert done.returncode == 2 and "`--backend` = 'demo_debug': is not a backend" in done.stderr


def test_the_plugin_op_proxy_and_backend_from_the_command_line(plugin_env, tmp_path):
    from vidnas.search_space import preset_spec

    spec = preset_spec("tiny").to_dict()
    spec["temporal"]["down.0.0.res"] = {"op": "demo_prev", "params": {}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    shown, _ = listed(plugin_env, "space", "show", str(path))
    assert shown["op_counts"]["demo_prev"] == 1
    scored, _ = listed(plugin_env, "proxies", "score", str(path), "--proxy", "demo_params")
    assert scored["proxies"]["demo_params"]["value"] == shown["params"]
    measured, _ = listed(plugin_env, "latency", "measure", str(path), "--backend", "demo_debug", "--quick")
    assert measured["fingerprint"]["backend"] == "demo_debug" and measured["median_ms"] > 0


def test_a_campaign_with_the_plugin_backend_proxy_and_sampler(plugin_env, tmp_path):
    """On local Ray: the workers find the plugins too (entry points are read in every process)."""
    import pandas as pd

    config = tmp_path / "campaign.yaml"
    config.write_text(json.dumps({
        "name": "plugins",
        "space": {"name": "tiny-enum"},
        "target": {"backend": "demo_debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False}},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "proxy:demo_params", "direction": "maximize"}],
        "sampler": {"name": "demo_random", "seed": 0, "seed_offset": 5},
        "trials": 3, "workers": 1,
    }))
    done = vidnas(plugin_env, "search", str(config), "--out", str(tmp_path / "run"), "--no-report", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["trials"] == 3 and result["failed"] == 0
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    assert (trials["attr.proxy:demo_params"] == trials["attr.params"]).all()
    campaign = json.loads((tmp_path / "run" / "campaign.json").read_text())
    assert campaign["latency"]["meta"]["backend"] == "demo_debug"
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampler: {name: demo_random, seed_offset: -1}\n")
    done = vidnas(plugin_env, "search", str(bad), "--check")
    assert done.returncode == 2 and "`config.sampler.seed_offset` = -1: must be >= 0" in done.stderr


DEMO_SLOTS = ["level.0.0.mix", "level.0.1.mix", "level.1.0.mix", "level.1.1.mix"]
DEMO_SIZE = ("--frames", "4", "--height", "32", "--width", "32")  # pixels: 4 x 4 x 4 latents


def test_the_listings_show_the_plugin_family_preset_and_space(plugin_env):
    rows, _ = listed(plugin_env, "space", "list")
    families = {f["name"]: f for f in rows["families"]}
    assert families["demo-conv"] == {"name": "demo-conv", "backbone": "DemoConvBackbone",
                                     "source": "vidnas-demo-plugin:demo"}
    assert families["unet"]["source"] == families["dit"]["source"] == "vidnas"
    preset = next(p for p in rows["presets"] if p["name"] == "demo-conv-tiny")
    assert preset["family"] == "demo-conv" and preset["source"] == "vidnas-demo-plugin:demo"
    assert {"name": "demo-conv-tiny", "source": "vidnas-demo-plugin:demo"} in rows["spaces"]
    shown = vidnas(plugin_env, "space", "list")
    assert shown.returncode == 0 and "demo-conv-tiny" in shown.stdout and "DemoConvBackbone" in shown.stdout


def test_the_plugin_family_from_the_command_line(plugin_env, tmp_path):
    """The plugin's preset and space through every step a user takes: show, table, prediction, proxies,
    a campaign on the table (local Ray: the workers build the plugin's networks) and its report."""
    import pandas as pd

    shown, _ = listed(plugin_env, "space", "show", "demo-conv-tiny")
    assert shown["name"] == "demo-conv-tiny" and shown["spec"]["family"] == "demo-conv"
    assert [s["slot"] for s in shown["slots"]] == DEMO_SLOTS and shown["op_counts"] == {"conv1d": 2, "attn1d": 2}
    assert {u["kind"] for u in shown["units"]} == {"time_embed", "stem", "block", "temporal", "proj", "head"}
    table = tmp_path / "demo.parquet"
    built, _ = listed(plugin_env, "lut", "build", "--space", "demo-conv-tiny", "--backend", "debug", "--out",
                      str(table), "--fit", "2", "--quick", *DEMO_SIZE)
    assert built["meta"]["space"] == "demo-conv-tiny" and built["coverage"]["missing"] == []
    assert {"time_embed", "stem", "block", "proj", "head", "conv1d", "attn1d", "shift"} <= set(built["by_op"])
    predicted, _ = listed(plugin_env, "latency", "predict", "demo-conv-tiny", "--lut", str(table), *DEMO_SIZE)
    assert predicted["name"] == "demo-conv-tiny" and predicted["per_call_ms"] > 0
    assert [s["slot"] for s in predicted["slots"]] == DEMO_SLOTS
    scored, _ = listed(plugin_env, "proxies", "score", "demo-conv-tiny", "--proxy", "params,flops,grad_norm,synflow")
    values = {name: row["value"] for name, row in scored["proxies"].items()}
    assert values["params"] == shown["params"] and values["flops"] == shown["flops"] and values["grad_norm"] > 0
    assert math.isfinite(values["synflow"])  # the training-free proxies read the family's latent channels

    run = tmp_path / "run"
    config = tmp_path / "campaign.yaml"
    config.write_text(json.dumps({
        "name": "demo-family",
        "space": {"name": "demo-conv-tiny", "frames": 4, "height": 32, "width": 32},
        "target": {"backend": "debug", "lut": str(table)},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "proxy:grad_norm", "direction": "maximize"}],
        "sampler": {"name": "random", "seed": 0},
        "trials": 3, "workers": 1,
    }))
    done = vidnas(plugin_env, "search", str(config), "--out", str(run), "--no-report", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["trials"] == 3 and result["failed"] == 0 and result["pareto"]
    for entry in result["pareto"]:
        spec = json.loads((run / "pareto" / entry["spec"]).read_text())
        assert spec["family"] == "demo-conv" and sorted(spec["temporal"]) == DEMO_SLOTS
    trials = pd.read_parquet(run / "trials.parquet")
    assert (trials["attr.latency_source"] == "table").all() and (trials["attr.proxy:grad_norm"] > 0).all()
    reported, _ = listed(plugin_env, "report", str(run))
    assert "demo-conv-tiny" in Path(reported["report"]).read_text()


def test_the_shared_suites_run_on_the_plugin_registrations(plugin_env):
    selection = ["tests/test_ops.py", "tests/test_proxies.py", "tests/test_backend_suite.py",
                 "tests/test_sampler_suite.py", "tests/test_family.py", "tests/test_sampling.py",
                 "-k", "demo_prev or demo_params or demo_debug or demo_random or demo-conv"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-n", "0", "-p", "no:cacheprovider",
                           *selection],
                          env=plugin_env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    outcomes = [line.split(" ", 1) for line in done.stdout.splitlines()
                if line.startswith(("PASSED ", "FAILED ", "ERROR ", "SKIPPED "))]
    assert outcomes and {outcome for outcome, _ in outcomes} == {"PASSED"}, done.stdout[-3000:]
    for name, suite in (("demo_prev", "test_ops.py"), ("demo_params", "test_proxies.py"),
                        ("demo_debug", "test_backend_suite.py"), ("demo_random", "test_sampler_suite.py"),
                        ("[demo-conv]", "test_family.py"), ("[demo-conv-tiny]", "test_sampling.py")):
        assert any(name in test and suite in test for _, test in outcomes), (name, done.stdout[-2000:])
    assert f"{len(outcomes)} passed" in done.stdout

"""`vidnas study`: the seeds' design rules judged on a target, from a roofline, a table or a backend.

Tiny shapes: the `tiny` and `dit-tiny` spaces on the roofline and the debug backend; every built-in space at a
reduced shape; the named errors; a small campaign's Pareto set; the page in headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidnas._errors import SpecError
from vidnas.cli._app import app
from vidnas.reports import RooflineSource, StudyOptions, run_study, study_json
from vidnas.reports._study_rules import judge
from vidnas.runners import parse_config, run_campaign
from vidnas.search_space import SPACES, get_space

runner = CliRunner()

SEEDS = {"SnapGen-V", "MobileVD", "FreeNoise", "CausVid", "Phenaki"}
VERDICTS = {"holds", "fails", "undecided"}
NASTY = "<script>window.__pwned = 1</script> & co"
QUICK_DEBUG = ("--backend", "debug", "--quick", "--max-seconds", "0.05", "--length-frames", "8,16")


def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return json.loads(result.stdout)


def invoke_error(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output + str(result.exception)
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study-tiny")
    return out, invoke_json("study", "--space", "tiny", "--roofline", "phone-npu", "--out", str(out))


# The document --------------------------------------------------------------------------------------------


def test_the_json_document_has_every_section_and_the_seeds_rules(tiny_study):
    out, doc = tiny_study
    assert doc["format"] == "vidnas.study" and doc["space"]["name"] == "tiny"
    assert doc["source"]["kind"] == "roofline estimate" and "phone-npu" in doc["source"]["label"]
    assert doc["memory_budget"]["bytes"] == 4.0e9  # the phone's default, with where it comes from
    # 1. every site, every choice the space offers there, with what the study says of it
    space = get_space("tiny")
    offered = {c.op for g in space.groups for o in g.options for c in o.choices()}
    assert offered <= {c["op"] for site in doc["levels"] for c in site["choices"]}
    for site in doc["levels"]:
        assert site["source"]["kind"] == "roofline estimate"
        for c in site["choices"]:
            assert {"latency_ms", "flops", "ms_per_gflop", "peak_bytes", "network_bytes", "fits", "class"} <= set(c)
        active = [c for c in site["choices"] if c["op"] != "none"]
        assert site["cheapest"] == min(active, key=lambda c: c["latency_ms"])["choice"]
        assert (site["spearman"] is not None) == (len(active) >= 3)
    # the highest-resolution level offers no 3-D attention: a probe stands in, flagged
    top = [c for site in doc["levels"] if site["level"] == 0 for c in site["choices"]]
    assert any(c["op"] == "attn3d" and c["probe"] for c in top)
    # 2. MobileVD's modifiers beside its figures
    mods = {m["name"]: m for m in doc["modifiers"]}
    assert set(mods) == {"funnel_attention", "funnel_convolution", "funnel_all", "multiscaling", "pruning"}
    for m in mods.values():
        assert m["applicable"] and {"flops_saved", "latency_saved", "published"} <= set(m)
    assert mods["funnel_attention"]["published"]["latency_saved"] == 0.21
    # 3. length: 8 to 64 frames, exponents; FreeNoise's windows only from 16 frames
    length = doc["length"]
    assert length["frames"] == [8, 16, 32, 64]
    series = {r["choice"]: r for r in length["series"]}
    assert series["attn1d"]["frames"] == [8, 16, 32, 64] and series["attn1d"]["exponent"] is not None
    assert series["attn1d_window(window=16, window_stride=4)"]["frames"] == [16, 32, 64]
    assert length["freenoise_model"]["frames"] == 64 and length["windowed_vs_full"]["frames"] == [16, 32, 64]
    # 4. streaming: the causvid space's chunks and caches, causal variants of tiny, the papers' gap stated
    streams = doc["streaming"]
    assert {r["space"] for r in streams["configs"]} == {"causvid", "tiny"}
    assert {r["window"] for r in streams["configs"] if r["space"] == "causvid"} >= {None, 1, 2, 4}
    gaps = {g["system"]: g for g in streams["gaps"]}
    assert set(gaps) == {"CausVid", "Self Forcing"}
    assert gaps["CausVid"]["first_chunk_ratio"] == pytest.approx(gaps["CausVid"]["target_first_chunk_ms"] / 1300)
    assert "lower bound" in gaps["CausVid"]["caveat"]
    # 6. at least six rules, from all five seed systems, each with thresholds in its evidence
    rules = doc["rules"]
    assert len(rules) >= 6 and {r["source"] for r in rules} >= SEEDS
    for r in rules:
        assert r["verdict"] in VERDICTS and r["why"] and "thresholds" in r["evidence"], r
    assert doc["pareto"] is None
    # the files: the same document on disk, and the page
    on_disk = json.loads((out / "study.json").read_text())
    assert on_disk["rules"] == rules and on_disk["levels"] == doc["levels"]
    html = (out / "study.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 6
    assert "http://" not in html and "https://" not in html
    for r in rules:
        assert r["verdict"] in html


def test_verdicts_follow_the_numbers_not_the_papers(tiny_study):
    _, doc = tiny_study

    def verdict(d, rule_id):
        return next(r for r in judge(d) if r["id"] == rule_id)["verdict"]

    d = json.loads(json.dumps(doc))
    mod = next(m for m in d["modifiers"] if m["name"] == "funnel_attention")
    for efficiency, expected in ((3.0, "holds"), (1.0, "undecided"), (0.4, "fails")):
        mod["efficiency"] = efficiency
        assert verdict(d, "mobilevd.funnel_attention") == expected
    d["length"]["freenoise_model"]["overhead"] = 0.17
    assert verdict(d, "freenoise.overhead") == "holds"
    d["length"]["freenoise_model"]["overhead"] = 0.6
    assert verdict(d, "freenoise.overhead") == "fails"


def test_the_memory_rule_turns_on_the_budget():
    """SnapGen-V's out-of-memory rule holds with a budget between what 1-D layers and 3-D attention need at the
    highest resolution, and fails with a budget everything fits in."""
    space = get_space("tiny")
    source = RooflineSource("phone-npu")
    loose = run_study(space, source, options=StudyOptions(memory_budget=1e12))
    top = [c for site in loose["levels"] if site["level"] == 0 for c in site["choices"]]
    one_d = min(c["network_bytes"] for c in top if c["class"] == "1-D temporal")
    three_d = max(c["network_bytes"] for c in top if c["class"] == "3-D attention")
    assert one_d < three_d
    rules = {r["id"]: r for r in loose["rules"]}
    assert rules["snapgen-v.memory"]["verdict"] == "fails"
    tight = run_study(space, source, options=StudyOptions(memory_budget=(one_d + three_d) / 2))
    rules = {r["id"]: r for r in tight["rules"]}
    assert rules["snapgen-v.memory"]["verdict"] == "holds"
    assert rules["snapgen-v.memory"]["evidence"]["thresholds"]["memory_budget_bytes"] == (one_d + three_d) / 2
    assert any(site["not_fitting"] for site in tight["levels"] if site["level"] == 0)


# Every built-in space ------------------------------------------------------------------------------------------


BUILT_IN = [name for name in SPACES.names() if SPACES.origin(name) == "vidnas"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_space_is_studied(name):
    family = get_space(name).base.family
    shape = {"frames": 8, "height": 64, "width": 64} if family == "unet" else {"frames": 9, "height": 64, "width": 64}
    doc = run_study(get_space(name, **shape), RooflineSource("h100"))
    assert doc["space"]["family"] == family and doc["levels"]
    assert len(doc["rules"]) >= 14 and {r["source"] for r in doc["rules"]} >= SEEDS
    assert all(r["verdict"] in VERDICTS for r in doc["rules"])
    json.loads(study_json(doc))  # plain JSON: no NaN, no objects


# Measured sources --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["tiny", "dit-tiny"])
def test_a_backend_measures_everything_the_study_compares(space, tmp_path):
    doc = invoke_json("study", "--space", space, *QUICK_DEBUG, "--out", str(tmp_path / "a"))
    assert doc["source"]["kind"] == "synthetic" and doc["source"]["backend"] == "debug"
    assert {site["source"]["kind"] for site in doc["levels"]} == {"synthetic"}
    assert not any(site["probes_left_out"] for site in doc["levels"])
    assert {m["source"]["kind"] for m in doc["modifiers"] if m["applicable"]} == {"synthetic"}
    assert doc["length"]["source"]["kind"] == "synthetic"
    # streams are timed in torch, never by the debug backend: they come from the labelled roofline fallback
    assert doc["fallback"]["kind"] == "roofline estimate"
    assert {r["source"]["kind"] for r in doc["streaming"]["configs"]} == {"roofline estimate"}
    cached = Path(os.environ["VIDNAS_CACHE"]) / "tables"
    # the space's table (named as a campaign's, so either reuses the other's) and the study's further units
    assert len(list(cached.glob(f"{space}-debug-*.parquet"))) == 1
    assert len(list(cached.glob(f"study-{space}-debug-*.parquet"))) == 1
    again = invoke_json("study", "--space", space, *QUICK_DEBUG, "--out", str(tmp_path / "b"))
    assert again["rules"] == doc["rules"]  # the cache answers: the same figures


def test_streams_are_measured_in_torch_for_the_studied_space_and_cached(monkeypatch):
    """With a torch or ONNX Runtime backend, the studied space's causal variants are streamed in PyTorch (here a
    stand-in for ``measure_streaming``: no timing in tests), once; the causvid space at the papers' shape comes
    from the labelled roofline."""
    import dataclasses

    import vidnas.latency_models as latency_models
    from vidnas.latency_models import HarnessConfig, get_backend
    from vidnas.reports import BackendSource, fallback_roofline

    calls = []

    def fake_streaming(spec, *, chunk_frames, steps, chunks=None, repeats=3, device="cpu", threads=None):
        calls.append((spec.arch_id, chunk_frames))
        n = spec.backbone.frames // chunk_frames
        per_chunk = [10.0 + i for i in range(n)]
        return {"first_chunk_ms": per_chunk[0], "steady_chunk_ms": sum(per_chunk[1:] or per_chunk) / max(1, n - 1),
                "per_chunk_ms": per_chunk, "threads": 1}

    monkeypatch.setattr(latency_models, "measure_streaming", fake_streaming)
    space = get_space("tiny")
    config = dataclasses.replace(HarnessConfig.quick(), max_seconds=0.05)
    source = BackendSource(space, get_backend("debug"), config=config, quick=True)
    source.backend = dataclasses.replace(source.backend, name="torch")  # streams as the torch backend does
    options = StudyOptions(lengths=(8, 16))
    doc = run_study(space, source, fallback=fallback_roofline(source.table.meta, None, None), options=options)
    rows = doc["streaming"]["configs"]
    tiny = [r for r in rows if r["space"] == "tiny"]
    assert tiny and all(r["source"]["kind"] == "measured" and "torch eager" in r["source"]["label"] for r in tiny)
    assert {r["source"]["kind"] for r in rows if r["space"] == "causvid"} == {"roofline estimate"}
    assert len(calls) == len(tiny)
    run_study(space, source, fallback=fallback_roofline(source.table.meta, None, None), options=options)
    assert len(calls) == len(tiny)  # the second study reads the cached streams


def test_a_table_answers_with_its_figures_and_a_labelled_roofline_the_rest(tmp_path):
    table = tmp_path / "tiny.parquet"
    invoke_json("lut", "build", "--space", "tiny", "--backend", "debug", "--quick", "--max-seconds", "0.05",
                "--fit", "0", "--out", str(table))
    doc = invoke_json("study", "--space", "tiny", "--lut", str(table), "--out", str(tmp_path / "study"))
    assert doc["source"]["table"] == str(table) and doc["source"]["kind"] == "synthetic"
    assert {site["source"]["kind"] for site in doc["levels"]} == {"synthetic"}
    # a probe the table lacks is left out rather than mixed with another source
    assert {site["site"]: site["probes_left_out"] for site in doc["levels"]}["L0.res"] == ["attn3d"]
    # a funnelled layer or another length is not in the table: the whole comparison from the fallback, labelled
    assert doc["fallback"]["device"] == "laptop-cpu"
    assert {m["source"]["kind"] for m in doc["modifiers"] if m["name"].startswith("funnel")} == {"roofline estimate"}
    assert doc["length"]["source"]["kind"] == "roofline estimate"
    assert doc["space"]["shape"] == {"frames": 8, "height": 128, "width": 128}  # the table's shape


# Named errors --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    table = tmp_path_factory.mktemp("table") / "tiny.parquet"
    invoke_json("lut", "build", "--space", "tiny", "--backend", "debug", "--quick", "--max-seconds", "0.05",
                "--fit", "0", "--out", str(table))
    return table


@pytest.mark.parametrize("args, field, value", [
    (["--space", "tiny-huge", "--roofline", "h100"], "--space", "tiny-huge"),
    (["--space", "tiny", "--roofline", "h1000"], "--roofline", "h1000"),
    (["--space", "tiny"], "--lut/--roofline/--backend", "None"),
    (["--space", "tiny", "--roofline", "h100", "--backend", "debug"], "--lut/--roofline/--backend", "--roofline"),
    (["--space", "tiny", "--roofline", "h100", "--length-frames", "8,x"], "--length-frames", "8,x"),
    (["--space", "tiny", "--roofline", "h100", "--memory-budget", "-1"], "--memory-budget", "-1"),
    (["--space", "tiny", "--backend", "tensorrt"], "--backend", "tensorrt"),
    (["--space", "dit-tiny", "--lut", "TABLE"], "--lut", "TABLE"),
    (["--space", "tiny", "--lut", "TABLE", "--frames", "16"], "--frames", "16"),
])
def test_bad_input_is_refused_naming_the_field_and_value(args, field, value, tiny_table, tmp_path):
    args = [str(tiny_table) if a == "TABLE" else a for a in args]
    message = invoke_error("study", *args, "--out", str(tmp_path / "out"))
    assert f"`{field}`" in message and (str(tiny_table) if value == "TABLE" else value) in message
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_imported_table_is_checked_by_what_it_holds(tiny_table, tmp_path):
    """A table measured elsewhere and imported (a phone's) names no space: the study takes it when it holds the
    space's units, labelled as imported, and refuses it, naming it, when it holds none."""
    csv, imported = tmp_path / "phone.csv", tmp_path / "phone.parquet"
    assert runner.invoke(app, ["lut", "export", str(tiny_table), "--out", str(csv)]).exit_code == 0
    invoke_json("lut", "import", str(csv), "--out", str(imported))
    doc = invoke_json("study", "--space", "tiny", "--lut", str(imported), "--out", str(tmp_path / "ok"))
    assert doc["source"]["imported"] and "imported" in doc["source"]["label"]
    assert doc["memory_budget"]["bytes"] is None  # no figure for a device known only by its table
    assert next(r for r in doc["rules"] if r["id"] == "snapgen-v.memory")["verdict"] == "undecided"
    message = invoke_error("study", "--space", "dit-tiny", "--lut", str(imported), "--out", str(tmp_path / "no"))
    assert "`--lut`" in message and str(imported) in message and "holds none" in message


def test_a_table_of_another_space_is_refused_by_the_api_too(tiny_table):
    from vidnas.latency_models import LatencyTable
    from vidnas.reports import check_table_space

    with pytest.raises(SpecError) as info:
        check_table_space(LatencyTable.load(tiny_table), tiny_table, "snapgen-v")
    assert info.value.field == "--lut" and "`tiny`" in info.value.problem


# A campaign's Pareto set ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    run = tmp_path_factory.mktemp("campaign") / "run"
    config = parse_config({
        "name": NASTY, "space": {"name": "tiny-enum"}, "target": {"roofline": "phone-npu"},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "params", "direction": "maximize"}],
        "sampler": {"name": "random", "seed": 0}, "trials": 10,
    })
    run_campaign(config, run, local=True)
    return run


@pytest.fixture(scope="module")
def pareto_study(campaign, tmp_path_factory):
    out = tmp_path_factory.mktemp("study-run")
    return out, invoke_json("study", "--space", "tiny-enum", "--roofline", "phone-npu", "--run", str(campaign),
                            "--out", str(out))


def test_the_pareto_sets_placement_is_set_against_the_study(campaign, pareto_study):
    _, doc = pareto_study
    pareto = doc["pareto"]
    front = json.loads((campaign / "pareto" / "pareto.json").read_text())["pareto"]
    assert pareto["architectures"] == len(front) >= 1 and pareto["name"] == NASTY
    sites = {s["site"]: s for s in pareto["sites"]}
    study_sites = {s["site"]: s for s in doc["levels"]}
    for name, site in sites.items():
        assert site["placements"] == len(front) * len(study_sites[name]["slots"])
        assert site["cheapest"] == study_sites[name]["cheapest"]
    rule = doc["rules"][-1]
    assert rule["id"] == "pareto.follows_study" and rule["verdict"] in VERDICTS
    assert "thresholds" in rule["evidence"]


def test_a_run_of_another_space_is_refused(campaign, tmp_path):
    message = invoke_error("study", "--space", "tiny", "--roofline", "h100", "--run", str(campaign),
                           "--out", str(tmp_path / "x"))
    assert "`--run`" in message and str(campaign) in message and "tiny-enum" in message


# The page in a real browser -------------------------------------------------------------------------------------


def _chromium() -> str | None:
    """Chromium from the system's packages, installed here if missing (as root, with apt-get)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900)
        subprocess.run(install, env=env, capture_output=True, timeout=900)
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = _chromium()
    if executable is None:
        pytest.skip("Chromium is not installed and could not be installed from the system's packages "
                    "(apt-get install chromium needs root and the Debian mirror)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def test_the_study_page_in_a_real_browser(pareto_study, browser):
    out, doc = pareto_study
    html = (out / "study.html").read_text()
    assert NASTY not in html and "&lt;script&gt;window.__pwned" in html
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors, requests = [], []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: requests.append(req.url))
    page.goto((out / "study.html").resolve().as_uri())
    page.wait_for_load_state("load")
    loaded = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert len(loaded) == 7 and all(loaded)  # six figures of the study and the Pareto set's placement
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests)
    assert page.evaluate("window.__pwned") is None
    assert NASTY in page.inner_text("body")  # shown as text
    verdicts = page.eval_on_selector_all("table.verdicts tr td:nth-child(3)", "cells => cells.map(c => c.innerText)")
    assert verdicts == [r["verdict"] for r in doc["rules"]]
    page.emulate_media(media="print")
    assert page.eval_on_selector_all("img", "imgs => imgs.every(i => i.getBoundingClientRect().width > 0)")

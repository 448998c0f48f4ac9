"""The HTML report: built from a small real campaign, opened in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from vidnas.reports import load_run, render, write_report
from vidnas.runners import parse_config, run_campaign

NASTY = "<script>window.__pwned = 1</script> & co"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    config = parse_config({
        "name": NASTY,
        "space": {"name": "tiny-enum"},
        "target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False, "fit": 5}},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "params", "direction": "maximize"}],
        "constraints": {"params": 1_500_000},
        "sampler": {"name": "random", "seed": 0},
        "trials": 16,
    })
    run_campaign(config, run, local=True)
    return run


def test_report_is_self_contained_and_escapes_user_strings(campaign):
    path = write_report(campaign)
    html = path.read_text()
    assert NASTY not in html and "&lt;script&gt;window.__pwned" in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    assert html.count('src="data:image/png;base64,') >= 7
    for section in ("Pareto front", "Search progress", "Where the temporal layers go", "Latency per slot",
                    "Can the latency be trusted?", "Quality proxy", "Campaign", "Environment", "Reproduce"):
        assert section in html


def test_report_tables_come_from_the_run(campaign):
    data = load_run(campaign)
    assert len(data.pareto) >= 1
    assert data.table_rows is not None and len(data.table_rows) > 0
    html = render(data)
    for entry in data.pareto:
        assert entry["arch_id"] in html


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


def test_report_in_a_real_browser(campaign, browser, tmp_path):
    path = write_report(campaign)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors, requests = [], []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: requests.append(req.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    loaded = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert len(loaded) >= 7 and all(loaded)
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests)
    assert page.evaluate("window.__pwned") is None  # the injected script never ran
    assert NASTY in page.inner_text("h1")  # ... and is shown as text
    page.emulate_media(media="print")  # prints cleanly: figures still laid out
    assert page.eval_on_selector_all("img", "imgs => imgs.every(i => i.getBoundingClientRect().width > 0)")


class _Stop(Exception):
    pass


def test_report_after_a_kill_and_resume_counts_the_stale_trials(tmp_path):
    """Two trials killed with their driver: the resumed campaign's report counts them as failed (stale)
    beside the evaluations, and its hypervolume curve stays within [0, 1]."""
    import optuna

    from vidnas.reports._figures import hypervolume_info
    from vidnas.runners._driver import open_storage
    from vidnas.search_space import get_space

    run = tmp_path / "run"
    config = parse_config({
        "name": "killed", "space": {"name": "tiny-enum"},
        "target": {"roofline": "laptop-cpu", "roofline_dtype": "float32"},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "params", "direction": "maximize"}],
        "constraints": {"params": 1_450_000}, "sampler": {"name": "random", "seed": 1}, "trials": 12,
    })

    def stop_after_five(progress):
        if progress.done >= 5:
            raise _Stop

    with pytest.raises(_Stop):
        run_campaign(config, run, local=True, on_progress=stop_after_five)
    study = optuna.load_study(study_name="killed", storage=open_storage(config, run),
                              sampler=optuna.samplers.RandomSampler(seed=2))  # the curve is then reproducible
    from vidnas.runners._trials import mark_sampled

    for _ in range(2):  # the two trials the killed driver was evaluating (sampled, as the driver does)
        trial = study.ask()
        get_space("tiny-enum").sample(trial)
        mark_sampled(trial)
    result = run_campaign(None, run, resume=True, local=True)
    assert result.trials == 12 and result.stale == 2
    html = write_report(run).read_text()
    assert "14 trials, 2 failed: 0 whose evaluation failed and 2 stale" in html
    curve = hypervolume_info(load_run(run))["hypervolume"]
    assert len(curve) == 14 and curve.between(0, 1).all() and curve.is_monotonic_increasing
    assert curve.iloc[-1] > 0.5

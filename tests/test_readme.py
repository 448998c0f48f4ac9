"""The README's two set-up commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first_screen = text.split("## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", first_screen, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_the_readme_campaign_is_a_valid_campaign():
    """The campaign the README shows first (the one measured in benchmarks/RESULTS.md) parses as it stands."""
    import yaml

    from vidnas.runners import parse_config

    text = (ROOT / "README.md").read_text()
    block = re.findall(r"```yaml\n(.+?)\n```", text.split("## A campaign", 1)[1], flags=re.S)[0]
    config = parse_config(yaml.safe_load(block))
    assert config.space.name == "snapgen-v" and (config.space.frames, config.space.height) == (16, 288)
    assert any(o.metric == "proxy:supernet" for o in config.objectives)

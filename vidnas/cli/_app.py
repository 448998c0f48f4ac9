"""The root ``vidnas`` command."""

from __future__ import annotations

import typer

from vidnas.cli._latency import latency_app
from vidnas.cli._lut import lut_app
from vidnas.cli._proxies import proxies_app
from vidnas.cli._search import export_command, report_command, search_command
from vidnas.cli._space import space_app
from vidnas.cli._study import study_command
from vidnas.cli._verify import verify_command

app = typer.Typer(
    name="vidnas",
    help="Hardware-aware architecture search and benchmarking for efficient video diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(space_app, name="space")
app.add_typer(lut_app, name="lut")
app.add_typer(latency_app, name="latency")
app.add_typer(proxies_app, name="proxies")
app.command("search")(search_command)
app.command("report")(report_command)
app.command("export")(export_command)
app.command("verify")(verify_command)
app.command("study")(study_command)


def load_plugins_at_startup() -> None:
    """Load every plugin entry point once, each failure a one-line warning on stderr (never a crash)."""
    import sys
    import warnings

    from vidnas._plugins import PluginWarning, load_plugins

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        load_plugins()
    for w in caught:
        sys.stderr.write(f"warning: {w.message}\n")


def main() -> None:
    load_plugins_at_startup()
    app()

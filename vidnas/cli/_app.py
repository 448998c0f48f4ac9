"""The root ``vidnas`` command."""

from __future__ import annotations

import typer

from vidnas.cli._latency import latency_app
from vidnas.cli._lut import lut_app
from vidnas.cli._proxies import proxies_app
from vidnas.cli._search import export_command, report_command, search_command
from vidnas.cli._space import space_app

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


def main() -> None:
    app()

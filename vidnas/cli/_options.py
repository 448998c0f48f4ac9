"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

from vidnas.cli._common import JSON_HELP

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
SpecArg = Annotated[str, typer.Argument(help="A spec JSON file or a preset name (tiny, svd, snapgen-v, mobilevd).")]
FramesOpt = Annotated[int | None, typer.Option("--frames", help="Frames per clip (default: the spec's).")]
HeightOpt = Annotated[int | None, typer.Option("--height", help="Video height in pixels (default: the spec's).")]
WidthOpt = Annotated[int | None, typer.Option("--width", help="Video width in pixels (default: the spec's).")]
WidthMultOpt = Annotated[float | None, typer.Option("--width-mult", help="Scale every level's channels "
                                                                   "(rounded to whole heads and norm groups).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="torch, onnxruntime, coreml, debug, or a plugin's "
                                                           "(`vidnas lut backends` lists them).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Intra-op threads (default: the library's).")]
BatchOpt = Annotated[int, typer.Option("--batch", help="Clips per UNet call (2 for batched CFG).")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Fewer samples and looser targets (smoke runs).")]
MaxSecondsOpt = Annotated[float | None, typer.Option("--max-seconds",
                                                     help="Sampling budget per measured item, seconds.")]
GraphOptOpt = Annotated[str, typer.Option("--graph-optimization",
                                          help="ONNX Runtime level: disable, basic, extended, all.")]
BasisOpt = Annotated[str, typer.Option("--basis", help="Figures to stand behind: auto (decided per measurement "
                                                       "group from the data), paired (per-round ratio to the "
                                                       "reference workload), level (rescaled by the reference's "
                                                       "median) or plain (medians).")]
RemeasureOpt = Annotated[int | None, typer.Option("--remeasure", help="Extra passes over items still flagged noisy "
                                                                      "(default: the harness's).")]


BackendOptionOpt = Annotated[list[str] | None, typer.Option(
    "--backend-option", "-O", help="KEY=VALUE passed to the backend's constructor (repeatable; values are YAML "
                                   "scalars), e.g. -O sleep_ms=50 for the debug backend.")]


def parse_backend_options(items: list[str] | None) -> dict:
    """``KEY=VALUE`` strings as a dict, each value read as a YAML scalar (``50`` is an int, ``true`` a bool)."""
    import yaml

    from vidnas._errors import SpecError

    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError("--backend-option", item, "is not KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            raise SpecError(f"--backend-option {key.strip()}", raw, "must be a scalar")
        out[key.strip()] = value
    return out


def harness_config(quick: bool, max_seconds: float | None, basis: str = "auto", remeasure: int | None = None):
    import dataclasses

    from vidnas.latency_models import HarnessConfig

    config = HarnessConfig.quick() if quick else HarnessConfig()
    if max_seconds is not None:
        config = dataclasses.replace(config, max_seconds=max_seconds)
    if basis != config.basis:
        config = dataclasses.replace(config, basis=basis)
    if remeasure is not None:
        config = dataclasses.replace(config, remeasure_rounds=remeasure)
    return config


def make_backend(name: str, device: str, threads: int | None, graph_optimization: str = "all",
                 options: dict | None = None):
    from vidnas.latency_models import get_backend

    given = {"graph_optimization": graph_optimization} if name == "onnxruntime" else {}
    given.update(options or {})
    return get_backend(name, device=device, threads=threads, field="--backend", **given)


def progress_bar(description: str):
    """A rich progress bar on stderr with an ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from vidnas.cli._common import stderr_console

    return Progress(TextColumn(f"[bold]{description}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[item]}"),
                    console=stderr_console(), transient=False)


def stage_updater(bar):
    """``on_progress(stage, i, total)`` for ``bar``: one task (line) per stage, created when first seen."""
    tasks: dict[str, object] = {}

    def on_progress(stage: str, i: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, item="")
        bar.update(tasks[stage], completed=i)

    return on_progress

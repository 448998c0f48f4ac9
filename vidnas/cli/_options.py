"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

from vidnas.cli._common import JSON_HELP

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def _registered(kind: str) -> str:
    """The names registered as presets or spaces, for ``--help`` (plugins' included)."""
    from vidnas.search_space import list_presets, list_spaces

    return ", ".join(list_presets() if kind == "presets" else list_spaces())


SpecArg = Annotated[str, typer.Argument(help=f"A spec JSON file or a preset name ({_registered('presets')}; "
                                             "`vidnas space list` describes them).")]
SpaceArg = Annotated[str, typer.Argument(help=f"A search space ({_registered('spaces')}; `vidnas space list` "
                                              "describes them).")]
FramesOpt = Annotated[int | None, typer.Option("--frames", help="Frames per clip (default: the spec's).")]
HeightOpt = Annotated[int | None, typer.Option("--height", help="Video height in pixels (default: the spec's).")]
WidthOpt = Annotated[int | None, typer.Option("--width", help="Video width in pixels (default: the spec's).")]
WidthMultOpt = Annotated[float | None, typer.Option("--width-mult", help="Scale every level's channels "
                                                                   "(rounded to whole heads and norm groups).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="torch, onnxruntime, coreml, debug, or a plugin's "
                                                           "(`vidnas lut backends` lists them).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Intra-op threads (default: the library's).")]
BatchOpt = Annotated[int, typer.Option("--batch", help="Clips per network call (2 for batched CFG).")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Fewer samples and looser targets (smoke runs).")]
AllowLoadOpt = Annotated[bool, typer.Option("--allow-load", help="Measure even while other processes take the "
                                                                 "cores the measurement needs (every figure then "
                                                                 "flagged as measured under load); without it, a "
                                                                 "busy machine stops the command (exit code 2).")]
MaxSecondsOpt = Annotated[float | None, typer.Option("--max-seconds",
                                                     help="Sampling budget per measured item, seconds.")]
GraphOptOpt = Annotated[str | None, typer.Option("--graph-optimization",
                                                 help="Deprecated: use -O graph_optimization=LEVEL (ONNX Runtime: "
                                                      "disable, basic, extended, all).")]
BasisOpt = Annotated[str, typer.Option("--basis", help="Figures to stand behind: auto (decided per measurement "
                                                       "group from the data), paired (per-round ratio to the "
                                                       "reference workload), level (rescaled by the reference's "
                                                       "median) or plain (medians).")]
RemeasureOpt = Annotated[int | None, typer.Option("--remeasure", help="Extra passes over items still flagged noisy "
                                                                      "(default: the harness's).")]


BackendOptionOpt = Annotated[list[str] | None, typer.Option(
    "--backend-option", "-O", help="KEY=VALUE: an option of the backend, checked against its schema (repeatable; "
                                   "values are YAML scalars; `vidnas lut backends` lists each backend's), e.g. "
                                   "-O graph_optimization=basic for onnxruntime, -O sleep_ms=50 for debug.")]


def parse_backend_options(items: list[str] | None) -> dict:
    """``KEY=VALUE`` strings as a dict, each value read as a YAML scalar (``50`` is an int, ``true`` a bool)."""
    import yaml

    from vidnas._errors import SpecError

    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError("-O", item, "is not KEY=VALUE", "e.g. -O graph_optimization=basic")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            raise SpecError(f"-O {key.strip()}", raw, "must be a scalar")
        out[key.strip()] = value
    return out


def backend_options(definition, items: list[str] | None, deprecated: dict | None = None) -> dict:
    """``-O KEY=VALUE`` options for a backend, with deprecated flags mapped onto them.

    ``deprecated`` maps an option to ``(flag, value)``, the value None when the flag was not
    given. A given flag warns; it sets the option where the backend declares it (a different
    ``-O`` value for it is refused) and is ignored otherwise, as it always was."""
    from vidnas._errors import SpecError

    given = parse_backend_options(items)
    names = definition.option_names() or []
    for key, (flag, value) in (deprecated or {}).items():
        if value is None:
            continue
        if key not in names:
            warn(f"{flag} is deprecated, and backend `{definition.name}` has no option {key}: ignored")
            continue
        warn(f"{flag} is deprecated; use -O {key}={value}")
        if key in given and given[key] != value:
            raise SpecError(flag, value, f"contradicts -O {key}={given[key]}", "give the option once, with -O")
        given[key] = value
    return given


def graph_optimization_alias(value: str | None) -> dict:
    """The deprecated ``--graph-optimization`` flag: an alias of ``-O graph_optimization`` (see make_backend)."""
    return {"graph_optimization": ("--graph-optimization", value)}


def checked_backend_options(definition, given: dict) -> dict:
    """``given`` checked against the backend's schema, errors naming ``-O KEY`` and the value."""
    from vidnas._errors import SpecError

    try:
        return definition.check_options(given, "-O")
    except SpecError as exc:
        field = f"-O {exc.field[3:]}" if exc.field.startswith("-O.") else exc.field
        raise SpecError(field, exc.value, exc.problem, exc.hint) from None


def warn(message: str) -> None:
    """A one-line warning on stderr (deprecated flags), as plugin failures are shown."""
    import sys

    sys.stderr.write(f"warning: {message}\n")


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


def make_backend(name: str, device: str, threads: int | None, options: list[str] | None = None,
                 deprecated: dict | None = None, field: str = "--backend"):
    """Backend ``name`` with its ``-O`` options (and deprecated flags, see :func:`backend_options`) checked."""
    from vidnas.latency_models import get_backend_def

    definition = get_backend_def(name, field)
    given = backend_options(definition, options, deprecated)
    checked_backend_options(definition, given)
    return definition.create(device=device, threads=threads, options=given, options_field="-O")


def progress_bar(description: str, *, columns: tuple | None = None):
    """rich's live bar with an ETA on a terminal; elsewhere (a log, a file) throttled plain lines
    (:class:`vidnas._progress.LogProgress`: done, total, rate, ETA, at most one every few seconds)."""
    from vidnas._progress import LogProgress
    from vidnas.cli._common import stderr_console

    console = stderr_console()
    if not console.is_terminal:
        return LogProgress(description)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = columns or (TextColumn(f"[bold]{description}[/]"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                          TextColumn("{task.fields[item]}"))
    return Progress(*columns, console=console, transient=False)


def stage_updater(bar):
    """``on_progress(stage, i, total)`` for ``bar``: one task (line) per stage, created when first seen."""
    tasks: dict[str, object] = {}

    def on_progress(stage: str, i: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, item="")
        bar.update(tasks[stage], completed=i)

    return on_progress

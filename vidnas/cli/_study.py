"""``vidnas study``: the seeds' design rules, judged on one target from a roofline, a table or a backend."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from vidnas.cli._common import emit_json, handle_errors, stdout_console, stdout_to_stderr
from vidnas.cli._options import (
    AllowLoadOpt,
    BackendOptionOpt,
    DeviceOpt,
    FramesOpt,
    HeightOpt,
    JsonOpt,
    MaxSecondsOpt,
    QuickOpt,
    ThreadsOpt,
    WidthMultOpt,
    WidthOpt,
    harness_config,
    make_backend,
    progress_bar,
)


@handle_errors
def study_command(
    space: Annotated[str, typer.Option("--space", help="The search space studied (`vidnas space list`).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for study.html and study.json (created).")],
    lut: Annotated[Path | None, typer.Option("--lut", help="A latency table measured on the target (Parquet; "
                                                           "built here or imported from a phone).")] = None,
    roofline: Annotated[str | None, typer.Option(
        "--roofline", help="A datasheet device instead (an estimate): phone-npu, laptop-cpu, a100, h100, h200.")
    ] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="Measure what the study needs on this backend now (torch, onnxruntime, coreml, debug, or "
                          "a plugin's), the space's table cached as a campaign's is.")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="A campaign's run directory over the same space: its "
                                                           "Pareto set's placement against the study.")] = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    width_mult: WidthMultOpt = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="dtype of a roofline estimate (default: float16 where "
                                                              "the device has it).")] = None,
    fallback: Annotated[str | None, typer.Option(
        "--fallback-roofline", help="Datasheet device for the comparisons a table cannot answer (default: the one "
                                    "closest to the table's target).")] = None,
    memory_budget: Annotated[float | None, typer.Option(
        "--memory-budget", help="Bytes a network may hold on the target (default: the datasheet device's, or this "
                                "machine's memory for a CPU table).")] = None,
    length_frames: Annotated[str, typer.Option("--length-frames", help="Latent frame counts of the length study."
                                               )] = "8,16,32,64",
    steps: Annotated[int, typer.Option("--steps", help="Denoising passes per streamed chunk (one more writes the "
                                                       "cache).")] = 4,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    quick: QuickOpt = False,
    max_seconds: MaxSecondsOpt = None,
    backend_option: BackendOptionOpt = None,
    allow_load: AllowLoadOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Which of the seed papers' design rules hold on this target: where each temporal layer is cheap, what
    funnels, multiscaling and pruning save, how cost grows with length, how causal designs stream, and (with
    --run) what a campaign's Pareto set chose; one HTML page and one JSON document, without training."""
    from vidnas._errors import SpecError
    from vidnas.reports import StudyOptions, run_study, write_study
    from vidnas.search_space import get_space

    given = [name for name, value in (("--lut", lut), ("--roofline", roofline), ("--backend", backend))
             if value is not None]
    if len(given) != 1:
        raise SpecError("--lut/--roofline/--backend", given or None, "give exactly one of them")
    if backend_option and backend is None:
        raise SpecError("-O", backend_option[0], "needs --backend", "options go to the backend measured")
    try:
        lengths = tuple(sorted({int(v) for v in length_frames.split(",") if v.strip()}))
    except ValueError:
        raise SpecError("--length-frames", length_frames, "must be integers like 8,16,32,64") from None
    if memory_budget is not None and memory_budget <= 0:
        raise SpecError("--memory-budget", memory_budget, "must be a positive number of bytes")
    shape = {"frames": frames, "height": height, "width": width, "width_mult": width_mult}
    table = None
    if lut is not None:
        from vidnas.latency_models import LatencyTable
        from vidnas.reports import check_table_space

        table = LatencyTable.load(lut)
        check_table_space(table, lut, space)
        shape = _table_shape(table, lut, shape)
    searched = get_space(space, field="--space", **shape)
    if run is not None and not Path(run).is_dir():
        raise SpecError("--run", str(run), "is not a directory", "give the directory of a `vidnas search` run")
    options = StudyOptions(lengths=lengths, steps=steps, memory_budget=memory_budget, run_dir=run)
    with _guard(backend, threads, allow_load) as guard, progress_bar(f"study {space}") as bar, stdout_to_stderr():
        progress = _stages(bar)
        source, fallback_source = _sources(searched, table, lut, roofline, backend, dtype, fallback, device, threads,
                                           backend_option, quick, max_seconds, progress, guard)
        document = run_study(searched, source, fallback=fallback_source, options=options, progress=progress)
        document["command"] = _command_line([
            ("--space", space), ("--lut", lut), ("--roofline", roofline), ("--backend", backend), ("--run", run),
            ("--frames", frames), ("--height", height), ("--width", width), ("--width-mult", width_mult),
            ("--dtype", dtype), ("--fallback-roofline", fallback), ("--memory-budget", memory_budget),
            ("--length-frames", None if length_frames == "8,16,32,64" else length_frames),
            ("--steps", None if steps == 4 else steps), ("--device", None if device == "cpu" else device),
            ("--threads", threads), ("--quick", quick), ("--max-seconds", max_seconds), ("-O", backend_option),
            ("--out", out)])
        paths = write_study(document, out)
    document["files"] = {k: str(v) for k, v in paths.items()}
    if as_json:
        emit_json(document)
        return
    _print_verdicts(document)


def _command_line(options: list[tuple[str, Any]]) -> str:
    """``vidnas study`` with the options given (None and False left out), to reproduce the study."""
    parts = ["vidnas", "study"]
    for flag, value in options:
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        else:
            parts += [item for v in (value if isinstance(value, list) else [value]) for item in (flag, str(v))]
    return " ".join(shlex.quote(p) for p in parts)


def _stages(bar):
    """``progress(stage, done, total)``: one line of the bar per stage (the space's table, the study's units)."""
    tasks: dict[str, Any] = {}
    seen: dict[str, tuple[int, int]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        # a table build reports each pass (measure, re-check, re-measure) from 0: each its own task
        last = seen.get(stage)
        if stage not in tasks or (last is not None and (done < last[0] or total != last[1])):
            tasks[stage] = bar.add_task(stage, total=total, item=stage)
        seen[stage] = (done, total)
        bar.update(tasks[stage], total=total, completed=done)

    return progress


def _table_shape(table, path: Path, shape: dict[str, Any]) -> dict[str, Any]:
    """The study's shape from the table's (where the user gave none); a contradicting one is refused."""
    from vidnas._errors import SpecError

    have = dict(table.meta.space_shape or {})
    if not have:
        return shape
    asked = {k: v for k, v in shape.items() if v is not None}
    for key, value in asked.items():
        if key in have and have[key] != value:
            raise SpecError(f"--{key.replace('_', '-')}", value, f"differs from the shape the table {path} was "
                                                                 f"measured at ({have})",
                            "drop the option to study at the table's shape, or build a table at this one")
    return {k: asked.get(k, have.get(k)) for k in shape}


def _guard(backend: str | None, threads: int | None, allow_load: bool):
    """The busy-machine guard when the study measures on this machine (``--backend``), else none."""
    import contextlib

    from vidnas.latency_models import get_backend_def, load_guard

    if backend is None:
        return contextlib.nullcontext(None)
    return load_guard(get_backend_def(backend, "--backend").factory, threads, allow_load=allow_load,
                      what="vidnas study --backend")


def _sources(space, table, lut, roofline, backend, dtype, fallback, device, threads, backend_option, quick,
             max_seconds, progress, guard=None):
    """The primary latency source and the roofline fallback for what it cannot answer."""
    from vidnas.reports import BackendSource, RooflineSource, TableSource, fallback_roofline

    if roofline is not None:
        return RooflineSource(roofline, dtype), None
    if table is not None:
        return TableSource(table, lut), fallback_roofline(table.meta, fallback, None if fallback is None else dtype)
    be = make_backend(backend, device, threads, backend_option)
    source = BackendSource(space, be, config=harness_config(quick, max_seconds), quick=quick, progress=progress,
                           load=guard)
    return source, fallback_roofline(source.table.meta, fallback, None if fallback is None else dtype)


def _print_verdicts(doc: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = stdout_console()
    colour = {"holds": "green", "fails": "red", "undecided": "yellow"}
    table = Table(title=f"{doc['space']['name']}: {escape(doc['source']['label'])}", show_lines=True)
    for col in ("source", "rule", "verdict", "numbers"):
        table.add_column(col, overflow="fold")
    for r in doc["rules"]:
        table.add_row(r["source"], escape(r["rule"]), f"[{colour[r['verdict']]}]{r['verdict']}[/]", escape(r["why"]))
    console.print(table)
    console.print(f"study: {doc['files']['html']} and {doc['files']['json']} ({doc['seconds']:.1f} s)")

"""``vidnas search``, ``vidnas report`` and ``vidnas export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidnas.cli._common import emit_json, handle_errors, stderr_console, stdout_console, stdout_to_stderr
from vidnas.cli._options import JsonOpt, progress_bar


@handle_errors
def search_command(
    config: Annotated[Path | None, typer.Argument(help="Campaign YAML (default: the embedded campaign).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the campaign in this run directory."
                                                )] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/NAME-TIMESTAMP).")] = None,
    trials: Annotated[int | None, typer.Option("--trials", help="Override the number of trials.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Override the evaluations in flight.")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="An existing Ray cluster.")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL (sqlite:///..., "
                                                                  "postgresql://...).")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the HTML report.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Validate the campaign and print it resolved (defaults "
                                                        "filled in); run nothing.")] = False,
    list_samplers: Annotated[bool, typer.Option("--list-samplers", help="List the registered samplers and their "
                                                                        "options, then exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a search campaign (the main job); print where its Pareto set and report are."""
    import dataclasses
    import datetime as dt

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from vidnas._errors import SpecError
    from vidnas.runners import load_config, run_campaign, validate_config

    if list_samplers:
        _print_samplers(as_json)
        return
    if resume is not None:
        if config is not None:
            raise SpecError("CONFIG", str(config), "cannot be given with --resume (the run keeps its own config)")
        run_dir, cfg = resume, None
        if check:
            if not (resume / "config.yaml").exists():
                raise SpecError("RUN_DIR", str(resume), "holds no campaign to resume (no config.yaml)")
            _print_config(load_config(resume / "config.yaml"), as_json)
            return
    else:
        cfg = load_config(config)
        overrides = {k: v for k, v in (("trials", trials), ("workers", workers), ("storage", storage)) if v is not None}
        if ray_address is not None:
            overrides["ray"] = dataclasses.replace(cfg.ray, address=ray_address)
        cfg = dataclasses.replace(cfg, **overrides)
        validate_config(cfg)
        if check:
            _print_config(cfg, as_json)
            return
        run_dir = out or Path("runs") / f"{cfg.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    console = stderr_console()
    columns = (TextColumn("[bold]search[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with progress_bar("search", columns=columns) as bar:
        task = bar.add_task("trials", total=None, status="")

        def on_progress(p) -> None:
            bar.update(task, total=p.total, completed=p.done,
                       status=f"feasible {p.feasible}  failed {p.failed}  pareto {p.pareto}")

        with stdout_to_stderr():  # Ray's own messages (a node lost, a worker died) never mix with the result
            result = run_campaign(cfg, run_dir, resume=resume is not None, on_progress=on_progress,
                                  log=lambda m: bar.console.print(f"[dim]{m}[/]"))
    report = None
    if not no_report:
        from vidnas.reports import write_report

        report = write_report(result.run_dir)
    resume_line = f"vidnas search --resume {result.run_dir}"
    payload = {"run_dir": str(result.run_dir), "pareto_dir": str(result.run_dir / "pareto"),
               "report": str(report) if report else None, "trials": result.trials, "complete": result.complete,
               "failed": result.failed, "stale": result.stale, "screened": result.screened,
               "stopped": result.stopped, "feasible": result.feasible,
               "evaluated_here": result.evaluated_here, "interrupted": result.interrupted,
               "resume": resume_line if result.interrupted else None, "pareto": result.pareto,
               "seconds": result.seconds}
    if result.interrupted:  # the line a user needs, whatever the output mode
        console.print(f"interrupted after {result.trials} trials; the trials in flight were re-queued. "
                      f"Resume with: {resume_line}", highlight=False, markup=False, soft_wrap=True)
    if result.stopped:
        console.print(f"stopped after {result.trials} trials: {result.stopped}", highlight=False, markup=False,
                      soft_wrap=True)
    if as_json:
        emit_json(payload)
        if result.interrupted:
            raise typer.Exit(130)
        return
    out_console = stdout_console()
    stale = f", {result.stale} stale (lost with a driver or worker; re-queued)" if result.stale else ""
    stale += f", {result.screened} screened by cheap constraints (not evaluated)" if result.screened else ""
    out_console.print(f"{result.trials} trials ({result.failed} failed{stale}, {result.feasible} feasible) in "
                      f"{result.seconds:.0f} s; Pareto set of {len(result.pareto)}: {result.run_dir / 'pareto'}")
    for entry in result.pareto:
        values = ", ".join(f"{k}={v:.4g}" for k, v in entry["values"].items())
        out_console.print(f"  {entry['rank']:2d}  {entry['arch_id']}  {values}")
    if report:
        out_console.print(f"report: {report}")
    if result.interrupted:
        raise typer.Exit(130)


def _print_config(cfg, as_json: bool) -> None:
    if as_json:
        emit_json({"config": cfg.to_dict()})
    else:
        stdout_console().print(cfg.to_yaml(), end="", markup=False, highlight=False)


def _print_samplers(as_json: bool) -> None:
    from vidnas.runners import SAMPLERS, get_sampler, list_samplers

    rows = []
    for name in list_samplers():
        d = get_sampler(name)
        rows.append({"name": name, "summary": d.summary, "exhaustive": d.exhaustive,
                     "source": SAMPLERS.origin(name),
                     "options": [{"name": o.name, "type": o.kind.__name__, "default": o.default, "doc": o.doc,
                                  "minimum": o.minimum, "maximum": o.maximum,
                                  "choices": list(o.choices) if o.choices else None} for o in d.options]})
    if as_json:
        emit_json({"samplers": rows})
        return
    from rich.table import Table

    table = Table(title="Samplers (config: sampler: {name: NAME, seed: S, OPTION: VALUE, ...})")
    for col in ("sampler", "options (default)", "summary", "from"):
        table.add_column(col, overflow="fold")
    for r in rows:
        options = ", ".join(f"{o['name']}={o['default']}" for o in r["options"]) or "-"
        table.add_row(r["name"], options, r["summary"] + (" [enumerates the space]" if r["exhaustive"] else ""),
                      r["source"])
    stdout_console().print(table)


@handle_errors
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A campaign's run directory.")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default: RUN_DIR/report.html).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the campaign's self-contained HTML report."""
    from vidnas.reports import write_report

    path = write_report(run_dir, out)
    if as_json:
        emit_json({"report": str(path)})
    else:
        stdout_console().print(f"report: {path}")


@handle_errors
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A campaign's run directory.")],
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: onnx, coreml, safetensors "
                                                          "(PyTorch weights, ready for training).")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", help="Directory (default: RUN_DIR/export).")] = None,
    init_from: Annotated[Path | None, typer.Option(
        "--init-from", help="Pretrained weights of the reference model (a .safetensors file or a diffusers model "
                            "folder): blocks that exist in both take them, new or changed layers keep their "
                            "initialisation; a report per model.")] = None,
    reference: Annotated[str, typer.Option("--reference", help="Whose parameter names the checkpoint uses.")
                         ] = "diffusers",
    as_json: JsonOpt = False,
) -> None:
    """Write the Pareto set's models (ONNX, Core ML, safetensors weights)."""
    from vidnas.runners import export_run

    written = export_run(run_dir, tuple(f.strip() for f in formats.split(",") if f.strip()), out=out,
                         init_from=init_from, reference=reference)
    if as_json:
        emit_json({"exports": written})
        return
    console = stdout_console()
    for w in written:
        console.print(f"{w['rank']:2d} {w['arch_id']}: " + ", ".join(
            f"{k}={v}" for k, v in w.items() if k not in ("rank", "arch_id", "init")))
        if "init" in w:
            i = w["init"]
            console.print(f"   weights: {i['loaded']} loaded, {i['initialised']} kept at initialisation, "
                          f"{i['unused']} reference keys unused, {i['mismatched']} shape mismatches "
                          f"(report: {i['report']})")

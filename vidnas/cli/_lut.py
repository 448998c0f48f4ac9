"""``vidnas lut``: build, show, import and export latency lookup tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidnas.cli._common import emit_json, handle_errors, stdout_console
from vidnas.cli._options import (
    AllowLoadOpt,
    BackendOpt,
    BackendOptionOpt,
    BasisOpt,
    BatchOpt,
    DeviceOpt,
    FramesOpt,
    GraphOptOpt,
    HeightOpt,
    JsonOpt,
    MaxSecondsOpt,
    QuickOpt,
    RemeasureOpt,
    ThreadsOpt,
    WidthMultOpt,
    WidthOpt,
    backend_options,
    checked_backend_options,
    graph_optimization_alias,
    harness_config,
    make_backend,
    progress_bar,
)

lut_app = typer.Typer(help="Latency lookup tables: build, show, import, export.", no_args_is_help=True)


@lut_app.command("build")
@handle_errors
def build_command(
    out: Annotated[Path, typer.Option("--out", help="The table to write (Parquet); resumed if it exists.")],
    space: Annotated[str, typer.Option("--space", help="Search space whose units are measured.")] = "tiny",
    backend: BackendOpt = "onnxruntime",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    batch: BatchOpt = 1,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    width_mult: WidthMultOpt = None,
    fit: Annotated[int, typer.Option("--fit", help="Architectures measured end to end to fit the correction "
                                                   "(0: none).")] = 8,
    fit_seed: Annotated[int, typer.Option("--fit-seed", help="Seed of the architectures for the fit.")] = 1000,
    graph_optimization: GraphOptOpt = None,
    quick: QuickOpt = False,
    max_seconds: MaxSecondsOpt = None,
    basis: BasisOpt = "auto",
    remeasure: RemeasureOpt = None,
    backend_option: BackendOptionOpt = None,
    allow_load: AllowLoadOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure every distinct unit a search space can produce; resumable, saved after each entry."""
    import time

    from vidnas._progress import pass_tasks
    from vidnas.latency_models import BuildWatch, build_table, fit_correction, load_guard, space_units, table_summary
    from vidnas.search_space import get_space

    searched = get_space(space, frames=frames, height=height, width=width, width_mult=width_mult)
    be = make_backend(backend, device, threads, backend_option, graph_optimization_alias(graph_optimization))
    config = harness_config(quick, max_seconds, basis, remeasure)
    start = time.perf_counter()
    with load_guard(be, getattr(be, "threads", None), allow_load=allow_load, what="lut build") as guard, \
            progress_bar(f"lut build {space} on {backend}/{device}") as bar:
        stage, on_entry = pass_tasks(bar, item_field="item")
        table = build_table(searched, be, out, batch=batch, config=config,
                            watch=BuildWatch(progress=on_entry, stage=stage, load=guard))
        if fit:
            fit_task = bar.add_task("end-to-end fit", total=fit, item="")
            fit_correction(table, searched, be, n=fit, seed=fit_seed, batch=batch, config=config,
                           progress=lambda i, n: bar.update(fit_task, total=n, completed=i),
                           artefacts=out.with_name(out.stem + ".artefacts"))
            if guard is not None and guard.item_under_load():  # raises, before the fit is saved, unless allowed
                table.meta.harness["load"] = guard.summary()
            table.save(out)
    summary = table_summary(table, [u.signature_id for u in space_units(searched)], batch)
    summary["path"] = str(out)
    summary["seconds"] = time.perf_counter() - start
    if as_json:
        emit_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    meta = summary["meta"]
    console.print(f"[bold]{summary.get('path', 'table')}[/]: {summary['entries']} entries, backend {meta['backend']} "
                  f"on {meta['device']} ({meta['device_name']}), {meta['dtype']}, threads {meta['threads']}")
    if "coverage" in summary:
        cov = summary["coverage"]
        console.print(f"coverage of space {meta.get('space')}: {cov['present']}/{cov['needed']}"
                      + (f", missing {cov['missing'][:5]}" if cov["missing"] else ""))
    console.print(f"untrusted (noisy) entries: {summary['untrusted']}; CV median "
                  f"{100 * (summary['cv_median'] or 0):.1f}%, p90 {100 * (summary['cv_p90'] or 0):.1f}%")
    bases = summary.get("bases") or {}
    if any(bases.values()):
        console.print(f"figures: {bases.get('paired', 0)} paired ratios to the reference workload, "
                      f"{bases.get('level', 0)} rescaled by its level, {bases.get('plain', 0)} plain medians "
                      "(decided per measurement group); "
                      f"{summary.get('remeasured', 0)} entries re-measured beyond the re-check")
    adapted = meta.get("adapted")
    if adapted:
        v = adapted.get("validation")
        held = (f"; held-out {v['n']} networks: MAPE {100 * v['mape']:.1f}%, within +-10% "
                f"{100 * v['within_10pct']:.0f}%, Spearman {v['spearman']:.3f}") if v else ""
        src = adapted.get("source", {})
        console.print(f"adapted from {adapted.get('from')} ({src.get('backend')}/{src.get('device')}, threads "
                      f"{src.get('threads')}) with {adapted['k']} networks, model {adapted['method']}{held}")
    corr = meta.get("correction")
    if corr:
        console.print(f"correction: {corr['intercept_ms']:.3f} ms + {corr['slope']:.3f} x sum - "
                      f"{corr.get('per_unit_ms', 0):.4f} ms x units, fitted on "
                      f"{corr['n']} networks (model {corr.get('model')}, fit MAPE {100 * corr['mape_fit']:.1f}%, "
                      f"naive {100 * corr['mape_naive']:.1f}%)")
    table = Table(title="entries by op / unit kind")
    for col in ("op", "entries", "untrusted", "total median ms"):
        table.add_column(col, justify="left" if col == "op" else "right")
    for op, row in sorted(summary["by_op"].items()):
        table.add_row(op, str(row["entries"]), str(row["untrusted"]), f"{row['total_median_ms']:.3f}")
    console.print(table)


@lut_app.command("adapt")
@handle_errors
def adapt_command(
    source: Annotated[Path, typer.Option("--from", help="The table to adapt (Parquet), measured on another target.")],
    out: Annotated[Path, typer.Option("--out", help="The adapted table to write (Parquet).")],
    backend: BackendOpt = "onnxruntime",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    n: Annotated[int, typer.Option("--n", help="Networks measured on the new target to fit the map (K).")] = 10,
    validate: Annotated[int, typer.Option("--validate", help="Further networks measured on the new target to "
                                                             "validate the map (not fitted on; 0: none).")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampled networks.")] = 0,
    batch: BatchOpt = 1,
    graph_optimization: GraphOptOpt = None,
    quick: QuickOpt = False,
    max_seconds: MaxSecondsOpt = None,
    basis: BasisOpt = "auto",
    backend_option: BackendOptionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Map a table onto a new target from K networks measured there (per-op scales or a global map)."""
    from vidnas._errors import SpecError
    from vidnas.latency_models import LatencyTable, adapt_table, check_adaptation, table_summary

    if out.resolve() == source.resolve():
        raise SpecError("--out", str(out), "is the source table; write the adapted table elsewhere")
    be = make_backend(backend, device, threads, backend_option, graph_optimization_alias(graph_optimization))
    tab = LatencyTable.load(source)
    check_adaptation(tab, be, k=n, validate=validate, batch=batch, source_path=source)  # refuse before measuring
    config = harness_config(quick, max_seconds, basis)
    with progress_bar(f"lut adapt to {backend}/{device}") as bar:
        task = bar.add_task("networks", total=n + validate, item="")
        adapted, report = adapt_table(tab, be, k=n, validate=validate, seed=seed, batch=batch, config=config,
                                      source_path=source, artefacts=out.with_name(out.stem + ".artefacts"),
                                      progress=lambda i, k: bar.update(task, total=k, completed=i))
    adapted.save(out)
    summary = table_summary(adapted)
    summary["path"] = str(out)
    summary["adaptation"] = report
    if as_json:
        emit_json(summary)
        return
    _print_summary(summary)
    a = report["adaptation"]
    console = stdout_console()
    scales = ", ".join(f"{op} x{v:.3f}" for op, v in sorted(a["op_scales"].items()))
    if a["model"] in ("flops_linear", "params_linear"):  # the plain fit beat the adapted table
        per, unit = ("GFLOP", 1e9) if a["model"] == "flops_linear" else ("M params", 1e6)
        console.print(f"fit `{a['model']}`: {a['intercept_ms']:.3f} ms + {a['scale'] * unit:.4f} ms per {per}")
    else:
        console.print(f"map `{a['model']}`: intercept {a['intercept_ms']:.3f} ms, common scale x{a['scale']:.3f}, "
                      f"per unit {a['per_unit_ms']:.4f} ms; op scales: {scales or '-'}")
    console.print("leave-one-out error of each candidate: "
                  + ", ".join(f"{m} {100 * e:.1f}%" if e is not None and e != float("inf") else f"{m} -"
                              for m, e in a["loo_errors"].items()))
    if report.get("chosen"):
        console.print(f"stands behind: {report['chosen']}")
    v = report["validation"]
    if v is None:
        console.print("[yellow]no held-out validation (--validate 0)[/]")
    else:
        console.print(f"held-out validation on {v['n']} networks ({v['basis']} figures): MAPE "
                      f"{100 * v['mape']:.1f}%, within +-10% {100 * v['within_10pct']:.0f}%, Spearman "
                      f"{v['spearman']:.3f}")
@lut_app.command("backends")
@handle_errors
def backends_command(as_json: JsonOpt = False) -> None:
    """The registered latency backends (built-in and plugins): devices, options, where they come from."""
    from vidnas.latency_models import BACKENDS

    rows = [d.describe(BACKENDS.origin(name)) for name, d in BACKENDS.items()]
    if as_json:
        emit_json({"backends": rows})
        return
    from rich.table import Table

    table = Table(title="Latency backends (options: -O KEY=VALUE)")
    for col in ("backend", "devices", "times here", "options", "summary", "from"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["devices"]), "yes" if r["measures_here"] else "no",
                      _options_text(r["options"]), r["summary"], r["source"])
    stdout_console().print(table)


def _options_text(options: list[dict[str, Any]] | None) -> str:
    if options is None:
        return "any (not declared)"
    return "\n".join(f"{o['name']}={o.get('default')}" + (f" ({'|'.join(map(str, o['choices']))})"
                                                          if o.get("choices") else f" ({o['type']})")
                     for o in options) or "-"


@lut_app.command("show")
@handle_errors
def show_command(
    table: Annotated[Path, typer.Argument(help="A latency table (Parquet).")],
    space: Annotated[str | None, typer.Option("--space", help="Report coverage of this space (default: the "
                                                              "table's own).")] = None,
    batch: BatchOpt = 1,
    as_json: JsonOpt = False,
) -> None:
    """Summarise a table: coverage of its space, noise, correction, entries per op."""
    from vidnas.latency_models import LatencyTable, space_units, table_summary
    from vidnas.search_space import get_space

    tab = LatencyTable.load(table)
    name = space or tab.meta.space
    signatures = None
    if name:
        shape = tab.meta.space_shape or {}
        signatures = [u.signature_id for u in space_units(get_space(name, **shape))]
    summary = table_summary(tab, signatures, batch)
    summary["path"] = str(table)
    if as_json:
        emit_json(summary)
        return
    _print_summary(summary)


@lut_app.command("import")
@handle_errors
def import_command(
    csv: Annotated[Path, typer.Argument(help="CSV with at least signature_id and median_ms columns.")],
    out: Annotated[Path, typer.Option("--out", help="The table to write (Parquet).")],
    backend: Annotated[str | None, typer.Option("--backend", help="Backend (if no `backend` column).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Device (if no `device` column).")] = None,
    device_name: Annotated[str | None, typer.Option("--device-name", help="Hardware name.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="dtype (if no `dtype` column).")] = None,
    space: Annotated[str | None, typer.Option("--space", help="Record the space the table covers.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn a CSV of measurements (e.g. from a phone, or `time_coreml.py`) into a table."""
    from vidnas.latency_models import LatencyTable, table_summary

    tab = LatencyTable.from_csv(csv, backend=backend, device=device, device_name=device_name, dtype=dtype)
    if space:
        tab.meta.space = space
    tab.save(out)
    summary = table_summary(tab)
    summary["path"] = str(out)
    if as_json:
        emit_json(summary)
        return
    _print_summary(summary)


@lut_app.command("export")
@handle_errors
def export_command(
    out: Annotated[Path, typer.Option("--out", help="CSV file, or the bundle directory for --backend.")],
    table: Annotated[Path | None, typer.Argument(help="A table to export as CSV.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="A backend that times elsewhere (coreml): write "
                                                                  "the space's units as its models, with a timing "
                                                                  "script, to time there.")] = None,
    space: Annotated[str, typer.Option("--space", help="The space whose units are exported (--backend).")] = "tiny",
    batch: BatchOpt = 1,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    compute_units: Annotated[str | None, typer.Option("--compute-units", help="Deprecated: use -O compute_units=... "
                                                                              "(Core ML: ALL, CPU_ONLY, CPU_AND_GPU, "
                                                                              "CPU_AND_NE).")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="Deprecated: use -O precision=... (Core ML: "
                                                                      "float16 or float32).")] = None,
    backend_option: BackendOptionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a table as CSV, or (--backend coreml) a space's units as models with a timing script."""
    from vidnas._errors import SpecError

    if backend is not None:
        from vidnas.search_space import get_space

        definition, options = _bundle_backend(backend, backend_option, {
            "compute_units": ("--compute-units", compute_units), "precision": ("--precision", precision)})
        _write_bundle(definition, options, get_space(space, frames=frames, height=height, width=width), out, batch,
                      as_json)
        return
    if backend_option:
        raise SpecError("-O", backend_option[0], "needs --backend", "options go to the backend whose models are "
                                                                    "exported")
    if table is None:
        raise SpecError("TABLE", None, "is missing", "give a table to export as CSV")
    from vidnas.latency_models import LatencyTable

    path = LatencyTable.load(table).to_csv(out)
    if as_json:
        emit_json({"csv": str(path)})
    else:
        stdout_console().print(f"wrote {path}")


def _bundle_backend(backend: str, items: list[str] | None, deprecated: dict) -> tuple[Any, dict[str, Any]]:
    """A backend that writes bundles to time elsewhere (its ``BackendDef.bundle``), and its checked options."""
    from vidnas._errors import SpecError
    from vidnas.latency_models import get_backend_def, list_backends

    definition = get_backend_def(backend, "--backend")
    if definition.bundle is None:
        targets = [n for n in list_backends() if get_backend_def(n).bundle is not None]
        raise SpecError("--backend", backend, "is not an export target",
                        f"use one of {targets}, or no --backend for CSV")
    return definition, checked_backend_options(definition, backend_options(definition, items, deprecated))


def _write_bundle(definition, options: dict[str, Any], searched, out: Path, batch: int, as_json: bool) -> None:
    """Write the space's units as the backend's models, with what to do next."""
    with progress_bar(f"{definition.name} bundle of {searched.name}") as bar:
        task = bar.add_task("units", total=None, item="")
        manifest = definition.bundle.write(searched, out, batch=batch, **options,
                                           progress=lambda i, n, name: bar.update(task, total=n, completed=i,
                                                                                   item=name))
    failed = [u for u in manifest["units"] if u.get("error")]
    result = {"bundle": str(out), "backend": definition.name, "options": options, "units": len(manifest["units"]),
              "failed": failed, "next": definition.bundle.next_steps.format(out=out)}
    if as_json:
        emit_json(result)
        return
    console = stdout_console()
    console.print(f"wrote {result['units']} {definition.name} models to {out} ({len(failed)} failed to convert)")
    for u in failed:
        console.print(f"  [red]failed[/] {u['signature_id']} {u['op']}: {u['error']}")
    console.print(result["next"])

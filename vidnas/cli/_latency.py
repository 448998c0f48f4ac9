"""``vidnas latency``: predict from a table, measure end to end, validate the predictor."""

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
    SpecArg,
    ThreadsOpt,
    WidthOpt,
    graph_optimization_alias,
    harness_config,
    make_backend,
    progress_bar,
)
from vidnas.cli._space import load_spec_arg

latency_app = typer.Typer(help="Latency: predict from a table, measure end to end, validate.", no_args_is_help=True)

StepsOpt = Annotated[int, typer.Option("--steps", help="Denoising steps per video.")]
CfgOpt = Annotated[str, typer.Option("--cfg", help="Classifier-free guidance: none, sequential or batched.")]


@latency_app.command("predict")
@handle_errors
def predict_command(
    spec: SpecArg,
    lut: Annotated[Path | None, typer.Option("--lut", help="Latency table (Parquet).")] = None,
    roofline: Annotated[str | None, typer.Option(
        "--roofline", help="Estimate for a datasheet device instead: phone-npu, laptop-cpu, a100, h100, h200.")
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="Refuse a table from another backend.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Refuse a table from another device.")] = None,
    batch: BatchOpt = 1,
    steps: StepsOpt = 25,
    cfg: CfgOpt = "none",
    dtype: Annotated[str, typer.Option("--dtype", help="dtype of a roofline estimate.")] = "float16",
    measure_missing: Annotated[bool, typer.Option("--measure-missing", help="Measure units the table lacks (on "
                                                                            "the table's backend) and add them."
                                                  )] = False,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    backend_option: BackendOptionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Latency per network call, per step and per video, with a per-slot breakdown."""
    from vidnas._errors import SpecError

    arch = load_spec_arg(spec, frames=frames, height=height, width=width)
    if (lut is None) == (roofline is None):
        raise SpecError("--lut/--roofline", None, "give exactly one of them")
    if backend_option and not measure_missing:
        raise SpecError("-O", backend_option[0], "needs --measure-missing", "options go to the table's backend")
    if roofline is not None:
        from vidnas.latency_models import roofline_estimate, video_cost

        est = roofline_estimate(arch, roofline, batch=batch, dtype=dtype)
        est["video"] = video_cost(lambda b: roofline_estimate(arch, roofline, batch=b, dtype=dtype)["per_call_ms"],
                                  steps=steps, cfg=cfg)
        if as_json:
            emit_json(est)
            return
        stdout_console().print(f"[yellow]ESTIMATE[/] (roofline lower bound on {roofline}, {dtype}): "
                               f"{est['per_call_ms']:.2f} ms per call, {est['video']['per_video_ms']:.0f} ms per "
                               f"video ({steps} steps, cfg {cfg})")
        return
    from vidnas.latency_models import LatencyPredictor, LatencyTable, video_cost

    table = LatencyTable.load(lut)
    table.check_compatible(backend=backend, device=device)
    predictor = LatencyPredictor(table)
    filler = _missing_filler(table, lut, arch, backend_option) if measure_missing else None
    prediction = predictor.predict(arch, batch=batch, measure_missing=filler)
    payload: dict[str, Any] = {"spec": str(spec), "name": arch.name, **prediction.to_dict(),
                               "table": {"path": str(lut), "backend": table.meta.backend, "device": table.meta.device,
                                         "device_name": table.meta.device_name, "dtype": table.meta.dtype,
                                         "threads": table.meta.threads},
                               "video": video_cost(lambda b: predictor.predict(arch, batch=b,
                                                                               measure_missing=filler).ms,
                                                   steps=steps, cfg=cfg)}
    if as_json:
        emit_json(payload)
        return
    _print_prediction(payload)


def _missing_filler(table, path: Path, spec, options: list[str] | None):
    from vidnas.latency_models import HarnessConfig, measure_units

    def fill(plans, batch: int) -> None:
        be = make_backend(table.meta.backend, table.meta.device, table.meta.threads, options, field="--lut backend")
        measure_units(table, plans, be, batch, spec.backbone, path, HarnessConfig(**{
            k: v for k, v in table.meta.harness.items() if k in HarnessConfig.__dataclass_fields__}))

    return fill


def _print_prediction(p: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    t = p["table"]
    corrected = f"{p['corrected_ms']:.3f} ms corrected, " if p["corrected_ms"] is not None else "no correction, "
    console.print(f"[bold]{p['name'] or p['arch_id']}[/] on {t['backend']}/{t['device']} ({t['device_name']}): "
                  f"{corrected}{p['naive_ms']:.3f} ms sum of units; temporal {p['temporal_ms']:.3f} ms")
    v = p["video"]
    console.print(f"per step {v['per_step_ms']:.2f} ms; per video ({v['steps']} steps, cfg {v['cfg']}) "
                  f"{v['per_video_ms']:.1f} ms")
    if p["untrusted_units"]:
        console.print(f"[yellow]noisy table entries[/] behind {len(p['untrusted_units'])} units: "
                      f"{p['untrusted_units'][:6]}")
    table = Table(title="per slot")
    for col in ("slot", "op", "ms", "% of call"):
        table.add_column(col, justify="right" if col in ("ms", "% of call") else "left")
    for row in p["slots"]:
        table.add_row(row["slot"], row["op"], f"{row['median_ms']:.3f}",
                      f"{100 * row['median_ms'] / max(p['naive_ms'], 1e-9):.1f}")
    console.print(table)


@latency_app.command("measure")
@handle_errors
def measure_command(
    spec: SpecArg,
    backend: BackendOpt = "onnxruntime",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    batch: BatchOpt = 1,
    graph_optimization: GraphOptOpt = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    quick: QuickOpt = False,
    max_seconds: MaxSecondsOpt = None,
    backend_option: BackendOptionOpt = None,
    allow_load: AllowLoadOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure one network call end to end on a backend."""
    from vidnas.latency_models import load_guard, measure_network, memory_bytes

    arch = load_spec_arg(spec, frames=frames, height=height, width=width)
    be = make_backend(backend, device, threads, backend_option, graph_optimization_alias(graph_optimization))
    with load_guard(be, getattr(be, "threads", None), allow_load=allow_load, what="latency measure") as guard:
        m = measure_network(arch, be, batch=batch, config=harness_config(quick, max_seconds))
        under_load = guard.item_under_load() if guard is not None else False
    payload = {"spec": str(spec), "arch_id": arch.arch_id, "batch": batch, **m.to_dict(),
               "memory": memory_bytes(arch, batch=batch), "fingerprint": be.fingerprint(),
               "under_load": under_load, "load": guard.summary() if guard is not None else None}
    if as_json:
        emit_json(payload)
        return
    state = "" if m.trusted else f"  [yellow]NOISY: {m.reason}[/]"
    state += "  [yellow]MEASURED UNDER LOAD[/]" if under_load else ""
    stdout_console().print(f"{arch.name or arch.arch_id} on {backend}/{device}: median {m.median_ms:.3f} ms "
                           f"(p10 {m.p10_ms:.3f}, p90 {m.p90_ms:.3f}, CV {100 * m.cv:.1f}%, {m.runs} runs){state}")


@latency_app.command("validate")
@handle_errors
def validate_command(
    lut: Annotated[Path, typer.Option("--lut", help="Latency table (Parquet) measured on this machine.")],
    space: Annotated[str | None, typer.Option("--space", help="Space to sample (default: the table's).")] = None,
    n: Annotated[int, typer.Option("--n", help="Held-out architectures to measure.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out sample.")] = 0,
    batch: BatchOpt = 1,
    refit: Annotated[int, typer.Option("--refit", help="Refit the correction on this many fresh architectures "
                                                       "first (0: keep the table's).")] = 0,
    graph_optimization: GraphOptOpt = None,
    quick: QuickOpt = False,
    max_seconds: MaxSecondsOpt = None,
    basis: BasisOpt = "auto",
    remeasure: RemeasureOpt = None,
    backend_option: BackendOptionOpt = None,
    allow_load: AllowLoadOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure N sampled architectures not used for the correction; print MAPE, share within +-10 %, ranks.

    Prints the accuracy against the reference-rescaled figures and against the plain medians,
    says which of the two it stands behind (``answer``) and why, and the FLOPs-linear,
    params-linear and scaled-roofline baselines fitted on the table's correction networks.
    """
    from vidnas.latency_models import LatencyTable, fit_correction, load_guard, validate_table
    from vidnas.search_space import get_space

    table = LatencyTable.load(lut)
    be = make_backend(table.meta.backend, table.meta.device, table.meta.threads, backend_option,
                      graph_optimization_alias(graph_optimization), field="--lut backend")
    fp = be.fingerprint()
    table.check_compatible(backend=be.name, device_name=fp["device_name"], threads=fp.get("threads"))
    searched = get_space(space or table.meta.space or "tiny", **(table.meta.space_shape or {}))
    config = harness_config(quick, max_seconds, basis, remeasure)
    artefacts = lut.with_name(lut.stem + ".artefacts")
    with load_guard(be, getattr(be, "threads", None), allow_load=allow_load, what="latency validate") as guard, \
            progress_bar("validate") as bar:
        under_load = False
        if refit:
            task = bar.add_task("refit", total=refit, item="")
            fit_correction(table, searched, be, n=refit, seed=seed + 1_000_003, batch=batch, config=config,
                           progress=lambda i, k: bar.update(task, total=k, completed=i), artefacts=artefacts)
            under_load = guard.item_under_load() if guard is not None else False  # raises unless allowed
            table.save(lut)
        task = bar.add_task("held-out networks", total=n, item="")
        report = validate_table(table, searched, be, n=n, seed=seed, batch=batch, config=config,
                                progress=lambda i, k: bar.update(task, total=k, completed=i), artefacts=artefacts)
        under_load = (guard.item_under_load() if guard is not None else False) or under_load
    report["under_load"] = under_load
    report["load"] = guard.summary() if guard is not None else None
    report["table"] = str(lut)
    report["fingerprint"] = fp
    if as_json:
        emit_json(report)
        return
    _print_validation(report, table.meta)


def _accuracy_line(r: dict[str, Any]) -> str:
    return (f"MAPE {100 * r['mape']:.1f}%, within +-10% {100 * r['within_10pct']:.0f}%, "
            f"Spearman {r['spearman']:.3f}, Kendall {r['kendall']:.3f}")


def _print_validation(report: dict[str, Any], meta) -> None:
    console = stdout_console()
    console.print(f"{report['n']} held-out architectures of {report['space']} on {meta.backend}/{meta.device} "
                  f"({meta.device_name}, threads {meta.threads}); {report['remeasured']} re-measured, "
                  f"{report['untrusted_measurements']} still noisy")
    for label, keys in (("reference-rescaled", ("naive", "corrected")), ("plain medians", ("raw_naive",
                                                                                            "raw_corrected"))):
        for name, key in zip(("naive", "corrected"), keys):
            r = report.get(key)
            text = _accuracy_line(r) if r else "n/a (no correction or no reference speed in the table)"
            console.print(f"{label:18s} {name:9s}: {text}")
    basis = report["answer_basis"]
    figures = "reference-rescaled" if basis["basis"] == "rescaled" else "plain medians"
    console.print(f"[bold]answer[/] ({report['answer_prediction']} predictor against the {figures}): "
                  f"{_accuracy_line(report['answer'])}")
    console.print(f"  because {basis['reason']}")
    baselines = report.get("baselines") or {}
    if "error" in baselines:
        console.print(f"[yellow]baselines not fitted[/]: {baselines['error']}")
    else:
        console.print(f"baselines, fitted on the table's {baselines['fitted_on']} correction networks, against the "
                      "same figures:")
        for name, r in baselines["baselines"].items():
            extra = f" ({r['fit']['device']}, scaled)" if r["fit"].get("device") else ""
            console.print(f"  {name + extra:28s}: {_accuracy_line(r)}")
    for w in report["answer"]["worst"]:
        console.print(f"  worst: {w['arch_id']} predicted {w['predicted_ms']:.2f} ms, measured "
                      f"{w['measured_ms']:.2f} ms ({100 * w['error']:+.1f}%)")


@latency_app.command("stream")
@handle_errors
def stream_command(
    spec: Annotated[str, typer.Argument(help="A causal preset or spec JSON file.")],
    chunk: Annotated[int | None, typer.Option("--chunk", help="Latent frames per chunk (default: the network's "
                                                              "causal block, at least 2).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Denoising passes per chunk (one more writes the cache).")
                     ] = 4,
    chunks: Annotated[int | None, typer.Option("--chunks", help="Chunks to generate (default: frames / chunk)."
                                               )] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Full streams timed (after one warm-up).")] = 3,
    roofline: Annotated[str | None, typer.Option(
        "--roofline", help="Estimate for a datasheet device instead of measuring: phone-npu, laptop-cpu, a100, "
                           "h100, h200.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="dtype of a roofline estimate.")] = "float16",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Time to the first chunk and steady frames per second of a causal design with its KV cache (torch, or a
    roofline estimate)."""
    arch = load_spec_arg(spec, frames=frames, height=height, width=width)
    chunk = chunk or max(2, arch.causal_block_frames)
    if roofline is not None:
        from vidnas.latency_models import roofline_stream_estimate

        est = roofline_stream_estimate(arch, roofline, chunk_frames=chunk, steps=steps, chunks=chunks, dtype=dtype)
        if as_json:
            emit_json(est)
            return
        stdout_console().print(
            f"[yellow]ESTIMATE[/] (roofline lower bound on {roofline}, {dtype}; not counted: {est['excludes']}; "
            f"kernels at datasheet peaks): first chunk "
            f"({chunk} latent frames = {est['first_chunk_decoded_frames']} decoded, {steps}+1 passes) "
            f"{est['first_chunk_ms']:.1f} ms; steady {est['steady_fps']:.1f} decoded frames/s "
            f"({est['steady_chunk_ms']:.1f} ms per chunk of {est['decoded_frames_per_chunk']})")
        return
    from vidnas.latency_models import measure_streaming

    result = measure_streaming(arch, chunk_frames=chunk, steps=steps, chunks=chunks, repeats=repeats, device=device,
                               threads=threads)
    if as_json:
        emit_json(result)
        return
    stdout_console().print(f"first chunk ({chunk} frames, {steps}+1 passes) {result['first_chunk_ms']:.1f} ms; "
                           f"steady {result['steady_fps']:.2f} frames/s; per chunk "
                           f"{[round(x, 1) for x in result['per_chunk_ms']]} ms")


@latency_app.command("scaling")
@handle_errors
def scaling_command(
    ops: Annotated[str, typer.Option("--ops", help="Comma-separated ops (default: every op but none).")] = "",
    frames: Annotated[str, typer.Option("--frames", help="Comma-separated clip lengths.")] = "8,16,32,64",
    channels: Annotated[int, typer.Option("--channels", help="Channels at the slot.")] = 64,
    size: Annotated[str, typer.Option("--size", help="Latent HxW at the slot.")] = "8x8",
    backend: BackendOpt = "torch",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    quick: QuickOpt = False,
    max_seconds: MaxSecondsOpt = None,
    backend_option: BackendOptionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How each temporal op's latency grows with the number of frames (long videos)."""
    from vidnas._errors import SpecError
    from vidnas.latency_models import measure_frame_scaling
    from vidnas.search_space import list_temporal_ops

    names = [o for o in ops.split(",") if o] or [o for o in list_temporal_ops() if o != "none"]
    try:
        lengths = [int(f) for f in frames.split(",")]
        height, width = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise SpecError("--frames/--size", f"{frames} / {size}", "must be integers like 8,16,32 and 8x8") from None
    defaults = {"attn1d_window": {"window": min(lengths), "window_stride": max(1, min(lengths) // 4)},
                "attn3d_blockcausal": {"chunk": 2}}
    be = make_backend(backend, device, threads, backend_option)
    rows = measure_frame_scaling([(o, defaults.get(o, {})) for o in names], be,
                                 frames=lengths, channels=channels, height=height, width=width,
                                 config=harness_config(quick, max_seconds))
    if as_json:
        emit_json({"backend": backend, "device": device, "channels": channels, "size": [height, width],
                   "rows": rows})
        return
    from rich.table import Table

    table = Table(title=f"latency (ms) vs frames, {channels} channels at {height}x{width}, {backend}/{device}")
    table.add_column("op")
    for t in lengths:
        table.add_column(str(t), justify="right")
    table.add_column("exponent", justify="right")
    for name in names:
        series = [r for r in rows if r["op"] == name]
        table.add_row(name, *[f"{r['median_ms']:.3f}" + ("" if r["trusted"] else "*") for r in series],
                      f"{series[0]['exponent']:.2f}")
    stdout_console().print(table)
    stdout_console().print("* noisy measurement")

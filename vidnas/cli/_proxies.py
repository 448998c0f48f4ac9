"""``vidnas proxies``: list, score and calibrate quality proxies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidnas.cli._common import emit_json, handle_errors, stdout_console
from vidnas.cli._options import FramesOpt, HeightOpt, JsonOpt, SpecArg, WidthMultOpt, WidthOpt, progress_bar
from vidnas.cli._space import load_spec_arg

proxies_app = typer.Typer(help="Quality proxies: list, score one spec, calibrate against training.",
                          no_args_is_help=True)


@proxies_app.command("list")
@handle_errors
def list_command(as_json: JsonOpt = False) -> None:
    """The registered proxies, their kind, orientation and cost."""
    from vidnas._plugins import origin
    from vidnas.proxies import get_proxy, list_proxies

    rows = [{"name": n, "kind": get_proxy(n).kind, "higher_is_better": get_proxy(n).higher_is_better,
             "cost": get_proxy(n).cost, "summary": get_proxy(n).summary, "source": origin("vidnas.proxies", n)}
            for n in list_proxies()]
    if as_json:
        emit_json({"proxies": rows})
        return
    from rich.table import Table

    table = Table(title="Proxies")
    for col in ("proxy", "kind", "higher is better", "cost", "summary", "from"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["kind"], str(r["higher_is_better"]), r["cost"], r["summary"], r["source"])
    stdout_console().print(table)


@proxies_app.command("score")
@handle_errors
def score_command(
    spec: SpecArg,
    proxy: Annotated[str, typer.Option("--proxy", help="Proxy name(s), comma-separated, or `all`.")] = "all",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initialisation and the clips.")] = 0,
    clips: Annotated[int, typer.Option("--clips", help="Procedural clips in the batch.")] = 4,
    train_steps: Annotated[int, typer.Option("--train-steps", help="Steps of the training proxies.")] = 20,
    videos: Annotated[Path | None, typer.Option("--videos", help="A folder of your videos instead of procedural "
                                                                 "clips (needs PyAV).")] = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score one architecture with one or more proxies."""
    from vidnas.proxies import ProxyBatch, TrainConfig, list_proxies, score

    arch = load_spec_arg(spec, frames=frames, height=height, width=width)
    names = list_proxies() if proxy == "all" else [p.strip() for p in proxy.split(",") if p.strip()]
    batch = ProxyBatch.procedural(arch, clips=clips, seed=seed,
                                  train=TrainConfig(steps=train_steps, videos=str(videos) if videos else None))
    values = score(arch, names, batch, seed=seed)
    if as_json:
        emit_json({"arch_id": arch.arch_id, "seed": seed, "proxies": values})
        return
    console = stdout_console()
    for name, v in values.items():
        console.print(f"{name:26s} {v['value']:>14.6g}   ({v['seconds']:.2f} s, {v['kind']})")


@proxies_app.command("calibrate")
@handle_errors
def calibrate_command(
    space: Annotated[str, typer.Option("--space", help="Search space to sample.")] = "tiny",
    n: Annotated[int, typer.Option("--n", help="Architectures to train.")] = 40,
    steps: Annotated[int, typer.Option("--steps", help="Training steps of the ground truth (K).")] = 200,
    short_steps: Annotated[int | None, typer.Option("--short-steps", help="Steps of the training proxies "
                                                                          "(default K/10).")] = None,
    repeats: Annotated[int | None, typer.Option("--repeats", help="Architectures retrained with another seed "
                                                                  "(noise ceiling; default n/4).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and the training.")] = 0,
    truth_seeds: Annotated[int, typer.Option("--truth-seeds", help="Trainings per architecture averaged into "
                                                                   "the ground truth.")] = 1,
    proxies: Annotated[str, typer.Option("--proxies", help="Comma-separated proxies (default: all built-in).")] = "",
    lut: Annotated[Path | None, typer.Option("--lut", help="Stratify by latency from this table instead of "
                                                           "FLOPs.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per training step.")] = 4,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 1e-3,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads.")] = None,
    videos: Annotated[Path | None, typer.Option("--videos", help="A folder of your videos instead of procedural "
                                                                 "clips (needs PyAV).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for rows.parquet and summary.json.")] = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    width_mult: WidthMultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train N sampled architectures for K steps and report every proxy's rank correlation with held-out loss."""
    import datetime as dt

    from vidnas.proxies import DEFAULT_PROXIES, TrainConfig, calibrate
    from vidnas.search_space import get_space

    searched = get_space(space, frames=frames, height=height, width=width, width_mult=width_mult)
    names = [p.strip() for p in proxies.split(",") if p.strip()] or list(DEFAULT_PROXIES)
    latency = None
    if lut is not None:
        from vidnas.latency_models import LatencyPredictor, LatencyTable

        predictor = LatencyPredictor(LatencyTable.load(lut))

        def latency(spec):
            return predictor.predict(spec).ms

    train = TrainConfig(batch_size=batch_size, lr=lr, threads=threads, videos=str(videos) if videos else None)
    with progress_bar("calibrate") as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, i: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, item="")
            bar.update(tasks[stage], completed=i)

        result = calibrate(searched, n=n, steps=steps, seed=seed, proxies=names, repeats=repeats,
                           short_steps=short_steps, train=train, latency=latency, truth_seeds=truth_seeds,
                           progress=on_progress)
    out = out or Path("runs") / f"calibration-{space}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    result.save(out)
    payload = {"out": str(out), "config": result.config, "proxies": result.proxies,
               "noise_ceiling": result.noise_ceiling, "ensemble": result.ensemble}
    if as_json:
        emit_json(payload)
        return
    print_calibration(payload)


def print_calibration(payload: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    c = payload["config"]
    console.print(f"{c['n']} architectures of {c['space']} trained {c['steps']} steps x {c.get('truth_seeds', 1)} "
                  f"seed(s); results in {payload['out']}")
    nc = payload["noise_ceiling"]
    console.print(f"noise ceiling: tau between seeds {nc['kendall_between_seeds']:.3f} over {nc['n']} "
                  f"architectures (median held-out loss difference {100 * nc['median_relative_difference']:.1f}%)")
    table = Table(title="proxy vs held-out loss (positive = ranks better models higher)")
    for col in ("proxy", "kind", "tau [95% CI]", "rho", "tau in latency bins", "partial tau | FLOPs", "P@10%",
                "s/arch"):
        table.add_column(col, justify="left" if col in ("proxy", "kind") else "right")
    rows = dict(payload["proxies"])
    rows["ensemble"] = {**payload["ensemble"], "kind": "ensemble", "seconds_median": float("nan")}
    for name, s in rows.items():
        lo, hi = s["kendall_ci"]
        table.add_row(name, s["kind"], f"{s['kendall']:+.2f} [{lo:+.2f}, {hi:+.2f}]", f"{s['spearman']:+.2f}",
                      f"{s['kendall_within_latency_bins']:+.2f}", f"{s['partial_kendall_given_flops']:+.2f}",
                      f"{s['precision_at_top10']:.2f}", f"{s['seconds_median']:.2f}")
    console.print(table)

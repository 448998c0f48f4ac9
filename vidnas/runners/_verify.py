"""Does a campaign's quality axis hold? Train K of its architectures with the truth's protocol.

``verify(run_dir, k)`` takes the campaign's Pareto set first (in the order of its quality
objective), then other finished architectures spread evenly along the quality axis, and
trains each with the ground truth's protocol (the calibration's: the space's spatial
backbone pretrained and frozen, the architecture's own temporal layers trained K steps,
held-out denoising loss at fixed timesteps and noise) at a *verification scale*: the
campaign's proxy scale when it has one, else its real shape, stepped down (fewer pixels,
then fewer frames, then narrower) until the estimated time fits ``seconds_budget``. The
estimate comes from timing a few training steps of the costliest candidate at each scale
tried, and is stated with the result; when no scale fits, nothing is trained and the error
names the budget and how many runs would fit.

Truth runs are recorded one per (architecture, protocol, seed) in ``RUN_DIR/verify/truth``
as they finish, so a killed verification resumes. The result (``RUN_DIR/verify/verify.json``)
holds Kendall tau of the quality objective against the truth over the K architectures with
its bootstrap interval, and whether the front's own quality order held (pairs of Pareto
architectures the truth orders as the objective does).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError

__all__ = ["VERIFY_FILE", "VerifyOptions", "choose_candidates", "verify"]

VERIFY_FILE = Path("verify") / "verify.json"
CONFIG_FILE = "config.yaml"  # the campaign as the driver wrote it
SHAPES = ("frames", "height", "width", "width_mult")


def _quality_objective(config) -> tuple[int, str, str]:
    """``(index, metric, direction)`` of the campaign's (first) expensive objective."""
    from vidnas.runners._metrics import parse_metric

    for i, o in enumerate(config.objectives):
        if not parse_metric(o.metric, check=False).is_cheap:
            return i, o.metric, o.direction
    raise SpecError("RUN_DIR", "objectives", "has no quality objective (proxy:, ensemble: or quality:) to verify",
                    "verification trains architectures to check a quality objective")


def choose_candidates(trials, metric: str, direction: str, k: int) -> list[dict[str, Any]]:
    """The Pareto set first (best quality first), then others spread evenly along the quality axis;
    each architecture once. ``trials``: the rows of ``trials.parquet``."""
    column = f"objective.{metric}"
    done = trials[(trials["state"] == "COMPLETE") & trials[column].notna()]
    sign = 1.0 if direction == "minimize" else -1.0
    seen: set[str] = set()
    rows = []
    for record in done.sort_values(column, key=lambda c: sign * c).to_dict("records"):
        arch = record.get("attr.arch_id")
        if arch in seen:
            continue
        seen.add(arch)
        rows.append(record)
    front = [r for r in rows if r.get("pareto")]
    rest = [r for r in rows if not r.get("pareto")]
    chosen = front[:k]
    need = k - len(chosen)
    if need > 0 and rest:
        if need >= len(rest):
            chosen += rest
        else:
            picks = sorted({round(i * (len(rest) - 1) / max(1, need - 1)) for i in range(need)}) if need > 1 else [
                len(rest) // 2]
            extra = [i for i in range(len(rest)) if i not in picks]
            while len(picks) < need:  # rounding merged two picks: fill with the nearest unused
                picks.append(extra.pop(len(extra) // 2))
            chosen += [rest[i] for i in sorted(picks)]
    return [{"trial": int(r["number"]), "arch_id": r.get("attr.arch_id"), "pareto": bool(r.get("pareto")),
             "quality": float(r[column]), "params": json.loads(r["params"])} for r in chosen]


class _Params:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices):
        if name not in self.params:
            raise SpecError("trial", name, "is missing from the trial's parameters (the space changed)")
        return self.params[name]


def _scales(space_name: str, start: dict[str, Any]) -> list[dict[str, Any]]:
    """Shapes to try, from ``start`` down: pixels halved (latent >= 8 cells), then frames halved (>= 4),
    then width halved (>= x0.125)."""
    from vidnas.search_space import get_space

    out = [dict(start)]
    shape = dict(start)
    for step in ("pixels", "pixels", "frames", "width", "width"):
        base = get_space(space_name, **{k: v for k, v in shape.items() if v is not None}).base.backbone
        trial = dict(shape)
        if step == "pixels":
            if min(base.latent_height, base.latent_width) // 2 < 8:
                continue
            trial.update(height=base.pixel_height // 2, width=base.pixel_width // 2)
        elif step == "frames":
            if base.pixel_frames // 2 < 4:
                continue
            trial.update(frames=base.pixel_frames // 2)
        else:
            mult = (shape.get("width_mult") or 1.0) / 2
            if mult < 0.125:
                continue
            trial.update(width_mult=mult)
        try:
            get_space(space_name, **{k: v for k, v in trial.items() if v is not None})
        except SpecError:
            continue
        shape = trial
        out.append(dict(shape))
    return out


@dataclasses.dataclass
class VerifyPlan:
    shape: dict[str, Any]
    specs: list[Any]
    estimate_seconds: float
    pretrain_seconds: float
    tried: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class VerifyOptions:
    """How many of a campaign's architectures :func:`verify` trains, how, and within what budget."""

    k: int = 8  # architectures: the Pareto set first, then others spread along the quality axis
    steps: int = 1200  # training steps per architecture (the truth's protocol), unless ``train`` says otherwise
    workers: int = 2  # processes of one thread training at once
    seconds_budget: float = 900.0  # wall clock: the verification scale is lowered until the estimate fits
    shape: dict[str, Any] | None = None  # a fixed verification scale (frames, height, width, width_mult)
    train: Any = None  # the protocol's TrainConfig (default: the calibration's, ``steps`` at batch 4)
    pretrain: Any = None  # the backbone's PretrainConfig (default: 1,000 steps at batch 8)

    def resolved(self, data: str) -> VerifyOptions:
        """These options with the protocol filled in for the campaign's ``data`` (``steps`` then is ``train.steps``)."""
        from vidnas.proxies import PretrainConfig, TrainConfig

        train = self.train or TrainConfig(steps=self.steps, batch_size=4, lr=2e-3, train_clips=4096, heldout_clips=32,
                                          data=data)
        pretrain = self.pretrain or PretrainConfig(steps=1000, batch_size=8, data=data)
        return dataclasses.replace(self, steps=train.steps, train=train, pretrain=pretrain)


def plan_verification(space_name: str, start: dict[str, Any], candidates: list[dict[str, Any]],
                      options: VerifyOptions) -> VerifyPlan:
    """The largest verification scale (from ``start`` down; only ``start`` when ``options.shape`` fixes it) whose
    estimated time fits ``options.seconds_budget``. ``options``: resolved (:meth:`VerifyOptions.resolved`)."""
    from vidnas.proxies import backbone_path, image_spec, training_step_seconds
    from vidnas.search_space import count_spec, get_space

    steps, train, pretrain, workers = options.steps, options.train, options.pretrain, options.workers
    tried = []
    scales = [start] if options.shape else _scales(space_name, start)
    for shape in scales:
        space = get_space(space_name, **{k: v for k, v in shape.items() if v is not None})
        specs = [space.sample(_Params(c["params"])) for c in candidates]
        flops = [count_spec(s).flops for s in specs]
        costly = specs[max(range(len(specs)), key=lambda i: flops[i])]
        per_step = training_step_seconds(costly, batch_size=train.batch_size, data=train.data)
        per_run = [per_step * f / max(flops) * steps * 1.05 for f in flops]
        cached = backbone_path(image_spec(space.base), pretrain).exists()
        pretrain_s = 0.0 if cached else training_step_seconds(  # the image network, every weight trained
            image_spec(space.base), batch_size=pretrain.batch_size, data=train.data) * pretrain.steps
        estimate = pretrain_s + _schedule(per_run, workers)
        tried.append({"shape": shape, "estimate_seconds": estimate, "pretrain_seconds": pretrain_s,
                      "step_seconds_costliest": per_step})
        if estimate <= options.seconds_budget:
            return VerifyPlan(shape, specs, estimate, pretrain_s, tried)
    raise _over_budget(tried, len(candidates), options)


def _over_budget(tried: list[dict[str, Any]], runs: int, options: VerifyOptions) -> SpecError:
    """The error naming the budget no scale fits, and how many runs would fit it."""
    last, workers, seconds_budget = tried[-1], options.workers, options.seconds_budget
    per_run_s = (last["estimate_seconds"] - last["pretrain_seconds"]) / max(1, math.ceil(runs / workers))
    fit = int(max(0.0, seconds_budget - last["pretrain_seconds"]) // max(per_run_s, 1e-9)) * workers
    return SpecError("seconds_budget", seconds_budget,
                     f"is below the estimated {last['estimate_seconds'] / 60:.1f} min that {runs} truth runs "
                     f"of {options.steps} steps need even at the smallest verification scale {last['shape']} "
                     f"(about {fit} would fit); nothing was trained",
                     "raise --seconds-budget, or lower --k or --steps")


def _schedule(per_run: list[float], workers: int) -> float:
    """Wall seconds of runs handed, longest first, to ``workers`` one-thread workers."""
    loads = [0.0] * max(1, workers)
    for t in sorted(per_run, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def verify(run_dir: str | Path, options: VerifyOptions | None = None, *,
           progress: Callable[[str, int, int], None] | None = None,
           log: Callable[[str], None] = lambda m: None, **fields: Any) -> dict[str, Any]:
    """Train ``k`` of the campaign's architectures with the truth's protocol and judge its quality axis
    (see the module docstring); writes and returns ``RUN_DIR/verify/verify.json``.

    ``options`` (:class:`VerifyOptions`), or its fields one by one (they replace those of ``options``), e.g.
    ``verify(run_dir, k=4, workers=1)``. Their ``train`` / ``pretrain`` replace the protocol's
    :class:`TrainConfig` / :class:`PretrainConfig` (the calibration's defaults: 1,200 steps at batch 4; a
    backbone pretrained 1,000 steps at batch 8)."""
    import pandas as pd

    from vidnas.runners._config import load_config

    options = dataclasses.replace(options or VerifyOptions(), **fields)
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists() or not (run_dir / "trials.parquet").exists():
        raise SpecError("RUN_DIR", str(run_dir), "holds no finished campaign (config.yaml and trials.parquet)",
                        "run `vidnas search` first")
    if options.k < 2:
        raise SpecError("k", options.k, "must be >= 2 (a rank correlation needs two architectures)")
    if options.steps < 1:
        raise SpecError("steps", options.steps, "must be >= 1")
    config = load_config(run_dir / CONFIG_FILE)
    _, metric, direction = _quality_objective(config)
    candidates = choose_candidates(pd.read_parquet(run_dir / "trials.parquet"), metric, direction, options.k)
    if len(candidates) < 2:
        raise SpecError("RUN_DIR", str(run_dir), f"has {len(candidates)} finished architectures with `{metric}`",
                        "verification needs at least two")
    start = _start_shape(run_dir, config, options.shape)
    options = options.resolved(config.proxy.data)
    started = time.perf_counter()
    plan = plan_verification(config.space.name, start, candidates, options)
    log(f"verification scale {plan.shape}: estimated {plan.estimate_seconds / 60:.1f} min for {len(candidates)} "
        f"truth runs of {options.steps} steps on {options.workers} worker(s) "
        f"(budget {options.seconds_budget / 60:.1f} min)")
    results, protocol = _truth_runs(run_dir, config.space.name, plan, options, progress)
    sign = -1.0 if direction == "minimize" else 1.0
    archs = []
    for c, spec in zip(candidates, plan.specs):
        loss = results[(spec.arch_id, 0)].heldout_loss
        archs.append({**{key: v for key, v in c.items() if key != "params"}, "verify_arch_id": spec.arch_id,
                      "heldout_loss": loss, "truth_seconds": results[(spec.arch_id, 0)].seconds})
    result = {
        "format": "vidnas.verification", "version": 1, "metric": metric, "direction": direction, "k": len(archs),
        "steps": options.steps, "shape": plan.shape, "real_shape": _real_shape(config),
        "estimate_seconds": plan.estimate_seconds, "scales_tried": plan.tried, "seconds_budget": options.seconds_budget,
        "workers": options.workers, "protocol": protocol, **_judgement(archs, sign),
        "architectures": archs, "seconds": time.perf_counter() - started,
    }
    out = run_dir / VERIFY_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    return result


def _real_shape(config) -> dict[str, Any]:
    return {key: getattr(config.space, key) for key in SHAPES}


def _start_shape(run_dir: Path, config, shape: dict[str, Any] | None) -> dict[str, Any]:
    """Where the verification scale starts: the campaign's proxy scale when it had one (campaign.json), else
    its real shape; ``shape`` (the user's) overrides either, size by size."""
    real = _real_shape(config)
    start = dict(real)
    campaign = json.loads((run_dir / "campaign.json").read_text()) if (run_dir / "campaign.json").exists() else {}
    quality = campaign.get("quality") or {}
    if quality.get("scale"):
        from vidnas.proxies import ProxyScale

        scaled = ProxyScale(**quality["scale"]).space(config.space.name, real)
        start = {"frames": scaled.shape.get("frames"), "height": scaled.shape.get("height"),
                 "width": scaled.shape.get("width"), "width_mult": scaled.shape.get("width_mult")}
    if shape:
        start = {**start, **{key: v for key, v in shape.items() if v is not None}}
    return start


def _truth_runs(run_dir: Path, space_name: str, plan: VerifyPlan, options: VerifyOptions,
                progress: Callable[[str, int, int], None] | None) -> tuple[dict[Any, Any], dict[str, Any]]:
    """Pretrain the backbone and train the plan's architectures (resumable, in ``RUN_DIR/verify/truth``);
    ``(results by (arch_id, seed), the protocol record)``."""
    from vidnas.proxies import TruthStore, pretrain_backbone, train_truth_runs
    from vidnas.search_space import get_space

    train, pretrain = options.train, options.pretrain
    space = get_space(space_name, **{key: v for key, v in plan.shape.items() if v is not None})
    backbone = pretrain_backbone(space.base, pretrain,
                                 progress=(lambda i, n: progress("pretrain backbone", i, n)) if progress else None)
    store = run_dir / "verify" / "truth"
    results = train_truth_runs([(s, 0) for s in plan.specs], train, backbone, pretrain, store=store,
                               workers=options.workers,
                               progress=(lambda i, n: progress("truth runs", i, n)) if progress else None)
    protocol = {"train": train.to_dict(), "pretrain": pretrain.key(), "backbone_id": backbone.backbone_id,
                "protocol_id": TruthStore(store, train, backbone.backbone_id).protocol_id}
    return results, protocol


def _judgement(archs: list[dict[str, Any]], sign: float) -> dict[str, Any]:
    """Kendall tau of the objective against the truth (with its bootstrap interval), and whether the front's
    own quality order held (pairs of Pareto architectures the truth orders as the objective does)."""
    from vidnas._stats import bootstrap_interval, kendall

    objective = [sign * a["quality"] for a in archs]  # higher = the objective thinks it better
    truth = [-a["heldout_loss"] for a in archs]  # higher = better model
    front = [a for a in archs if a["pareto"]]
    agree = total = 0
    for i in range(len(front)):
        for j in range(i + 1, len(front)):
            dq = sign * (front[i]["quality"] - front[j]["quality"])
            dt = front[j]["heldout_loss"] - front[i]["heldout_loss"]
            if dq != 0 and dt != 0:
                total += 1
                agree += (dq > 0) == (dt > 0)
    return {"kendall": kendall(objective, truth), "kendall_ci": bootstrap_interval(objective, truth, kendall),
            "front_pairs": total, "front_pairs_in_order": agree, "front_order_held": total == agree if total else None}

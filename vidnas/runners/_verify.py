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

__all__ = ["VERIFY_FILE", "choose_candidates", "verify"]

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


def plan_verification(space_name: str, start: dict[str, Any], candidates: list[dict[str, Any]], *, steps: int,
                      train, pretrain, workers: int, seconds_budget: float,
                      fixed: bool = False) -> VerifyPlan:
    """The largest verification scale (from ``start`` down) whose estimated time fits the budget."""
    from vidnas.proxies._pretrain import backbone_path, image_spec
    from vidnas.proxies._scale import training_step_seconds
    from vidnas.search_space import count_spec, get_space

    tried = []
    scales = [start] if fixed else _scales(space_name, start)
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
        if estimate <= seconds_budget:
            return VerifyPlan(shape, specs, estimate, pretrain_s, tried)
    last = tried[-1]
    per_run_s = (last["estimate_seconds"] - last["pretrain_seconds"]) / max(1, math.ceil(len(candidates) / workers))
    fit = int(max(0.0, seconds_budget - last["pretrain_seconds"]) // max(per_run_s, 1e-9)) * workers
    raise SpecError("seconds_budget", seconds_budget,
                    f"is below the estimated {last['estimate_seconds'] / 60:.1f} min that {len(candidates)} truth runs "
                    f"of {steps} steps need even at the smallest verification scale {last['shape']} "
                    f"(about {fit} would fit); nothing was trained",
                    "raise --seconds-budget, or lower --k or --steps")


def _schedule(per_run: list[float], workers: int) -> float:
    """Wall seconds of runs handed, longest first, to ``workers`` one-thread workers."""
    loads = [0.0] * max(1, workers)
    for t in sorted(per_run, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def verify(run_dir: str | Path, *, k: int = 8, steps: int = 1200, workers: int = 2, seconds_budget: float = 900.0,
           shape: dict[str, Any] | None = None, train: Any = None, pretrain: Any = None,
           progress: Callable[[str, int, int], None] | None = None,
           log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Train ``k`` of the campaign's architectures with the truth's protocol and judge its quality axis
    (see the module docstring); writes and returns ``RUN_DIR/verify/verify.json``.

    ``train`` / ``pretrain`` replace the protocol's :class:`TrainConfig` / :class:`PretrainConfig`
    (the calibration's defaults: 1,200 steps at batch 4; a backbone pretrained 1,000 steps at batch 8)."""
    import pandas as pd

    from vidnas._stats import bootstrap_interval, kendall
    from vidnas.proxies import PretrainConfig, TrainConfig, pretrain_backbone
    from vidnas.proxies._truth import TruthStore, train_truth_runs
    from vidnas.runners._config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists() or not (run_dir / "trials.parquet").exists():
        raise SpecError("RUN_DIR", str(run_dir), "holds no finished campaign (config.yaml and trials.parquet)",
                        "run `vidnas search` first")
    if k < 2:
        raise SpecError("k", k, "must be >= 2 (a rank correlation needs two architectures)")
    if steps < 1:
        raise SpecError("steps", steps, "must be >= 1")
    config = load_config(run_dir / CONFIG_FILE)
    _, metric, direction = _quality_objective(config)
    trials = pd.read_parquet(run_dir / "trials.parquet")
    candidates = choose_candidates(trials, metric, direction, k)
    if len(candidates) < 2:
        raise SpecError("RUN_DIR", str(run_dir), f"has {len(candidates)} finished architectures with `{metric}`",
                        "verification needs at least two")
    campaign = json.loads((run_dir / "campaign.json").read_text()) if (run_dir / "campaign.json").exists() else {}
    real = {key: getattr(config.space, key) for key in SHAPES}
    start = dict(real)
    quality = campaign.get("quality") or {}
    if quality.get("scale"):
        from vidnas.proxies._scale import ProxyScale

        scaled = ProxyScale(**quality["scale"]).space(config.space.name, real)
        start = {"frames": scaled.shape.get("frames"), "height": scaled.shape.get("height"),
                 "width": scaled.shape.get("width"), "width_mult": scaled.shape.get("width_mult")}
    if shape:
        start = {**start, **{key: v for key, v in shape.items() if v is not None}}
    data = config.proxy.data
    train = train or TrainConfig(steps=steps, batch_size=4, lr=2e-3, train_clips=4096, heldout_clips=32, data=data)
    steps = train.steps
    pretrain = pretrain or PretrainConfig(steps=1000, batch_size=8, data=data)
    started = time.perf_counter()
    plan = plan_verification(config.space.name, start, candidates, steps=steps, train=train, pretrain=pretrain,
                             workers=workers, seconds_budget=seconds_budget, fixed=bool(shape))
    log(f"verification scale {plan.shape}: estimated {plan.estimate_seconds / 60:.1f} min for {len(candidates)} "
        f"truth runs of {steps} steps on {workers} worker(s) (budget {seconds_budget / 60:.1f} min)")
    from vidnas.search_space import get_space

    space = get_space(config.space.name, **{key: v for key, v in plan.shape.items() if v is not None})
    backbone = pretrain_backbone(space.base, pretrain,
                                 progress=(lambda i, n: progress("pretrain backbone", i, n)) if progress else None)
    store = run_dir / "verify" / "truth"
    results = train_truth_runs([(s, 0) for s in plan.specs], train, backbone, pretrain, store=store, workers=workers,
                               progress=(lambda i, n: progress("truth runs", i, n)) if progress else None)
    sign = -1.0 if direction == "minimize" else 1.0
    archs = []
    for c, spec in zip(candidates, plan.specs):
        loss = results[(spec.arch_id, 0)].heldout_loss
        archs.append({**{key: v for key, v in c.items() if key != "params"}, "verify_arch_id": spec.arch_id,
                      "heldout_loss": loss, "truth_seconds": results[(spec.arch_id, 0)].seconds})
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
    result = {
        "format": "vidnas.verification", "version": 1, "metric": metric, "direction": direction, "k": len(archs),
        "steps": steps, "shape": plan.shape, "real_shape": real, "estimate_seconds": plan.estimate_seconds,
        "scales_tried": plan.tried, "seconds_budget": seconds_budget, "workers": workers,
        "protocol": {"train": train.to_dict(), "pretrain": pretrain.key(), "backbone_id": backbone.backbone_id,
                     "protocol_id": TruthStore(store, train, backbone.backbone_id).protocol_id},
        "kendall": kendall(objective, truth), "kendall_ci": bootstrap_interval(objective, truth, kendall),
        "front_pairs": total, "front_pairs_in_order": agree,
        "front_order_held": total == agree if total else None,
        "architectures": archs, "seconds": time.perf_counter() - started,
    }
    out = run_dir / VERIFY_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    return result

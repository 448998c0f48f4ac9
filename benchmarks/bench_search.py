"""Search quality against the exhaustive front: do the samplers differ, and does screened-ehvi beat random?

    python benchmarks/bench_search.py                       # everything, from a clean install
    python benchmarks/bench_search.py --precompute-only     # tables, supernets, every architecture's score
    python benchmarks/bench_search.py --spaces tiny-enum-3k --seeds 5 --budgets 0.03 --samplers random,screened-ehvi
    python benchmarks/bench_search.py --overhead-only       # screened-ehvi's time per trial, pool of 100,000
    python benchmarks/summarize.py search benchmarks/results/search.json

**Spaces.** ``tiny-enum-3k`` (3,072 architectures) and ``tiny-enum-30k`` (30,720), registered
search spaces on the ``tiny`` UNet: a conv-block choice per stage and level, attention choices
tied across slots.

**Objectives, precomputed once per architecture** (``--work``/``SPACE.parquet``, resumable):

* latency (minimise): the campaign's own latency, a table measured on ``--backend``
  (default ONNX Runtime CPU, 1 thread, the quick harness a campaign builds with) at the space's
  real shape (8 frames, 128x128 pixels), the naive sum of entries (no end-to-end correction),
  computed for every architecture by the campaign's vectorised cheap-metric model;
* quality (minimise): ``proxy:supernet``, the held-out denoising loss of the architecture's
  sub-network in the space's weight-sharing supernet, at a proxy scale (``--quality-frames``
  frames of ``--quality-size`` pixels), on a backbone pretrained for ``--pretrain-steps`` and a
  supernet trained for ``--supernet-steps`` (both through ``pretrain_backbone`` and
  ``train_supernet``, cached in the vidnas cache), ``--heldout-clips`` held-out clips.
  Deterministic: the same architecture always scores the same.

**Sampler runs.** Each run is a campaign driven through the campaign's own code: the config
is parsed by ``parse_config`` (``sampler: {name, seed}`` with the registry's default options,
``trials`` = the budget), the sampler comes from the registry through the driver's
``make_sampler`` (with the campaign's cheap-metric model), and the driver's ask/tell loop
(``runners._driver._drive``: budget claims, cheap-constraint screening, telling values and
attributes) runs on an in-memory Optuna storage with one change: the executor looks each
architecture's objectives up in the precomputed table instead of evaluating it. Budgets are
fractions of the space (``--budgets``, default 1 %, 3 %, 10 %); ``--seeds`` seeds per sampler
and budget (the sampler's seed). Each finished run is saved at once (``--work``/runs/...), so an
interrupted benchmark resumes where it stopped.

**Metrics.** Hypervolume share (``hypervolume_share``): the hypervolume of the run's evaluated
architectures over the exhaustive front's, both objectives normalised to [0, 1] between the
exhaustive front's ideal and nadir points, reference point (1.1, 1.1): the region where the
front lies. (Normalised over the whole space instead, ``hypervolume_share_space``, most of the
box is dominated by any architecture near the front's ends, and random search reaches about
0.97 at 3 % on tiny-enum-3k, which leaves no room to tell samplers apart; it is reported
beside.) Front recovered: the share of the exhaustive front's architectures the run evaluated.
Per space and budget: median and interquartile range over seeds, and a paired Wilcoxon
signed-rank test of each sampler's hypervolume share against random's (same seeds; one-sided,
greater). Seconds per trial: the run's wall time over its trials (driver, Optuna,
sampler and lookup; no evaluation).

**Overhead** (``--overhead-only``, or last in a full run): screened-ehvi on the ``tiny`` space
(6.9e10 architectures: a pool of ``--overhead-pool`` drawn candidates), latency from the roofline
estimate (vectorised like a table), a synthetic quality; the sampler's own seconds per choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SPACES = ("tiny-enum-3k", "tiny-enum-30k")
SAMPLERS = ("random", "nsga2", "tpe", "screened-ehvi")
BUDGETS = (0.01, 0.03, 0.10)
QUALITY = "proxy:supernet"
TARGETS = {"budget_3pct_median": 0.95, "budget_3pct_over_random": 0.05, "p_value": 0.01,
           "budget_10pct_median": 0.98, "overhead_ms": 20.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spaces", default=",".join(SPACES), help="comma-separated search spaces")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated registered samplers")
    parser.add_argument("--budgets", default=",".join(str(b) for b in BUDGETS),
                        help="comma-separated fractions of the space (0.03 = 3 %%)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per sampler and budget")
    parser.add_argument("--precompute-only", action="store_true", help="build tables, supernets and scores; stop")
    parser.add_argument("--overhead-only", action="store_true", help="only measure screened-ehvi's overhead")
    parser.add_argument("--no-overhead", action="store_true", help="skip the overhead measurement")
    parser.add_argument("--backend", default="onnxruntime", help="latency table backend (debug: no measurement)")
    parser.add_argument("--quality-frames", type=int, default=4)
    parser.add_argument("--quality-size", type=int, default=64, help="quality scale: pixels per side")
    parser.add_argument("--pretrain-steps", type=int, default=500)
    parser.add_argument("--supernet-steps", type=int, default=500)
    parser.add_argument("--heldout-clips", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1, help="processes scoring architectures")
    parser.add_argument("--pool-size", type=int, default=None, help="screened-ehvi's pool (default: its own)")
    parser.add_argument("--overhead-pool", type=int, default=100_000)
    parser.add_argument("--overhead-trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="trials in flight in each sampler run")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/search"),
                        help="precomputed scores and per-run results (resumable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search.json"))
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# 1. Precompute ---------------------------------------------------------------------------------


def quality_shape(args) -> dict[str, int]:
    return {"frames": args.quality_frames, "height": args.quality_size, "width": args.quality_size}


def build_latency_table(space_name: str, args) -> Path:
    """The space's latency table at its real shape, built like a campaign's (quick harness), resumable."""
    from vidnas.latency_models import HarnessConfig, build_table, get_backend
    from vidnas.search_space import get_space

    path = args.work / f"table-{space_name}-{args.backend}.parquet"
    options = {"graph_optimization": "all"} if args.backend == "onnxruntime" else {}
    backend = get_backend(args.backend, device="cpu", threads=1, **options)
    harness = dataclasses.replace(HarnessConfig.quick(), max_seconds=0.5)
    start = time.perf_counter()
    build_table(get_space(space_name), backend, path, config=harness)
    _log(f"{space_name}: latency table {path} ({time.perf_counter() - start:.0f} s)")
    return path


def supernet_configs(args):
    from vidnas.proxies import PretrainConfig, SupernetConfig

    return (PretrainConfig(steps=args.pretrain_steps, data="shapes", seed=0, threads=1),
            SupernetConfig(steps=args.supernet_steps, heldout_clips=args.heldout_clips, data="shapes", seed=0,
                           threads=1))


def train_quality(space_name: str, args) -> dict[str, Any]:
    """Pretrain the backbone and train the supernet of the space at the quality scale (cached, resumable)."""
    import torch

    from vidnas.proxies import pretrain_backbone, train_supernet
    from vidnas.proxies._pretrain import backbone_path
    from vidnas.proxies._supernet import supernet_dir
    from vidnas.search_space import get_space

    torch.set_num_threads(1)
    space = get_space(space_name, **quality_shape(args))
    pretrain, config = supernet_configs(args)
    # torch 2.13's oneDNN convolution backward crashes (SIGSEGV) on some of this supernet's paths (e.g. a
    # trainable conv2plus1d at mid behind the frozen backbone, 4 frames of 64x64): train with it off (about
    # twice as slow); scoring is forward only and keeps it
    with torch.backends.mkldnn.flags(enabled=False):
        start = time.perf_counter()
        backbone = pretrain_backbone(space.base, pretrain,
                                     progress=lambda i, n: _log(f"backbone step {i}/{n}") if i % 100 == 0 else None)
        pretrained = time.perf_counter() - start
        directory = supernet_dir(space, config, backbone)
        start = time.perf_counter()
        supernet = train_supernet(space, backbone, config, out=directory,
                                  progress=lambda i, n: _log(f"supernet step {i}/{n}") if i % 100 == 0 else None)
    image = space.base.replace_choices({s.name: "none" for s in space.base.slots()})
    return {"space_shape": dict(space.shape), "backbone": str(backbone_path(image, pretrain)),
            "backbone_meta": backbone.meta, "supernet_dir": str(directory), "supernet": supernet.describe(),
            "pretrain_seconds_this_run": pretrained, "supernet_seconds_this_run": time.perf_counter() - start,
            "pretrain_config": pretrain.key(), "supernet_config": config.to_dict()}


_WORKER: dict[str, Any] = {}


def _init_worker(space_name: str, shape: dict[str, int], backbone: str, supernet_dir: str, config: dict) -> None:
    import torch

    from vidnas.proxies import PretrainedBackbone, SupernetConfig, load_supernet
    from vidnas.runners._cheap import CheapModel
    from vidnas.search_space import get_space

    torch.set_num_threads(1)
    space = get_space(space_name, **shape)
    net = load_supernet(supernet_dir, space, PretrainedBackbone.load(Path(backbone)), SupernetConfig.from_dict(config))
    _WORKER.update(supernet=net, model=CheapModel(space))


def _score_chunk(codes: list[int]) -> list[float]:
    import numpy as np

    model, supernet = _WORKER["model"], _WORKER["supernet"]
    indices = model.decode_codes(np.asarray(codes, dtype=np.int64))
    return [float(supernet.score(model.spec(row))) for row in indices]


def score_space(space_name: str, quality: dict[str, Any], args, chunk: int = 256) -> list[float]:
    """The supernet score of every architecture (enumeration order), chunk files saved as they finish."""
    import concurrent.futures as cf
    import multiprocessing

    import pandas as pd

    from vidnas.search_space import get_space

    size = get_space(space_name).size
    parts = args.work / f"scores-{space_name}"
    parts.mkdir(parents=True, exist_ok=True)
    todo = [start for start in range(0, size, chunk) if not (parts / f"{start:08d}.parquet").exists()]
    init = (space_name, quality_shape(args), quality["backbone"], quality["supernet_dir"],
            quality["supernet_config"])
    started, done = time.perf_counter(), 0
    _log(f"{space_name}: scoring {sum(min(chunk, size - s) for s in todo)} of {size} architectures "
         f"with {args.jobs} process(es)")

    def save(start: int, scores: list[float]) -> None:
        nonlocal done
        tmp = parts / f"{start:08d}.tmp.parquet"
        pd.DataFrame({"index": range(start, start + len(scores)), "quality": scores}).to_parquet(tmp, index=False)
        tmp.replace(parts / f"{start:08d}.parquet")
        done += len(scores)
        rate = done / (time.perf_counter() - started)
        _log(f"{space_name}: {done} scored this run ({rate:.1f}/s)")

    if args.jobs <= 1:
        _init_worker(*init)
        for start in todo:
            save(start, _score_chunk(list(range(start, min(size, start + chunk)))))
    elif todo:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_init_worker, initargs=init) as pool:
            futures = {pool.submit(_score_chunk, list(range(s, min(size, s + chunk)))): s for s in todo}
            for future in cf.as_completed(futures):
                save(futures[future], future.result())
    frame = pd.concat([pd.read_parquet(p) for p in sorted(parts.glob("*.parquet")) if ".tmp" not in p.name])
    frame = frame.sort_values("index")
    if len(frame) != size or not (frame["index"].to_numpy() == range(size)).all():
        raise SystemExit(f"{space_name}: scores are incomplete ({len(frame)} of {size})")
    return frame["quality"].tolist()


def precompute(space_name: str, args) -> dict[str, Any]:
    """``SPACE.parquet`` (index, arch_id, latency_ms, params, flops, quality) and its provenance record."""
    import numpy as np
    import pandas as pd

    from vidnas.latency_models import LatencyPredictor, LatencyTable
    from vidnas.runners._cheap import CheapModel
    from vidnas.search_space import get_space

    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / f"{space_name}.parquet"
    record_path = args.work / f"{space_name}.json"
    settings = {"backend": args.backend, "quality_shape": quality_shape(args), "pretrain_steps": args.pretrain_steps,
                "supernet_steps": args.supernet_steps, "heldout_clips": args.heldout_clips}
    if out.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("settings") != settings:
            raise SystemExit(f"{record_path} was computed with {record.get('settings')}, not {settings}: give "
                             "another --work directory or the same settings")
        return record
    started = time.perf_counter()
    space = get_space(space_name)
    small = get_space(space_name, **quality_shape(args))
    if [g.options for g in small.groups] != [g.options for g in space.groups]:
        raise SystemExit(f"{space_name}: the quality scale changes the space's options")
    table_path = build_latency_table(space_name, args)
    table = LatencyTable.load(table_path)
    model = CheapModel(space, predictor=LatencyPredictor(table, correction=None), batch=1)
    indices = model.enumerate_indices()
    metrics = model.metrics(["latency_ms", "params", "flops"], indices)
    quality = train_quality(space_name, args)
    scores = score_space(space_name, quality, args)
    arch_ids = [model.spec(row).arch_id for row in indices]
    frame = pd.DataFrame({"index": np.arange(len(indices)), "arch_id": arch_ids, "latency_ms": metrics["latency_ms"],
                          "params": metrics["params"], "flops": metrics["flops"], "quality": scores})
    frame.to_parquet(out, index=False)
    meta = table.meta.to_dict()
    record = {"space": space_name, "size": space.size, "settings": settings, "describe": space.describe(),
              "latency": {"table": str(table_path), "backend": meta.get("backend"), "device": meta.get("device"),
                          "fingerprint": meta.get("fingerprint"), "harness": meta.get("harness"),
                          "entries": len(table.rows()), "correction": "none (naive sum of entries)"},
              "quality": {"metric": QUALITY, "direction": "minimize", **quality},
              "precompute_seconds_this_run": time.perf_counter() - started}
    record_path.write_text(json.dumps(record, indent=2, default=str))
    _log(f"{space_name}: {out} written")
    return record


# 2. Sampler runs -------------------------------------------------------------------------------


class AnswerExecutor:
    """The campaign executor interface (``runners._executors``), answering with ``answer(spec)`` at once.

    ``slots`` evaluations are "in flight" at once; each ``collect`` returns the oldest one, so with
    ``slots > 1`` the sampler sees pending trials as in a parallel campaign.
    """

    def __init__(self, answer, slots: int = 1) -> None:
        self.answer = answer
        self.slots = slots
        self._jobs: dict[int, str] = {}
        self._next = 0

    def submit(self, spec_json: str) -> int:
        self._next += 1
        self._jobs[self._next] = spec_json
        return self._next

    def collect(self, timeout: float):
        from vidnas.runners._executors import Outcome
        from vidnas.search_space import ArchSpec

        if not self._jobs:
            return []
        key = min(self._jobs)
        spec = ArchSpec.from_json(self._jobs.pop(key))
        return [(key, Outcome({"arch_id": spec.arch_id, **self.answer(spec), "seconds": {"total": 0.0}}, None, 0.0))]

    def cancel_all(self) -> None:
        self._jobs.clear()


def lookup(rows: dict[str, dict[str, float]]):
    """``answer(spec)`` from the precomputed rows (keyed by arch_id)."""
    def answer(spec) -> dict[str, float]:
        row = rows[spec.arch_id]
        return {"latency_ms": row["latency_ms"], QUALITY: row["quality"], "params": row["params"],
                "flops": row["flops"]}

    return answer


class _NeverStop:
    requested = False


def campaign_config(space_name: str, table: Path, sampler: str, seed: int, budget: int, args):
    from vidnas.runners import parse_config

    options = {"pool_size": args.pool_size} if sampler == "screened-ehvi" and args.pool_size else {}
    return parse_config({
        "name": f"bench-{space_name}-{sampler}-{seed}", "space": {"name": space_name},
        "target": {"backend": args.backend, "lut": str(table)},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": QUALITY, "direction": "minimize"}],
        "sampler": {"name": sampler, "seed": seed, **options}, "trials": budget, "workers": args.workers,
    })


def run_sampler(space_name: str, rows: dict[str, dict], table: Path, sampler: str, seed: int, budget: int,
                args) -> dict[str, Any]:
    """One campaign through the driver's ask/tell loop with looked-up objectives; its evaluated arch_ids."""
    import optuna

    from vidnas.latency_models import LatencyTable
    from vidnas.runners import EvalSettings
    from vidnas.runners._cheap import CheapModel
    from vidnas.runners._driver import Progress, _drive, campaign_space, make_sampler
    from vidnas.runners._screen import Screen

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = campaign_config(space_name, table, sampler, seed, budget, args)
    space = campaign_space(config)
    loaded = LatencyTable.load(table)
    settings = EvalSettings(metrics=tuple(m.name for m in config.metrics()),
                            table=(loaded.meta.to_dict(), loaded.rows()), roofline=None, roofline_dtype="float16",
                            batch=1, steps=config.video.steps, cfg=config.video.cfg, proxy_clips=1, proxy_seed=0,
                            proxy_train_steps=1, threads=1)
    cheap = CheapModel.for_settings(space, settings)
    started = time.perf_counter()
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=config.directions(),
                                sampler=make_sampler(config, space, cheap))
    progress = Progress(total=budget)
    _drive(study, space, config, AnswerExecutor(lookup(rows), slots=args.workers), budget, progress, None,
           lambda m: None, "bench", _NeverStop(), screen=Screen(config.constraints, settings))
    wall = time.perf_counter() - started
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    picks = [t.system_attrs.get("screened_ehvi", {}).get("seconds") for t in complete]
    picks = [p for p in picks if p is not None]
    return {"space": space_name, "sampler": sampler, "seed": seed, "budget": budget,
            "evaluated": [t.user_attrs["arch_id"] for t in complete], "screened": progress.screened,
            "wall_seconds": wall, "seconds_per_trial": wall / max(1, len(complete)),
            "choice_seconds": picks}


def score_run(frame, run: dict[str, Any]) -> dict[str, float]:
    """Hypervolume shares (front box, space box) and front recovered of a run against the exhaustive front."""
    import numpy as np

    from vidnas._pareto import hypervolume

    truth = _truth(frame)
    found = sorted({truth["position"][a] for a in run["evaluated"]})
    out = {"front_recovered": len(set(found) & truth["front"]) / len(truth["front"])}
    for key, (lo, scale, best) in truth["boxes"].items():
        hv = hypervolume(((truth["points"][found] - lo) / scale).tolist(), np.array([1.1, 1.1])) if found else 0.0
        out[key] = hv / best
    return out


_TRUTH: dict[int, Any] = {}


def _truth(frame) -> dict[str, Any]:
    """The exhaustive front and the two normalisations of the objectives (see the module docstring)."""
    import numpy as np

    from vidnas._pareto import hypervolume, non_dominated

    key = id(frame)
    if key not in _TRUTH:
        points = frame[["latency_ms", "quality"]].to_numpy(dtype=float)
        front = sorted(np.flatnonzero(non_dominated(points.tolist())).tolist())
        boxes = {}
        for name, (lo, hi) in {"hypervolume_share": (points[front].min(axis=0), points[front].max(axis=0)),
                               "hypervolume_share_space": (points.min(axis=0), points.max(axis=0))}.items():
            scale = np.where(hi > lo, hi - lo, 1.0)
            boxes[name] = (lo, scale, hypervolume(((points[front] - lo) / scale).tolist(), np.array([1.1, 1.1])))
        _TRUTH[key] = {"points": points, "front": set(front), "boxes": boxes,
                       "position": {a: i for i, a in enumerate(frame["arch_id"])}}
    return _TRUTH[key]


def run_path(args, space_name: str, fraction: float, sampler: str, seed: int) -> Path:
    extra = f"-w{args.workers}" if args.workers > 1 else ""
    extra += f"-pool{args.pool_size}" if args.pool_size and sampler == "screened-ehvi" else ""
    return args.work / "runs" / space_name / f"{fraction:g}" / f"{sampler}{extra}" / f"seed{seed:03d}.json"


def budget_of(size: int, fraction: float) -> int:
    return max(2, round(size * fraction))


def run_all(space_name: str, frame, record: dict[str, Any], samplers: list[str], budgets: list[float],
            args) -> None:
    table = Path(record["latency"]["table"])
    rows = {a: r for a, r in zip(frame["arch_id"], frame.to_dict("records"))}
    for fraction in budgets:
        budget = budget_of(len(frame), fraction)
        for seed in range(args.seeds):
            for sampler in samplers:
                path = run_path(args, space_name, fraction, sampler, seed)
                if path.exists():
                    continue
                run = run_sampler(space_name, rows, table, sampler, seed, budget, args)
                run.update(score_run(frame, run), fraction=fraction)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(run))
                _log(f"{space_name} {100 * fraction:g}% ({budget}) {sampler} seed {seed}: HV share "
                     f"{run['hypervolume_share']:.3f}, front {run['front_recovered']:.2f}, "
                     f"{1000 * run['seconds_per_trial']:.1f} ms/trial")


# 3. Aggregation --------------------------------------------------------------------------------


def _quartiles(values: list[float]) -> list[float]:
    import numpy as np

    return [float(np.percentile(values, 25)), float(np.percentile(values, 75))]


def _paired_p(x: list[float], y: list[float]) -> float | None:
    """One-sided Wilcoxon signed-rank p-value of x > y over paired seeds (None with fewer than 2 pairs)."""
    from scipy.stats import wilcoxon

    if len(x) < 2:
        return None
    if all(a == b for a, b in zip(x, y)):
        return 1.0
    return float(wilcoxon(x, y, alternative="greater", zero_method="pratt").pvalue)


def aggregate(space_name: str, frame, budgets: list[float], samplers: list[str], args) -> list[dict[str, Any]]:
    groups = []
    for fraction in budgets:
        runs: dict[str, dict[int, dict]] = {}
        for sampler in samplers:
            for seed in range(args.seeds):
                path = run_path(args, space_name, fraction, sampler, seed)
                if path.exists():
                    runs.setdefault(sampler, {})[seed] = json.loads(path.read_text())
        if not runs:
            continue
        group = {"space": space_name, "budget_fraction": fraction, "budget": budget_of(len(frame), fraction),
                 "space_size": len(frame), "samplers": {}}
        random = runs.get("random", {})
        for sampler, by_seed in runs.items():
            hv = [r["hypervolume_share"] for r in by_seed.values()]
            hv_space = [r["hypervolume_share_space"] for r in by_seed.values()]
            front = [r["front_recovered"] for r in by_seed.values()]
            paired = sorted(set(by_seed) & set(random))
            choice = [s for r in by_seed.values() for s in r.get("choice_seconds", [])]
            group["samplers"][sampler] = {
                "seeds": len(by_seed),
                "hypervolume_share_median": statistics.median(hv), "hypervolume_share_iqr": _quartiles(hv),
                "hypervolume_share_min": min(hv), "hypervolume_share_max": max(hv),
                "hypervolume_share_space_median": statistics.median(hv_space),
                "hypervolume_share_space_iqr": _quartiles(hv_space),
                "front_recovered_median": statistics.median(front), "front_recovered_iqr": _quartiles(front),
                "p_value_vs_random": None if sampler == "random" else _paired_p(
                    [by_seed[s]["hypervolume_share"] for s in paired],
                    [random[s]["hypervolume_share"] for s in paired]),
                "paired_seeds": len(paired),
                "seconds_per_trial_median": statistics.median(r["seconds_per_trial"] for r in by_seed.values()),
                "choice_seconds_median": statistics.median(choice) if choice else None,
                "screened_median": statistics.median(r.get("screened", 0) for r in by_seed.values()),
            }
        groups.append(group)
    return groups


def check_targets(groups: list[dict[str, Any]], overhead: dict[str, Any] | None, ours: str = "screened-ehvi"
                  ) -> list[dict[str, Any]]:
    """Each target of the search benchmark, met or missed, with the numbers."""
    out = []
    for g in groups:
        s = g["samplers"].get(ours)
        if s is None:
            continue
        where = f"{g['space']} at {100 * g['budget_fraction']:g} %"
        if abs(g["budget_fraction"] - 0.03) < 1e-9:
            random = g["samplers"].get("random")
            margin = s["hypervolume_share_median"] - random["hypervolume_share_median"] if random else None
            p = s["p_value_vs_random"]
            met = (s["hypervolume_share_median"] >= TARGETS["budget_3pct_median"] and margin is not None
                   and margin >= TARGETS["budget_3pct_over_random"] and p is not None and p < TARGETS["p_value"])
            out.append({"target": f"{where}: median HV share >= 0.95, >= random + 0.05, p < 0.01", "met": met,
                        "median": s["hypervolume_share_median"], "over_random": margin, "p_value": p})
        if abs(g["budget_fraction"] - 0.10) < 1e-9:
            out.append({"target": f"{where}: median HV share >= 0.98",
                        "met": s["hypervolume_share_median"] >= TARGETS["budget_10pct_median"],
                        "median": s["hypervolume_share_median"]})
    if overhead:
        ms = 1000 * overhead["choice_seconds_median"]
        out.append({"target": f"overhead: <= 20 ms per trial, pool of {overhead['pool_candidates']}",
                    "met": ms <= TARGETS["overhead_ms"], "median_ms": ms,
                    "p90_ms": 1000 * overhead["choice_seconds_p90"]})
    return out


# 4. Overhead -----------------------------------------------------------------------------------


def measure_overhead(args) -> dict[str, Any]:
    """screened-ehvi on ``tiny`` (a pool of ``--overhead-pool``), roofline latency, a synthetic quality."""
    import numpy as np
    import optuna

    from vidnas.runners import EvalSettings, parse_config
    from vidnas.runners._cheap import CheapModel
    from vidnas.runners._driver import Progress, _drive, campaign_space, make_sampler
    from vidnas.runners._screen import Screen

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = parse_config({"name": "overhead", "space": {"name": "tiny"},
                           "target": {"roofline": "laptop-cpu", "roofline_dtype": "float32"},
                           "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                                          {"metric": QUALITY, "direction": "minimize"}],
                           "sampler": {"name": "screened-ehvi", "seed": 0, "pool_size": args.overhead_pool},
                           "trials": args.overhead_trials})
    space = campaign_space(config)
    settings = EvalSettings(metrics=(), table=None, roofline="laptop-cpu", roofline_dtype="float32", batch=1,
                            steps=25, cfg="none", proxy_clips=1, proxy_seed=0, proxy_train_steps=1, threads=1)
    cheap = CheapModel.for_settings(space, settings)
    weights = np.random.default_rng(0).normal(size=int(cheap.sizes.sum()))

    def synthetic(spec) -> dict[str, float]:
        indices = cheap.encode(spec)
        return {"latency_ms": float(cheap.metric("latency_ms", indices[None])[0]),
                QUALITY: float(weights[indices + cheap.offsets].sum())}

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=config.directions(),
                                sampler=make_sampler(config, space, cheap))
    started = time.perf_counter()
    _drive(study, space, config, AnswerExecutor(synthetic), config.trials, Progress(config.trials), None,
           lambda m: None, "bench", _NeverStop(), screen=Screen({}, settings))
    wall = time.perf_counter() - started
    records = [t.system_attrs["screened_ehvi"] for t in study.trials if "screened_ehvi" in t.system_attrs]
    first, rest = records[0], records[1:]
    ehvi = [r["seconds"] for r in rest if r["mode"] == "ehvi"]
    return {"space": "tiny", "space_size": space.size, "pool_candidates": first["candidates"],
            "trials": len(records), "pool_seconds_first_trial": first["seconds"],
            "choice_seconds_median": statistics.median(ehvi), "choice_seconds_p90": float(np.percentile(ehvi, 90)),
            "choice_seconds_max": max(ehvi), "startup_trials": sum(r["mode"] == "startup" for r in records),
            "exact_evaluations_median": statistics.median(r.get("exact_evaluations", 0) for r in rest
                                                          if r["mode"] == "ehvi"),
            "wall_seconds_per_trial": wall / len(records), "latency": "roofline estimate (laptop-cpu, float32)",
            "quality": "synthetic: a seeded additive function of the choices"}


# Main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import pandas as pd
    import torch

    from vidnas._env import fingerprint

    torch.set_num_threads(1)
    spaces = [s for s in args.spaces.split(",") if s]
    samplers = [s for s in args.samplers.split(",") if s]
    budgets = [float(b) for b in args.budgets.split(",") if b]
    if "random" not in samplers and not args.precompute_only:
        raise SystemExit("--samplers must include random (the paired tests compare against it)")
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"format": "vidnas.bench_search", "version": 2, "environment": fingerprint(),
                              "command": " ".join(sys.argv), "seeds": args.seeds, "budgets": budgets,
                              "samplers": samplers, "workers": args.workers, "objectives": [
                                  {"metric": "latency_ms", "direction": "minimize"},
                                  {"metric": QUALITY, "direction": "minimize"}],
                              "spaces": {}, "groups": [], "targets": TARGETS}
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("format") == "vidnas.bench_search":
            result["overhead"] = previous.get("overhead")
    if not args.overhead_only:
        for space_name in spaces:
            record = precompute(space_name, args)
            frame = pd.read_parquet(args.work / f"{space_name}.parquet")
            record["true_front_size"] = len(_truth(frame)["front"])
            result["spaces"][space_name] = record
            if args.precompute_only:
                continue
            run_all(space_name, frame, record, samplers, budgets, args)
            result["groups"] += aggregate(space_name, frame, budgets, samplers, args)
    if args.precompute_only:
        args.out.with_name(args.out.stem + "-precompute.json").write_text(json.dumps(result, indent=2, default=str))
        return
    if not args.no_overhead and "screened-ehvi" in samplers:
        result["overhead"] = measure_overhead(args)
        _log(f"overhead: {result['overhead']}")
    result["target_checks"] = check_targets(result["groups"], result.get("overhead"))
    args.out.write_text(json.dumps(result, indent=2, default=str))
    _log(f"written: {args.out}")


if __name__ == "__main__":
    main()

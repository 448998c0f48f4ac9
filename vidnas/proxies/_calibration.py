"""Calibration: how well each quality signal ranks architectures by the ground truth.

The ground truth follows SnapGen-V's protocol: the space's spatial backbone is pretrained
once as an image denoiser (``_pretrain``) and frozen; each of N architectures (stratified
over temporal-op types and latency) gets its slot layers at identity initialisation and is
trained K steps on video clips, with ``truth_seeds`` independent seeds (initialisation, data
order, noise); its truth is the mean held-out loss at fixed timesteps and noise. Truth always
comes from training each architecture on its own, never from a proxy.

The truth's own reliability is measured and reported with every calibration: Kendall tau
(with a bootstrap interval) and Spearman rho between the first two seeds over all N
architectures, and the Spearman-Brown reliability of their mean. Then, per signal (every
registered proxy; ``supernet`` and ``supernet_ft`` with the space's trained supernet):

* Kendall tau and Spearman rho against the truth, oriented so that positive means the
  signal ranks better models higher, each with a bootstrap 95 % interval;
* tau within latency bins (does it rank models of similar cost?), and the partial tau
  controlling for FLOPs (what it knows beyond size);
* precision at the top 10 %.

An ensemble (sum of normalised ranks of the best training-free proxies) is judged out of
fold: its members are chosen on the other folds.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas._stats import bootstrap_interval, kendall, spearman
from vidnas.proxies._denoise import TrainConfig
from vidnas.proxies._registry import ProxyBatch, get_proxy
from vidnas.proxies._setting import calibration_setting
from vidnas.search_space import ArchSpec, SearchSpace, count_spec

DEFAULT_PROXIES = ("params", "flops", "temporal_flops_share", "grad_norm", "snip", "synflow", "zico", "naswot_silu",
                   "cross_frame_sensitivity", "train_loss_sum", "heldout_loss_short", "temporal_order_gap")


def dominant_op(spec: ArchSpec) -> str:
    """The most frequent temporal op other than none (``none`` if there is none)."""
    counts = {op: n for op, n in spec.op_counts().items() if op != "none"}
    return max(sorted(counts), key=lambda op: counts[op]) if counts else "none"


def stratified_sample(space: SearchSpace, n: int, seed: int,
                      latency: Callable[[ArchSpec], float] | None = None, bins: int = 4) -> list[ArchSpec]:
    """``n`` architectures spread over dominant op type and latency (or FLOPs) quantile bins.

    A pool of ``20 n`` random architectures is binned by (dominant op, latency quartile);
    architectures are then taken round-robin across bins, in a seeded order.
    """
    if n < 2:
        raise SpecError("n", n, "must be >= 2")
    cost = latency or (lambda s: float(count_spec(s).flops))
    pool = space.random_specs(min(space.size, 20 * n), seed)
    if len(pool) < n:
        raise SpecError("n", n, f"exceeds the {space.size} architectures of space `{space.name}`")
    values = sorted(cost(s) for s in pool)
    edges = [values[int(len(values) * q / bins)] for q in range(1, bins)]
    strata: dict[tuple[str, int], list[ArchSpec]] = {}
    for spec in pool:
        strata.setdefault((dominant_op(spec), sum(cost(spec) > e for e in edges)), []).append(spec)
    rng = random.Random(seed)
    keys = sorted(strata)
    rng.shuffle(keys)
    chosen: list[ArchSpec] = []
    while len(chosen) < n:
        for key in keys:
            if strata[key] and len(chosen) < n:
                chosen.append(strata[key].pop(0))
    return chosen


# Statistics ------------------------------------------------------------------------------------


def partial_kendall(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Kendall's partial tau of x and y controlling for z."""
    txy, txz, tyz = kendall(x, y), kendall(x, z), kendall(y, z)
    den = math.sqrt(max(1e-12, (1 - txz**2) * (1 - tyz**2)))
    return (txy - txz * tyz) / den


def within_bins_kendall(x: Sequence[float], y: Sequence[float], bins: Sequence[int]) -> float:
    """Kendall tau averaged over bins, weighted by each bin's number of pairs."""
    total, weight = 0.0, 0
    for b in sorted(set(bins)):
        idx = [i for i, v in enumerate(bins) if v == b]
        if len(idx) < 3:
            continue
        pairs = len(idx) * (len(idx) - 1) // 2
        total += pairs * kendall([x[i] for i in idx], [y[i] for i in idx])
        weight += pairs
    return total / weight if weight else math.nan


def precision_at_top(x: Sequence[float], y: Sequence[float], share: float = 0.1) -> float:
    k = max(1, round(share * len(x)))
    top_x = set(sorted(range(len(x)), key=lambda i: -x[i])[:k])
    top_y = set(sorted(range(len(y)), key=lambda i: -y[i])[:k])
    return len(top_x & top_y) / k


def normalised_ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    for r, i in enumerate(order):
        ranks[i] = r / max(1, len(values) - 1)
    return ranks


# Calibration -----------------------------------------------------------------------------------


@dataclasses.dataclass
class CalibrationResult:
    """Per-architecture rows, the truth's reliability and per-signal statistics."""

    rows: list[dict[str, Any]]
    proxies: dict[str, dict[str, Any]]
    truth_reliability: dict[str, Any]
    ensemble: dict[str, Any]
    config: dict[str, Any]
    learned: dict[str, Any] = dataclasses.field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """``rows.parquet`` (one row per architecture) and ``summary.json``."""
        import json

        import pandas as pd

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(self.rows).to_parquet(directory / "rows.parquet", index=False)
        (directory / "summary.json").write_text(json.dumps(self.summary(), indent=2, default=str))
        return directory

    def summary(self) -> dict[str, Any]:
        return {"format": "vidnas.calibration", "version": 2, "config": self.config, "proxies": self.proxies,
                "truth_reliability": self.truth_reliability, "ensemble": self.ensemble, "learned": self.learned}


def proxy_statistics(oriented: Sequence[float], truth: Sequence[float], flops: Sequence[float],
                     bins: Sequence[int], seed: int = 0) -> dict[str, Any]:
    """All statistics of one (oriented) proxy against oriented truth (higher = better model)."""
    tau = kendall(oriented, truth)
    rho = spearman(oriented, truth)
    return {
        "kendall": tau,
        "kendall_ci": bootstrap_interval(oriented, truth, kendall, seed=seed),
        "spearman": rho,
        "spearman_ci": bootstrap_interval(oriented, truth, spearman, seed=seed),
        "kendall_within_latency_bins": within_bins_kendall(oriented, truth, bins),
        "partial_kendall_given_flops": partial_kendall(oriented, truth, flops),
        "precision_at_top10": precision_at_top(oriented, truth),
    }


def ensemble_out_of_fold(table: dict[str, list[float]], truth: list[float], *, members: int = 3, folds: int = 5,
                         seed: int = 0, candidates: Sequence[str]) -> tuple[list[float], list[list[str]]]:
    """Out-of-fold ensemble scores: members chosen (top |tau|, with sign) on the other folds."""
    n = len(truth)
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    fold_of = {i: k % folds for k, i in enumerate(order)}
    scores = [0.0] * n
    chosen_per_fold = []
    for f in range(folds):
        train = [i for i in range(n) if fold_of[i] != f]
        test = [i for i in range(n) if fold_of[i] == f]
        if not test:
            continue
        taus = {p: kendall([table[p][i] for i in train], [truth[i] for i in train]) for p in candidates}
        picked = sorted(taus, key=lambda p: -abs(taus[p]))[:members]
        chosen_per_fold.append([f"{'+' if taus[p] >= 0 else '-'}{p}" for p in picked])
        ranks = {p: normalised_ranks(table[p]) for p in picked}
        for i in test:
            scores[i] = sum(ranks[p][i] * (1 if taus[p] >= 0 else -1) for p in picked)
    return scores, chosen_per_fold


DEFAULT_SIGNALS = (*DEFAULT_PROXIES, "supernet", "supernet_ft")


def truth_reliability(first: Sequence[float], second: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Agreement of the truth with itself across two training seeds over the same architectures."""
    rho = spearman(first, second)
    return {"n": len(first), "kendall_between_seeds": kendall(first, second),
            "kendall_between_seeds_ci": bootstrap_interval(first, second, kendall, seed=seed),
            "spearman_between_seeds": rho,
            "spearman_brown_mean_of_two": 2 * rho / (1 + rho) if rho > -1 else math.nan,
            "median_relative_difference": statistics.median(abs(a - b) / a for a, b in zip(first, second))}


def truth_runs(specs: Sequence[ArchSpec], seed: int, second_seed_n: int) -> list[tuple[ArchSpec, int]]:
    """The truth's training runs: every spec with ``seed``, the first ``second_seed_n`` also with ``seed + 1``
    (ordered so that the two-seed subset finishes first and the reliability figure comes early)."""
    subset = list(specs[:second_seed_n])
    return ([(s, seed) for s in subset] + [(s, seed + 1) for s in subset]
            + [(s, seed) for s in specs[second_seed_n:]])


def calibrate(space: SearchSpace, *, n: int, steps: int, seed: int = 0, proxies: Sequence[str] = DEFAULT_SIGNALS,
              second_seed_n: int | None = None, short_steps: int | None = None, clips: int = 4,
              train: TrainConfig | None = None, pretrain: Any = None, supernet: Any = None,
              supernet_dir: Path | None = None, latency: Callable[[ArchSpec], float] | None = None,
              workers: int = 1, store: str | Path | None = None, fit: bool = True, recorded_only: bool = False,
              progress: Callable[[str, int, int], None] | None = None) -> CalibrationResult:
    """Train ``n`` stratified architectures ``steps`` steps each on the pretrained frozen backbone with
    training seed ``seed`` (the first ``second_seed_n``, default ``min(20, n)``, also with ``seed + 1``,
    for the truth's reliability), and judge every signal in ``proxies`` against the held-out loss of the first seed.

    ``pretrain`` (:class:`PretrainConfig`) and ``supernet`` (:class:`SupernetConfig`) default to the
    data source of ``train``; the backbone and supernet come from the cache when trained before, and
    every truth run from ``store`` (default: the cache's ``truth`` folder) when recorded before, so a
    killed calibration resumes. ``workers`` > 1 trains the truths in that many processes of one thread
    each. With ``fit``, a learned quality model (:mod:`~vidnas.proxies._fit`) over the signals is
    judged out of fold: each architecture is scored by a model fitted on the other folds only.

    ``recorded_only`` trains nothing: it judges the architectures of the sample whose truth the store
    already holds (a calibration stopped part way, reported for what it has; ``config.n_recorded``
    says how many of the ``n``).
    """
    from vidnas.proxies._pretrain import PretrainConfig, pretrain_backbone
    from vidnas.proxies._supernet import SupernetConfig, train_supernet
    from vidnas.proxies._truth import TruthStore, default_store, train_truth_runs

    for name in proxies:
        get_proxy(name, field="proxies")
    if steps < 1:
        raise SpecError("steps", steps, "must be >= 1")
    if second_seed_n is None:  # a stated subset of 20 (or every architecture, when fewer)
        second_seed_n = min(20, n)
    if not 2 <= second_seed_n <= n:
        raise SpecError("second_seed_n", second_seed_n, f"must be in [2, n={n}] (the truth's reliability needs "
                                                        "two seeds on at least two architectures)")
    base = train or TrainConfig()
    truth_config = dataclasses.replace(base, steps=steps)
    short_config = dataclasses.replace(base, steps=short_steps or max(1, steps // 10))
    pretrain = pretrain or PretrainConfig(data=base.data, objects=base.objects, data_seed=base.data_seed)
    started = time.perf_counter()
    backbone = pretrain_backbone(space.base, pretrain,
                                 progress=(lambda i, k: progress("pretrain backbone", i, k)) if progress else None)
    setup_seconds = time.perf_counter() - started
    specs = stratified_sample(space, n, seed, latency)
    cost = latency or (lambda s: float(count_spec(s).flops))
    store = Path(store) if store is not None else default_store()
    truth_store = TruthStore(store, truth_config, backbone.backbone_id)
    runs = truth_runs(specs, seed, second_seed_n)
    if recorded_only:
        runs = [(s, k) for s, k in runs if truth_store.get(s.arch_id, k) is not None]
        recorded = {s.arch_id for s, k in runs if k == seed}
        paired = [s for s in specs[:second_seed_n] if s.arch_id in recorded
                  and truth_store.get(s.arch_id, seed + 1) is not None]
        specs = paired + [s for s in specs if s.arch_id in recorded and s not in paired]
        second_seed_n = len(paired)
        if len(specs) < 5 or second_seed_n < 2:
            raise SpecError("store", str(store), f"holds {len(specs)} architectures of this sample with a truth "
                                                 f"({second_seed_n} with two seeds)", "train more: drop recorded_only")
    truths = train_truth_runs(runs, truth_config, backbone, pretrain, store=store, workers=workers,
                              progress=(lambda i, k: progress("ground truth", i, k)) if progress else None)
    started = time.perf_counter()
    net = None
    if any("supernet" in get_proxy(p).requires for p in proxies):
        supernet = supernet or SupernetConfig(data=base.data, objects=base.objects, data_seed=base.data_seed,
                                              heldout_clips=base.heldout_clips,
                                              eval_timesteps=base.eval_timesteps)
        net = train_supernet(space, backbone, supernet, out=supernet_dir,
                             progress=(lambda i, k: progress("train supernet", i, k)) if progress else None)
    setup_seconds += time.perf_counter() - started
    rows: list[dict[str, Any]] = []
    signals = _signals_in_parallel(specs, proxies, seed, clips, short_config, pretrain, net, supernet_dir,
                                   workers, progress) if workers > 1 else {}
    for i, spec in enumerate(specs, 1):
        started = time.perf_counter()
        first = truths[(spec.arch_id, seed)]
        report = count_spec(spec)
        row: dict[str, Any] = {"arch_id": spec.arch_id, "spec": spec.to_json(), "dominant_op": dominant_op(spec),
                               "op_counts": spec.op_counts(), "flops": report.flops, "params": report.params,
                               "latency": cost(spec), "heldout_loss": first.heldout_loss,
                               "heldout_loss_seed1": first.heldout_loss, "heldout_loss_seed2": math.nan,
                               "train_seconds": first.seconds}
        if (spec.arch_id, seed + 1) in truths and i <= second_seed_n:
            row["heldout_loss_seed2"] = truths[(spec.arch_id, seed + 1)].heldout_loss
        if spec.arch_id in signals:
            row.update(signals[spec.arch_id])
        else:
            batch = ProxyBatch.procedural(spec, clips=clips, seed=seed, train=short_config, backbone=backbone,
                                          supernet=net)
            row.update(_signal_values(spec, proxies, batch, seed))
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        if progress:
            progress("architectures", i, n)

    paired = rows[:second_seed_n]
    reliability = {**truth_reliability([r["heldout_loss_seed1"] for r in paired],
                                       [r["heldout_loss_seed2"] for r in paired], seed),
                   "architectures": [r["arch_id"] for r in paired]}
    truth = [-r["heldout_loss"] for r in rows]  # higher = better model
    flops = [float(r["flops"]) for r in rows]
    values = [r["latency"] for r in rows]
    sorted_values = sorted(values)
    edges = [sorted_values[int(len(values) * q / 4)] for q in range(1, 4)]
    bins = [sum(v > e for e in edges) for v in values]
    table: dict[str, list[float]] = {}
    stats: dict[str, dict[str, Any]] = {}
    for name in proxies:
        proxy = get_proxy(name)
        raw = [r[f"proxy.{name}"] for r in rows]
        finite = [v if math.isfinite(v) else (-1e300 if v < 0 else 1e300) for v in raw]
        oriented = [v if proxy.higher_is_better else -v for v in finite]
        table[name] = oriented
        stats[name] = {"kind": proxy.kind, "higher_is_better": proxy.higher_is_better,
                       "seconds_median": statistics.median(r[f"seconds.{name}"] for r in rows),
                       **proxy_statistics(oriented, truth, flops, bins, seed)}
    zero_cost = [p for p in proxies if get_proxy(p).kind in ("count", "zero_cost", "temporal")
                 and p != "temporal_order_gap"]
    ensemble: dict[str, Any] = {"kind": "none: fewer than two training-free proxies"}
    if len(zero_cost) >= 2:
        ens_scores, chosen = ensemble_out_of_fold(table, truth, candidates=zero_cost, seed=seed)
        full_taus = {p: kendall(table[p], truth) for p in zero_cost}
        members = sorted(full_taus, key=lambda p: -abs(full_taus[p]))[:3]
        ensemble = {"kind": "sum of normalised ranks, members chosen out of fold from the training-free proxies",
                    "members_per_fold": chosen,
                    "members_all_data": [{"proxy": p, "sign": 1 if full_taus[p] >= 0 else -1} for p in members],
                    **proxy_statistics(ens_scores, truth, flops, bins, seed)}
    every = [r["arch_id"] for r in rows]
    for name in stats:  # nothing was fitted for a plain signal: judged on every architecture
        stats[name].update(fitted_on=[], judged_on=every)
    learned: dict[str, Any] = {"kind": "none: not asked for (fit=False) or fewer than 10 architectures"}
    if fit and len(rows) >= 10:
        learned = learned_out_of_fold(rows, list(proxies), truth, flops, bins, seed,
                                      {**calibration_setting({"config": {
                                          "space": space.name, "space_shape": dict(space.shape),
                                          "train": truth_config.to_dict(), "pretrain": pretrain.key(),
                                          "supernet": net.describe() if net is not None else None}})})
    config = {"space": space.name, "space_shape": dict(space.shape), "n": len(rows), "n_sample": n,
              "recorded_only": recorded_only, "steps": steps,
              "short_steps": short_config.steps, "seed": seed, "truth_seeds": 2, "second_seed_n": second_seed_n,
              "clips": clips, "truth_store": str(store), "protocol_id": truth_store.protocol_id,
              "train": truth_config.to_dict(), "pretrain": pretrain.key(), "backbone_id": backbone.backbone_id,
              "backbone": backbone.meta, "supernet": net.describe() if net is not None else None,
              "setup_seconds": setup_seconds, "truth_seconds_per_architecture":
                  statistics.median(r["train_seconds"] for r in rows), "truth_workers": workers,
              "latency_source": "lut" if latency else "flops", "proxies": list(proxies)}
    return CalibrationResult(rows, stats, reliability, ensemble, config, learned)


def _signal_values(spec: ArchSpec, proxies: Sequence[str], batch: Any, seed: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in proxies:
        t0 = time.perf_counter()
        out[f"proxy.{name}"] = get_proxy(name).compute(spec, batch, seed)
        out[f"seconds.{name}"] = time.perf_counter() - t0
    return out


def _signal_job(spec_json: str, proxies: list[str], seed: int, clips: int, train: dict[str, Any],
                backbone_file: str, supernet: dict[str, Any] | None, supernet_dir: str | None) -> dict[str, Any]:
    """Every signal of one architecture in a worker process (one thread); the backbone and the supernet are
    loaded once per process."""
    import torch

    from vidnas.proxies._pretrain import PretrainedBackbone
    from vidnas.proxies._supernet import SupernetConfig, load_supernet

    torch.set_num_threads(1)
    spec = ArchSpec.from_json(spec_json)
    key = (backbone_file, supernet_dir)
    if _WORKER.get("key") != key:
        backbone = PretrainedBackbone.load(Path(backbone_file))
        net = None
        if supernet_dir is not None:
            from vidnas.search_space import get_space

            space = get_space(supernet["space"], **supernet["space_shape"])
            net = load_supernet(supernet_dir, space, backbone, SupernetConfig.from_dict(supernet["config"]))
        _WORKER.clear()
        _WORKER.update(key=key, backbone=backbone, net=net)
    batch = ProxyBatch.procedural(spec, clips=clips, seed=seed, train=TrainConfig.from_dict(train),
                                  backbone=_WORKER["backbone"], supernet=_WORKER["net"])
    return {"arch_id": spec.arch_id, **_signal_values(spec, proxies, batch, seed)}


_WORKER: dict[str, Any] = {}


def _signals_in_parallel(specs: Sequence[ArchSpec], proxies: Sequence[str], seed: int, clips: int,
                         short_config: TrainConfig, pretrain: Any, net: Any, supernet_dir: Path | None, workers: int,
                         progress: Callable[[str, int, int], None] | None) -> dict[str, dict[str, Any]]:
    """Every architecture's signals, spread over ``workers`` processes of one thread each."""
    import concurrent.futures
    import multiprocessing

    from vidnas.proxies._pretrain import backbone_path, image_spec
    from vidnas.proxies._supernet import supernet_dir as default_supernet_dir

    backbone_file = str(backbone_path(image_spec(specs[0]), pretrain))
    supernet, directory = None, None
    if net is not None:
        directory = str(supernet_dir or default_supernet_dir(net.space, net.config, net.backbone))
        supernet = {"space": net.space.name, "space_shape": dict(net.space.shape), "config": net.config.to_dict()}
    out: dict[str, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_signal_job, spec.to_json(), list(proxies), seed, clips, short_config.to_dict(),
                               backbone_file, supernet, directory) for spec in specs]
        for future in concurrent.futures.as_completed(futures):
            record = future.result()
            out[record.pop("arch_id")] = record
            if progress:
                progress("signals", len(out), len(specs))
    return out


def learned_out_of_fold(rows: Sequence[dict[str, Any]], signals: Sequence[str], truth: Sequence[float],
                        flops: Sequence[float], bins: Sequence[int], seed: int,
                        setting: dict[str, Any]) -> dict[str, Any]:
    """The learned quality model (ridge over signals, slot choices and op counts) judged out of fold,
    beside the best single signal chosen on the same fitting folds; per fold, ``fitted_on`` and
    ``judged_on``."""
    from vidnas.proxies._fit import out_of_fold

    v = out_of_fold(rows, signals=signals, setting=setting, folds=5, seed=seed)
    out = {"kind": "learned", "method": v["method"], **proxy_statistics(v["scores"], truth, flops, bins, seed),
           "folds": v["folds"]}
    if "best_single_signal" in v:
        best = v["best_single_signal"]
        out["best_single_signal"] = {"chosen_per_fold": best["chosen_per_fold"],
                                     **proxy_statistics(best["scores"], truth, flops, bins, seed)}
    return out


def packaged_calibrations() -> list[dict[str, Any]]:
    """Calibration summaries shipped with vidnas (``vidnas/proxies/calibrations``), each with its ``path``."""
    import json
    from importlib import resources

    out = []
    folder = resources.files("vidnas.proxies").joinpath("calibrations")
    if not folder.is_dir():
        return out
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            summary = json.loads(entry.read_text())
            summary["path"] = f"vidnas/proxies/calibrations/{entry.name}"
            out.append(summary)
    return out


def upgrade_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """A version-1 summary (``noise_ceiling``) read as version 2 (``truth_reliability``)."""
    if "truth_reliability" not in summary and "noise_ceiling" in summary:
        nc = summary["noise_ceiling"]
        summary = {**summary, "truth_reliability": {**nc, "kendall_between_seeds_ci": [math.nan, math.nan],
                                                    "spearman_between_seeds": math.nan,
                                                    "spearman_brown_mean_of_two": math.nan}}
    return summary


def train_truths(specs: Sequence[ArchSpec], config: TrainConfig, seeds: Sequence[int], backbone: Any,
                 pretrain: Any, *, workers: int = 1, store: str | Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[tuple[str, int], Any]:
    """Every spec with every seed (see :func:`~vidnas.proxies._truth.train_truth_runs`)."""
    from vidnas.proxies._truth import train_truth_runs

    return train_truth_runs([(spec, s) for spec in specs for s in seeds], config, backbone, pretrain, store=store,
                            workers=workers, progress=progress)

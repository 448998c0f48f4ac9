"""Whole networks: end-to-end measurement, the correction fit, validation, streaming, frame scaling."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas._stats import kendall, spearman
from vidnas.latency_models._backends import Backend
from vidnas.latency_models._harness import HarnessConfig, Ratio, measure, measure_group
from vidnas.latency_models._predictor import Correction, LatencyPredictor
from vidnas.latency_models._stats import Measurement
from vidnas.latency_models._table import LatencyTable
from vidnas.search_space import ArchSpec, SearchSpace, count_spec


def network_runner(spec: ArchSpec, backend: Backend, *, batch: int = 1, seed: int = 0,
                   artefacts: Path | None = None):
    """A runner for one UNet call of ``spec`` on ``backend``."""
    import torch

    from vidnas.search_space import NetworkHarness, build_network, randomize_zero_layers_

    torch.manual_seed(seed)
    harness = NetworkHarness(randomize_zero_layers_(build_network(spec), seed)).eval()
    if artefacts is not None and hasattr(backend, "cache_dir"):
        backend.cache_dir = artefacts
    return backend.prepare(harness, harness.example_inputs(batch, seed=seed), key=f"net-{spec.arch_id}-b{batch}")


def measure_network(spec: ArchSpec, backend: Backend, *, batch: int = 1, config: HarnessConfig | None = None,
                    artefacts: Path | None = None) -> Measurement:
    """End-to-end latency of one UNet call."""
    return measure(network_runner(spec, backend, batch=batch, artefacts=artefacts), config or HarnessConfig())


def memory_bytes(spec: ArchSpec, *, batch: int = 1, dtype: str = "float32") -> dict[str, int]:
    """Weights plus peak activations of one call (eager, fused attention): the hard memory constraint."""
    from vidnas.search_space import ITEMSIZE

    report = count_spec(spec, batch=batch, dtype=dtype)
    weights = report.params * ITEMSIZE[dtype]
    return {"weights_bytes": weights, "activation_bytes": report.activation_bytes,
            "total_bytes": weights + report.activation_bytes}


@dataclasses.dataclass(frozen=True)
class NetworkMeasurement:
    """One network's end-to-end time and, when paired, its ratio to the reference workload."""

    measurement: Measurement
    ratio: Ratio | None = None
    reference: Measurement | None = None

    def ms(self, reference_ms: float | None) -> float:
        """Milliseconds at the reference's typical speed when paired (else the raw median)."""
        if self.ratio is not None and reference_ms is not None:
            return self.ratio.median * reference_ms
        return self.measurement.median_ms

    @property
    def trusted(self) -> bool:
        if self.ratio is not None:
            return (self.ratio.ci_high - self.ratio.ci_low) / 2 / self.ratio.median <= 0.02
        return self.measurement.trusted


NETWORK_GROUP = 8  # networks prepared and alive at once: 50 ONNX Runtime sessions of a mobile UNet exceed 20 GB


def measure_networks(specs: Sequence[ArchSpec], backend: Backend, *, batch: int = 1,
                     config: HarnessConfig | None = None, progress: Callable[[int, int], None] | None = None,
                     artefacts: Path | None = None, group_size: int = NETWORK_GROUP) -> list[NetworkMeasurement]:
    """End-to-end latency of several networks, measured interleaved in shuffled rounds.

    Networks are taken ``group_size`` at a time so that memory stays bounded: a group's
    networks are prepared (``progress`` counts the preparations), sampled round by round
    so that a burst of machine noise cannot single one out, and released before the next
    group. With ``config.paired_reference`` the reference workload is sampled in every
    round of every group, and each network gets its paired ratio to it, so figures from
    different groups stay comparable.
    """
    import gc

    from vidnas.latency_models._reference import reference_runner

    if group_size < 1:
        raise SpecError("group_size", group_size, "must be at least 1")
    config = config or HarnessConfig()
    results: dict[str, NetworkMeasurement] = {}
    done = 0
    for start in range(0, len(specs), group_size):
        runners = {}
        for spec in specs[start : start + group_size]:
            runners[spec.arch_id] = network_runner(spec, backend, batch=batch, artefacts=artefacts)
            done += 1
            if progress:
                progress(done, len(specs))
        reference = reference_runner(backend, artefacts) if config.paired_reference else None
        measured, ratios, reference_measurement = measure_group(runners, reference, config)
        results.update({k: NetworkMeasurement(measured[k], ratios.get(k), reference_measurement) for k in runners})
        del runners, reference, measured
        gc.collect()  # sessions hold hundreds of MB each; free them before preparing the next group
    return [results[s.arch_id] for s in specs]


def fit_correction(table: LatencyTable, space: SearchSpace, backend: Backend, *, n: int, seed: int,
                   batch: int = 1, config: HarnessConfig | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   artefacts: Path | None = None) -> Correction:
    """Measure ``n`` sampled architectures end to end and fit the table's correction.

    The measurements and the correction are stored in the table's metadata.
    """
    specs = space.random_specs(n, seed)
    predictor = LatencyPredictor(table, correction=None)
    predictions = [predictor.predict(spec, batch=batch) for spec in specs]  # fails early on missing entries
    measured = measure_networks(specs, backend, batch=batch, config=config, progress=progress, artefacts=artefacts)
    reference_ms = table.reference_ms
    rows = [{"arch_id": s.arch_id, "batch": batch, "naive_ms": p.naive_ms, "units": p.unit_count,
             "measured_ms": m.ms(reference_ms), "raw_measured_ms": m.measurement.median_ms,
             "ratio": m.ratio.median if m.ratio else None,
             **{f"raw_{k}": v for k, v in m.measurement.to_dict().items()}}
            for s, p, m in zip(specs, predictions, measured)]
    correction = Correction.fit([p.naive_ms for p in predictions], [r["measured_ms"] for r in rows],
                                [s.arch_id for s in specs], [p.unit_count for p in predictions])
    table.meta.correction = correction.to_dict()
    table.meta.end_to_end = rows
    return correction


@dataclasses.dataclass(frozen=True)
class AccuracyReport:
    """Predicted against measured end-to-end latency on held-out architectures."""

    n: int
    mape: float
    within_10pct: float
    spearman: float
    kendall: float
    worst: tuple[dict[str, Any], ...]

    @classmethod
    def from_pairs(cls, predicted: Sequence[float], measured: Sequence[float], arch_ids: Sequence[str],
                   worst: int = 5) -> AccuracyReport:
        errors = [(p - m) / m for p, m in zip(predicted, measured)]
        order = sorted(range(len(errors)), key=lambda i: -abs(errors[i]))[:worst]
        worst_rows = tuple({"arch_id": arch_ids[i], "predicted_ms": predicted[i], "measured_ms": measured[i],
                            "error": errors[i]} for i in order)
        return cls(len(errors), statistics.fmean(abs(e) for e in errors),
                   sum(abs(e) <= 0.10 for e in errors) / len(errors),
                   spearman(predicted, measured) if len(errors) > 2 else math.nan,
                   kendall(predicted, measured) if len(errors) > 2 else math.nan, worst_rows)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "worst": list(self.worst)}


def validate_table(table: LatencyTable, space: SearchSpace, backend: Backend, *, n: int, seed: int,
                   batch: int = 1, config: HarnessConfig | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   artefacts: Path | None = None) -> dict[str, Any]:
    """Measure ``n`` architectures the correction was not fitted on; report naive and corrected accuracy.

    Predictions are at the table's reference speed, so the primary comparison rescales each
    measured network by the reference workload timed interleaved with it (the machine's
    drift since the table was built cancels); the plain session medians are reported too.
    """
    if n < 3:
        raise SpecError("n", n, "must be >= 3 for rank correlations")
    excluded = set(table.meta.correction["arch_ids"]) if table.meta.correction else set()
    pool = space.random_specs(min(space.size, n + len(excluded)), seed)
    specs = [s for s in pool if s.arch_id not in excluded][:n]
    if len(specs) < n:
        raise SpecError("n", n, f"exceeds the architectures of space `{space.name}` left after the "
                                f"{len(excluded)} used for the correction")
    predictor = LatencyPredictor(table)
    predictions = [predictor.predict(spec, batch=batch) for spec in specs]
    results = measure_networks(specs, backend, batch=batch, config=config, progress=progress, artefacts=artefacts)
    reference_ms = table.reference_ms
    naive = [p.naive_ms for p in predictions]
    corrected = [p.ms for p in predictions]
    measured = [m.ms(reference_ms) for m in results]
    raw = [m.measurement.median_ms for m in results]
    rows = [{"arch_id": s.arch_id, "naive_ms": p.naive_ms, "corrected_ms": p.corrected_ms,
             "measured_ms": m.ms(reference_ms), "raw_measured_ms": m.measurement.median_ms,
             "ratio": m.ratio.median if m.ratio else None, "measured_cv": m.measurement.cv,
             "measured_trusted": m.trusted, "measured_ci_low_ms": m.measurement.ci_low_ms,
             "measured_ci_high_ms": m.measurement.ci_high_ms}
            for s, p, m in zip(specs, predictions, results)]
    ids = [s.arch_id for s in specs]
    return {
        "space": space.name,
        "n": n,
        "seed": seed,
        "batch": batch,
        "reference_ms": reference_ms,
        # measured_ms: each network's median rescaled by the reference workload timed beside it
        # (the units predictions are in); raw_*: the plain medians of this session
        "naive": AccuracyReport.from_pairs(naive, measured, ids).to_dict(),
        "raw_naive": AccuracyReport.from_pairs(naive, raw, ids).to_dict(),
        "raw_corrected": AccuracyReport.from_pairs(corrected, raw, ids).to_dict() if predictor.correction else None,
        "corrected": AccuracyReport.from_pairs(corrected, measured, ids).to_dict() if predictor.correction else None,
        "correction": predictor.correction.to_dict() if predictor.correction else None,
        "untrusted_measurements": sum(not r["measured_trusted"] for r in rows),
        "rows": rows,
    }


# Streaming -------------------------------------------------------------------------------------


def measure_streaming(spec: ArchSpec, *, chunk_frames: int, steps: int, chunks: int | None = None,
                      repeats: int = 3, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Time to the first chunk and steady frames per second of a causal network with its caches.

    Each chunk is denoised with ``steps`` passes that read the cache, then one pass at
    t = 0 writes it (CausVid), so a chunk costs ``steps + 1`` passes and attention cost
    grows with the cache. Eager PyTorch only: the caches live in Python state. Medians
    over ``repeats`` full streams.
    """
    import time

    import torch

    from vidnas.search_space import build_network, randomize_zero_layers_

    if not spec.is_causal:
        raise SpecError("spec", spec.arch_id, "has non-causal temporal ops and cannot stream",
                        "use causal ops (attn1d_causal, attn3d_blockcausal, causal convs) everywhere")
    block = spec.causal_block_frames
    if chunk_frames % block:
        raise SpecError("chunk_frames", chunk_frames, f"must be a multiple of the network's causal block ({block})")
    if threads is not None:
        torch.set_num_threads(threads)
    total = spec.backbone.frames
    chunks = chunks or max(1, total // chunk_frames)
    net = randomize_zero_layers_(build_network(spec)).eval().to(device)
    sample, timestep, context, ids = net.example_inputs(batch=1)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    chunk_sample = sample[:, :chunk_frames].to(device)
    context = context.to(device) if context is not None else None
    ids = ids.to(device) if ids is not None else None
    per_chunk: list[list[float]] = [[] for _ in range(chunks)]
    with torch.inference_mode():
        for stream in range(repeats + 1):  # the first stream warms up
            state: dict = {}
            times = []
            for _ in range(chunks):
                sync()
                t0 = time.perf_counter()
                for _ in range(steps):
                    net.stream(chunk_sample, 500.0, state, commit=False, context=context, added_time_ids=ids)
                net.stream(chunk_sample, 0.0, state, commit=True, context=context, added_time_ids=ids)
                sync()
                times.append((time.perf_counter() - t0) * 1000)
            if stream > 0 or repeats == 0:
                for i, t in enumerate(times):
                    per_chunk[i].append(t)
    medians = [statistics.median(t) for t in per_chunk]
    steady = medians[1:] or medians
    return {
        "arch_id": spec.arch_id, "chunk_frames": chunk_frames, "steps": steps, "chunks": chunks, "repeats": repeats,
        "passes_per_chunk": steps + 1, "first_chunk_ms": medians[0],
        "steady_chunk_ms": statistics.fmean(steady), "steady_fps": chunk_frames * 1000 / statistics.fmean(steady),
        "per_chunk_ms": medians, "device": device, "threads": torch.get_num_threads(),
    }


# Frame scaling ---------------------------------------------------------------------------------


def measure_frame_scaling(ops: Sequence[tuple[str, dict]], backend: Backend, *, frames: Sequence[int],
                          channels: int, height: int, width: int, batch: int = 1,
                          config: HarnessConfig | None = None, context: tuple[int, int] = (1, 64)
                          ) -> list[dict[str, Any]]:
    """Latency of each temporal op at one slot shape as the clip grows; one row per (op, frames).

    Each op's growth exponent (slope of log latency against log frames over the sweep) is
    added to its rows as ``exponent``: 1 means linear in frames, 2 quadratic.
    """
    import dataclasses as dc

    from vidnas.search_space import SlotShape, UnitPlan, get_temporal_op, slot_config

    config = config or HarnessConfig()
    rows: list[dict[str, Any]] = []
    for op, params in ops:
        series = []
        for t in frames:
            shape = SlotShape(channels=channels, frames=t, height=height, width=width, temb_channels=4 * channels,
                              context_dim=context[1], context_tokens=context[0])
            canonical = get_temporal_op(op).canonical_params(params, shape, f"ops[{op}]")
            plan = UnitPlan(f"{op}@{t}", "temporal", slot_config(op, canonical, shape), (channels, height, width),
                            (channels, height, width), t, slot="sweep")
            from vidnas.latency_models._builder import unit_runner
            from vidnas.search_space import BackboneSpec

            backbone = dc.replace(BackboneSpec(), channels=(channels,), layers_per_block=(1,), attention=(True,))
            m = measure(unit_runner(plan, backend, batch, backbone), config)
            series.append((t, m))
            rows.append({"op": op, "params": canonical, "frames": t, "median_ms": m.median_ms, "p10_ms": m.p10_ms,
                         "p90_ms": m.p90_ms, "cv": m.cv, "trusted": m.trusted})
        xs = [math.log(t) for t, _ in series]
        ys = [math.log(max(m.median_ms, 1e-9)) for _, m in series]
        exponent = _slope(xs, ys)
        for r in rows[-len(series):]:
            r["exponent"] = exponent
    return rows


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else math.nan

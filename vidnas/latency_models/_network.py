"""Whole networks: end-to-end measurement, the correction fit, validation, streaming, frame scaling."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._accuracy import AccuracyReport
from vidnas.latency_models._backends import Backend
from vidnas.latency_models._harness import HarnessConfig, measure, measure_group
from vidnas.latency_models._pairing import RESCALED, Ratio, Timing
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
    """One network's end-to-end timing: plain median, ratio to the reference, and the basis its group chose."""

    timing: Timing
    group: int = 0  # the measurement group (diagnostic: figures of one group share its machine state)

    @property
    def measurement(self) -> Measurement:
        """The plain figures (this session's milliseconds)."""
        return self.timing.plain

    @property
    def ratio(self) -> Ratio | None:
        return self.timing.ratio

    @property
    def reference(self) -> Measurement | None:
        return self.timing.reference

    @property
    def basis(self) -> str:
        return self.timing.basis.basis

    @property
    def plain_ms(self) -> float:
        return self.timing.plain.median_ms

    def rescaled_ms(self, reference_ms: float | None) -> float | None:
        """The ratio at the reference speed ``reference_ms`` (None without either)."""
        return self.timing.rescaled_ms(reference_ms)

    def ms(self, reference_ms: float | None) -> float:
        """The figure on the group's basis: the ratio at ``reference_ms`` when paired, else the plain median."""
        return self.timing.ms(reference_ms)

    @property
    def trusted(self) -> bool:
        return self.timing.trusted

    @property
    def passes(self) -> int:
        return len(self.timing.passes)


NETWORK_GROUP = 8  # networks prepared and alive at once: 50 ONNX Runtime sessions of a mobile UNet exceed 20 GB


def measure_networks(specs: Sequence[ArchSpec], backend: Backend, *, batch: int = 1,
                     config: HarnessConfig | None = None, progress: Callable[[int, int], None] | None = None,
                     artefacts: Path | None = None, group_size: int = NETWORK_GROUP) -> list[NetworkMeasurement]:
    """End-to-end latency of several networks, measured interleaved in shuffled rounds.

    Networks are taken ``group_size`` at a time so that memory stays bounded: a group's
    networks are prepared (``progress(done, total)`` counts the preparations), sampled
    round by round so that a burst of machine noise cannot single one out, and released
    before the next group. With ``config.paired_reference`` the reference workload is
    sampled in every round of every group, and each group decides whether its figures
    are paired ratios or plain medians (``_pairing``). Networks still flagged noisy are
    measured again, in groups of their own, up to ``config.remeasure_rounds`` more passes
    (their passes pooled; ``total`` grows by the re-measured networks).
    """
    import gc

    from vidnas.latency_models._reference import reference_runner

    if group_size < 1:
        raise SpecError("group_size", group_size, "must be at least 1")
    config = config or HarnessConfig()
    results: dict[str, NetworkMeasurement] = {}
    done = 0
    total = len(specs)
    groups = 0

    def measure_in_groups(batch_specs: Sequence[ArchSpec]) -> None:
        nonlocal done, groups
        for start in range(0, len(batch_specs), group_size):
            runners = {}
            for spec in batch_specs[start : start + group_size]:
                runners[spec.arch_id] = network_runner(spec, backend, batch=batch, artefacts=artefacts)
                done += 1
                if progress:
                    progress(done, total)
            reference = reference_runner(backend, artefacts) if config.paired_reference else None
            previous = {k: results[k].timing.passes for k in runners if k in results}
            result = measure_group(runners, reference, config, seed=groups, previous=previous)
            results.update({k: NetworkMeasurement(result.timings[k], groups) for k in runners})
            groups += 1
            del runners, reference, result
            gc.collect()  # sessions hold hundreds of MB each; free them before preparing the next group

    measure_in_groups(specs)
    for _ in range(config.remeasure_rounds):
        flagged = [s for s in specs if not results[s.arch_id].trusted]
        if not flagged:
            break
        total += len(flagged)
        measure_in_groups(flagged)
    return [results[s.arch_id] for s in specs]


def _end_to_end_row(spec: ArchSpec, prediction, m: NetworkMeasurement, reference_ms: float | None,
                    batch: int) -> dict[str, Any]:
    return {"arch_id": spec.arch_id, "batch": batch, "naive_ms": prediction.naive_ms, "units": prediction.unit_count,
            "measured_ms": m.ms(reference_ms), "rescaled_measured_ms": m.rescaled_ms(reference_ms),
            "raw_measured_ms": m.plain_ms, "ratio": m.ratio.median if m.ratio else None, "basis": m.basis,
            "trusted": m.trusted, "passes": m.passes, "spec": spec.to_json(),
            **{f"raw_{k}": v for k, v in m.measurement.to_dict().items()}}


def fit_correction(table: LatencyTable, space: SearchSpace, backend: Backend, *, n: int, seed: int,
                   batch: int = 1, config: HarnessConfig | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   artefacts: Path | None = None) -> Correction:
    """Measure ``n`` sampled architectures end to end and fit the table's correction.

    The measurements (each with its spec, so that baselines can be fitted on the same
    networks) and the correction are stored in the table's metadata.
    """
    specs = space.random_specs(n, seed)
    predictor = LatencyPredictor(table, correction=None)
    predictions = [predictor.predict(spec, batch=batch) for spec in specs]  # fails early on missing entries
    measured = measure_networks(specs, backend, batch=batch, config=config, progress=progress, artefacts=artefacts)
    reference_ms = table.reference_ms
    # One basis for every network fitted on (the rule validation answers by): a fit mixing figures at the
    # table's reference speed with plain medians of a slower or faster session learns that drift as overhead.
    figures, chosen, rescaled = answer_figures(measured, reference_ms)
    rows = [{**_end_to_end_row(s, p, m, reference_ms, batch), "measured_ms": y, "fit_basis": chosen["basis"],
             "rescaled_measured_ms": None if rescaled is None else rescaled[i]}
            for i, (s, p, m, y) in enumerate(zip(specs, predictions, measured, figures))]
    correction = Correction.fit([p.naive_ms for p in predictions], figures, [s.arch_id for s in specs],
                                [p.unit_count for p in predictions], basis=chosen["basis"])
    table.meta.correction = correction.to_dict()
    table.meta.end_to_end = rows
    return correction


DRIFT_SIGMAS = 2.0  # a plain group's reference further from the table's speed than this many intervals: drift


def _group_drift(measured: Sequence[NetworkMeasurement], reference_ms: float) -> dict[int, tuple[float, float, bool]]:
    """Per plain group: (the machine's speed against the table's, as the reference's median over the table's
    reference time; that median's relative interval; whether the gap exceeds ``DRIFT_SIGMAS`` intervals)."""
    out = {}
    for group in sorted({m.group for m in measured if m.basis not in RESCALED and not m.timing.basis.forced}):
        refs = [m.reference for m in measured if m.group == group and m.reference is not None]
        if not refs:
            continue
        level = statistics.median(r.median_ms for r in refs) / reference_ms
        width = statistics.median(r.rel_ci for r in refs)
        out[group] = (level, width, abs(math.log(level)) > DRIFT_SIGMAS * width if level > 0 else True)
    return out


def _table_speed(measured: Sequence[NetworkMeasurement],
                 reference_ms: float | None) -> tuple[list[float] | None, dict[int, tuple[float, float, bool]]]:
    """(:func:`rescaled_figures`, the plain groups' drift test) from one pass over the measurements."""
    if reference_ms is None or reference_ms <= 0:
        return None, {}
    drift = _group_drift(measured, reference_ms)
    figures = []
    for m in measured:
        if m.basis in RESCALED or (m.group in drift and drift[m.group][2]):
            figure = m.rescaled_ms(reference_ms)
        elif m.timing.basis.forced or m.group in drift:  # plain by the user's choice, or no drift shown
            figure = m.plain_ms
        else:
            figure = None
        if figure is None:
            return None, drift
        figures.append(float(figure))
    return figures, drift


def rescaled_figures(measured: Sequence[NetworkMeasurement], reference_ms: float | None) -> list[float] | None:
    """Every network at the table's reference speed ``reference_ms``, or None where that cannot be had
    (no reference speed, or a network measured without the reference beside it).

    A network whose group pinned its reference down (paired or level basis) is rescaled by it. A
    group whose reference was too variable to rescale by within the target (plain basis) is tested
    for drift instead: if its reference's median lies further from the table's reference time than
    ``DRIFT_SIGMAS`` times its own interval, the machine ran at another speed than when the table
    was built (a slower spell measured 1.8x slower) and the group is rescaled by its reference's
    level, noisy as it is; otherwise no drift shows and its plain medians stand (rescaling would only
    add the reference's own variation: one such reference was 13 % off with the machine unchanged).
    """
    return _table_speed(measured, reference_ms)[0]


def answer_basis(measured: Sequence[NetworkMeasurement], reference_ms: float | None) -> dict[str, Any]:
    """Which figures a fit or a validation stands behind, and why: every network at the table's
    reference speed (``rescaled``: see :func:`rescaled_figures`) where the table has a reference speed
    and the reference was timed beside every network, else this session's plain medians (``plain``);
    ``plain`` also where no group needed rescaling (every reference too variable and none showed drift)."""
    return _choose(measured, reference_ms, *_table_speed(measured, reference_ms))


def _choose(measured: Sequence[NetworkMeasurement], reference_ms: float | None, figures: list[float] | None,
            drift: dict[int, tuple[float, float, bool]]) -> dict[str, Any]:
    """:func:`answer_basis` from :func:`_table_speed`'s result (computed once by its callers)."""
    counts = {b: sum(m.basis == b for m in measured) for b in ("paired", "level", "plain")}
    n = len(measured)
    groups = {m.group: {"group": m.group, **m.timing.basis.to_dict()} for m in measured}
    usable = figures is not None
    drift = drift if usable else {}
    for group, (level, _width, shifted) in drift.items():
        groups[group].update({"speed_vs_table": level, "drift": shifted})
    drifted = sum(m.basis == "plain" and drift.get(m.group, (0, 0, False))[2] for m in measured)
    rescaled = counts["paired"] + counts["level"] + drifted
    if reference_ms is None or reference_ms <= 0:
        basis, reason = "plain", "the table has no reference speed to rescale to (no paired entries)"
    elif not usable:
        basis, reason = "plain", "the reference workload was not timed beside every network"
    elif rescaled == 0 and all(m.timing.basis.forced for m in measured):
        basis, reason = "plain", "forced by harness.basis (the plain medians, as asked)"
    elif rescaled == 0:
        basis = "plain"
        reason = (f"for all {n} networks the reference workload added variation of its own, and no group's "
                  f"reference showed the machine's speed off the table's by more than {DRIFT_SIGMAS:g} times "
                  "its interval: the plain medians stand")
    else:
        basis = "rescaled"
        kept = counts["plain"] - drifted
        reason = (f"every network at the table's reference speed: {counts['paired']} of {n} by the reference "
                  f"round by round, {counts['level']} by its level over their group, {drifted} by a level that "
                  f"showed the machine drifted (beyond {DRIFT_SIGMAS:g} times its interval) though too variable to "
                  f"pin down, and {kept} at their plain medians (their reference too variable, no drift shown)")
    return {"basis": basis, "reason": reason, "networks": n, **{f"{b}_networks": c for b, c in counts.items()},
            "drift_rescaled_networks": drifted, "groups": [groups[g] for g in sorted(groups)]}


def answer_figures(measured: Sequence[NetworkMeasurement],
                   reference_ms: float | None) -> tuple[list[float], dict[str, Any], list[float] | None]:
    """``(figures, basis, rescaled)``: the figures a fit or a validation stands behind (all on one basis,
    chosen by :func:`answer_basis`), the choice with its reason, and the figures at the table's
    reference speed (None where there are none)."""
    rescaled, drift = _table_speed(measured, reference_ms)
    chosen = _choose(measured, reference_ms, rescaled, drift)
    if chosen["basis"] == "rescaled" and rescaled is not None:
        return rescaled, chosen, rescaled
    return [m.plain_ms for m in measured], chosen, rescaled


def validate_table(table: LatencyTable, space: SearchSpace, backend: Backend, *, n: int, seed: int,
                   batch: int = 1, config: HarnessConfig | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   artefacts: Path | None = None) -> dict[str, Any]:
    """Measure ``n`` architectures the correction was not fitted on; report the predictor's accuracy.

    Two sets of measured figures are compared with the predictions: each network's ratio to
    the reference workload timed beside it at the table's reference speed (*rescaled*:
    ``naive``, ``corrected``; the machine's drift since the table was built cancels) and
    the plain medians of this session (``raw_naive``, ``raw_corrected``). ``answer`` is the
    one the validation stands behind (``answer_basis`` says which and why: see
    :func:`answer_basis`), for the corrected predictor when the table has a correction.
    ``baselines`` holds the FLOPs-linear, params-linear and scaled-roofline fits on the
    table's correction networks, judged against the same figures as ``answer``.
    """
    from vidnas.latency_models._baselines import baseline_reports

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
    ids = [s.arch_id for s in specs]
    naive = [p.naive_ms for p in predictions]
    corrected = [p.ms for p in predictions]
    plain = [m.plain_ms for m in results]
    answer_measured, chosen, rescaled_or_none = answer_figures(results, reference_ms)
    rescaled: list[float | None] = list(rescaled_or_none) if rescaled_or_none is not None else [None] * len(results)
    fit_basis = predictor.correction.basis if predictor.correction is not None else None
    if fit_basis is not None:
        chosen["correction_basis"] = fit_basis
        if fit_basis != chosen["basis"]:
            chosen["reason"] += (f"; the correction was fitted on {fit_basis} figures, so the corrected predictions "
                                 "and these differ in level by whatever the machine drifted between the two sessions")

    def report(predicted: list[float], measured: list[float | None]) -> dict[str, Any] | None:
        if not all(m is not None for m in measured):
            return None
        return AccuracyReport.from_pairs(predicted, [float(m) for m in measured], ids).to_dict()  # type: ignore[arg-type]

    baselines = baseline_reports(table.meta, specs, answer_measured, batch=batch)
    baseline_predictions = baselines.pop("predictions", {})
    rows = []
    for i, (s, p, m) in enumerate(zip(specs, predictions, results)):
        rows.append({"arch_id": s.arch_id, "naive_ms": p.naive_ms, "corrected_ms": p.corrected_ms,
                     "measured_ms": answer_measured[i], "rescaled_measured_ms": rescaled[i],
                     "raw_measured_ms": m.plain_ms, "ratio": m.ratio.median if m.ratio else None,
                     "basis": m.basis, "group": m.group, "passes": m.passes, "measured_cv": m.measurement.cv,
                     "measured_trusted": m.trusted, "measured_reason": m.timing.reason,
                     "measured_ci_low_ms": m.measurement.ci_low_ms, "measured_ci_high_ms": m.measurement.ci_high_ms,
                     **{f"{name}_ms": values[i] for name, values in baseline_predictions.items()}})
    has_correction = predictor.correction is not None
    return {
        "space": space.name,
        "n": n,
        "seed": seed,
        "batch": batch,
        "reference_ms": reference_ms,
        "answer": report(corrected if has_correction else naive, answer_measured),  # type: ignore[arg-type]
        "answer_basis": chosen,
        "answer_prediction": "corrected" if has_correction else "naive",
        # rescaled: each network at the table's reference speed, by its ratio to the reference timed beside
        # it (round by round where its group found that informative, else by the group's reference level)
        "naive": report(naive, rescaled),
        "corrected": report(corrected, rescaled) if has_correction else None,
        # raw: the plain medians of this session
        "raw_naive": report(naive, plain),  # type: ignore[arg-type]
        "raw_corrected": report(corrected, plain) if has_correction else None,  # type: ignore[arg-type]
        "baselines": baselines,
        "correction": predictor.correction.to_dict() if predictor.correction else None,
        "untrusted_measurements": sum(not m.trusted for m in results),
        "remeasured": sum(m.passes > 1 for m in results),
        "rows": rows,
    }


# Streaming -------------------------------------------------------------------------------------


def measure_streaming(spec: ArchSpec, *, chunk_frames: int, steps: int, chunks: int | None = None,
                      repeats: int = 3, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Time to the first chunk and steady frames per second of a causal network with its caches.

    Each chunk is denoised with ``steps`` passes that read the cache, then one pass at
    t = 0 writes it (CausVid), so a chunk costs ``steps + 1`` passes and attention cost
    grows with the cache. Eager PyTorch only: the caches live in Python state. Medians
    over ``repeats`` full streams; on a GPU each chunk is timed with CUDA events.
    """
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
    clock = _chunk_clock(device)
    chunk_sample = sample[:, :chunk_frames].to(device)
    context = context.to(device) if context is not None else None
    ids = ids.to(device) if ids is not None else None
    per_chunk: list[list[float]] = [[] for _ in range(chunks)]
    with torch.inference_mode():
        for stream in range(repeats + 1):  # the first stream warms up
            state: dict = {}
            times = []
            for _ in range(chunks):
                times.append(clock(lambda cache=state: _stream_chunk(net, chunk_sample, cache, steps, context, ids)))
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


def _stream_chunk(net, chunk_sample, state: dict, steps: int, context, ids) -> None:
    """One chunk: ``steps`` passes reading the cache, then one at t = 0 writing it."""
    for _ in range(steps):
        net.stream(chunk_sample, 500.0, state, commit=False, context=context, added_time_ids=ids)
    net.stream(chunk_sample, 0.0, state, commit=True, context=context, added_time_ids=ids)


def _chunk_clock(device: str) -> Callable[[Callable[[], None]], float]:
    """Milliseconds one call of a function takes: CUDA events on a GPU (after synchronising), else the host clock."""
    import time

    import torch

    if device.startswith("cuda"):
        dev = torch.device(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def on_gpu(fn: Callable[[], None]) -> float:
            torch.cuda.synchronize(dev)
            with torch.cuda.device(dev):
                start.record()
                fn()
                end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return on_gpu

    def on_cpu(fn: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000

    return on_cpu


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
            from vidnas.latency_models._units import unit_runner
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

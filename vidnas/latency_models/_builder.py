"""Building a lookup table: every distinct unit a search space can produce, measured once.

The units of a space are the backbone's (fixed across the space) plus, for every slot,
the temporal unit of each choice the slot may take. Distinct signatures are measured in
a stable order; the table is saved atomically after each entry, so a killed build loses
at most the entry being measured and ``build_table`` on the same path resumes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._backends import Backend, fingerprint_id
from vidnas.latency_models._harness import HarnessConfig, Ratio, measure, measure_group
from vidnas.latency_models._stats import Measurement
from vidnas.latency_models._table import LatencyTable, TableMeta
from vidnas.search_space import ArchSpec, SearchSpace, UnitPlan, build_plan

ProgressCallback = Callable[[int, int, UnitPlan, dict[str, Any] | None], None]


def space_units(space: SearchSpace) -> list[UnitPlan]:
    """One plan per distinct unit signature the space can produce, in execution order."""
    plans = build_plan(space.base)
    seen: dict[str, UnitPlan] = {}
    for plan in plans:
        if plan.slot is None and plan.signature_id not in seen:
            seen[plan.signature_id] = plan
    for _group, _slot, _choice, plan in space.slot_units(plans):
        if not plan.is_identity and plan.signature_id not in seen:
            seen[plan.signature_id] = plan
    for plan in plans:  # slot units of slots the space does not search
        if plan.slot is not None and not plan.is_identity and plan.signature_id not in seen:
            seen[plan.signature_id] = plan
    return list(seen.values())


def spec_units(spec: ArchSpec) -> list[UnitPlan]:
    """The distinct non-identity units of one spec."""
    seen: dict[str, UnitPlan] = {}
    for plan in build_plan(spec):
        if not plan.is_identity:
            seen.setdefault(plan.signature_id, plan)
    return list(seen.values())


def unit_runner(plan: UnitPlan, backend: Backend, batch: int, backbone, *, seed: int = 0,
                artefacts: Path | None = None):
    """A prepared runner timing one unit on ``backend``."""
    import torch

    from vidnas.search_space import UnitHarness, randomize_zero_layers_, unit_example_inputs

    torch.manual_seed(seed)
    harness = randomize_zero_layers_(UnitHarness(plan).eval(), seed)
    inputs = unit_example_inputs(plan, backbone, batch, seed=seed)
    if artefacts is not None and hasattr(backend, "cache_dir"):
        backend.cache_dir = artefacts
    return backend.prepare(harness, inputs, key=f"{plan.signature_id}-b{batch}")


def measurement_row(plan: UnitPlan, batch: int, m: Measurement, fp_id: str, source: str = "measured", *,
                    ratio: Ratio | None = None, reference: Measurement | None = None,
                    target_rel_ci: float = 0.02) -> dict[str, Any]:
    """A table row; with a paired reference, trust follows the ratio's interval."""
    import json

    row = {
        "signature_id": plan.signature_id,
        "batch": batch,
        "kind": plan.kind,
        "op": plan.config["op"] if plan.slot is not None else plan.kind,
        "signature": json.dumps(plan.signature, sort_keys=True),
        "median_ms": m.median_ms,
        "p10_ms": m.p10_ms,
        "p90_ms": m.p90_ms,
        "mean_ms": m.mean_ms,
        "cv": m.cv,
        "ci_low_ms": m.ci_low_ms,
        "ci_high_ms": m.ci_high_ms,
        "runs": m.runs,
        "inner_loops": m.inner_loops,
        "warmup_runs": m.warmup_runs,
        "trusted": m.trusted,
        "reason": m.reason,
        "source": source,
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint_id": fp_id,
    }
    if ratio is not None and reference is not None:
        half = (ratio.ci_high - ratio.ci_low) / 2 / ratio.median if ratio.median > 0 else float("inf")
        row.update(ratio=ratio.median, ratio_ci_low=ratio.ci_low, ratio_ci_high=ratio.ci_high,
                   reference_ms=reference.median_ms, trusted=half <= target_rel_ci,
                   reason="" if half <= target_rel_ci else
                   f"ratio to the reference +-{100 * half:.1f}% wider than +-{100 * target_rel_ci:.1f}%")
    return row


def _timed(runner, reference, config: HarnessConfig) -> tuple[Measurement, Ratio | None, Measurement | None]:
    """Measure ``runner`` alone, or interleaved with ``reference`` and their paired ratio."""
    if reference is None:
        return measure(runner, config), None, None
    measured, ratios, reference_measurement = measure_group({"unit": runner}, reference, config)
    return measured["unit"], ratios["unit"], reference_measurement


def new_table(backend: Backend, space: SearchSpace | None, config: HarnessConfig) -> LatencyTable:
    fp = backend.fingerprint()
    shape = None
    if space is not None:
        bb = space.base.backbone
        shape = {"frames": bb.frames, "height": bb.pixel_height, "width": bb.pixel_width, **space.shape}
    return LatencyTable(TableMeta(backend=backend.name, device=backend.device, device_name=fp["device_name"],
                                  dtype=fp.get("dtype", "float32"), threads=fp.get("threads"), fingerprint=fp,
                                  harness=config.to_dict(), space=space.name if space else None,
                                  space_shape=shape))


def remove_orphaned_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files of saves that a killed process left beside ``path`` (never a live one's)."""
    import psutil

    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def open_table(path: Path, backend: Backend, space: SearchSpace | None, config: HarnessConfig) -> LatencyTable:
    """The table at ``path`` to resume (checked to match ``backend``), or a new one."""
    remove_orphaned_temporaries(path)
    if not path.exists():
        return new_table(backend, space, config)
    table = LatencyTable.load(path)
    fp = backend.fingerprint()
    table.check_compatible(backend=backend.name, device=backend.device, device_name=fp["device_name"],
                           dtype=fp.get("dtype"), threads=fp.get("threads"))
    return table


RECHECK_GROUP = 16  # units re-checked together, round-robin, in one group


def measure_units(table: LatencyTable, units: list[UnitPlan], backend: Backend, batch: int, backbone, path: Path,
                  config: HarnessConfig, *, progress: ProgressCallback | None = None) -> LatencyTable:
    """Measure the units ``table`` lacks one by one, then re-check them round-robin; save after each step.

    Pass 1 times each missing unit (interleaved with the reference workload when
    ``config.paired_reference``) and saves it: a kill loses at most the unit in progress.
    Pass 2 re-measures entries in groups of up to 16, sampling the group's units in
    shuffled rounds, so that each re-check spreads over the group's whole duration. The
    entry keeps the mean of its two ratios (or medians); if they differ by more than
    ``config.recheck_tolerance`` it is marked untrusted. A kill during pass 2 loses only
    the group in progress's re-checks.
    """
    from vidnas.latency_models._reference import REFERENCE_DESCRIPTION, reference_runner

    fp_id = fingerprint_id(backend.fingerprint())
    todo = [u for u in units if (u.signature_id, batch) not in table]
    artefacts = path.with_name(path.stem + ".artefacts")
    reference = reference_runner(backend, artefacts) if config.paired_reference else None
    new_ids = {t.signature_id for t in todo}
    pending = [u for u in units if u.signature_id not in new_ids and _needs_recheck(table.get(u.signature_id, batch))]
    total = 2 * len(todo) + len(pending)
    done = 0
    if progress:
        progress(0, total, None, None)  # type: ignore[arg-type]
    for plan in todo:
        runner = unit_runner(plan, backend, batch, backbone, artefacts=artefacts)
        m, ratio, ref = _timed(runner, reference, config)
        table.add(measurement_row(plan, batch, m, fp_id, ratio=ratio, reference=ref,
                                  target_rel_ci=config.target_rel_ci))
        table.update_reference(REFERENCE_DESCRIPTION)
        table.save(path)
        done += 1
        if progress:
            progress(done, total, plan, table.get(plan.signature_id, batch))
    recheck = [u for u in units if _needs_recheck(table.get(u.signature_id, batch))]
    for start in range(0, len(recheck), RECHECK_GROUP):
        group = recheck[start : start + RECHECK_GROUP]
        runners = {u.signature_id: unit_runner(u, backend, batch, backbone, artefacts=artefacts) for u in group}
        measured, by_id, _ = measure_group(runners, reference, config)
        for plan in group:
            row = table.get(plan.signature_id, batch)
            table.add(recheck_row(row, measured[plan.signature_id], by_id.get(plan.signature_id),
                                  config.recheck_tolerance))
            done += 1
            if progress:
                progress(done, total, plan, table.get(plan.signature_id, batch))
        table.save(path)
    return table


def _needs_recheck(row: dict[str, Any] | None) -> bool:
    return row is not None and row.get("source") == "measured" and row.get("recheck_median_ms") is None


def recheck_row(row: dict[str, Any], second: Measurement, ratio: Ratio | None, tolerance: float) -> dict[str, Any]:
    """``row`` with its second measurement folded in and its trust revised (ratios compared when paired)."""
    updated = {**row, "recheck_median_ms": second.median_ms,
               "recheck_ratio": ratio.median if ratio is not None else None}
    if ratio is not None and row.get("ratio"):
        drift = abs(ratio.median / row["ratio"] - 1)
        updated["ratio"] = (row["ratio"] + ratio.median) / 2
    else:
        drift = abs(second.median_ms / row["median_ms"] - 1) if row["median_ms"] > 0 else 0.0
        updated["median_ms"] = (row["median_ms"] + second.median_ms) / 2
    updated["drift"] = drift
    if drift > tolerance:
        reason = f"drift {100 * drift:.1f}% between two measurements"
        updated["trusted"] = False
        updated["reason"] = f"{row['reason']}; {reason}" if row.get("reason") else reason
    return updated


def build_table(space: SearchSpace, backend: Backend, path: str | Path, *, batch: int = 1,
                config: HarnessConfig | None = None, progress: ProgressCallback | None = None) -> LatencyTable:
    """Measure every unit ``space`` can produce into the table at ``path`` (resuming it if present)."""
    if batch < 1:
        raise SpecError("batch", batch, "must be >= 1")
    config = config or HarnessConfig()
    path = Path(path)
    table = open_table(path, backend, space, config)
    started = time.perf_counter()
    table = measure_units(table, space_units(space), backend, batch, space.base.backbone, path, config,
                          progress=progress)
    spent = float(table.meta.harness.get("build_seconds", 0.0)) + time.perf_counter() - started
    table.meta.harness = {**config.to_dict(), "build_seconds": spent}
    table.save(path)
    return table

"""Building a lookup table: every distinct unit a search space can produce, measured once.

The units of a space are the backbone's (fixed across the space) plus, for every slot,
the temporal unit of each choice the slot may take. Distinct signatures are measured in
a stable order; the table is saved atomically after each entry, so a killed build loses
at most the entry being measured and ``build_table`` on the same path resumes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.latency_models._backends import Backend, fingerprint_id
from vidnas.latency_models._harness import HarnessConfig, measure_group
from vidnas.latency_models._load import LoadGuard
from vidnas.latency_models._pairing import Series, Timing
from vidnas.latency_models._table import LatencyTable, TableMeta, TableMismatchError
from vidnas.latency_models._units import unit_runner
from vidnas.search_space import ArchSpec, SearchSpace, UnitPlan, build_plan

ProgressCallback = Callable[[int, int, UnitPlan, dict[str, Any] | None], None]


@dataclasses.dataclass
class BuildWatch:
    """What a table build reports to, and what may stop it.

    ``progress(done, total, plan, row)`` counts the entries of the current pass (its total is
    fixed when the pass begins); ``stage(name, total)`` says a pass begins: ``measure`` (units
    the table lacks), ``re-check`` (a second pass over every entry), ``re-measure`` (entries
    still flagged noisy). ``load`` checks the machine after each measured item: it stops the
    build (the table kept as it was before the item) or flags the item ``under_load``.
    """

    progress: ProgressCallback | None = None
    stage: Callable[[str, int], None] | None = None
    load: LoadGuard | None = None

    def begin(self, name: str, total: int) -> None:
        if self.stage:
            self.stage(name, total)
        if self.progress:
            self.progress(0, total, None, None)  # type: ignore[arg-type]

    def under_load(self, result=None) -> bool:
        """Whether the item just measured (``result``: its group's timing) ran under load."""
        if self.load is None:
            return False
        reference = getattr(result, "reference", None)
        self.load.note_reference(reference.median_ms if reference is not None else None)
        return self.load.item_under_load()


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


def timing_row(plan: UnitPlan, batch: int, timing: Timing, fp_id: str, source: str = "measured", *,
               measured_at: str | None = None) -> dict[str, Any]:
    """A table row from an entry's :class:`Timing` (all its passes; their rounds kept in ``series``)."""
    import json

    m = timing.plain
    row: dict[str, Any] = {
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
        "trusted": timing.trusted,
        "reason": timing.reason,
        "source": source,
        "measured_at": measured_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint_id": fp_id,
        "drift": timing.drift,
        "basis": timing.basis.basis,
        "basis_reason": timing.basis.reason,
        "plain_rel_ci": timing.basis.plain_rel_ci,
        "ratio_rel_ci": timing.basis.ratio_rel_ci,
        "correlation": timing.basis.correlation,
        "passes": len(timing.passes),
        "series": json.dumps([s.to_dict() for s in timing.passes], separators=(",", ":")),
    }
    if timing.ratio is not None and timing.reference is not None:
        row.update(ratio=timing.ratio.median, ratio_ci_low=timing.ratio.ci_low, ratio_ci_high=timing.ratio.ci_high,
                   reference_ms=timing.reference.median_ms, level_ratio=timing.level,
                   reference_rel_ci=timing.basis.reference_rel_ci)
    if len(timing.passes) > 1:  # the second pass on its own, as earlier tables stored it
        second = timing.passes[1]
        row["recheck_median_ms"] = statistics.median(second.item_ms)
        row["recheck_ratio"] = statistics.median(second.ratios()) if second.paired else None
    return row


def row_series(row: dict[str, Any] | None) -> list[Series]:
    """The passes stored with a measured row (empty for imported rows and earlier tables)."""
    import json

    if not row or not row.get("series"):
        return []
    return [Series.from_dict(d) for d in json.loads(row["series"])]


def new_table(backend: Backend, space: SearchSpace | None, config: HarnessConfig) -> LatencyTable:
    fp = backend.fingerprint()
    shape = None
    if space is not None:
        bb = space.base.backbone
        shape = {"frames": bb.pixel_frames, "height": bb.pixel_height, "width": bb.pixel_width, **space.shape}
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
    have = (table.meta.fingerprint or {}).get("options")
    if have is not None and have != fp.get("options"):  # e.g. another graph optimisation or spinning setting
        raise TableMismatchError(
            f"the table at {path} was measured with backend options {have!r} but {fp.get('options')!r} were asked "
            "for; its entries would mix two settings — build it into another file (or pass the same options)"
        )
    return table


RECHECK_GROUP = 16  # units re-checked together, round-robin, in one group


def _wants_pass(row: dict[str, Any] | None, max_passes: int) -> bool:
    """A measured entry gets a second pass always, and more (up to ``max_passes``) while flagged."""
    if row is None or row.get("source") != "measured":
        return False
    passes = len(row_series(row))
    if passes == 0:  # an entry from an earlier vidnas: its rounds were not kept
        return False
    return passes < 2 or (passes < max_passes and not row.get("trusted", True))


def measure_units(table: LatencyTable, units: list[UnitPlan], backend: Backend, batch: int, backbone, path: Path,
                  config: HarnessConfig, *, progress: ProgressCallback | None = None,
                  watch: BuildWatch | None = None) -> LatencyTable:
    """Measure the units ``table`` lacks, re-check every entry, re-measure flagged ones; save after each step.

    Pass 1 times each missing unit (interleaved with the reference workload when
    ``config.paired_reference``) and saves it: a kill loses at most the unit in progress.
    Pass 2 re-measures entries in groups of up to 16, sampling the group's units in
    shuffled rounds, so that each re-check spreads over the group's whole duration. Each
    group decides whether its entries stand on their paired ratios or their plain medians
    (``_pairing``), every entry's passes pooled; an entry is confirmed when two passes
    agree within ``config.recheck_tolerance``. Entries still flagged noisy are measured
    again, in groups, up to ``config.remeasure_rounds`` more passes; what is still noisy
    after that stays flagged. A kill loses only the group in progress.
    """
    from vidnas.latency_models._reference import REFERENCE_DESCRIPTION, reference_runner

    fp_id = fingerprint_id(backend.fingerprint())
    watch = watch or BuildWatch(progress=progress)
    todo = [u for u in units if (u.signature_id, batch) not in table]
    artefacts = path.with_name(path.stem + ".artefacts")
    reference = reference_runner(backend, artefacts) if config.paired_reference else None
    max_passes = 2 + config.remeasure_rounds
    if todo:
        watch.begin("measure", len(todo))
    for done, plan in enumerate(todo, 1):
        runner = unit_runner(plan, backend, batch, backbone, artefacts=artefacts)
        result = measure_group({"unit": runner}, reference, config)
        row = timing_row(plan, batch, result.timings["unit"], fp_id)
        row["under_load"] = watch.under_load(result)  # raises first when load is not allowed
        table.add(row)
        table.update_reference(REFERENCE_DESCRIPTION)
        table.save(path)
        if watch.progress:
            watch.progress(done, len(todo), plan, table.get(plan.signature_id, batch))
    first = True
    while True:
        pending = [u for u in units if _wants_pass(table.get(u.signature_id, batch), max_passes)]
        if not pending:
            break
        watch.begin("re-check" if first else "re-measure", len(pending))
        first, done = False, 0
        for start in range(0, len(pending), RECHECK_GROUP):
            group = pending[start : start + RECHECK_GROUP]
            rows = {u.signature_id: table.get(u.signature_id, batch) for u in group}
            runners = {u.signature_id: unit_runner(u, backend, batch, backbone, artefacts=artefacts) for u in group}
            result = measure_group(runners, reference, config,
                                   previous={sid: row_series(row) for sid, row in rows.items()})
            loaded = watch.under_load(result)
            for plan in group:
                row = rows[plan.signature_id] or {}
                new = timing_row(plan, batch, result.timings[plan.signature_id], fp_id,
                                 measured_at=row.get("measured_at"))
                new["under_load"] = bool(loaded or row.get("under_load"))
                table.add(new)
                done += 1
                if watch.progress:
                    watch.progress(done, len(pending), plan, table.get(plan.signature_id, batch))
            table.update_reference(REFERENCE_DESCRIPTION)
            table.save(path)
    return table


def build_table(space: SearchSpace, backend: Backend, path: str | Path, *, batch: int = 1,
                config: HarnessConfig | None = None, progress: ProgressCallback | None = None,
                watch: BuildWatch | None = None) -> LatencyTable:
    """Measure every unit ``space`` can produce into the table at ``path`` (resuming it if present).

    ``watch`` (a :class:`BuildWatch`) receives progress per pass and guards against load."""
    if batch < 1:
        raise SpecError("batch", batch, "must be >= 1")
    config = config or HarnessConfig()
    path = Path(path)
    table = open_table(path, backend, space, config)
    started = time.perf_counter()
    watch = watch or BuildWatch(progress=progress)
    table = measure_units(table, space_units(space), backend, batch, space.base.backbone, path, config, watch=watch)
    spent = float(table.meta.harness.get("build_seconds", 0.0)) + time.perf_counter() - started
    table.meta.harness = {**config.to_dict(), "build_seconds": spent}
    if watch.load is not None:
        table.meta.harness["load"] = watch.load.summary()
    table.save(path)
    return table

"""Where a study's latencies come from: a roofline, a latency table, or a backend measured now.

Every source answers the same three questions about an architecture — the latency of one of
its units, of one whole call, and of streaming it chunk by chunk — and says what it is
(``kind``: ``measured``, ``synthetic`` or ``roofline estimate``) with its provenance (device,
backend, versions). A source answers ``None`` when it cannot (a table without that unit); the
study then takes the whole comparison from its fallback, never mixing two sources in one
comparison. Latencies are milliseconds per network call at batch 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec, UnitPlan, build_plan

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)

MEASURED, SYNTHETIC, ESTIMATE = "measured", "synthetic", "roofline estimate"

STREAM_NOTE = ("a roofline leaves out the text encoder, the autoencoder's decoding and the sampler, and runs every "
               "kernel at its datasheet peak: a lower bound")


class Source:
    """A latency source. Subclasses implement :meth:`unit_ms`, :meth:`call_ms`, :meth:`describe`."""

    kind: str = ESTIMATE
    dtype: str = "float32"

    def __init__(self) -> None:
        self._plans: dict[str, dict[str, UnitPlan]] = {}

    def plans(self, spec: ArchSpec) -> dict[str, UnitPlan]:
        """The units of ``spec`` by name (cached by ``arch_id``)."""
        if spec.arch_id not in self._plans:
            self._plans[spec.arch_id] = {p.name: p for p in build_plan(spec)}
        return self._plans[spec.arch_id]

    def prepare(self, units: Iterable[tuple[UnitPlan, Any]], specs: Iterable[ArchSpec],
                progress: ProgressFn | None = None) -> None:
        """Make the given units (with their backbones) and every unit of ``specs`` available, if this
        source can measure; a no-op otherwise."""

    def unit_ms(self, spec: ArchSpec, name: str) -> float | None:
        raise NotImplementedError

    def call_ms(self, spec: ArchSpec) -> float | None:
        raise NotImplementedError

    def stream(self, spec: ArchSpec, *, chunk_frames: int, steps: int, measure: bool) -> dict[str, Any] | None:
        """Time to the first chunk and steady frames per second; None when this source cannot stream."""
        return None

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.describe()["label"]


class RooflineSource(Source):
    """The datasheet roofline of a device (``vidnas latency predict --roofline``): always an estimate."""

    kind = ESTIMATE

    def __init__(self, device: str, dtype: str | None = None, *, field: str = "--roofline") -> None:
        from vidnas.latency_models import load_devices

        super().__init__()
        devices = load_devices()
        if device not in devices:
            raise SpecError(field, device, "is not a known datasheet device", f"choose one of {list(devices)}")
        self.device = devices[device]
        peaks = self.device.peak_flops
        if dtype is None:
            dtype = "float16" if "float16" in peaks else next(iter(peaks))
        if dtype not in peaks:
            raise SpecError("--dtype", dtype, f"has no peak FLOP/s on device {device}", f"choose one of {list(peaks)}")
        self.dtype = dtype
        self._estimates: dict[str, dict[str, Any]] = {}

    def _estimate(self, spec: ArchSpec) -> dict[str, Any]:
        from vidnas.latency_models import roofline_estimate

        if spec.arch_id not in self._estimates:
            est = roofline_estimate(spec, self.device, dtype=self.dtype)
            self._estimates[spec.arch_id] = {"per_call_ms": est["per_call_ms"],
                                             "units": {u["name"]: u["estimate_ms"] for u in est["units"]}}
        return self._estimates[spec.arch_id]

    def unit_ms(self, spec: ArchSpec, name: str) -> float | None:
        return self._estimate(spec)["units"].get(name, 0.0)  # identity units are not listed: 0 ms

    def call_ms(self, spec: ArchSpec) -> float | None:
        return self._estimate(spec)["per_call_ms"]

    def stream(self, spec: ArchSpec, *, chunk_frames: int, steps: int, measure: bool) -> dict[str, Any] | None:
        from vidnas.latency_models import roofline_stream_estimate

        est = roofline_stream_estimate(spec, self.device, chunk_frames=chunk_frames, steps=steps, dtype=self.dtype)
        return {"first_chunk_ms": est["first_chunk_ms"],
                "first_chunk_decoded_frames": est["first_chunk_decoded_frames"],
                "steady_chunk_ms": est["steady_chunk_ms"], "steady_fps": est["steady_fps"],
                "decoded_frames_per_chunk": est["decoded_frames_per_chunk"], "per_chunk_ms": est["per_chunk_ms"],
                "excludes": est["excludes"], "source": self.describe()}

    def describe(self) -> dict[str, Any]:
        from vidnas._env import package_versions

        d = self.device
        return {"kind": ESTIMATE, "label": f"roofline estimate on {d.name} ({self.dtype}): datasheet peaks, a lower "
                                           "bound, not a measurement",
                "device": d.name, "device_summary": d.summary, "dtype": self.dtype,
                "peak_flops": d.peak_flops[self.dtype], "memory_bandwidth": d.memory_bandwidth,
                "launch_overhead_us": d.launch_overhead_us, "datasheet": d.source,
                "versions": package_versions(("vidnas",))}


class TableSource(Source):
    """A latency table measured on a target (here, or on a phone and imported)."""

    def __init__(self, table, path: Path | None = None) -> None:
        super().__init__()
        self.table = table
        self.path = path
        self.batch = 1
        self.dtype = table.meta.dtype
        self._predictions: dict[str, Any] = {}

    @property
    def kind(self) -> str:  # type: ignore[override]
        return SYNTHETIC if self.table.meta.backend == "debug" else MEASURED

    def _reset(self) -> None:
        self._predictions.clear()

    def unit_ms(self, spec: ArchSpec, name: str) -> float | None:
        plan = self.plans(spec)[name]
        if plan.is_identity:
            return 0.0
        return self.table.median_ms(plan.signature_id, self.batch)

    def call_ms(self, spec: ArchSpec) -> float | None:
        from vidnas.latency_models import LatencyPredictor, MissingEntriesError

        if spec.arch_id not in self._predictions:
            try:
                self._predictions[spec.arch_id] = LatencyPredictor(self.table).predict(spec, batch=self.batch).ms
            except MissingEntriesError:
                self._predictions[spec.arch_id] = None
        return self._predictions[spec.arch_id]

    def describe(self) -> dict[str, Any]:
        meta = self.table.meta
        rows = self.table.rows()
        fp = meta.fingerprint or {}
        # a table imported from CSV (measured elsewhere: a phone) carries no backend fingerprint
        imported = "backend" not in fp or (bool(rows) and all(r.get("source") != "measured" for r in rows))
        if self.kind == SYNTHETIC:
            label = "synthetic: the debug backend (FLOPs at a fixed speed; nothing is run)"
        elif imported:
            label = f"measured on {meta.device_name} with {meta.backend} ({meta.device}, {meta.dtype})"
        else:
            label = (f"measured: {meta.backend} on {meta.device_name} ({meta.device}, {meta.threads or 'default'} "
                     f"threads, {meta.dtype})")
        if imported:
            label += f", imported from {fp.get('source', 'a CSV file')}"
        return {"kind": self.kind, "label": label, "backend": meta.backend, "device": meta.device,
                "device_name": meta.device_name, "dtype": meta.dtype, "threads": meta.threads,
                "versions": fp.get("versions"), "options": fp.get("options"),
                "table": str(self.path) if self.path else None,
                "entries": len(rows), "untrusted": sum(1 for r in rows if not r.get("trusted", True)),
                "imported": imported, "correction": (meta.correction or {}).get("model"),
                "space": meta.space, "space_shape": meta.space_shape}


class BackendSource(TableSource):
    """A backend measured now: the space's table built (or resumed) in vidnas's cache, as a campaign builds it,
    and every further unit the study needs measured into a second cached table beside it."""

    def __init__(self, space, backend, *, config, quick: bool, progress: ProgressFn | None = None,
                 load=None) -> None:
        from vidnas._cache import cache_dir
        from vidnas.latency_models import BuildWatch, build_table, fingerprint_id, open_table

        self.backend = backend
        self.config = config
        self.load = load  # the busy-machine guard (a LoadGuard), or None
        fp = backend.fingerprint()
        key = "-".join([space.name, *(f"{k}{v}" for k, v in sorted(space.shape.items())), backend.name,
                        backend.device, "b1", fingerprint_id(fp), "quick" if quick else "full"])
        tables = cache_dir() / "tables"
        self.space_path = tables / f"{key}.parquet"
        self.extra_path = tables / f"study-{key}.parquet"
        on_entry = None
        if progress is not None:
            def on_entry(i: int, n: int, plan, row) -> None:
                progress("space table", i, n)
        self.space_table = build_table(space, backend, self.space_path, batch=1, config=config,
                                       watch=BuildWatch(progress=on_entry, load=load))
        self.extra = open_table(self.extra_path, backend, None, config)
        super().__init__(self._combined(), self.space_path)

    def _combined(self):
        """The space's table and the study's further units as one table (the space table's reference speed)."""
        from vidnas.latency_models import LatencyTable

        return LatencyTable(self.space_table.meta, [*self.space_table.rows(), *self.extra.rows()])

    def prepare(self, units: Iterable[tuple[UnitPlan, Any]], specs: Iterable[ArchSpec],
                progress: ProgressFn | None = None) -> None:
        from vidnas.latency_models import BuildWatch, measure_units, spec_units

        wanted: dict[str, tuple[UnitPlan, Any]] = {}
        for plan, backbone in [*units, *((u, s.backbone) for s in specs for u in spec_units(s))]:
            if not plan.is_identity and (plan.signature_id, 1) not in self.table:
                wanted.setdefault(plan.signature_id, (plan, backbone))
        by_backbone: dict[str, list[tuple[UnitPlan, Any]]] = {}
        for plan, backbone in wanted.values():
            by_backbone.setdefault(json.dumps(backbone.to_dict(), sort_keys=True), []).append((plan, backbone))
        for k, group in enumerate(by_backbone.values()):
            stage = f"study units, shape {k + 1} of {len(by_backbone)}"

            def on_entry(i: int, n: int, plan, row, stage: str = stage) -> None:
                if progress is not None:
                    progress(stage, i, n)

            measure_units(self.extra, [p for p, _ in group], self.backend, 1, group[0][1], self.extra_path,
                          self.config, watch=BuildWatch(progress=on_entry, load=self.load))
        if wanted:
            self.table = self._combined()
            self._reset()

    def stream(self, spec: ArchSpec, *, chunk_frames: int, steps: int, measure: bool) -> dict[str, Any] | None:
        """Streams are timed in eager PyTorch (the caches live in Python state), on the backend's device,
        for the torch and ONNX Runtime backends; None for others (and when ``measure`` is false)."""
        from vidnas.latency_models import measure_streaming

        if not measure or self.backend.name not in ("torch", "onnxruntime"):
            return None
        from vidnas._cache import cache_dir, config_hash
        from vidnas._env import fingerprint

        threads = self.table.meta.threads
        host = {k: v for k, v in fingerprint().items() if k in ("hostname", "cpu", "cpu_count", "versions")}
        key = config_hash(spec.arch_id, chunk_frames, steps, self.backend.device, threads, host)
        path = cache_dir() / "streams" / f"{key}.json"  # a stream measured once is not measured again
        if path.exists():
            m = json.loads(path.read_text())
        else:
            m = measure_streaming(spec, chunk_frames=chunk_frames, steps=steps, device=self.backend.device,
                                  threads=threads)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(m))
            tmp.replace(path)
        factor = spec.backbone.vae_temporal_factor
        decoded = chunk_frames * factor
        return {"first_chunk_ms": m["first_chunk_ms"], "first_chunk_decoded_frames": (chunk_frames - 1) * factor + 1,
                "steady_chunk_ms": m["steady_chunk_ms"], "steady_fps": decoded * 1000 / m["steady_chunk_ms"],
                "decoded_frames_per_chunk": decoded, "per_chunk_ms": m["per_chunk_ms"],
                "excludes": "text encoder, autoencoder decoding",
                "source": {**self.describe(), "kind": MEASURED,
                           "label": f"measured: torch eager on {self.backend.device} ({m['threads']} threads); "
                                    "streams are timed in PyTorch whatever the table's backend (the KV cache lives "
                                    "in Python state)"}}


def fallback_roofline(table_meta, device: str | None, dtype: str | None) -> RooflineSource:
    """The roofline that answers what a table cannot: ``device`` if given, else the datasheet closest to the
    table's target."""
    from vidnas.latency_models import closest_datasheet

    if device is None:
        device, dtype = closest_datasheet(table_meta)
    return RooflineSource(device, dtype, field="--fallback-roofline")


def default_memory_budget(source: Source) -> tuple[float | None, str]:
    """The memory a network may hold on the source's target (bytes), and where that figure comes from."""
    if isinstance(source, RooflineSource):
        budget = DEVICE_MEMORY.get(source.device.name)
        if budget is None:
            return None, f"no memory figure for {source.device.name}: pass --memory-budget"
        return budget, f"{source.device.name}: {DEVICE_MEMORY_NOTE[source.device.name]}"
    meta = source.table.meta  # type: ignore[attr-defined]
    if meta.device == "cpu" and meta.backend != "debug" and not source.describe()["imported"]:
        import psutil

        return float(psutil.virtual_memory().total), "this machine's physical memory"
    return None, f"no memory figure for {meta.backend}/{meta.device}: pass --memory-budget"


# What a network may hold on each datasheet device (bytes). A phone app gets a part of the phone's RAM:
# 4 GB is the budget of the README's SnapGen-V campaign, on an 8 GB phone.
DEVICE_MEMORY = {"phone-npu": 4.0e9, "laptop-cpu": 16.0e9, "a100": 80.0e9, "h100": 80.0e9, "h200": 141.0e9}
DEVICE_MEMORY_NOTE = {"phone-npu": "4 GB, what an app may hold on an 8 GB phone",
                      "laptop-cpu": "16 GB of laptop RAM", "a100": "80 GB HBM2e", "h100": "80 GB HBM3",
                      "h200": "141 GB HBM3e"}


def check_table_space(table, path: Path, space_name: str) -> None:
    """Refuse a table built for another space (a table imported without a space is checked by coverage)."""
    if table.meta.space is not None and table.meta.space != space_name:
        raise SpecError("--lut", str(path), f"was built for space `{table.meta.space}`, not `{space_name}`",
                        f"pass --space {table.meta.space}, or build a table with `vidnas lut build --space "
                        f"{space_name}`")

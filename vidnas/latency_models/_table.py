"""The latency lookup table: one row per (unit signature, batch), stored as Parquet.

Rows carry the unit's signature (everything its latency depends on), the measured
statistics (plain median and spread, ratio to the reference workload, the ``basis`` its
measurement group chose and why, the rounds of every pass in ``series``) and the
fingerprint of the environment that measured them; :meth:`LatencyTable.latency_ms` reads
an entry on its basis. Table-wide facts
(backend, device, dtype, batch, threads, harness settings, the correction learnt from
end-to-end measurements) sit in the Parquet file's metadata under ``vidnas``. Every save
is atomic (written aside, then renamed), so an interrupted build never leaves a
truncated table. CSV import/export brings in tables measured on phones with other tools.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError, VidnasError

TABLE_FORMAT = "vidnas.latency_table"
TABLE_VERSION = 1

COLUMNS = [
    "signature_id", "batch", "kind", "op", "signature", "median_ms", "p10_ms", "p90_ms", "mean_ms", "cv",
    "ci_low_ms", "ci_high_ms", "runs", "inner_loops", "warmup_runs", "trusted", "reason", "source", "measured_at",
    "fingerprint_id", "recheck_median_ms", "drift", "ratio", "ratio_ci_low", "ratio_ci_high", "reference_ms",
    "recheck_ratio", "basis", "basis_reason", "plain_rel_ci", "ratio_rel_ci", "correlation", "passes", "series",
    "level_ratio", "reference_rel_ci",
]
CSV_EXCLUDED = ("series",)  # every round of every pass: kept in the Parquet table, not in the CSV export
REQUIRED_CSV_COLUMNS = ("signature_id", "median_ms")


class TableMismatchError(VidnasError):
    """A table measured on another backend, device, dtype, batch or thread count."""


@dataclasses.dataclass
class TableMeta:
    """What every row of a table shares."""

    backend: str
    device: str
    device_name: str
    dtype: str
    threads: int | None
    fingerprint: dict[str, Any]
    harness: dict[str, Any] = dataclasses.field(default_factory=dict)
    space: str | None = None
    space_shape: dict[str, int] | None = None  # frames, height, width (pixels) the space was built at
    reference: dict[str, Any] | None = None  # the paired workload: description and median_ms over the table
    correction: dict[str, Any] | None = None  # see ``_predictor.Correction``
    end_to_end: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the measurements behind it
    adapted: dict[str, Any] | None = None  # mapped from another target's table (see ``_adapt``): source, K, method

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "version": TABLE_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> TableMeta:
        if data.get("format") != TABLE_FORMAT:
            raise SpecError("table", source, "is not a vidnas latency table (no vidnas metadata)")
        if data.get("version") != TABLE_VERSION:
            raise SpecError("table.version", data.get("version"), f"is not supported (this vidnas reads "
                                                                  f"{TABLE_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class LatencyTable:
    """Rows keyed by ``(signature_id, batch)`` plus :class:`TableMeta`."""

    def __init__(self, meta: TableMeta, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self.meta = meta
        self._rows: dict[tuple[str, int], dict[str, Any]] = {}
        for row in rows:
            self.add(row)

    # Access -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._rows

    def get(self, signature_id: str, batch: int) -> dict[str, Any] | None:
        return self._rows.get((signature_id, batch))

    @property
    def reference_ms(self) -> float | None:
        """The reference workload's median time over the table (None if entries have no ratios)."""
        ref = self.meta.reference or {}
        return ref.get("median_ms")

    def latency_ms(self, row: Mapping[str, Any]) -> float:
        """An entry's latency in milliseconds at the reference's typical speed over the table.

        By the entry's basis (see ``_pairing``): ``plain``, its own median; ``level``, its
        median over the reference's median in the same rounds; ``paired`` (and entries from
        before the choice), its median per-round ratio to the reference. Without a ratio or a
        reference speed (imported, adapted rows), its own median.
        """
        ref = self.reference_ms
        basis = row.get("basis")
        if basis == "plain" or ref is None:
            return float(row["median_ms"])
        if basis == "level" and row.get("level_ratio") is not None:
            return float(row["level_ratio"]) * ref
        if row.get("ratio") is not None:
            return float(row["ratio"]) * ref
        return float(row["median_ms"])

    def median_ms(self, signature_id: str, batch: int) -> float | None:
        row = self._rows.get((signature_id, batch))
        return None if row is None else self.latency_ms(row)

    def update_reference(self, description: str) -> None:
        """Recompute ``meta.reference`` from the entries' reference medians."""
        import statistics

        refs = [float(r["reference_ms"]) for r in self._rows.values() if r.get("reference_ms") is not None]
        if refs:
            self.meta.reference = {"description": description, "median_ms": statistics.median(refs),
                                   "p10_ms": sorted(refs)[int(0.1 * (len(refs) - 1))],
                                   "p90_ms": sorted(refs)[int(0.9 * (len(refs) - 1))], "entries": len(refs)}

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows.values())

    def add(self, row: Mapping[str, Any]) -> None:
        missing = [c for c in REQUIRED_CSV_COLUMNS if c not in row or row[c] is None]
        if missing:
            raise SpecError(f"row.{missing[0]}", None, "is missing")
        median = float(row["median_ms"])
        if not median >= 0:
            raise SpecError("row.median_ms", row["median_ms"], f"must be a non-negative number (signature "
                                                              f"{row['signature_id']})")
        full = {c: row.get(c) for c in COLUMNS}
        full["batch"] = int(row.get("batch") or 1)
        full["median_ms"] = median
        if full["trusted"] is None:
            full["trusted"] = True
        self._rows[(str(row["signature_id"]), full["batch"])] = full

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=COLUMNS)

    # Compatibility ------------------------------------------------------------------------

    def check_compatible(self, **expected: Any) -> None:
        """Raise :class:`TableMismatchError` naming the first table field that differs.

        Pass the fields to check: ``backend``, ``device``, ``device_name``, ``dtype``, ``threads``.
        """
        for field, want in expected.items():
            if want is None:
                continue
            have = getattr(self.meta, field)
            if have != want:
                raise TableMismatchError(
                    f"the table was measured with {field}={have!r} but {field}={want!r} was asked for; "
                    f"a table from another {field.replace('_', ' ')} cannot predict this one — build a table there"
                )

    # Files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write atomically: a temporary file beside ``path``, then a rename."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.to_frame()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        metadata = dict(table.schema.metadata or {})
        metadata[b"vidnas"] = json.dumps(self.meta.to_dict(), default=str).encode()
        table = table.replace_schema_metadata(metadata)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise SpecError("table", str(path), "does not exist", "build one with `vidnas lut build`")
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise SpecError("table", str(path), f"is not a readable Parquet file ({exc})") from None
        raw = (table.schema.metadata or {}).get(b"vidnas")
        if raw is None:
            raise SpecError("table", str(path), "is not a vidnas latency table (no vidnas metadata)")
        meta = TableMeta.from_dict(json.loads(raw), str(path))
        frame = table.to_pandas()
        return cls(meta, _records(frame))

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        frame = self.to_frame().drop(columns=list(CSV_EXCLUDED))
        for key in ("backend", "device", "device_name", "dtype", "threads"):
            frame[key] = getattr(self.meta, key)
        frame.to_csv(path, index=False)
        return path

    @classmethod
    def from_csv(cls, path: str | Path, *, backend: str | None = None, device: str | None = None,
                 device_name: str | None = None, dtype: str | None = None, threads: int | None = None,
                 source: str = "imported") -> LatencyTable:
        """A table from CSV rows with at least ``signature_id`` and ``median_ms``.

        Table-wide fields come from the arguments or, when absent, from same-valued
        ``backend``/``device``/``device_name``/``dtype``/``threads`` columns.
        """
        import pandas as pd

        path = Path(path)
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise SpecError("CSV", str(path), "does not exist") from None
        except Exception as exc:
            raise SpecError("CSV", str(path), f"cannot be read as CSV ({exc})") from None
        for column in REQUIRED_CSV_COLUMNS:
            if column not in frame.columns:
                raise SpecError(f"CSV column {column}", list(frame.columns), "is missing",
                                f"a table needs the columns {list(REQUIRED_CSV_COLUMNS)}")
        given = {"backend": backend, "device": device, "device_name": device_name, "dtype": dtype,
                 "threads": threads}
        for key in given:
            if given[key] is None and key in frame.columns:
                values = frame[key].dropna().unique()
                if len(values) > 1:
                    raise SpecError(f"CSV column {key}", list(values), "must hold one value for the whole table")
                if len(values):
                    given[key] = values[0].item() if hasattr(values[0], "item") else values[0]
        for key in ("backend", "device"):
            if given[key] is None:
                raise SpecError(key, None, "is not given", f"pass --{key} or add a `{key}` column")
        meta = TableMeta(backend=str(given["backend"]), device=str(given["device"]),
                         device_name=str(given["device_name"] or given["device"]),
                         dtype=str(given["dtype"] or "float32"),
                         threads=None if given["threads"] is None else int(given["threads"]),
                         fingerprint={"source": str(path)})
        rows = _records(frame)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        for i, row in enumerate(rows):
            try:
                float(row["median_ms"])
            except (TypeError, ValueError):
                raise SpecError(f"CSV row {i + 2}: median_ms", row["median_ms"], "is not a number") from None
            row.setdefault("source", source)
            row["source"] = row.get("source") or source
            row["measured_at"] = row.get("measured_at") or now
        return cls(meta, rows)


def _records(frame) -> list[dict[str, Any]]:
    import math

    out = []
    for record in frame.to_dict(orient="records"):
        clean = {}
        for k, v in record.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and math.isnan(v):
                v = None
            clean[str(k)] = v
        out.append(clean)
    return out


def table_summary(table: LatencyTable, space_signatures: Iterable[str] | None = None,
                  batch: int | None = None) -> dict[str, Any]:
    """Coverage and noise of a table, optionally against the signatures a space needs."""
    rows = table.rows()
    cvs = sorted(float(r["cv"]) for r in rows if r.get("cv") is not None)
    by_kind: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = r.get("op") or r.get("kind") or "unknown"
        entry = by_kind.setdefault(key, {"entries": 0, "untrusted": 0, "total_median_ms": 0.0})
        entry["entries"] += 1
        entry["untrusted"] += 0 if r.get("trusted", True) else 1
        entry["total_median_ms"] += table.latency_ms(r)
    summary: dict[str, Any] = {
        "meta": {k: v for k, v in table.meta.to_dict().items() if k not in ("end_to_end",)},
        "entries": len(rows),
        "untrusted": sum(1 for r in rows if not r.get("trusted", True)),
        "cv_median": cvs[len(cvs) // 2] if cvs else None,
        "cv_p90": cvs[int(0.9 * (len(cvs) - 1))] if cvs else None,
        "by_op": by_kind,
        "sources": sorted({str(r.get("source")) for r in rows}),
        "bases": {b: sum(1 for r in rows if r.get("basis") == b) for b in ("paired", "level", "plain")},
        "remeasured": sum(1 for r in rows if (r.get("passes") or 0) > 2),
        "end_to_end_measurements": len(table.meta.end_to_end),
    }
    if space_signatures is not None:
        needed = set(space_signatures)
        have = {r["signature_id"] for r in rows if batch is None or r["batch"] == batch}
        summary["coverage"] = {"needed": len(needed), "present": len(needed & have),
                               "missing": sorted(needed - have)}
    return summary

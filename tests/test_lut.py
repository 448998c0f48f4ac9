"""Lookup tables: enumeration, building, resuming after a kill, refusals, CSV and Core ML round trips."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from vidnas._errors import SpecError
from vidnas.latency_models import (
    DebugBackend,
    HarnessConfig,
    LatencyTable,
    TableMismatchError,
    build_table,
    export_coreml_bundle,
    space_units,
    spec_units,
    table_summary,
)
from vidnas.search_space import get_space

QUICK = HarnessConfig.quick()


def test_space_units_cover_every_sampled_architecture():
    space = get_space("tiny")
    needed = {u.signature_id for u in space_units(space)}
    for spec in space.random_specs(20, seed=0):
        assert {u.signature_id for u in spec_units(spec)} <= needed
    assert len(needed) == len(space_units(space))  # distinct


def test_build_writes_a_complete_table_with_provenance(tmp_path):
    space = get_space("tiny-enum")
    table = build_table(space, DebugBackend(), tmp_path / "t.parquet", config=QUICK)
    loaded = LatencyTable.load(tmp_path / "t.parquet")
    assert len(loaded) == len(table) == len(space_units(space))
    row = loaded.rows()[0]
    for key in ("signature", "median_ms", "p10_ms", "p90_ms", "cv", "runs", "fingerprint_id", "trusted"):
        assert row[key] is not None
    assert loaded.meta.backend == "debug" and loaded.meta.space == "tiny-enum"
    assert loaded.meta.fingerprint["versions"]["vidnas"]
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_build_resumes_without_remeasuring(tmp_path):
    space = get_space("tiny-enum")
    path = tmp_path / "t.parquet"
    first = build_table(space, DebugBackend(), path, config=QUICK)
    stamps = {r["signature_id"]: r["measured_at"] for r in first.rows()}
    again = build_table(space, DebugBackend(), path, config=QUICK)
    assert {r["signature_id"]: r["measured_at"] for r in again.rows()} == stamps


KILL_SCRIPT = """
import sys
from vidnas.latency_models import DebugBackend, HarnessConfig, build_table
from vidnas.search_space import get_space
build_table(get_space("tiny-enum"), DebugBackend(sleep_ms=150), sys.argv[1], config=HarnessConfig.quick())
"""


def test_a_killed_build_loses_at_most_the_entry_in_progress(tmp_path):
    path = tmp_path / "t.parquet"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)])
    deadline = time.time() + 300
    while time.time() < deadline:
        if path.exists() and len(LatencyTable.load(path)) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = LatencyTable.load(path)  # still a valid table
    done = {r["signature_id"]: r["measured_at"] for r in partial.rows()}
    total = len(space_units(get_space("tiny-enum")))
    assert 3 <= len(done) < total
    resumed = build_table(get_space("tiny-enum"), DebugBackend(), path, config=QUICK)
    assert len(resumed) == total
    assert all(resumed.get(sid, 1)["measured_at"] == stamp for sid, stamp in done.items())


def test_resuming_with_another_backend_or_threads_is_refused(tmp_path):
    path = tmp_path / "t.parquet"
    build_table(get_space("tiny-enum"), DebugBackend(), path, config=QUICK)
    with pytest.raises(TableMismatchError, match="threads"):
        build_table(get_space("tiny-enum"), DebugBackend(threads=2), path, config=QUICK)
    before = path.read_bytes()
    with pytest.raises(TableMismatchError, match="backend options"):  # entries would mix two settings
        build_table(get_space("tiny-enum"), DebugBackend(gflops=7.0), path, config=QUICK)
    assert path.read_bytes() == before
    table = LatencyTable.load(path)
    with pytest.raises(TableMismatchError, match="backend"):
        table.check_compatible(backend="onnxruntime")
    with pytest.raises(TableMismatchError, match="device"):
        table.check_compatible(device="cuda")


def test_a_table_of_the_earlier_fingerprint_layout_resumes_with_its_options(tmp_path):
    """Tables on disk record the backend's options in its fingerprint (ONNX Runtime's graph optimisation
    among them): with the backends in their own modules and their options a schema, the fingerprint is the
    same, so such a table resumes with the same options and is refused with others."""
    from vidnas._env import cpu_model
    from vidnas.latency_models import TableMeta, fingerprint_id, get_backend, open_table

    backend = get_backend("onnxruntime", threads=1, graph_optimization="basic")
    earlier = {"backend": "onnxruntime", "device": "cpu", "device_name": cpu_model(), "threads": 1, "dtype": "float32",
               "options": {"provider": "CPUExecutionProvider", "graph_optimization": "basic", "optimize_export": True,
                           "spinning": False}}
    assert fingerprint_id(backend.fingerprint()) == fingerprint_id(earlier)  # the options' order is hashed too
    path = tmp_path / "t.parquet"
    LatencyTable(TableMeta(backend="onnxruntime", device="cpu", device_name=cpu_model(), dtype="float32", threads=1,
                           fingerprint=earlier, harness=QUICK.to_dict())).save(path)
    assert LatencyTable.load(path).meta.fingerprint["options"]["graph_optimization"] == "basic"
    assert open_table(path, backend, None, QUICK).meta.fingerprint == earlier
    with pytest.raises(TableMismatchError, match="backend options"):
        open_table(path, get_backend("onnxruntime", threads=1), None, QUICK)


def test_csv_round_trip_and_import_errors(tmp_path):
    path = tmp_path / "t.parquet"
    table = build_table(get_space("tiny-enum"), DebugBackend(), path, config=QUICK)
    csv = table.to_csv(tmp_path / "t.csv")
    again = LatencyTable.from_csv(csv)
    assert again.meta.backend == "debug" and len(again) == len(table)
    for row in table.rows():
        assert again.median_ms(row["signature_id"], 1) == pytest.approx(row["median_ms"])
    bad = tmp_path / "bad.csv"
    bad.write_text("signature_id,latency\nabc,1.0\n")
    with pytest.raises(SpecError, match="median_ms"):
        LatencyTable.from_csv(bad, backend="coreml", device="ane")
    bad.write_text("signature_id,median_ms\nabc,fast\n")
    with pytest.raises(SpecError) as info:
        LatencyTable.from_csv(bad, backend="coreml", device="ane")
    assert "row 2" in info.value.field and info.value.value == "fast"
    bad.write_text("signature_id,median_ms\nabc,1.0\n")
    with pytest.raises(SpecError) as info:
        LatencyTable.from_csv(bad)
    assert info.value.field == "backend"


def test_loading_a_file_that_is_not_a_table(tmp_path):
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(SpecError, match="Parquet"):
        LatencyTable.load(tmp_path / "x.parquet")
    with pytest.raises(SpecError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.parquet")


def test_summary_reports_coverage_and_noise(tmp_path):
    space = get_space("tiny-enum")
    table = build_table(space, DebugBackend(noise=0.5), tmp_path / "t.parquet",
                        config=HarnessConfig(min_runs=5, max_runs=10, max_cv=1e-4, target_rel_ci=1e-4,
                                             remeasure_rounds=0))
    needed = [u.signature_id for u in space_units(get_space("tiny"))]
    summary = table_summary(table, needed, 1)
    assert summary["untrusted"] == summary["entries"] > 0  # 50 % noise never meets a 0.01 % limit
    assert summary["coverage"]["present"] < summary["coverage"]["needed"]
    assert summary["coverage"]["missing"]


@pytest.mark.slow
def test_coreml_bundle_round_trip_through_the_timing_script(tmp_path):
    """Export Core ML models with the timing script, run it in simulation mode (real Core ML
    timing needs macOS), import its CSV: the table then covers the space."""
    space = get_space("tiny-enum")
    manifest = export_coreml_bundle(space, tmp_path / "bundle", config=QUICK)
    assert not [u for u in manifest["units"] if u.get("error")]
    assert (tmp_path / "bundle" / "time_coreml.py").exists()
    assert all((tmp_path / "bundle" / u["package"]).exists() for u in manifest["units"])
    subprocess.run([sys.executable, str(tmp_path / "bundle" / "time_coreml.py"), "--simulate", "--out",
                    str(tmp_path / "results.csv")], check=True, capture_output=True)
    table = LatencyTable.from_csv(tmp_path / "results.csv")
    assert table.meta.backend == "coreml"
    needed = {u.signature_id for u in space_units(space)}
    assert needed == {r["signature_id"] for r in table.rows()}
    assert json.loads(table.rows()[0]["signature"])["kind"]

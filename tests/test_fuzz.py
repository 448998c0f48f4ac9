"""Bad input, fuzzed (Hypothesis), through the command line in-process: campaign configs, spec JSON,
latency tables (CSV import, Parquet files, another device's table) and calibration summaries.

Every input either works (exit 0) or is refused with exit code 2 and one line naming the field and the
value, never a traceback; files already written are never damaged (a failed `lut import --out T` leaves
T as it was). The number of inputs tried per target is counted; set ``VIDNAS_FUZZ_REPORT=FILE`` to
have the counts written as JSON. Profiles: ``ci`` (default: derandomised, so CI is repeatable) and
``explore`` (``VIDNAS_FUZZ=explore``: ten times the examples, fresh ones each run).
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vidnas.cli._app import app

EXAMPLES = {"config_text": 200, "config_tree": 200, "config_field": 300, "spec_text": 100, "spec_field": 300,
            "csv_import": 200, "parquet_bytes": 200, "table_meta": 200, "calibration": 200}
SCALE = 10 if os.environ.get("VIDNAS_FUZZ") == "explore" else 1
TRIED: dict[str, int] = {}
# A refusal names the field and the value (`field` = value), or is a table refusal that names both
# (another backend or device, entries the table lacks).
ERROR_LINE = re.compile(r"^error: (`[^`\n]+` = |the table (was measured with|has no entry))", re.S)


def fuzz(target: str):
    return settings(max_examples=EXAMPLES[target] * SCALE, deadline=None, database=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    path = os.environ.get("VIDNAS_FUZZ_REPORT")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"profile": "explore" if SCALE > 1 else "ci", "inputs_tried": TRIED,
                                          "max_examples": {k: v * SCALE for k, v in EXAMPLES.items()}}, indent=2))


def tried(target: str) -> None:
    """Count one fuzzed input of ``target``."""
    TRIED[target] = TRIED.get(target, 0) + 1


def run_cli(*args: str, ok: tuple[int, ...] = (0, 2)):
    """Invoke the CLI in-process; assert exit 0 or 2, and that a refusal is one named line."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception} for {args}"
    assert result.exit_code in ok, (result.exit_code, result.output[-1500:])
    if result.exit_code == 2:
        assert "Traceback" not in result.stderr
        assert ERROR_LINE.match(result.stderr.strip()), result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
    return result


def named(result, field: str) -> bool:
    return result.stderr.startswith(f"error: `{field}`")


# Values ----------------------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12))
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(string.ascii_lowercase + "_.", max_size=10), inner, max_size=4),
                     max_leaves=12)


def dump_yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, allow_unicode=True)


# 1. Campaign configs ---------------------------------------------------------------------------------

VALID_CONFIG = {
    "name": "fuzz", "space": {"name": "tiny-enum", "frames": 8},
    "target": {"roofline": "laptop-cpu", "roofline_dtype": "float32", "batch": 1},
    "video": {"steps": 4, "cfg": "none"},
    "objectives": [{"metric": "latency_ms", "direction": "minimize"}, {"metric": "params", "direction": "maximize"}],
    "constraints": {"params": 2_000_000},
    "sampler": {"name": "nsga2", "seed": 0, "population_size": 8},
    "trials": 4, "workers": 1, "ray": {"cpus_per_trial": 1, "resources": {"fast": 1}}, "heartbeat_s": 2,
    "stale_after_s": 10,
}


def field_paths(value, prefix=()):
    """Every path into the valid config (mapping keys and list indices)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from field_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from field_paths(v, (*prefix, i))


CONFIG_PATHS = [p for p in field_paths(VALID_CONFIG) if p]


def replaced(tree, path, value):
    import copy

    tree = copy.deepcopy(tree)
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return tree


def check_config(tmp_path, text: str, target: str):
    tried(target)
    path = tmp_path / "campaign.yaml"
    path.write_text(text, encoding="utf-8")
    return run_cli("search", str(path), "--check", "--json")


@fuzz("config_text")
@given(text=st.text(max_size=200) | st.sampled_from(["[", "{a: [1, 2", "a: 2001-13-40", "- - -", "!!python/int 3",
                                                     "a: &x [*x]", "\x00", "trials: 1e400", "? [a]\n: 1"]))
def test_config_as_any_text(tmp_path, text):
    check_config(tmp_path, text, "config_text")


@fuzz("config_tree")
@given(tree=trees)
def test_config_as_any_yaml_document(tmp_path, tree):
    result = check_config(tmp_path, dump_yaml(tree), "config_tree")
    if not isinstance(tree, dict) and tree is not None:
        assert result.exit_code == 2 and named(result, "config")


@fuzz("config_field")
@given(path=st.sampled_from(CONFIG_PATHS), value=trees, unknown=st.booleans())
def test_config_with_one_field_changed(tmp_path, path, value, unknown):
    if unknown:  # a key no section knows
        path = (*path[:-1], "no_such_field") if isinstance(path[-1], str) else (*path, "no_such_field")
        try:
            tree = replaced(VALID_CONFIG, path, value)
        except (TypeError, KeyError, IndexError):
            assume(False)
    else:
        tree = replaced(VALID_CONFIG, path, value)
    result = check_config(tmp_path, dump_yaml(tree), "config_field")
    if unknown and path[:2] != ("ray", "resources") and path[0] != "constraints":  # there any name is allowed
        assert result.exit_code == 2 and "no_such_field" in result.stderr.split("=")[0], result.stderr


def test_the_valid_config_is_valid(tmp_path):
    """The configs fuzzed above start from one that passes, so that each change is what is judged."""
    assert check_config(tmp_path, dump_yaml(VALID_CONFIG), "config_field").exit_code == 0


def test_config_top_level_list_or_string_is_refused_by_name(tmp_path):
    for text in ("- trials: 3\n", "just a string\n", "42\n", "[]\n"):  # (counted with the text target)
        result = check_config(tmp_path, text, "config_text")
        assert result.exit_code == 2 and named(result, "config"), result.stderr


# 2. Spec JSON ----------------------------------------------------------------------------------------


def tiny_spec() -> dict:
    from vidnas.search_space import preset_spec

    return json.loads(preset_spec("tiny").to_json())


SPEC = tiny_spec()
SPEC_PATHS = [p for p in field_paths(SPEC) if p]
small_trees = st.recursive(st.none() | st.booleans() | st.integers(-3, 40) | st.floats(-4, 64) | st.just(float("nan"))
                           | st.text(max_size=8) | st.sampled_from(["conv1d", "attn1d", "none", "shift", "unet"]),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(string.ascii_lowercase, max_size=8), inner, max_size=3),
                           max_leaves=8)


@fuzz("spec_text")
@given(text=st.text(max_size=120) | st.binary(max_size=64).map(lambda b: b.decode("latin-1")))
def test_spec_as_any_text(tmp_path, text):
    tried("spec_text")
    path = tmp_path / "spec.json"
    path.write_text(text, encoding="utf-8")
    run_cli("space", "show", str(path), "--json")


@fuzz("spec_field")
@given(path=st.sampled_from(SPEC_PATHS), value=small_trees)
def test_spec_with_one_field_changed(tmp_path, path, value):
    tried("spec_field")
    spec = replaced(SPEC, path, value)
    file = tmp_path / "spec.json"
    file.write_text(json.dumps(spec), encoding="utf-8")
    run_cli("space", "show", str(file), "--json")


# 3. Latency tables ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    """A small valid table (debug backend, the tiny space at batch 1), built once."""
    from vidnas.latency_models import DebugBackend, HarnessConfig, build_table
    from vidnas.search_space import get_space

    path = tmp_path_factory.mktemp("table") / "valid.parquet"
    build_table(get_space("tiny"), DebugBackend(), path, config=HarnessConfig.quick())
    return path


def intact(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before, f"{path} was changed by a refused command"
    assert not list(path.parent.glob(f".{path.name}.tmp*")), "a temporary file was left behind"


CSV_COLUMNS = ["batch", "backend", "device", "device_name", "threads", "trusted", "cv", "kind", "p10_ms", "source",
               "ratio", "runs", "dtype", "reason", "signature", "measured_at", "surprise"]
cells = (st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
         | st.text(string.printable, max_size=10))


@fuzz("csv_import")
@given(required=st.sampled_from([["signature_id", "median_ms"], ["signature_id"], []]),
       extra=st.lists(st.sampled_from(CSV_COLUMNS), max_size=6, unique=True),
       rows=st.lists(st.lists(cells, min_size=8, max_size=8), max_size=5), raw=st.none() | st.text(max_size=80),
       backend=st.sampled_from([[], ["--backend", "debug", "--device", "cpu"]]))
def test_csv_import_never_damages_the_existing_table(tmp_path, table_file, required, extra, rows, raw, backend):
    import csv
    import io

    tried("csv_import")
    columns = required + extra
    out = tmp_path / "existing.parquet"
    out.write_bytes(table_file.read_bytes())
    before = out.read_bytes()
    source = tmp_path / "in.csv"
    if raw is not None:
        source.write_text(raw, encoding="utf-8")
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row[: len(columns)]])
        source.write_text(buffer.getvalue(), encoding="utf-8")
    result = run_cli("lut", "import", str(source), "--out", str(out), "--json", *backend)
    if result.exit_code == 2:
        intact(out, before)
    else:  # what was imported reads back, and predicts (or names what it lacks)
        IMPORTED[0] += 1
        run_cli("lut", "show", str(out), "--json", ok=(0,))
        run_cli("latency", "predict", "tiny", "--lut", str(out), "--json")


IMPORTED = [0]  # CSV inputs that imported (the rest were refused)


@fuzz("parquet_bytes")
@given(data=st.data())
def test_corrupt_or_truncated_parquet(tmp_path, table_file, data):
    tried("parquet_bytes")
    blob = bytearray(table_file.read_bytes())
    mode = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if mode == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif mode == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    else:
        blob = bytearray(data.draw(st.binary(max_size=256)))
    path = tmp_path / "t.parquet"
    path.write_bytes(bytes(blob))
    run_cli("lut", "show", str(path), "--json")
    run_cli("latency", "predict", "tiny", "--lut", str(path), "--json")


META_KEYS = ["backend", "device", "device_name", "dtype", "threads", "fingerprint", "harness", "space", "space_shape",
             "reference", "correction", "end_to_end", "format", "version"]


@fuzz("table_meta")
@given(key=st.sampled_from(META_KEYS), value=trees, column=st.none() | st.sampled_from(["median_ms", "batch",
                                                                                         "signature_id", "trusted"]),
       cell=cells)
def test_table_with_bad_metadata_or_rows(tmp_path, table_file, key, value, column, cell):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tried("table_meta")
    table = pq.read_table(table_file)
    meta = json.loads(table.schema.metadata[b"vidnas"])
    meta[key] = value
    if column is not None:
        frame = table.to_pandas()
        frame[column] = frame[column].astype(object)
        frame.loc[0, column] = cell
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            assume(False)
    table = table.replace_schema_metadata({b"vidnas": json.dumps(meta).encode()})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    run_cli("lut", "show", str(path), "--json")
    run_cli("latency", "predict", "tiny", "--lut", str(path), "--json")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "coreml"])
@pytest.mark.parametrize("device", ["cpu", "cuda", "ane"])
def test_a_table_from_another_backend_or_device_is_refused(tmp_path, table_file, backend, device):
    tried("foreign_table")
    result = run_cli("latency", "predict", "tiny", "--lut", str(table_file), "--backend", backend,
                     "--json")
    assert result.exit_code == 2 and "backend" in result.stderr
    config = tmp_path / "c.yaml"
    config.write_text(dump_yaml({"target": {"backend": backend, "device": device, "lut": str(table_file)},
                                 "objectives": [{"metric": "latency_ms", "direction": "minimize"}]}))
    result = run_cli("search", str(config), "--check")
    assert result.exit_code == 2 and named(result, "config.target.lut")


# 4. Calibration summaries ---------------------------------------------------------------------------------


def valid_summary() -> dict:
    return {"format": "vidnas.calibration", "version": 1, "config": {"space": "tiny"},
            "proxies": {"synflow": {"kendall": 0.3, "kendall_ci": [0.1, 0.5]}},
            "noise_ceiling": {"kendall_between_seeds": 0.8},
            "ensemble": {"kendall": 0.4, "kendall_ci": [0.2, 0.6],
                         "members_all_data": [{"proxy": "synflow", "sign": 1}, {"proxy": "params", "sign": -1}]}}


SUMMARY_PATHS = [p for p in field_paths(valid_summary()) if p]


@fuzz("calibration")
@given(path=st.none() | st.sampled_from(SUMMARY_PATHS), value=trees, text=st.none() | st.text(max_size=60),
       rows=st.sampled_from(["valid", "missing", "garbage", "no_column", "strings"]))
def test_ensemble_objective_with_a_bad_calibration_summary(tmp_path, path, value, text, rows):
    import pandas as pd

    tried("calibration")
    directory = tmp_path / "calibration"
    directory.mkdir(exist_ok=True)
    summary = directory / "summary.json"
    if text is not None:
        summary.write_text(text, encoding="utf-8")
    else:
        summary.write_text(json.dumps(replaced(valid_summary(), path, value) if path else valid_summary()))
    table = directory / "rows.parquet"
    table.unlink(missing_ok=True)
    if rows == "valid":
        pd.DataFrame({"proxy.synflow": [1.0, 2.0, 3.0], "proxy.params": [3.0, 1.0, 2.0]}).to_parquet(table)
    elif rows == "garbage":
        table.write_bytes(b"PAR1 not really")
    elif rows == "no_column":
        pd.DataFrame({"proxy.synflow": [1.0]}).to_parquet(table)
    elif rows == "strings":
        pd.DataFrame({"proxy.synflow": ["a"], "proxy.params": ["b"]}).to_parquet(table)
    config = tmp_path / "c.yaml"
    config.write_text(dump_yaml({**VALID_CONFIG, "objectives": [
        {"metric": "latency_ms", "direction": "minimize"},
        {"metric": f"ensemble:{summary}", "direction": "maximize"}]}))
    result = run_cli("search", str(config), "--check")
    if text is None and path is None and rows == "valid":
        assert result.exit_code == 0, result.stderr
    elif rows != "valid":
        assert result.exit_code == 2

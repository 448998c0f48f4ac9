"""One suite for every registered latency backend (built-in and plugins): the protocol, a stable
fingerprint, refusal of unknown options, timing one unit, and a one-entry table that resumes."""

from __future__ import annotations

import pytest

from vidnas._errors import SpecError
from vidnas.latency_models import (
    Backend,
    BackendUnavailableError,
    HarnessConfig,
    LatencyTable,
    fingerprint_id,
    get_backend,
    get_backend_def,
    list_backends,
    measure,
    measure_units,
    open_table,
)
from vidnas.search_space import UnitHarness, build_plan, preset_spec, unit_example_inputs

NAMES = list_backends()


def backend(name: str, tmp_path) -> Backend:
    be = get_backend(name, threads=1)
    if hasattr(be, "cache_dir"):  # exported models go to the test's directory
        be.cache_dir = tmp_path
    return be


def tiny_unit():
    spec = preset_spec("tiny")
    plan = next(p for p in build_plan(spec) if p.kind == "resblock")
    return spec, plan


def test_the_built_in_backends_are_registered():
    assert {"torch", "onnxruntime", "coreml", "debug"} <= set(NAMES)
    with pytest.raises(SpecError) as info:
        get_backend("tensorrt")
    assert info.value.field == "backend" and "debug" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_protocol_and_stable_fingerprint(name, tmp_path):
    be = backend(name, tmp_path)
    assert isinstance(be, Backend) and be.name == name
    fp = be.fingerprint()
    for key in ("backend", "device", "device_name", "dtype", "options", "versions", "os", "cpu"):
        assert key in fp, key
    assert fp["backend"] == name
    assert fingerprint_id(fp) == fingerprint_id(backend(name, tmp_path).fingerprint())


@pytest.mark.parametrize("name", NAMES)
def test_unknown_options_are_refused_by_name(name):
    if get_backend_def(name).options is None:
        pytest.skip(f"backend {name} takes any options")
    with pytest.raises(SpecError) as info:
        get_backend(name, not_an_option=3)
    assert info.value.field == "options.not_an_option" and info.value.value == 3
    with pytest.raises(SpecError) as info:
        get_backend(name, options_field="config.target.options", not_an_option=3)
    assert info.value.field == "config.target.options.not_an_option"


@pytest.mark.parametrize("name", NAMES)
def test_options_are_a_typed_schema_whose_defaults_pass(name, tmp_path):
    """Every declared option is typed and documented; its default passes its own check, and the backend
    made from every default has the fingerprint of the backend made with none."""
    definition = get_backend_def(name)
    if definition.options is None:
        pytest.skip(f"backend {name} takes any options")
    for option in definition.options:
        assert option.kind in (bool, int, float, str) or option.default is None, option
        assert option.check(option.default, option.name) == option.default
        wrong = "not a number" if option.kind in (int, float, bool) else None
        if wrong is not None:
            with pytest.raises(SpecError) as info:
                definition.check_options({option.name: wrong}, "-O")
            assert info.value.field == f"-O.{option.name}" and info.value.value == wrong
    defaults = definition.check_options({})
    be = get_backend(name, threads=1, **defaults)
    assert fingerprint_id(be.fingerprint()) == fingerprint_id(get_backend(name, threads=1).fingerprint())


@pytest.mark.parametrize("name", NAMES)
def test_times_a_unit_or_says_why_not(name, tmp_path):
    be = backend(name, tmp_path)
    spec, plan = tiny_unit()
    module = UnitHarness(plan).eval()
    inputs = unit_example_inputs(plan, spec.backbone, 1)
    if not get_backend_def(name).measures_here:
        with pytest.raises(BackendUnavailableError):
            be.prepare(module, inputs, key="unit")
        return
    m = measure(be.prepare(module, inputs, key="unit"), HarnessConfig.quick())
    assert m.median_ms > 0 and m.runs >= 5


@pytest.mark.parametrize("name", [n for n in NAMES if get_backend_def(n).measures_here])
def test_a_one_entry_table_is_saved_and_reopened(name, tmp_path):
    be = backend(name, tmp_path)
    spec, plan = tiny_unit()
    path = tmp_path / "t.parquet"
    config = HarnessConfig.quick()
    table = measure_units(open_table(path, be, None, config), [plan], be, 1, spec.backbone, path, config)
    again = LatencyTable.load(path)
    assert len(again) == 1 and again.meta.backend == name
    assert again.get(plan.signature_id, 1)["fingerprint_id"] == fingerprint_id(be.fingerprint())
    assert again.get(plan.signature_id, 1)["median_ms"] == table.get(plan.signature_id, 1)["median_ms"]
    reopened = open_table(path, be, None, config)  # same backend: resumes the table
    assert len(reopened) == 1

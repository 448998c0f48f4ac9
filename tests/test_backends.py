"""Every backend behind the one protocol; Core ML converts here and refuses to time off macOS."""

from __future__ import annotations

import platform

import pytest
import torch

from vidnas._errors import SpecError
from vidnas.latency_models import (
    Backend,
    BackendUnavailableError,
    CoreMLBackend,
    DebugBackend,
    HarnessConfig,
    OnnxRuntimeBackend,
    TorchBackend,
    get_backend,
    measure,
)
from vidnas.search_space import UnitHarness, build_plan, preset_spec, unit_example_inputs


def tiny_unit(kind: str = "resblock"):
    spec = preset_spec("tiny")
    plan = next(p for p in build_plan(spec) if p.kind == kind)
    bb = spec.backbone
    inputs = unit_example_inputs(plan, bb, 1)
    return UnitHarness(plan).eval(), inputs


RUNNABLE = [TorchBackend(threads=1), OnnxRuntimeBackend(threads=1), DebugBackend()]


@pytest.mark.parametrize("backend", RUNNABLE + [CoreMLBackend()], ids=lambda b: b.name)
def test_backend_protocol_and_fingerprint(backend):
    assert isinstance(backend, Backend)
    fp = backend.fingerprint()
    for key in ("backend", "device", "device_name", "dtype", "options", "versions", "os", "cpu"):
        assert key in fp
    assert fp["backend"] == backend.name


@pytest.mark.parametrize("backend", RUNNABLE, ids=lambda b: b.name)
def test_backend_runs_a_unit(backend, tmp_path):
    if isinstance(backend, OnnxRuntimeBackend):
        backend.cache_dir = tmp_path
    module, inputs = tiny_unit()
    run = backend.prepare(module, inputs, key="unit")
    m = measure(run, HarnessConfig.quick())
    assert m.median_ms > 0 and m.runs >= 5


def test_onnxruntime_records_graph_optimization_and_caches_exports(tmp_path):
    backend = OnnxRuntimeBackend(threads=1, graph_optimization="basic", cache_dir=tmp_path)
    assert backend.fingerprint()["options"] == {"provider": "CPUExecutionProvider", "graph_optimization": "basic",
                                                "optimize_export": True, "spinning": False}
    module, inputs = tiny_unit("attn_in")
    backend.prepare(module, inputs, key="k")
    first = (tmp_path / "k.onnx").stat().st_mtime_ns
    backend.prepare(module, inputs, key="k")
    assert (tmp_path / "k.onnx").stat().st_mtime_ns == first


def test_onnxruntime_threads_do_not_spin_between_calls_unless_asked():
    """Spinning intra-op threads of one session slow the next session's call (the harness interleaves
    sessions): off by default, recorded in the fingerprint, and `spinning=true` turns it back on."""
    key = "session.intra_op.allow_spinning"
    assert OnnxRuntimeBackend(threads=2).session_options().get_session_config_entry(key) == "0"
    spinning = get_backend("onnxruntime", threads=2, spinning=True)
    assert spinning.session_options().get_session_config_entry(key) == "1"
    assert spinning.fingerprint()["options"]["spinning"] is True
    with pytest.raises(SpecError) as info:
        OnnxRuntimeBackend(spinning="yes")
    assert info.value.field == "spinning"


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML times models on macOS")
def test_coreml_converts_but_refuses_to_time_off_macos():
    backend = CoreMLBackend(compute_units="CPU_AND_NE", precision="float16")
    module, inputs = tiny_unit()
    model = backend.convert(module, inputs)
    assert model.get_spec().WhichOneof("Type") == "mlProgram"
    with pytest.raises(BackendUnavailableError, match="lut export --backend coreml"):
        backend.prepare(module, inputs)
    assert backend.fingerprint()["options"] == {"compute_units": "CPU_AND_NE", "precision": "float16"}


def test_torch_backend_fixes_threads():
    before = torch.get_num_threads()
    try:
        backend = TorchBackend(threads=1)
        module, inputs = tiny_unit()
        backend.prepare(module, inputs)
        assert torch.get_num_threads() == 1 and backend.fingerprint()["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_debug_backend_is_deterministic_and_follows_flops():
    backend = DebugBackend(gflops=10.0, overhead_ms=0.1)
    module, inputs = tiny_unit()
    a = measure(backend.prepare(module, inputs, key="x"), HarnessConfig.quick())
    b = measure(backend.prepare(module, inputs, key="x"), HarnessConfig.quick())
    assert a.median_ms == b.median_ms
    from vidnas.search_space import unit_cost

    assert a.median_ms == pytest.approx(0.1 + unit_cost(module.plan, 1).flops / 1e7)


def test_backend_errors_name_the_field():
    for kwargs, field in (({"name": "tensorrt"}, "backend"), ({"name": "torch", "device": "tpu"}, "device"),
                          ({"name": "torch", "threads": 0}, "threads"),
                          ({"name": "onnxruntime", "graph_optimization": "max"}, "options.graph_optimization"),
                          ({"name": "onnxruntime", "spinning": "yes"}, "options.spinning"),
                          ({"name": "torch", "dtype": "int8"}, "options.dtype"),
                          ({"name": "coreml", "compute_units": "TPU"}, "options.compute_units")):
        with pytest.raises(SpecError) as info:
            get_backend(**kwargs)
        assert info.value.field == field
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="CUDA"):
            TorchBackend(device="cuda").fingerprint()
        with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
            OnnxRuntimeBackend(device="cuda").fingerprint()


# The registry, the options schema, the campaign's target ---------------------------------------------


def test_the_registry_does_not_import_the_backends():
    """The registry and the package import no implementation: vidnas's entry points load them, like a plugin's."""
    import subprocess
    import sys

    code = ("import sys, vidnas.latency_models as L; loaded = lambda: sorted(m for m in sys.modules "
            "if m.startswith('vidnas.latency_models.backends.')); assert loaded() == [], loaded(); "
            "names = L.list_backends(); assert names[:4] == ['torch', 'onnxruntime', 'coreml', 'debug'], names; "
            "assert len(loaded()) == 4, loaded()")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_options_are_typed_and_coerced():
    from vidnas.latency_models import get_backend_def

    definition = get_backend_def("onnxruntime")
    assert [o.name for o in definition.options] == ["graph_optimization", "cache_dir", "dtype", "optimize_export",
                                                     "spinning"]
    assert definition.check_options({"graph_optimization": "basic"}) == {
        "graph_optimization": "basic", "dtype": "float32", "optimize_export": True, "spinning": False}
    debug = get_backend("debug", gflops=20)  # an integer where a number is due
    assert debug.gflops == 20.0 and isinstance(debug.gflops, float)
    with pytest.raises(SpecError) as info:
        get_backend("debug", seed=1.5, options_field="-O")
    assert info.value.field == "-O.seed" and info.value.value == 1.5


def test_a_registered_backend_declares_what_is_asked_of_it():
    """No backend name is tested outside its module: whether it times here, the datasheet of its hardware and
    whether it writes bundles are fields of its registration."""
    from vidnas.latency_models import TableMeta, closest_datasheet, get_backend_def

    coreml = get_backend_def("coreml")
    assert coreml.datasheet == "phone-npu" and coreml.bundle is not None and "{out}" in coreml.bundle.next_steps
    assert coreml.measures_here == (platform.system() == "Darwin")
    assert get_backend_def("onnxruntime").bundle is None and get_backend_def("torch").datasheet is None

    def meta(backend: str, device: str = "cpu") -> TableMeta:
        return TableMeta(backend=backend, device=device, device_name="x", dtype="float16", threads=None,
                         fingerprint={})

    assert closest_datasheet(meta("coreml", "ane"))[0] == "phone-npu"
    assert closest_datasheet(meta("tflite"))[0] == "laptop-cpu"  # imported from a backend not installed here


def test_register_backend_derives_or_takes_options():
    import dataclasses

    from vidnas.latency_models import BACKENDS, BackendOption, get_backend_def, register_backend

    @dataclasses.dataclass
    class Derived(DebugBackend):
        gflops: float = 5.0
        name: str = "derived_test"

    try:
        register_backend("derived_test", summary="test")(Derived)  # a dataclass: its fields are the options
        options = {o.name: o for o in get_backend_def("derived_test").options}
        assert options["gflops"].kind is float and options["gflops"].default == 5.0 and "device" not in options
        with pytest.raises(SpecError, match="must be a number"):
            get_backend("derived_test", gflops="fast")
        with pytest.warns(UserWarning, match="registered again"):
            register_backend("derived_test", summary="test", options=(BackendOption("gflops", float, 5.0, "speed"),)
                             )(Derived)
        with pytest.raises(SpecError) as info:
            get_backend("derived_test", noise=0.1)
        assert info.value.field == "options.noise" and "['gflops']" in str(info.value)
        with pytest.raises(SpecError, match="reserved"):
            register_backend("derived_test", summary="test", options=(BackendOption("device", str, "x", ""),))(Derived)
    finally:
        BACKENDS.unregister("derived_test")


def test_a_campaign_target_takes_the_backends_options():
    from vidnas.runners import parse_config

    config = parse_config({"target": {"backend": "onnxruntime", "options": {"graph_optimization": "basic"}}})
    assert config.target.options == {"graph_optimization": "basic", "dtype": "float32", "optimize_export": True,
                                     "spinning": False}
    assert parse_config(config.to_dict()).target == config.target  # written and read back (config.yaml, resume)
    debug = parse_config({"target": {"backend": "debug", "options": {"gflops": 20, "noise": 0.1}}}).target
    assert debug.options["gflops"] == 20.0 and debug.options["noise"] == 0.1
    for options, field in (({"graph_optimisation": "basic"}, "config.target.options.graph_optimisation"),
                           ({"graph_optimization": "max"}, "config.target.options.graph_optimization"),
                           ({"spinning": "yes"}, "config.target.options.spinning")):
        with pytest.raises(SpecError) as info:
            parse_config({"target": {"backend": "onnxruntime", "options": options}})
        assert info.value.field == field and info.value.value == next(iter(options.values()))
    with pytest.raises(SpecError) as info:
        parse_config({"target": {"options": ["graph_optimization=basic"]}})
    assert info.value.field == "config.target.options"


def test_the_deprecated_graph_optimization_field_maps_onto_the_options():
    from vidnas.runners import parse_config

    with pytest.warns(DeprecationWarning, match="config.target.options.graph_optimization"):
        target = parse_config({"target": {"backend": "onnxruntime", "graph_optimization": "extended"}}).target
    assert target.options["graph_optimization"] == "extended"
    assert "graph_optimization" not in target.__dataclass_fields__
    with pytest.warns(DeprecationWarning, match="ignored"):  # vidnas 0.1 wrote it for every backend; only ORT took it
        assert parse_config({"target": {"backend": "debug", "graph_optimization": "all"}}).target.options["seed"] == 0
    with pytest.warns(DeprecationWarning), pytest.raises(SpecError) as info:
        parse_config({"target": {"graph_optimization": "basic", "options": {"graph_optimization": "all"}}})
    assert info.value.field == "config.target.graph_optimization"
    with pytest.warns(DeprecationWarning), pytest.raises(SpecError) as info:
        parse_config({"target": {"graph_optimization": "max"}})
    assert info.value.field == "config.target.graph_optimization" and info.value.value == "max"


def test_a_campaign_builds_its_table_with_the_targets_options(tmp_path):
    from vidnas.runners import parse_config
    from vidnas.runners._driver import resolve_table
    from vidnas.search_space import get_space

    config = parse_config({"space": {"name": "tiny-enum"}, "target": {
        "backend": "debug", "options": {"gflops": 20}, "build": {"quick": True, "max_seconds": 0.05, "cache": False}}})
    table, path = resolve_table(config, get_space("tiny-enum"), tmp_path)
    assert path == tmp_path / "table.parquet"
    assert table.meta.fingerprint["options"]["gflops"] == 20.0

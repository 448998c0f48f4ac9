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
                          ({"name": "onnxruntime", "graph_optimization": "max"}, "graph_optimization")):
        with pytest.raises(SpecError) as info:
            get_backend(**kwargs)
        assert info.value.field == field
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="CUDA"):
            TorchBackend(device="cuda").fingerprint()
        with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
            OnnxRuntimeBackend(device="cuda").fingerprint()

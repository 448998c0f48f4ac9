"""GPU timing paths: CUDA events for torch, I/O binding for ONNX Runtime, dtypes in the fingerprint.

The tests that need a GPU skip with the reason when none is present; they have not run on
a machine without one. The rest check, on any machine, what the GPU paths rely on.
"""

from __future__ import annotations

import pytest
import torch

from vidnas.latency_models import (
    BackendUnavailableError,
    HarnessConfig,
    OnnxRuntimeBackend,
    TorchBackend,
    fingerprint_id,
    measure,
)
from vidnas.latency_models._reference import reference_plan
from vidnas.latency_models._units import unit_runner
from vidnas.search_space import BackboneSpec

NO_CUDA = "no CUDA device on this machine: the GPU timing path was not exercised here"
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)


def _ort_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


requires_ort_cuda = pytest.mark.skipif(not _ort_cuda(), reason="no CUDA device or no onnxruntime-gpu here: the "
                                                               "ONNX Runtime CUDA execution provider was not exercised")
QUICK = HarnessConfig.quick()
BACKBONE = BackboneSpec(channels=(64,), layers_per_block=(1,), attention=(False,), cross_attention_dim=0)


def test_the_harness_times_with_a_runners_own_device_timer():
    """A runner with ``time_calls`` (CUDA events on a GPU) is timed by it, not by the host clock."""
    calls = []

    def run() -> None:
        calls.append("run")

    def time_calls(n: int) -> float:
        calls.append(n)
        return 7.0  # ms per call, as the device reports it

    run.time_calls = time_calls
    m = measure(run, HarnessConfig(warmup_runs=1, warmup_seconds=0.0, min_runs=5, max_runs=5,
                                   min_sample_seconds=0.02))
    assert m.median_ms == 7.0 and m.runs == 5 and m.inner_loops == 3  # 20 ms samples of 7 ms calls
    assert calls.count(3) == 5


def test_dtypes_are_recorded_and_keep_figures_apart():
    fps = {d: TorchBackend(dtype=d, threads=1).fingerprint() for d in ("float32", "float16", "bfloat16")}
    assert {d: fp["dtype"] for d, fp in fps.items()} == {d: d for d in fps}
    assert len({fingerprint_id(fp) for fp in fps.values()}) == 3
    assert fps["float32"]["options"] == {"mode": "eager", "cuda": None}  # CPU fingerprints unchanged


def test_bfloat16_runs_on_the_cpu():
    run = unit_runner(reference_plan(), TorchBackend(dtype="bfloat16", threads=1), 1, BACKBONE)
    assert not hasattr(run, "time_calls")  # the host clock times CPU work
    assert measure(run, QUICK).median_ms > 0


def test_asking_for_a_missing_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
        unit_runner(reference_plan(), TorchBackend(device="cuda"), 1, BACKBONE)
    backend = OnnxRuntimeBackend(device="cuda:1")
    assert backend.device_id == 1 and backend.provider == "CUDAExecutionProvider"
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        backend.fingerprint()


@requires_cuda
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_on_cuda_is_timed_with_events(dtype):
    backend = TorchBackend(device="cuda", dtype=dtype)
    fp = backend.fingerprint()
    assert fp["dtype"] == dtype and fp["options"]["timer"] == "cuda_events"
    assert {"cudnn", "tf32_matmul", "tf32_cudnn", "capability"} <= set(fp["options"])
    run = unit_runner(reference_plan(), backend, 1, BACKBONE)
    assert hasattr(run, "time_calls")
    assert 0 < run.time_calls(3) < 10_000
    m = measure(run, QUICK)
    assert m.median_ms > 0 and m.runs >= QUICK.min_runs


@requires_ort_cuda
def test_onnxruntime_cuda_keeps_inputs_on_the_device(tmp_path):
    backend = OnnxRuntimeBackend(device="cuda", cache_dir=tmp_path)
    fp = backend.fingerprint()
    assert fp["options"]["provider"] == "CUDAExecutionProvider" and fp["options"]["device_id"] == 0
    run = unit_runner(reference_plan(), backend, 1, BACKBONE)
    assert all(v.device_name() == "cuda" for v in run.inputs_on_device.values())
    assert measure(run, QUICK).median_ms > 0

"""Video-specific costs: streaming with caches, growth with frame count, memory as a constraint."""

from __future__ import annotations

import pytest

from vidnas._errors import SpecError
from vidnas.latency_models import DebugBackend, HarnessConfig, measure_frame_scaling, measure_streaming, memory_bytes
from vidnas.search_space import preset_spec


def causal_tiny():
    base = preset_spec("tiny")
    return base.replace_choices({s: ({"op": "conv1d", "params": {"causal": True}} if s.endswith(".res")
                                     else "attn1d_causal") for s in base.temporal})


def test_streaming_reports_first_chunk_and_steady_fps():
    result = measure_streaming(causal_tiny(), chunk_frames=2, steps=2, repeats=1, threads=1)
    assert result["chunks"] == 4 and len(result["per_chunk_ms"]) == 4
    assert result["first_chunk_ms"] > 0 and result["steady_fps"] > 0
    assert result["passes_per_chunk"] == 3


def test_streaming_refuses_non_causal_designs():
    with pytest.raises(SpecError, match="causal"):
        measure_streaming(preset_spec("tiny"), chunk_frames=2, steps=1)


def test_frame_scaling_separates_linear_from_quadratic_ops():
    rows = measure_frame_scaling([("conv1d", {}), ("attn3d", {})], DebugBackend(overhead_ms=0.0),
                                 frames=[8, 16, 32], channels=64, height=8, width=8, config=HarnessConfig.quick())
    exponent = {r["op"]: r["exponent"] for r in rows}
    assert exponent["conv1d"] == pytest.approx(1.0, abs=0.01)
    assert exponent["attn3d"] > 1.3


def test_memory_grows_with_batch_and_halves_with_float16():
    spec = preset_spec("tiny")
    m1, m2 = memory_bytes(spec), memory_bytes(spec, batch=2)
    assert m2["activation_bytes"] > 1.8 * m1["activation_bytes"] and m2["weights_bytes"] == m1["weights_bytes"]
    half = memory_bytes(spec, dtype="float16")
    assert half["total_bytes"] * 2 == m1["total_bytes"]

"""Shared fixtures: tiny shapes, deterministic random weights, the op variants tested."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Parameter variants exercised per registered op (defaults are always tested). An op
# registered later gets the default-parameter tests without an entry here.
OP_VARIANTS: dict[str, list[dict]] = {
    "conv1d": [{"causal": True}, {"kernel": 5, "use_temb": True}, {"funnel": 0.5, "temporal_stride": 2},
               {"causal": True, "temporal_stride": 2, "merge": "alpha_temporal", "use_temb": True}],
    "conv3d": [{"causal": True}],
    "conv2plus1d": [{"causal": True, "use_temb": True}],
    "shift": [{"causal": True}],
    "attn1d": [{"pos": "mlp", "ff_in": True, "merge": "alpha_spatial"}, {"funnel": 0.5, "temporal_stride": 2}],
    "attn1d_causal": [{"temporal_stride": 2}, {"pos": "mlp"}],
    "attn1d_window": [{"window": 4, "window_stride": 2}, {"window": 3, "window_stride": 2, "pos": "none"}],
    "attn3d": [{"pos": "mlp"}],
    "attn3d_blockcausal": [{"chunk": 2}, {"chunk": 4, "ff_in": True}],
    "xattn1d": [{"ff_in": True, "pos": "mlp", "merge": "alpha_spatial"}],
}


def op_cases() -> list[tuple[str, dict]]:
    from vidnas.search_space import list_temporal_ops

    cases = []
    for op in list_temporal_ops():
        defaults_valid = op != "attn1d_window"  # its default window (16) exceeds the 8 test frames
        if defaults_valid:
            cases.append((op, {}))
        cases += [(op, v) for v in OP_VARIANTS.get(op, [])]
    return cases


def case_id(case: tuple[str, dict]) -> str:
    op, params = case
    return op + ("[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]" if params else "")


def test_slot_shape():
    from vidnas.search_space import SlotShape

    return SlotShape(channels=32, frames=8, height=4, width=4, temb_channels=64, context_dim=16, context_tokens=3,
                     norm_groups=8, head_dim=16)


test_slot_shape.__test__ = False  # a helper, not a test


def streaming_cases() -> list[tuple[str, dict]]:
    from vidnas.search_space import get_temporal_op

    out = []
    for op, params in op_cases():
        opdef = get_temporal_op(op)
        if opdef.supports_streaming(opdef.canonical_params(params, test_slot_shape(), "case")):
            out.append((op, params))
    return out


@pytest.fixture
def slot_shape():
    return test_slot_shape()


def randomize_(module, seed: int = 0, std: float = 0.2) -> None:
    """Overwrite every parameter with seeded noise, so zero-initialised layers do something."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Every test session caches tables, backbones and supernets in its own directory."""
    if "VIDNAS_CACHE" not in os.environ or not os.environ.get("VIDNAS_TEST_KEEP_CACHE"):
        os.environ["VIDNAS_CACHE"] = str(tmp_path_factory.mktemp("vidnas-cache"))
    yield

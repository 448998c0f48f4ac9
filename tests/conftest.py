"""Shared fixtures: tiny shapes, deterministic random weights, the op variants tested."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# One cache for the session (inherited by the CLI subprocesses): tests neither read a warm user
# cache (CI starts cold) nor leave tables and backbones in it.
os.environ.setdefault("VIDNAS_CACHE", tempfile.mkdtemp(prefix="vidnas-test-cache-"))
# The suite's own workers load the cores: measuring commands run under load, flagged, instead of
# stopping (tests/test_load.py unsets it to see a busy machine stop them).
os.environ.setdefault("VIDNAS_ALLOW_LOAD", "1")


def _build_cli_once() -> None:
    """typer's test runner rebuilds the whole click command tree from the app on every ``invoke``
    (about 30 ms, evaluating every command's annotations); the fuzz tests invoke it thousands of
    times. The tree depends only on the app, so it is built once per app."""
    import typer.main
    import typer.testing

    built: dict[int, tuple[object, object]] = {}

    def get_command(app):
        if id(app) not in built or built[id(app)][0] is not app:
            built[id(app)] = (app, typer.main.get_command(app))
        return built[id(app)][1]

    typer.testing._get_command = get_command


_build_cli_once()


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whatever ran before it (or was deselected): weights
    drawn from the global generators are then the same in CI as here."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)

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


def _accepts(op: str, layout: str) -> bool:
    from vidnas.search_space import get_temporal_op

    layouts = get_temporal_op(op).layouts
    return layout in layouts or "*" in layouts


def op_cases() -> list[tuple[str, dict]]:
    """Every op of the frame contract (the registry's docstring) with its variants."""
    from vidnas.search_space import list_temporal_ops

    cases = []
    for op in list_temporal_ops():
        if not _accepts(op, "frames"):
            continue
        defaults_valid = op != "attn1d_window"  # its default window (16) exceeds the 8 test frames
        if defaults_valid:
            cases.append((op, {}))
        cases += [(op, v) for v in OP_VARIANTS.get(op, [])]
    return cases


# Token ops (the `tokens` contract of _ops_tokens): variants per op, and the slot each is tested
# at (`attn` unless named; a token op registered later gets the default-parameter tests there).
TOKEN_OP_VARIANTS: dict[str, list[dict]] = {
    "tok_full": [{"heads": 1}],
    "tok_window": [{"tile_t": 2, "reach": 0}, {"tile_h": 2, "tile_w": 2, "reach": 1}, {"reach": 0}],
    "tok_blockcausal": [{"chunk": 2}],
    "tok_causal_window": [{"chunk": 2, "window": 1}],
    "tok_ff": [{"funnel": 0.5}],
}
TOKEN_OP_POSITIONS = {"tok_xattn": "cross", "tok_ff": "ff"}


def token_op_cases() -> list[tuple[str, dict]]:
    """Every op of the token contract (``none`` aside) with its variants."""
    from vidnas.search_space import list_temporal_ops

    cases = []
    for op in list_temporal_ops():
        if op == "none" or not _accepts(op, "tokens"):
            continue
        cases.append((op, {}))
        cases += [(op, v) for v in TOKEN_OP_VARIANTS.get(op, [])]
    return cases


def test_token_backbone():
    """A small transformer whose slots the token ops are tested at: D = 32 (2 heads of 16), a 4x4x4 grid."""
    from vidnas.search_space.families.dit.spec import DiTBackbone

    return DiTBackbone(in_channels=4, out_channels=4, heads=2, head_dim=16, depth=1, ffn_dim=64, text_dim=24,
                       text_tokens=5, freq_dim=16, frames=4, latent_height=8, latent_width=8)


test_token_backbone.__test__ = False  # a helper, not a test


def token_slot_shape(op: str):
    return test_token_backbone().slot_shape(TOKEN_OP_POSITIONS.get(op, "attn"))


def joint_token_backbone():
    """The token test backbone with joint text (CogVideoX's styles): 5 text tokens lead the 4x4x4 grid."""
    import dataclasses

    from vidnas.search_space.families.dit.presets import COGVIDEOX_2B

    return dataclasses.replace(COGVIDEOX_2B, in_channels=4, out_channels=4, heads=2, head_dim=16, depth=1,
                               ffn_dim=64, text_dim=24, text_tokens=5, freq_dim=32, time_dim=16, frames=4,
                               latent_height=8, latent_width=8)


def joint_token_slot_shape(op: str):
    return joint_token_backbone().slot_shape(TOKEN_OP_POSITIONS.get(op, "attn"))


def joint_token_op_cases(*, accepted: bool = True) -> list[tuple[str, dict]]:
    """The token cases whose op accepts a joint-text slot (``accepted``), or those it refuses."""
    from vidnas._errors import SpecError
    from vidnas.search_space import get_temporal_op

    out = []
    for op, params in token_op_cases():
        try:
            get_temporal_op(op).canonical_params(params, joint_token_slot_shape(op), "case")
            ok = True
        except SpecError:
            ok = False
        if ok == accepted:
            out.append((op, params))
    return out


def token_streaming_cases() -> list[tuple[str, dict]]:
    from vidnas.search_space import get_temporal_op

    out = []
    for op, params in token_op_cases():
        opdef = get_temporal_op(op)
        if opdef.supports_streaming(opdef.canonical_params(params, token_slot_shape(op), "case")):
            out.append((op, params))
    return out


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

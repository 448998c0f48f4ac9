"""Every registered temporal op, parametrised over the registry: shape, NaN, identity at
initialisation, causality, streaming, cost formula, ONNX export and Core ML conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import (
    case_id,
    joint_token_op_cases,
    joint_token_slot_shape,
    op_cases,
    randomize_,
    streaming_cases,
    test_token_backbone,
    token_op_cases,
    token_slot_shape,
    token_streaming_cases,
)

from vidnas.search_space import TemporalSlot, get_temporal_op, slot_cost
from vidnas.search_space._export import convert_coreml, export_onnx, onnx_input_name

CASES = op_cases()


def build(op: str, params: dict, shape) -> tuple[TemporalSlot, dict]:
    canonical = get_temporal_op(op).canonical_params(params, shape, "test")
    return TemporalSlot(op, canonical, shape).eval(), canonical


def inputs(shape, batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n = batch * shape.frames
    x = torch.randn(n, shape.channels, shape.height, shape.width, generator=gen)
    temb = torch.randn(n, shape.temb_channels, generator=gen)
    context = torch.randn(n, shape.context_tokens, shape.context_dim, generator=gen)
    return x, temb, context


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_shape_and_finite(case, slot_shape):
    op, params = case
    slot, _ = build(op, params, slot_shape)
    randomize_(slot)
    x, temb, ctx = inputs(slot_shape)
    with torch.no_grad():
        y = slot(x, slot_shape.frames, temb, ctx)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_starts_as_identity_or_svd_blend(case, slot_shape):
    """Residual ops start as the identity. SVD's alpha merges start at the blend's initial
    value instead: y = x + w0 * delta with w0 = sigmoid(0.5) (alpha_temporal) or
    1 - sigmoid(0.5) (alpha_spatial)."""
    op, params = case
    slot, canonical = build(op, params, slot_shape)
    x, temb, ctx = inputs(slot_shape)
    with torch.no_grad():
        y = slot(x, slot_shape.frames, temb, ctx)
        merge = canonical.get("merge", "residual")
        if merge == "residual":
            torch.testing.assert_close(y, x, rtol=0, atol=0)
            return
        w0 = 1 / (1 + math.exp(-0.5))
        w0 = w0 if merge == "alpha_temporal" else 1 - w0
        delta = slot.branch(x, slot_shape.frames, temb, ctx) if slot.stride == 1 else None
    assert torch.allclose(slot.branch_weight(), torch.tensor([w0]))
    if delta is not None:
        torch.testing.assert_close(y, x + w0 * delta)
        assert delta.abs().max() > 0, "an alpha-merged op with standard init must not be a no-op"


def _frame(y: torch.Tensor, frames: int, t: int) -> torch.Tensor:
    return y.reshape(-1, frames, *y.shape[1:])[:, t]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_causality(case, slot_shape):
    """Causal ops: changing frames from a causal-block boundary on never changes an output
    frame before it. Non-causal ops that mix time: it does (so the check can fail)."""
    op, params = case
    slot, canonical = build(op, params, slot_shape)
    randomize_(slot, seed=1)
    x, temb, ctx = inputs(slot_shape)
    T = slot_shape.frames
    opdef = get_temporal_op(op)
    causal = opdef.is_causal(canonical)
    block = opdef.causal_block_frames(canonical) if causal else 1
    for boundary in range(block, T, block):
        x2 = x.reshape(-1, T, *x.shape[1:]).clone()
        x2[:, boundary:] += torch.randn_like(x2[:, boundary:])
        x2 = x2.reshape_as(x)
        with torch.no_grad():
            y1, y2 = slot(x, T, temb, ctx), slot(x2, T, temb, ctx)
        past_same = all(torch.equal(_frame(y1, T, s), _frame(y2, T, s)) for s in range(boundary))
        if causal:
            assert past_same, f"{op} is causal but an output frame before {boundary} saw a later frame"
        elif op != "none":
            assert not past_same, f"{op} should mix information from frames >= {boundary} into earlier ones"


@pytest.mark.parametrize("case", streaming_cases(), ids=case_id)
def test_streaming_matches_full_clip(case, slot_shape):
    """Chunk-by-chunk inference with the cache (commit after each chunk) equals the full clip."""
    op, params = case
    slot, canonical = build(op, params, slot_shape)
    randomize_(slot, seed=2)
    x, temb, ctx = inputs(slot_shape, batch=1)
    T = slot_shape.frames
    chunk = canonical.get("chunk", 2)
    with torch.no_grad():
        full = slot(x, T, temb, ctx)
        state: dict = {}
        parts = []
        for start in range(0, T, chunk):
            sl = slice(start, start + chunk)
            preview = slot.stream(x[sl], chunk, state, commit=False, temb=temb[sl], context=ctx[sl])
            parts.append(slot.stream(x[sl], chunk, state, commit=True, temb=temb[sl], context=ctx[sl]))
            torch.testing.assert_close(preview, parts[-1])  # committing does not change the chunk's output
    torch.testing.assert_close(torch.cat(parts), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["res-slot", "attn-slot"])
def test_cost_formula_matches_trace(case, batch, channels_last, slot_shape):
    """The closed-form cost equals a fake-tensor run: params and FLOPs exactly, peak memory
    within 2 %, for inputs laid out as at a ``res`` slot and inside a transformer."""
    import dataclasses

    from vidnas.search_space import BackboneSpec, UnitHarness, UnitPlan, slot_config, unit_example_inputs
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    op, params = case
    _, canonical = build(op, params, slot_shape)
    s = dataclasses.replace(slot_shape, channels_last=channels_last)
    plan = UnitPlan("slot", "temporal", slot_config(op, canonical, s), (s.channels, s.height, s.width),
                    (s.channels, s.height, s.width), s.frames, slot="slot")
    cost = slot_cost(op, canonical, s, batch)

    with torch.device("meta"):
        harness = UnitHarness(plan)
    params_traced = sum(p.numel() for p in harness.parameters())
    with _fake_mode():
        harness = harness.to_empty(device="cpu")
        args = tuple(torch.empty_strided(a.shape, a.stride())
                     for a in unit_example_inputs(plan, BackboneSpec(), batch))
        flops, peak = count_module_call(harness, args, args)
    assert cost.params == params_traced
    assert cost.flops == flops
    if peak:
        assert abs(cost.peak * 4 / peak - 1) < 0.02, (cost.peak * 4, peak)
    else:
        assert cost.peak == 0


class _Wrapped(torch.nn.Module):
    def __init__(self, slot: TemporalSlot, frames: int) -> None:
        super().__init__()
        self.slot, self.frames = slot, frames

    def forward(self, x, temb, ctx):
        return self.slot(x, self.frames, temb, ctx) * 1.0


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_onnx_export_matches_torch(case, slot_shape, tmp_path):
    import onnxruntime as ort

    op, params = case
    slot, _ = build(op, params, slot_shape)
    randomize_(slot, seed=3)
    args = inputs(slot_shape)
    model = _Wrapped(slot, slot_shape.frames).eval()
    with torch.no_grad():
        expected = model(*args).numpy()
    path = export_onnx(model, args, tmp_path / "op.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = {onnx_input_name(i): a.numpy() for i, a in enumerate(args)}
    feeds = {i.name: arrays[i.name] for i in session.get_inputs()}
    (got,) = session.run(None, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_coreml_conversion(case, slot_shape):
    """Conversion only: Core ML prediction needs macOS."""
    op, params = case
    slot, _ = build(op, params, slot_shape)
    model = convert_coreml(_Wrapped(slot, slot_shape.frames), inputs(slot_shape))
    assert model.get_spec().WhichOneof("Type") == "mlProgram"


def test_registry_lists_every_kind_named_by_the_design():
    from vidnas.search_space import list_temporal_ops

    ops = set(list_temporal_ops())
    assert {"none", "conv1d", "conv3d", "conv2plus1d", "attn1d", "attn1d_causal", "attn1d_window", "attn3d",
            "attn3d_blockcausal", "xattn1d", "xattn3d", "shift"} <= ops
    assert all(get_temporal_op(o).cost is not None for o in ops)


def test_registering_an_op_is_one_call_and_warns_on_overwrite(slot_shape):
    from vidnas.search_space import TEMPORAL_OPS, register_temporal_op

    @register_temporal_op("test_scale", summary="multiplies by a learned scalar (test only)")
    def _build(shape, params):
        class Scale(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.s = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x, num_frames, temb=None, context=None):
                return x * self.s

        return Scale()

    try:
        slot, _ = build("test_scale", {}, slot_shape)
        x, _, _ = inputs(slot_shape)
        torch.testing.assert_close(slot(x, slot_shape.frames), x)
        assert slot_cost("test_scale", {}, slot_shape, 1) is None  # no formula: counting traces it
        with pytest.warns(UserWarning, match="registered again"):
            register_temporal_op("test_scale", summary="again")(_build)
    finally:
        TEMPORAL_OPS.unregister("test_scale")


# Token ops (the `tokens` contract of ops/tokens) --------------------------------------------------

TOKEN_CASES = token_op_cases()


def token_build(op: str, params: dict):
    from vidnas.search_space.ops.token_branches import TokenSlot

    shape = token_slot_shape(op)
    canonical = get_temporal_op(op).canonical_params(params, shape, "test")
    return TokenSlot(op, canonical, shape).eval(), canonical, shape


def token_inputs(shape, batch: int = 2, seed: int = 0):
    """``(x, modulation, context, cos, sin)`` for a slot of ``shape``."""
    from vidnas.search_space.ops.token_branches import grid_rotary, rotary_tables

    bb = test_token_backbone()
    gen = torch.Generator().manual_seed(seed)
    grid = (shape.frames, shape.height, shape.width)
    x = torch.randn(batch, math.prod(grid), shape.channels, generator=gen)
    modulation = torch.randn(batch, bb.modulation_rows, shape.channels, generator=gen)
    context = torch.randn(batch, bb.text_tokens, shape.channels, generator=gen)
    cos, sin = grid_rotary(*rotary_tables(bb.head_dim, bb.rope_max_len, bb.rope_theta, bb.rope_split),
                           bb.rope_split, grid)
    return x, modulation, context, cos, sin


class _TokenWrapped(torch.nn.Module):
    """A token slot as a module of plain tensors (for tracing and export)."""

    def __init__(self, slot, grid) -> None:
        super().__init__()
        self.slot, self.grid = slot, grid

    def forward(self, x, modulation, context, cos, sin):
        from vidnas.search_space.ops.token_branches import TokenConditioning

        return self.slot(x, TokenConditioning(self.grid, None, modulation, context, (cos, sin))) * 1.0


def _grid(shape):
    return shape.frames, shape.height, shape.width


@pytest.mark.parametrize("case", TOKEN_CASES, ids=case_id)
def test_token_shape_finite_and_identity_start(case):
    """Shape and finiteness with random weights; with its own initialisation every token op starts as
    the identity (zero output projection)."""
    op, params = case
    slot, _, shape = token_build(op, params)
    model = _TokenWrapped(slot, _grid(shape))
    args = token_inputs(shape)
    with torch.no_grad():
        torch.testing.assert_close(model(*args), args[0], rtol=0, atol=0)
        randomize_(slot)
        y = model(*args)
    assert y.shape == args[0].shape and torch.isfinite(y).all()
    assert (y - args[0]).abs().max() > 0


@pytest.mark.parametrize("case", TOKEN_CASES, ids=case_id)
def test_token_causality(case):
    """Causal ops: changing the frames from a chunk boundary on never changes an earlier token.
    The others mix frames: some boundary leaks into the past (so the check can fail)."""
    op, params = case
    slot, canonical, shape = token_build(op, params)
    randomize_(slot, seed=1)
    model = _TokenWrapped(slot, _grid(shape))
    x, *rest = token_inputs(shape)
    t, hw = shape.frames, shape.height * shape.width
    opdef = get_temporal_op(op)
    causal = opdef.is_causal(canonical)
    block = opdef.causal_block_frames(canonical) if causal else 1
    leaks = []
    for boundary in range(block, t, block):
        x2 = x.clone()
        x2[:, boundary * hw :] += torch.randn_like(x2[:, boundary * hw :])
        with torch.no_grad():
            y1, y2 = model(x, *rest), model(x2, *rest)
        leaks.append(not torch.equal(y1[:, : boundary * hw], y2[:, : boundary * hw]))
    if causal:
        assert not any(leaks), f"{op} is causal but a token before a chunk boundary saw a later frame"
    else:
        assert any(leaks), f"{op} should mix information from later frames into earlier ones"


@pytest.mark.parametrize("case", token_streaming_cases(), ids=case_id)
def test_token_streaming_matches_full_clip(case):
    """Chunk by chunk with the KV cache (positions offset by the frames already seen) equals the full clip."""
    from vidnas.search_space.ops.token_branches import TokenConditioning, grid_rotary, rotary_tables

    op, params = case
    slot, canonical, shape = token_build(op, params)
    randomize_(slot, seed=2)
    x, modulation, context, cos, sin = token_inputs(shape, batch=1)
    t, hw = shape.frames, shape.height * shape.width
    chunk = get_temporal_op(op).causal_block_frames(canonical)
    bb = test_token_backbone()
    tables = rotary_tables(bb.head_dim, bb.rope_max_len, bb.rope_theta, bb.rope_split)
    with torch.no_grad():
        full = _TokenWrapped(slot, _grid(shape))(x, modulation, context, cos, sin)
        state: dict = {}
        parts = []
        for start in range(0, t, chunk):
            grid = (chunk, shape.height, shape.width)
            cond = TokenConditioning(grid, None, modulation, context, grid_rotary(*tables, bb.rope_split, grid, start),
                                     start)
            piece = x[:, start * hw : (start + chunk) * hw]
            preview = slot.stream(piece, cond, state, commit=False)
            parts.append(slot.stream(piece, cond, state, commit=True))
            torch.testing.assert_close(preview, parts[-1])  # committing does not change the chunk's output
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", TOKEN_CASES, ids=case_id)
@pytest.mark.parametrize("batch", [1, 2])
def test_token_cost_formula_matches_trace(case, batch):
    """The closed-form cost equals a fake-tensor run: params and FLOPs exactly, peak within 2 %."""
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    op, params = case
    shape = token_slot_shape(op)
    canonical = get_temporal_op(op).canonical_params(params, shape, "test")
    cost = slot_cost(op, canonical, shape, batch)
    from vidnas.search_space.ops.token_branches import TokenSlot

    with torch.device("meta"):
        model = _TokenWrapped(TokenSlot(op, canonical, shape), _grid(shape))
    params_traced = sum(p.numel() for p in model.parameters())
    with _fake_mode():
        model = model.to_empty(device="cpu")
        args = tuple(torch.empty(a.shape) for a in token_inputs(shape, batch))
        flops, peak = count_module_call(model, args, args)
    assert cost.params == params_traced
    assert cost.flops == flops
    assert abs(cost.peak * 4 / peak - 1) < 0.02, (cost.peak * 4, peak)


@pytest.mark.parametrize("case", TOKEN_CASES, ids=case_id)
def test_token_onnx_export_matches_torch(case, tmp_path):
    import onnxruntime as ort

    op, params = case
    slot, _, shape = token_build(op, params)
    randomize_(slot, seed=3)
    args = token_inputs(shape)
    model = _TokenWrapped(slot, _grid(shape)).eval()
    with torch.no_grad():
        expected = model(*args).numpy()
    path = export_onnx(model, args, tmp_path / "op.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = {onnx_input_name(i): a.numpy() for i, a in enumerate(args)}
    (got,) = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", TOKEN_CASES, ids=case_id)
def test_token_coreml_conversion(case):
    """Conversion only: Core ML prediction needs macOS."""
    op, params = case
    slot, _, shape = token_build(op, params)
    model = convert_coreml(_TokenWrapped(slot, _grid(shape)), token_inputs(shape))
    assert model.get_spec().WhichOneof("Type") == "mlProgram"


def test_token_ops_refuse_frame_slots_and_frame_ops_refuse_token_slots(slot_shape):
    from vidnas._errors import SpecError

    with pytest.raises(SpecError, match="tokens"):
        get_temporal_op("attn1d").canonical_params({}, token_slot_shape("tok_full"), "t")
    with pytest.raises(SpecError, match="frames"):
        get_temporal_op("tok_full").canonical_params({}, slot_shape, "t")


def test_registry_lists_every_token_op_the_design_names():
    from vidnas.search_space import list_temporal_ops

    ops = set(list_temporal_ops("tok_*"))
    assert {"tok_full", "tok_factorised", "tok_spatial", "tok_temporal", "tok_window", "tok_blockcausal",
            "tok_causal_window", "tok_sparse_heads", "tok_xattn", "tok_ff"} <= ops
    assert all(get_temporal_op(o).cost is not None and get_temporal_op(o).layouts == ("tokens",) for o in ops)


# Token ops on a joint-text slot (the text tokens lead the grid; contract in _ops_tokens) ------------

JOINT_CASES = joint_token_op_cases()


def joint_build(op: str, params: dict):
    from vidnas.search_space.ops.token_branches import TokenSlot

    shape = joint_token_slot_shape(op)
    canonical = get_temporal_op(op).canonical_params(params, shape, "test")
    return TokenSlot(op, canonical, shape).eval(), canonical, shape


def joint_inputs(shape, batch: int = 2, seed: int = 0):
    """``(x, temb)``: ``x`` the text prefix then the grid's tokens, ``temb`` the time embedding."""
    gen = torch.Generator().manual_seed(seed)
    tokens = shape.extra("prefix_tokens") + shape.frames * shape.height * shape.width
    x = torch.randn(batch, tokens, shape.channels, generator=gen)
    return x, torch.randn(batch, shape.temb_channels, generator=gen)


class _JointWrapped(torch.nn.Module):
    """A joint-text token slot as a module of plain tensors."""

    def __init__(self, slot, shape) -> None:
        super().__init__()
        self.slot, self.grid, self.prefix = slot, _grid(shape), shape.extra("prefix_tokens")

    def forward(self, x, temb):
        from vidnas.search_space.ops.token_branches import TokenConditioning

        return self.slot(x, TokenConditioning(self.grid, temb=temb, prefix=self.prefix)) * 1.0


def test_joint_text_is_accepted_by_the_ops_that_define_it():
    assert {op for op, _ in JOINT_CASES} == {"tok_full", "tok_ff"}


@pytest.mark.parametrize("case", JOINT_CASES, ids=case_id)
def test_joint_token_shape_finite_identity_start_and_text_rows(case):
    """Identity at initialisation; with random weights the text tokens change too, by their own rows:
    the same tokens placed in the text prefix or in the grid come out differently."""
    op, params = case
    slot, _, shape = joint_build(op, params)
    model = _JointWrapped(slot, shape)
    x, temb = joint_inputs(shape)
    with torch.no_grad():
        torch.testing.assert_close(model(x, temb), x, rtol=0, atol=0)
        randomize_(slot)
        y = model(x, temb)
    prefix = shape.extra("prefix_tokens")
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y[:, :prefix] - x[:, :prefix]).abs().max() > 0
    if op == "tok_ff":  # per token: a text token equal to a video token differs only by the rows
        x2 = x.clone()
        x2[:, 0] = x2[:, prefix]
        with torch.no_grad():
            y2 = model(x2, temb)
        assert not torch.allclose(y2[:, 0], y2[:, prefix])


@pytest.mark.parametrize("case", JOINT_CASES, ids=case_id)
def test_joint_token_causality(case):
    """Causal ops: changing the grid from a frame on never changes the text tokens or an earlier frame.
    The others mix frames: later frames reach the text tokens and earlier frames."""
    op, params = case
    slot, canonical, shape = joint_build(op, params)
    randomize_(slot, seed=1)
    model = _JointWrapped(slot, shape)
    x, temb = joint_inputs(shape)
    prefix, hw = shape.extra("prefix_tokens"), shape.height * shape.width
    leaks = []
    for boundary in range(1, shape.frames):
        x2 = x.clone()
        x2[:, prefix + boundary * hw :] += torch.randn_like(x2[:, prefix + boundary * hw :])
        with torch.no_grad():
            y1, y2 = model(x, temb), model(x2, temb)
        leaks.append(not torch.equal(y1[:, : prefix + boundary * hw], y2[:, : prefix + boundary * hw]))
    assert any(leaks) != get_temporal_op(op).is_causal(canonical)


@pytest.mark.parametrize("case", JOINT_CASES, ids=case_id)
@pytest.mark.parametrize("batch", [1, 2])
def test_joint_token_cost_formula_matches_trace(case, batch):
    from vidnas.search_space._tracing import _fake_mode, count_module_call
    from vidnas.search_space.ops.token_branches import TokenSlot

    op, params = case
    shape = joint_token_slot_shape(op)
    canonical = get_temporal_op(op).canonical_params(params, shape, "test")
    cost = slot_cost(op, canonical, shape, batch)
    with torch.device("meta"):
        model = _JointWrapped(TokenSlot(op, canonical, shape), shape)
    params_traced = sum(p.numel() for p in model.parameters())
    with _fake_mode():
        model = model.to_empty(device="cpu")
        args = tuple(torch.empty(a.shape) for a in joint_inputs(shape, batch))
        flops, peak = count_module_call(model, args, args)
    assert (cost.params, cost.flops) == (params_traced, flops)
    assert abs(cost.peak * 4 / peak - 1) < 0.02, (cost.peak * 4, peak)


@pytest.mark.parametrize("case", JOINT_CASES, ids=case_id)
def test_joint_token_onnx_export_matches_torch(case, tmp_path):
    import onnxruntime as ort

    op, params = case
    slot, _, shape = joint_build(op, params)
    randomize_(slot, seed=3)
    args = joint_inputs(shape)
    model = _JointWrapped(slot, shape).eval()
    with torch.no_grad():
        expected = model(*args).numpy()
    session = ort.InferenceSession(str(export_onnx(model, args, tmp_path / "op.onnx")),
                                   providers=["CPUExecutionProvider"])
    arrays = {onnx_input_name(i): a.numpy() for i, a in enumerate(args)}
    (got,) = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", JOINT_CASES, ids=case_id)
def test_joint_token_coreml_conversion(case):
    op, params = case
    slot, _, shape = joint_build(op, params)
    model = convert_coreml(_JointWrapped(slot, shape), joint_inputs(shape))
    assert model.get_spec().WhichOneof("Type") == "mlProgram"


@pytest.mark.parametrize("op", sorted({op for op, _ in joint_token_op_cases(accepted=False)}))
def test_token_ops_without_joint_text_refuse_it_naming_slot_op_and_why(op):
    from vidnas._errors import SpecError

    with pytest.raises(SpecError) as err:
        get_temporal_op(op).canonical_params({}, joint_token_slot_shape(op), "temporal.block.0.attn.params")
    assert err.value.field == "temporal.block.0.attn.op" and err.value.value == op
    assert "joint" in str(err.value) and "tok_full" in str(err.value)

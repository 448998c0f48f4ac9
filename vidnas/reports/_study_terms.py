"""The seeds' terms shared by a study and its rules: op classes, MobileVD's and FreeNoise's settings, and which
streamed configuration stands for which paper."""

from __future__ import annotations

from typing import Any

LENGTHS = (8, 16, 32, 64)
FUNNEL = 0.5  # MobileVD's best funnel factor
STRIDE = 2  # temporal multiscaling: half the frames inside the op
PRUNE_SHARE = 0.7  # MobileVD pruned 70 % of the temporal blocks
FREENOISE = {"window": 16, "window_stride": 4}

ONE_D, ATTN_3D, CONV_3D, SPARSE_3D = "1-D temporal", "3-D attention", "3-D convolution", "sparse 3-D attention"
TEMPORAL_CLASSES = (ONE_D, ATTN_3D, CONV_3D, SPARSE_3D)
OP_CLASSES = {
    "none": "none", "conv1d": ONE_D, "conv2plus1d": ONE_D, "shift": ONE_D, "attn1d": ONE_D, "attn1d_causal": ONE_D,
    "attn1d_window": ONE_D, "xattn1d": ONE_D, "tok_temporal": ONE_D, "tok_factorised": ONE_D,
    "conv3d": CONV_3D, "attn3d": ATTN_3D, "attn3d_blockcausal": ATTN_3D, "xattn3d": ATTN_3D, "tok_full": ATTN_3D,
    "tok_blockcausal": ATTN_3D, "tok_causal_window": SPARSE_3D, "tok_window": SPARSE_3D, "tok_sparse_heads": SPARSE_3D,
    "tok_spatial": "spatial attention", "tok_xattn": "text cross-attention", "tok_ff": "feed-forward",
}
# What a funnel narrows, per op (MobileVD: "attention" and "convolution" blocks; a transformer's feed-forward
# is the pair of affine layers MobileVD funnels in its convolution blocks)
FUNNEL_KIND = {"attn1d": "attention", "attn1d_causal": "attention", "attn1d_window": "attention",
               "attn3d": "attention", "attn3d_blockcausal": "attention", "xattn1d": "attention",
               "xattn3d": "attention", "conv1d": "convolution", "conv3d": "convolution",
               "conv2plus1d": "convolution", "tok_ff": "convolution"}
FRAME_ATTENTION = {op for op, kind in FUNNEL_KIND.items() if kind == "attention"}


def op_class(op: str) -> str:
    """The class of a temporal op in the seeds' terms (``unclassified`` for an op vidnas does not know)."""
    return OP_CLASSES.get(op, "unclassified")


def matching_stream(rows: list[dict[str, Any]], system: str, *, growth: bool = False) -> dict[str, Any] | None:
    """The causvid-space configuration closest to what the paper ran: block-causal chunks of 3 with a full cache
    (CausVid) or with the largest rolling window (Self Forcing); chunks of 1 where 3 do not fit. ``growth``: only
    streams long enough to show how a chunk's cost grows (three chunks; past the window for a rolling cache)."""
    rolling = system != "CausVid"
    pool = [r for r in rows if r["space"] == "causvid" and (r["window"] is not None) == rolling]
    if growth:
        pool = [r for r in pool if (r["growth_after_window"] if rolling else r["growth"]) is not None]
    if not pool:
        return None
    return max(pool, key=lambda r: (r["chunk"] == 3, r["chunk"], r["window"] or 0))

"""Parameter definitions shared by several temporal ops (the modifiers)."""

from __future__ import annotations

from vidnas.search_space._registry import OpParam, SlotShape

MERGES = ("residual", "alpha_temporal", "alpha_spatial")

TEMPORAL_STRIDE = OpParam(
    "temporal_stride", int, 1,
    "temporal multiscaling (MobileVD): the op runs on T/stride average-pooled frames, output repeated back",
    choices=(1, 2, 4, 8),
)
FUNNEL = OpParam(
    "funnel", float, 1.0,
    "channel funnel (MobileVD): inner width = funnel * C (rounded to whole norm groups or heads)",
    minimum=0.0625, maximum=1.0,
)
MERGE = OpParam(
    "merge", str, "residual",
    "how the branch joins the stream: residual (zero-init last layer, identity at init) or SVD's learned "
    "alpha blend weighting the temporal (alpha_temporal) or spatial (alpha_spatial) side, initial mix 0.5",
    choices=MERGES,
)
CAUSAL = OpParam("causal", bool, False, "pad/shift in time so output frame t never sees a later frame")
KERNEL = OpParam("kernel", int, 3, "temporal kernel size", choices=(3, 5))
USE_TEMB = OpParam("use_temb", bool, False,
                   "add a projection of the diffusion-time embedding (SVD's temporal resblock)")


def default_heads(shape: SlotShape) -> int:
    return max(1, shape.channels // shape.head_dim)


HEADS = OpParam("heads", int, default_heads, "attention heads; head_dim = C / heads", minimum=1)
POS = OpParam(
    "pos", str, "sinusoidal",
    "frame positions: sinusoidal (added to the attention input), mlp (SVD: an MLP of the sinusoid added to the "
    "stream), none",
    choices=("sinusoidal", "mlp", "none"),
)
FF_IN = OpParam("ff_in", bool, False, "an extra feed-forward before attention (SVD's temporal block)")


def conv_inner_width(channels: int, funnel: float, groups: int) -> int:
    """Funnelled width of a conv branch, a whole number of norm groups."""
    return max(groups, round(channels * funnel / groups) * groups)


def funnel_heads(heads: int, funnel: float) -> int:
    """Funnelled head count of an attention branch (head width kept)."""
    return max(1, round(heads * funnel))


def window_starts(frames: int, window: int, stride: int) -> list[int]:
    """First frame of each FreeNoise window: every ``stride`` frames, the last flush with the end."""
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts

"""``demo_prev``: each frame receives a gated copy of the previous frame (causal, zero FLOPs)."""

from __future__ import annotations

from vidnas.search_space import Cost, register_temporal_op


def _cost(shape, params, batch):
    f = batch * shape.frames * shape.channels * shape.height * shape.width
    return Cost(params=shape.channels, flops=0, peak=2 * f)  # the shifted clip and the gated delta


@register_temporal_op("demo_prev", summary="gated copy of the previous frame (demo plugin)",
                      is_causal=lambda params: True, cost=_cost, reference="vidnas-demo-plugin")
def _build(shape, params):
    import torch
    from torch import nn

    class PreviousFrame(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.gate = nn.Parameter(torch.zeros(channels))  # zero: the op starts as the identity

        def forward(self, x, num_frames, temb=None, context=None):
            bt, c, h, w = x.shape
            v = x.reshape(bt // num_frames, num_frames, c, h, w)
            shifted = torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], dim=1).reshape(bt, c, h, w)
            return shifted * self.gate[None, :, None, None]

    return PreviousFrame(shape.channels)

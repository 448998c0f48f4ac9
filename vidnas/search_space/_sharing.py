"""Weight sharing between an op's variants: which choices are sub-shapes of one module.

A weight-sharing supernet holds, per slot, one module per *sharing key* and runs each choice
with a slice of that module's weights. An op registers a :class:`SharingRule` saying which of
its parameters leave the weights' meaning unchanged (they go into the key) and how to cut a
variant's weights out of the largest one:

* convolutions (``conv1d``, ``conv3d``, ``conv2plus1d``): kernel 3 is the centre of kernel 5
  (the last taps when causal: the taps nearest the present), a channel funnel is the first
  ``funnel * C`` inner channels, temporal multiscaling changes no weight;
* attention (``attn*``, ``xattn*``): a funnel keeps the first heads (head width kept) and the
  first hidden units of each feed-forward half; temporal multiscaling changes no weight.
  Variants with another head count (another head width) do not share.

Ops without a rule share nothing: each distinct choice has its own module, so any op (a
plugin's too) works in a supernet. No torch at import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SharingRule", "get_sharing_rule", "prefix_slice", "register_sharing"]

Slicer = Callable[[str, Any, tuple[int, ...], Mapping[str, Any], Mapping[str, Any]], Any]


def prefix_slice(name: str, tensor: Any, shape: tuple[int, ...], full: Mapping[str, Any],
                 sub: Mapping[str, Any]) -> Any:
    """The leading ``shape`` block of ``tensor`` (the default cut: first channels, rows, heads)."""
    return tensor[tuple(slice(0, n) for n in shape)]


@dataclasses.dataclass(frozen=True)
class SharingRule:
    """How an op's variants share weights.

    ``shared`` names the parameters whose values do not enter the key (variants differing
    only in them share one module); ``largest`` picks, from the variants of one key, the
    parameters of the module to build (every variant must be a sub-shape of it); ``cut``
    returns a variant's parameter tensor from the largest module's (default: the leading block).
    """

    shared: tuple[str, ...]
    largest: Callable[[list[Mapping[str, Any]]], dict[str, Any]]
    cut: Slicer = prefix_slice

    def key(self, op: str, params: Mapping[str, Any]) -> tuple:
        return (op, tuple(sorted((k, v) for k, v in params.items() if k not in self.shared)))


_RULES: dict[str, SharingRule] = {}


def register_sharing(op: str, rule: SharingRule) -> None:
    _RULES[op] = rule


def get_sharing_rule(op: str) -> SharingRule | None:
    return _RULES.get(op)


def no_sharing_key(op: str, params: Mapping[str, Any]) -> tuple:
    return (op, tuple(sorted(params.items())))


# Convolutions ------------------------------------------------------------------------------------


def _largest_conv(variants: list[Mapping[str, Any]]) -> dict[str, Any]:
    out = dict(variants[0])
    out["kernel"] = max(v["kernel"] for v in variants)
    out["funnel"] = max(v["funnel"] for v in variants)
    out["temporal_stride"] = 1
    return out


def _cut_conv(name: str, tensor: Any, shape: tuple[int, ...], full: Mapping[str, Any], sub: Mapping[str, Any]) -> Any:
    block = tensor[tuple(slice(0, n) for n in shape[:2])]  # output, input channels
    if len(shape) <= 2:
        return tensor[tuple(slice(0, n) for n in shape)]
    k_full, k = tensor.shape[2], shape[2]
    if k_full != k:  # the temporal taps: centred, or the most recent ones when causal
        start = k_full - k if sub.get("causal") else (k_full - k) // 2
        block = block[:, :, start : start + k]
    return block[tuple(slice(0, n) for n in shape)]


CONV_RULE = SharingRule(shared=("kernel", "funnel", "temporal_stride"), largest=_largest_conv, cut=_cut_conv)


# Attention ------------------------------------------------------------------------------------


def _largest_attention(variants: list[Mapping[str, Any]]) -> dict[str, Any]:
    out = dict(variants[0])
    out["funnel"] = max(v["funnel"] for v in variants)
    out["temporal_stride"] = 1
    return out


def _cut_attention(name: str, tensor: Any, shape: tuple[int, ...], full: Mapping[str, Any],
                   sub: Mapping[str, Any]) -> Any:
    if name.endswith("proj.weight") or name.endswith("proj.bias"):  # GEGLU: [value | gate] halves
        import torch

        half, keep = tensor.shape[0] // 2, shape[0] // 2
        rows = torch.cat([tensor[:keep], tensor[half : half + keep]])
        return rows[(slice(None), *(slice(0, n) for n in shape[1:]))] if len(shape) > 1 else rows
    return prefix_slice(name, tensor, shape, full, sub)


ATTENTION_RULE = SharingRule(shared=("funnel", "temporal_stride"), largest=_largest_attention,
                             cut=_cut_attention)

for _op in ("conv1d", "conv3d", "conv2plus1d"):
    register_sharing(_op, CONV_RULE)
for _op in ("attn1d", "attn1d_causal", "attn1d_window", "attn3d", "attn3d_blockcausal", "xattn1d", "xattn3d"):
    register_sharing(_op, ATTENTION_RULE)

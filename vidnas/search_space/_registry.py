"""The temporal-op registry.

Tensor contract (one for every temporal op)
-------------------------------------------
A temporal op is inserted at a *slot* of the backbone. Its slot wrapper
(:class:`~vidnas.search_space.TemporalSlot`) is called as::

    y = slot(x, num_frames, temb=temb, context=context)

* ``x``: ``(B*T, C, H, W)``, frames of one clip contiguous (index ``b*T + t``);
* ``num_frames``: ``T``;
* ``temb``: ``(B*T, temb_channels)`` diffusion-time embedding, or ``None``;
* ``context``: ``(B*T, L, context_dim)`` conditioning tokens, or ``None``;
* ``y``: same shape as ``x``.

The op itself is a *branch* ``delta = branch(x, num_frames, temb, context)`` of the
same shape; the slot returns ``x + w * delta``. With ``merge="residual"`` (the
default) ``w = 1`` and the branch's last layer is zero-initialised, so inserting an op
into a trained image network starts as the identity. The ``alpha_*`` merges reproduce
Stable Video Diffusion's learned blend ``sigmoid(mix_factor)`` (initial value 0.5).

Modifiers common to ops: ``temporal_stride`` (MobileVD's temporal multiscaling: the
branch runs on ``T / stride`` frames, average-pooled, and its output is repeated back),
``funnel`` (MobileVD's channel funnel: the branch's inner width is ``funnel * C``),
``merge``. Attention ops take ``heads`` (``head_dim = C / heads``).

Causal ops never let output frame ``t`` depend on an input frame after the end of
``t``'s causal block (``causal_block_frames``: 1 frame for strictly causal ops, a chunk
for block-causal attention); a test proves it for each registered op.

Registering an op is one call of :func:`register_temporal_op`; no core code changes.
Third-party packages register theirs through the ``vidnas.temporal_ops`` entry point
group (see :mod:`vidnas._plugins`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from vidnas._errors import SpecError
from vidnas._registry import Option, Registry
from vidnas.search_space._cost import Cost
from vidnas.search_space._sharing import SHARING_RULES, SharingRule

if TYPE_CHECKING:  # torch is imported only where modules are built
    import torch
    from torch import nn

__all__ = [
    "OpParam",
    "Option",
    "TEMPORAL_OPS",
    "SlotShape",
    "TemporalBranch",
    "TemporalOpDef",
    "get_temporal_op",
    "list_temporal_ops",
    "register_temporal_op",
]


@dataclasses.dataclass(frozen=True)
class SlotShape:
    """What a slot offers the op placed in it."""

    channels: int  # C of the (B*T, C, H, W) input
    frames: int  # T seen by the branch (after temporal_stride)
    height: int  # latent rows at this level
    width: int  # latent columns at this level
    temb_channels: int | None = None  # width of the diffusion-time embedding, if the backbone has one
    context_dim: int | None = None  # width of conditioning tokens, if any
    context_tokens: int | None = None  # number of conditioning tokens L
    norm_groups: int = 32  # GroupNorm groups used by the backbone
    head_dim: int = 64  # the backbone's attention head width; default ``heads = C // head_dim``
    channels_last: bool = False  # the input arrives as a channels-last view (inside a spatial transformer)
    layout: str = "frames"  # the tensor contract of the slot: "frames" (this module's docstring) or a family's own
    extras: tuple[tuple[str, Any], ...] = ()  # family-specific facts ops may read (sorted key/value pairs)

    def with_frames(self, frames: int) -> SlotShape:
        return dataclasses.replace(self, frames=frames)

    def extra(self, key: str, default: Any = None) -> Any:
        """A family-specific fact about the slot (e.g. a transformer's positional encoding)."""
        return dict(self.extras).get(key, default)


class TemporalBranch(Protocol):
    """The module an op builds: returns the branch output ``delta`` (same shape as ``x``)."""

    def __call__(
        self,
        x: torch.Tensor,
        num_frames: int,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


OpParam = Option  # one hyper-parameter of a temporal op; its default may be a function of the SlotShape


BranchBuilder = Callable[[SlotShape, Mapping[str, Any]], "nn.Module | None"]
BranchCost = Callable[[SlotShape, Mapping[str, Any], int], Cost]
ParamsPredicate = Callable[[Mapping[str, Any]], bool]
ShapeCheck = Callable[[SlotShape, Mapping[str, Any], str], None]


@dataclasses.dataclass(frozen=True)
class TemporalOpDef:
    """A registered temporal op: how to build it, its parameters and what its cost depends on."""

    name: str
    summary: str
    build: BranchBuilder
    params: tuple[OpParam, ...]
    is_causal: ParamsPredicate
    uses_temb: ParamsPredicate
    uses_context: bool
    supports_streaming: ParamsPredicate
    check_shape: ShapeCheck | None
    reference: str
    cost: BranchCost | None = None  # closed-form cost of the branch at (shape, params, batch)
    causal_block: Callable[[Mapping[str, Any]], int] | None = None  # frames per causal block (default 1)
    layouts: tuple[str, ...] = ("frames",)  # slot layouts (tensor contracts) the op accepts; "*": any
    colour: str | None = None  # the op's colour in reports' figures

    def causal_block_frames(self, params: Mapping[str, Any]) -> int:
        """For a causal op: output frame t may see input frames up to the end of its block of
        this many frames (1 = strictly causal). Temporal multiscaling multiplies blocks > 1."""
        block = self.causal_block(params) if self.causal_block is not None else 1
        return block * params.get("temporal_stride", 1) if block > 1 else 1

    def param(self, name: str) -> OpParam:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def canonical_params(self, given: Mapping[str, Any], shape: SlotShape, field: str) -> dict[str, Any]:
        """Validate ``given`` against the schema, fill defaults for ``shape``, return sorted params."""
        if shape.layout not in self.layouts and "*" not in self.layouts:
            raise SpecError(f"{field}", self.name, f"does not accept the `{shape.layout}` layout of this slot",
                            f"it accepts {list(self.layouts)}")
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise SpecError(
                f"{field}.{unknown[0]}", given[unknown[0]], f"is not a parameter of op `{self.name}`",
                f"its parameters are {sorted(known)}",
            )
        params = {}
        for p in self.params:
            value = given[p.name] if p.name in given else p.default_for(shape)
            params[p.name] = p.check(value, f"{field}.{p.name}")
        stride = params.get("temporal_stride", 1)
        if shape.frames % stride:
            raise SpecError(
                f"{field}.temporal_stride", stride, f"does not divide the {shape.frames} frames of this slot"
            )
        if self.check_shape is not None:
            self.check_shape(shape.with_frames(shape.frames // stride), params, field)
        return dict(sorted(params.items()))

    def cost_signature(self, params: Mapping[str, Any], shape: SlotShape) -> dict[str, Any]:
        """Everything that determines this op's latency at ``shape`` (frames before stride)."""
        sig: dict[str, Any] = {
            "op": self.name,
            "params": dict(sorted(params.items())),
            "channels": shape.channels,
            "frames": shape.frames,
            "height": shape.height,
            "width": shape.width,
            "channels_last": shape.channels_last,  # the input's layout changes eager copies
        }
        if shape.layout != "frames" or shape.extras:  # a family's own contract or facts decide cost too (e.g.
            sig["layout"] = shape.layout                   # joint text tokens beside the frames)
            sig["extras"] = {k: v for k, v in shape.extras}
        if self.name == "none":
            return {"op": "none"}
        if self.uses_temb(params):
            sig["temb_channels"] = shape.temb_channels
        if self.uses_context:
            sig["context_dim"] = shape.context_dim
            sig["context_tokens"] = shape.context_tokens
        return sig


TEMPORAL_OPS: Registry[TemporalOpDef] = Registry("vidnas.temporal_ops", "temporal op", field="op")


def _never(params: Mapping[str, Any]) -> bool:
    return False


def register_temporal_op(
    name: str,
    *,
    summary: str,
    params: tuple[OpParam, ...] = (),
    is_causal: ParamsPredicate = _never,
    uses_temb: ParamsPredicate = _never,
    uses_context: bool = False,
    supports_streaming: ParamsPredicate = _never,
    check_shape: ShapeCheck | None = None,
    cost: BranchCost | None = None,
    causal_block: Callable[[Mapping[str, Any]], int] | None = None,
    layouts: tuple[str, ...] = ("frames",),
    reference: str = "",
    colour: str | None = None,
    sharing: SharingRule | None = None,
) -> Callable[[BranchBuilder], BranchBuilder]:
    """Decorator registering ``builder(shape, params) -> branch module`` under ``name``.

    ``cost(shape, params, batch)`` gives the branch's :class:`~vidnas.search_space.Cost`
    in closed form (``shape.frames`` is what the branch sees, after ``temporal_stride``);
    without it, counting traces the branch under fake tensors instead (slower). ``colour``
    is the op's colour in reports' figures (a grey when not given); ``sharing`` says how its
    variants share weights in a supernet (none when not given).
    Registering a name twice replaces the op and warns.
    """

    def decorate(builder: BranchBuilder) -> BranchBuilder:
        TEMPORAL_OPS.register(name, TemporalOpDef(
            name=name,
            summary=summary,
            build=builder,
            params=params,
            is_causal=is_causal,
            uses_temb=uses_temb,
            uses_context=uses_context,
            supports_streaming=supports_streaming,
            check_shape=check_shape,
            reference=reference,
            cost=cost,
            causal_block=causal_block,
            layouts=tuple(layouts),
            colour=colour,
        ), module=getattr(builder, "__module__", None))
        if sharing is not None:
            SHARING_RULES.register(name, sharing, module=getattr(builder, "__module__", None))
        return builder

    return decorate


def get_temporal_op(name: str, field: str = "op") -> TemporalOpDef:
    """The registered op ``name``, or a :class:`SpecError` listing the known ones."""
    return TEMPORAL_OPS.get(name, field)


def list_temporal_ops(pattern: str = "*") -> list[str]:
    """Names of registered ops matching a shell-style ``pattern``, in registration order."""
    return TEMPORAL_OPS.names(pattern)

"""Plans: a network as a list of *units*, their wiring, shapes and signatures; one interpreter.

A unit is the smallest piece whose cost is measured on its own (a residual block, a
transformer block's attention, a temporal slot...). A family's ``plan(spec)`` lists the
units of an :class:`ArchSpec` in execution order; its network runs the same plan through
:class:`PlanWalk`, and counting walks it with symbolic tensors, so the network a latency
table predicts, the network that is built and the network that is counted cannot drift
apart. Nothing here imports torch.

Wiring between units is explicit in each :class:`UnitPlan`: a unit may pop its second
input (``aux``) from a named stack, and push onto a named stack either its input before
it runs (the stack ``residual``) or its output after (any other name, e.g. ``skip``).

Shapes are per frame ``(C, H, W)`` with ``frames`` frames per clip, whatever layout a
family computes in (a transformer's tokens of one latent frame count as ``(D, h, w)``);
element counts are then ``batch * frames * C * H * W`` in every family.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from vidnas.search_space._registry import SlotShape, get_temporal_op

__all__ = ["PlanWalk", "UnitPlan", "signature_id", "slot_config", "slot_cost", "slot_shape", "slot_unit"]


def signature_id(signature: Mapping[str, Any]) -> str:
    """Stable short hash of a signature dict."""
    return hashlib.sha256(json.dumps(signature, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


# Constructor arguments that change a unit's values, never its cost: left out of signatures,
# so that units differing only in them share a latency-table row.
VALUE_ONLY_CONFIG = frozenset({"eps"})

_SLOT_SHAPE_EXTRA = tuple(f.name for f in dataclasses.fields(SlotShape)
                          if f.name not in ("channels", "frames", "height", "width"))


@dataclasses.dataclass(frozen=True)
class UnitPlan:
    """One unit of a network and its wiring.

    Shapes are per frame ``(C, H, W)``; the batch is ``B * frames`` (``B * out_frames`` at
    the output, for units that change the number of frames, such as a temporal patchify).
    A *slot unit* (``slot`` set) holds the op chosen at that slot: its config is
    ``{"op", "params"}`` plus the :class:`SlotShape` fields other than the four sizes.
    """

    name: str  # e.g. "down.0.1.resblock" or, for a slot unit, the slot name "down.0.1.res"
    kind: str  # the family's unit kind; "temporal" for a slot unit
    config: Mapping[str, Any]  # constructor arguments; with the shapes, all that determines cost
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    frames: int
    pop: str | None = None  # the stack this unit reads its second input from
    aux_shape: tuple[int, int, int] | None = None  # shape of that popped tensor
    push: str | None = None  # "residual" (push the input before running) or a stack to push the output on
    slot: str | None = None  # slot name, for slot units
    level: int | None = None
    family: str = "unet"  # the backbone family whose modules build this unit
    out_frames_: int | None = None  # frames at the output when they differ from ``frames``
    conditioning: bool = False  # computes conditioning (time embedding ...) instead of acting on the stream
    in_prefix: int = 0  # tokens per clip ahead of the per-frame grid in the input (a transformer's joint text)
    out_prefix: int = 0  # the same at the output

    @property
    def out_frames(self) -> int:
        return self.frames if self.out_frames_ is None else self.out_frames_

    def in_elements(self, batch: int) -> int:
        """Elements of the input on ``batch`` clips (the per-frame shape, plus any token prefix)."""
        c, h, w = self.in_shape
        return batch * (self.frames * c * h * w + self.in_prefix * c)

    def out_elements(self, batch: int) -> int:
        """Elements of the output on ``batch`` clips (the per-frame shape, plus any token prefix)."""
        c, h, w = self.out_shape
        return batch * (self.out_frames * c * h * w + self.out_prefix * c)

    @property
    def signature(self) -> dict[str, Any]:
        """Everything this unit's latency depends on (besides batch, dtype and device)."""
        if self.slot is not None:
            op = get_temporal_op(self.config["op"])
            return {"kind": self.kind, **op.cost_signature(self.config["params"], slot_shape(self))}
        config = {k: v for k, v in self.config.items() if k not in VALUE_ONLY_CONFIG}
        sig = {"kind": self.kind, **config, "in_shape": list(self.in_shape), "frames": self.frames}
        if self.aux_shape is not None:
            sig["aux_shape"] = list(self.aux_shape)
        if self.out_frames_ is not None:
            sig["out_frames"] = self.out_frames_
        return sig

    @property
    def signature_id(self) -> str:
        return signature_id(self.signature)

    @property
    def is_identity(self) -> bool:
        return self.slot is not None and self.config["op"] == "none"


def slot_shape(plan: UnitPlan) -> SlotShape:
    """The :class:`SlotShape` a slot unit offers its op."""
    c = plan.config
    extra = {k: c[k] for k in _SLOT_SHAPE_EXTRA if k in c}
    if "extras" in extra:
        extra["extras"] = tuple(tuple(item) for item in extra["extras"])
    return SlotShape(channels=plan.in_shape[0], frames=plan.frames, height=plan.in_shape[1],
                     width=plan.in_shape[2], **extra)


def slot_config(op: str, params: Mapping[str, Any], shape: SlotShape) -> dict[str, Any]:
    """A slot unit's config: the op, its parameters and the slot's shape facts (sizes excluded)."""
    config: dict[str, Any] = {"op": op, "params": dict(params)}
    for key in _SLOT_SHAPE_EXTRA:
        value = getattr(shape, key)
        if key in ("layout", "extras") and value == SlotShape.__dataclass_fields__[key].default:
            continue  # the frames contract with no extras: configs (and signatures) as before
        config[key] = [list(item) for item in value] if key == "extras" else value
    return config


def slot_unit(plan: UnitPlan, op: str, params: Mapping[str, Any]) -> UnitPlan:
    """The slot unit ``plan`` with another op (the one slot-to-unit expansion of vidnas)."""
    return dataclasses.replace(plan, config={**plan.config, "op": op, "params": dict(params)})


class PlanWalk:
    """The one interpreter of a plan's wiring, for running networks and for counting.

    ``run(plans, h, apply)`` calls ``apply(plan, h, aux)`` for every unit in order, with
    ``aux`` popped from the unit's ``pop`` stack, and returns the last output. The stacks
    are readable during ``apply`` (``self.stacks``), which is what counting needs to know
    which tensors are alive.
    """

    RESIDUAL = "residual"

    def __init__(self) -> None:
        self.stacks: dict[str, list[Any]] = {}

    def run(self, plans: list[UnitPlan], h: Any, apply: Callable[[UnitPlan, Any, Any], Any]) -> Any:
        for plan in plans:
            aux = self.stacks[plan.pop].pop() if plan.pop is not None else None
            if plan.push == self.RESIDUAL:
                self.stacks.setdefault(self.RESIDUAL, []).append(h)
            h = apply(plan, h, aux)
            if plan.push is not None and plan.push != self.RESIDUAL:
                self.stacks.setdefault(plan.push, []).append(h)
        return h

    def alive(self) -> list[Any]:
        """Every value held on a stack now."""
        return [v for stack in self.stacks.values() for v in stack]


def slot_cost(op: str, params: Mapping[str, Any], shape: SlotShape, batch: int):
    """Closed-form cost of a :class:`~vidnas.search_space.TemporalSlot` (the op's branch with its
    multiscaling and merge); ``None`` when the op declares no cost formula."""
    from vidnas.search_space._cost import Cost

    opdef = get_temporal_op(op)
    if op == "none":
        return Cost(0, 0, 0)
    if opdef.cost is None:
        return None
    stride = int(params.get("temporal_stride", 1))
    branch = opdef.cost(shape.with_frames(shape.frames // stride), params, batch)
    residual = params.get("merge", "residual") == "residual"
    n_params = branch.params + (0 if residual else 1)
    f = batch * shape.frames * shape.channels * shape.height * shape.width
    join = f + (f if residual else 2 * f)  # the delta, [its weighted copy,] the sum
    if stride == 1:
        return Cost(n_params, branch.flops, max(branch.peak, join))
    coarse = f // stride
    causal = opdef.is_causal(params)
    peak = max(
        coarse + branch.peak,  # pooled input alive while the branch runs
        coarse + f + (f if causal else 0),  # repeated (and delayed) output
        coarse + join,
    )
    return Cost(n_params, branch.flops, peak)

"""``demo-conv``: a tiny per-frame convolutional video backbone, a third family beside ``unet`` and ``dit``.

Every level works at the full latent resolution with its own width; a level is a 1x1
projection to that width (after the first), then ``blocks`` residual conv blocks, each
followed by a temporal slot ``level.{l}.{b}.mix`` of the ``frames`` layout, where any
built-in frame op (``none``, ``conv1d``, ``attn1d``, ``shift`` ...) may be placed. A
``stem`` 3x3 conv opens the stream and pushes it on the ``skip`` stack; the ``head`` pops
it, concatenates it to the last level's output and predicts the latent channels.

Units, in execution order: ``time_embed`` (conditioning: timestep -> ``(B, temb_dim)``),
``stem``, per level ``level.{l}.proj`` (l > 0), ``level.{l}.{b}.block`` and the slot
``level.{l}.{b}.mix``, then ``head``. Planning and counting need no torch; the modules are
in ``vidnas_demo_plugin.network``. Only vidnas's public API is used.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from vidnas.search_space import (
    Backbone,
    BackboneFamily,
    Cost,
    SlotInfo,
    SlotShape,
    SpecError,
    UnitPlan,
    register_family,
    slot_config,
    slot_cost,
    slot_shape,
)

FAMILY = "demo-conv"


@dataclasses.dataclass(frozen=True)
class DemoConvBackbone(Backbone):
    """A per-frame conv network: one width per level, ``blocks`` residual blocks per level."""

    family: ClassVar[str] = FAMILY

    widths: tuple[int, ...] = (16, 32)  # channels per level
    blocks: int = 2  # residual blocks (and temporal slots) per level
    latent_dim: int = 4  # latent channels in and out
    temb_dim: int = 32  # width of the time embedding
    norm_groups: int = 8  # GroupNorm groups (blocks, head, conv temporal ops)
    head_dim: int = 8  # attention head width offered to attention ops
    frames: int = 8
    latent_height: int = 8
    latent_width: int = 8
    vae_scale_factor: int = 8

    @property
    def latent_channels(self) -> int:
        return self.latent_dim

    @property
    def num_levels(self) -> int:
        return len(self.widths)

    def slot_shape(self, level: int) -> SlotShape:
        return SlotShape(channels=self.widths[level], frames=self.frames, height=self.latent_height,
                         width=self.latent_width, temb_channels=self.temb_dim, norm_groups=self.norm_groups,
                         head_dim=self.head_dim)

    def slots(self) -> list[SlotInfo]:
        """Every temporal slot in execution order: ``level.{l}.{b}.mix``."""
        return [SlotInfo(f"level.{level}.{block}.mix", "level", level, block, "mix", self.slot_shape(level))
                for level in range(self.num_levels) for block in range(self.blocks)]

    def validate(self, field: str = "backbone") -> None:
        """Raise :class:`SpecError` naming the first invalid field."""
        if not self.widths:
            raise SpecError(f"{field}.widths", self.widths, "needs at least one level")
        step = math.lcm(self.norm_groups, self.head_dim) if self.norm_groups > 0 and self.head_dim > 0 else 1
        for i, width in enumerate(self.widths):
            if width < 1 or width % step:
                raise SpecError(f"{field}.widths[{i}]", width, f"must be a positive multiple of {step} "
                                f"(norm_groups={self.norm_groups}, head_dim={self.head_dim})")
        for name in ("blocks", "latent_dim", "norm_groups", "head_dim", "frames", "latent_height", "latent_width",
                     "vae_scale_factor"):
            if getattr(self, name) < 1:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 1")
        if self.temb_dim < 2 or self.temb_dim % 2:
            raise SpecError(f"{field}.temb_dim", self.temb_dim, "must be a positive even number")

    def resized(self, *, frames: int | None = None, height: int | None = None, width: int | None = None,
                width_mult: float | None = None) -> DemoConvBackbone:
        """This backbone at ``frames`` x ``height`` x ``width`` pixels, widths scaled by ``width_mult``."""
        changes = self.size_changes(frames=frames, height=height, width=width, width_mult=width_mult)
        if width_mult is not None:
            step = math.lcm(self.norm_groups, self.head_dim)
            changes["widths"] = tuple(max(step, round(w * width_mult / step) * step) for w in self.widths)
        result = dataclasses.replace(self, **changes)
        result.validate()
        return result


# Plan ----------------------------------------------------------------------------------------


def demo_plan(spec) -> list[UnitPlan]:
    """The units of a ``demo-conv`` spec in execution order."""
    bb: DemoConvBackbone = spec.backbone
    hw = (bb.latent_height, bb.latent_width)
    units = [UnitPlan("time_embed", "time_embed", {"temb_dim": bb.temb_dim}, (0, 1, 1), (bb.temb_dim, 1, 1),
                      bb.frames, family=FAMILY, conditioning=True)]

    def add(name: str, kind: str, config: dict[str, Any], cin: int, cout: int, **wiring: Any) -> None:
        units.append(UnitPlan(name, kind, config, (cin, *hw), (cout, *hw), bb.frames, family=FAMILY, **wiring))

    add("stem", "stem", {"in_channels": bb.latent_dim, "out_channels": bb.widths[0]}, bb.latent_dim, bb.widths[0],
        push="skip", level=0)
    shapes = {s.name: s.shape for s in bb.slots()}
    for level, width in enumerate(bb.widths):
        if level:
            add(f"level.{level}.proj", "proj", {"in_channels": bb.widths[level - 1], "out_channels": width},
                bb.widths[level - 1], width, level=level)
        for block in range(bb.blocks):
            config = {"channels": width, "temb_dim": bb.temb_dim, "norm_groups": bb.norm_groups}
            add(f"level.{level}.{block}.block", "block", config, width, width, level=level)
            slot = f"level.{level}.{block}.mix"
            choice = spec.temporal[slot]
            add(slot, "temporal", slot_config(choice.op, choice.params, shapes[slot]), width, width, slot=slot,
                level=level)
    last, skip = bb.widths[-1], bb.widths[0]
    add("head", "head", {"in_channels": last + skip, "out_channels": bb.latent_dim, "norm_groups": bb.norm_groups},
        last, bb.latent_dim, pop="skip", aux_shape=(skip, *hw), level=0)
    return units


def demo_unit_cost(plan: UnitPlan, batch: int) -> Cost | None:
    """Closed-form cost of one unit on ``batch`` clips (FLOPs: 2 per multiply-accumulate in
    convolutions and matmuls; peak: elements allocated, output included)."""
    c = plan.config
    if plan.kind == "temporal":
        return slot_cost(c["op"], c["params"], slot_shape(plan), batch)
    if plan.kind == "time_embed":
        t = c["temb_dim"]
        return Cost(2 * (t * t + t), 4 * batch * t * t, batch * 3 * t)
    n = batch * plan.frames
    pixels = n * plan.in_shape[1] * plan.in_shape[2]
    cin, cout = plan.in_shape[0], plan.out_shape[0]
    if plan.kind in ("stem", "proj"):
        k = 9 if plan.kind == "stem" else 1
        return Cost(cin * cout * k + cout, 2 * pixels * cout * cin * k, pixels * cout)
    if plan.kind == "block":
        ch, t = c["channels"], c["temb_dim"]
        params = 2 * ch + 9 * ch * ch + ch + t * ch + ch + 2 * ch + ch * ch + ch
        flops = 2 * pixels * ch * 9 * ch + 2 * n * t * ch + 2 * pixels * ch * ch
        return Cost(params, flops, 3 * pixels * ch)
    if plan.kind == "head":
        cat = c["in_channels"]
        return Cost(2 * cat + 9 * cat * cout + cout, 2 * pixels * cout * 9 * cat, 2 * pixels * cat)
    raise ValueError(f"unknown unit kind {plan.kind!r}")


# The family ----------------------------------------------------------------------------------


class DemoConvFamily(BackboneFamily):
    """The ``demo-conv`` family behind vidnas's seam; torch is imported only to build modules."""

    name = FAMILY
    backbone_type = DemoConvBackbone

    def plan(self, spec):
        return demo_plan(spec)

    def unit_cost(self, plan, batch):
        return demo_unit_cost(plan, batch)

    def build_unit(self, plan):
        from vidnas_demo_plugin.network import build_demo_unit

        return build_demo_unit(plan)

    def build_network(self, spec):
        from vidnas_demo_plugin.network import DemoConvNet

        return DemoConvNet(spec)

    def unit_inputs(self, plan, backbone, batch, *, seed=0, dtype=None):
        from vidnas_demo_plugin.network import demo_unit_inputs

        return demo_unit_inputs(plan, backbone, batch, seed=seed, dtype=dtype)

    def call_unit(self, module, plan, tensors):
        from vidnas_demo_plugin.network import call_demo_unit

        return call_demo_unit(module, plan, tensors)

    def conditioning_elements(self, backbone, batch):
        return batch * backbone.frames * backbone.temb_dim  # the time embedding, repeated per frame


register_family(DemoConvFamily())

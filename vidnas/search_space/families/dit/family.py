"""The video diffusion transformer family behind vidnas's one seam (:class:`~vidnas.search_space.BackboneFamily`):
planning and counting from ``plan``, modules from ``network`` (imported only when a module is
built, so that describing and counting need no torch). Loaded through the ``vidnas.families``
entry point group, as a plugin's family is.
"""

from __future__ import annotations

from vidnas.search_space._family import BackboneFamily, register_family
from vidnas.search_space.families.dit.plan import dit_plan, dit_unit_cost
from vidnas.search_space.families.dit.spec import DiTBackbone


class DiTFamily(BackboneFamily):
    """The video diffusion transformer (Wan 2.1's family; CogVideoX, LTX-Video, Latte as styles)."""

    name = "dit"
    backbone_type = DiTBackbone

    def plan(self, spec):
        return dit_plan(spec)

    def unit_cost(self, plan, batch):
        return dit_unit_cost(plan, batch)

    def build_unit(self, plan):
        from vidnas.search_space.families.dit.network import build_dit_unit

        return build_dit_unit(plan)

    def build_network(self, spec):
        from vidnas.search_space.families.dit.network import VideoDiT

        return VideoDiT(spec)

    def unit_inputs(self, plan, backbone, batch, *, seed=0, dtype=None):
        from vidnas.search_space.families.dit.network import dit_unit_inputs

        return dit_unit_inputs(plan, backbone, batch, seed=seed, dtype=dtype)

    def call_unit(self, module, plan, tensors):
        from vidnas.search_space.families.dit.network import call_dit_unit

        return call_dit_unit(module, plan, tensors)

    def batch_of(self, plan, tensors):
        rows = tensors[0].shape[0] if tensors else 1  # clips for the conditioning and every token unit
        return max(1, rows // plan.frames) if plan.kind == "patch_embed" else rows

    def conditioning_elements(self, backbone, batch):
        # The time embedding, the AdaLN rows, the projected text and the rotary tables live through a call.
        d = backbone.dim
        elements = batch * (backbone.temb_dim + d * backbone.modulation_rows) + batch * backbone.context_tokens * d
        if backbone.rotary:  # cosines and sines of every token
            elements += backbone.tokens * 2 * backbone.rotary_width
        elif backbone.positions == "sincos3d":  # the table added to the video tokens
            elements += backbone.tokens * d
        return elements

    def reference_state_dict(self, spec, state, *, reference):
        from vidnas.search_space.families.dit.network import map_reference_state

        return map_reference_state(spec, state, reference=reference)


register_family(DiTFamily())

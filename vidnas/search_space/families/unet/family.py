"""The latent video UNet family behind vidnas's one seam (:class:`~vidnas.search_space.BackboneFamily`):
planning and counting from ``plan``, modules from ``network`` (imported only when a module is
built, so that describing and counting need no torch). Loaded through the ``vidnas.families``
entry point group, as a plugin's family is.
"""

from __future__ import annotations

from vidnas.search_space._family import BackboneFamily, register_family
from vidnas.search_space.families.unet.plan import unet_plan, unet_unit_cost
from vidnas.search_space.families.unet.spec import BackboneSpec


class UNetFamily(BackboneFamily):
    """The latent video UNet (Stable Video Diffusion's family)."""

    name = "unet"
    backbone_type = BackboneSpec

    def plan(self, spec):
        return unet_plan(spec)

    def unit_cost(self, plan, batch):
        return unet_unit_cost(plan, batch)

    def build_unit(self, plan):
        from vidnas.search_space.families.unet.network import build_unet_unit

        return build_unet_unit(plan)

    def build_network(self, spec):
        from vidnas.search_space.families.unet.network import VideoUNet

        return VideoUNet(spec)

    def unit_inputs(self, plan, backbone, batch, *, seed=0, dtype=None):
        from vidnas.search_space.families.unet.network import unet_unit_inputs

        return unet_unit_inputs(plan, backbone, batch, seed=seed, dtype=dtype)

    def call_unit(self, module, plan, tensors):
        from vidnas.search_space.families.unet.network import call_unet_unit

        return call_unet_unit(module, plan, tensors)

    def reference_state_dict(self, spec, state, *, reference):
        from vidnas.search_space.families.unet.weights import unet_reference_state_dict

        return unet_reference_state_dict(spec, state, reference=reference)

    def conditioning_elements(self, backbone, batch):
        # The time embedding and the context are repeated per frame and live through the call.
        n = batch * backbone.frames
        elements = n * backbone.temb_channels
        if backbone.cross_attention_dim:
            elements += n * backbone.context_tokens * backbone.cross_attention_dim
        return elements


register_family(UNetFamily())

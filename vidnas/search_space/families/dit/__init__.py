"""The video diffusion transformer family (Wan 2.1, CausVid, CogVideoX, LTX-Video, Latte): ``spec`` (the
backbone, no torch), ``plan`` (units, closed-form costs; registers the family), ``network`` (the
modules), ``weights`` (diffusers' weights under vidnas's names), ``presets`` and ``spaces``.
"""

"""The latent video UNet family (Stable Video Diffusion, SnapGen-V, MobileVD): ``spec`` (the backbone,
no torch), ``plan`` (units, closed-form costs; registers the family), ``network`` (the modules),
``weights`` (a reference's weights under vidnas's names), ``presets`` and ``spaces``.
"""

"""The built-in backbone families, one folder each (``unet``, ``dit``): backbone, plan, network,
reference weights, presets and spaces, registered through the ``vidnas.families``,
``vidnas.presets`` and ``vidnas.spaces`` entry point groups, as a plugin's family is.
"""

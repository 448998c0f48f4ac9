"""The built-in temporal and token ops, one module per kind, each registering its ops (and their
weight-sharing rules) on import: ``conv`` (none, shift, the convolutions), ``attention`` (1-D and 3-D
attention, causal, windowed, cross) and ``tokens`` (a video transformer's sub-layers). vidnas loads
them through the ``vidnas.temporal_ops`` entry point group, as it loads a plugin's ops.
"""

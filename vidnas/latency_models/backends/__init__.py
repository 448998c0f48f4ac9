"""The built-in latency backends, one module each; importing a module registers its backend.

vidnas loads them through its own entry points (group ``vidnas.backends``), as it loads a
plugin's: ``torch_eager`` (``torch``), ``onnx_runtime`` (``onnxruntime``), ``coreml`` and
``debug``. The modules are not named after the libraries they drive, so that nothing can
mistake one for the library itself. The registry and what backends share are in
:mod:`vidnas.latency_models._backends`.
"""

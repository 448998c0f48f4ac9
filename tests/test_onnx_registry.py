"""ONNX export builds torch.onnx's ATen-to-ONNX table once per process: the models it writes are byte
for byte those of a fresh table, and a caller's custom translation never leaks into the shared one."""

from __future__ import annotations

import pytest
import torch

from vidnas.search_space import _export


class _Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x):
        return torch.nn.functional.gelu(self.proj(x)).softmax(-1)


@pytest.fixture
def registration():
    pytest.importorskip("onnxscript")
    from torch.onnx._internal.exporter import _registration

    _export._reuse_torchlib_registry()
    return _registration


def test_exports_with_the_reused_table_are_identical_to_fresh_ones(registration, tmp_path, monkeypatch):
    module, args = _Small().eval(), (torch.randn(2, 8),)
    reused = _export.export_onnx(module, args, tmp_path / "reused.onnx").read_bytes()
    method = registration.ONNXRegistry.__dict__["from_torchlib"]
    assert method.__func__.vidnas_reused
    original = method.__func__.__wrapped__
    monkeypatch.setattr(registration.ONNXRegistry, "from_torchlib", classmethod(original))
    monkeypatch.setattr(_export, "_reuse_torchlib_registry", lambda: None)
    fresh = _export.export_onnx(module, args, tmp_path / "fresh.onnx").read_bytes()
    assert reused == fresh


def test_each_export_gets_its_own_copy(registration):
    first = registration.ONNXRegistry.from_torchlib()
    first.functions.setdefault("demo::op", []).append("custom")
    first.functions[next(iter(first.functions))].append("custom")
    second = registration.ONNXRegistry.from_torchlib()
    assert "demo::op" not in second.functions
    assert "custom" not in second.functions[next(iter(second.functions))]
    assert second.opset_version == first.opset_version

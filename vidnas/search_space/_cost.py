"""Closed-form costs of the network's pieces: parameters, FLOPs and peak working memory.

Every unit and every temporal op states its cost as a function of its shapes, next to
its ``forward``. Counting a 1.5 B-parameter network is then arithmetic (microseconds)
instead of a traced run; the test suite checks each formula against a run under
``FakeTensorMode`` with ``torch.utils.flop_counter`` (see ``_counting.trace_module``).

Conventions, shared with ``torch.utils.flop_counter``:

* FLOPs count only matrix multiplies, convolutions and attention, 2 per
  multiply-accumulate (normalisations, activations and element-wise ops are free);
* ``peak`` is in *elements*: the largest total size of tensors a call allocates that
  are alive at the same time, its output included, its inputs and weights excluded,
  in eager PyTorch with fused (flash) attention. Small terms (norm statistics,
  per-frame embeddings) are left out, so ``peak`` is an estimate within a few percent.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Cost:
    """Cost of one call: parameters, FLOPs and peak allocated elements."""

    params: int
    flops: int
    peak: int


def linear_params(cin: int, cout: int, bias: bool = True) -> int:
    return cin * cout + (cout if bias else 0)


def linear_flops(rows: int, cin: int, cout: int) -> int:
    return 2 * rows * cin * cout


def conv_params(cin: int, cout: int, kernel_elems: int) -> int:
    return cin * cout * kernel_elems + cout


def conv_flops(out_elems: int, cin: int, kernel_elems: int) -> int:
    """``out_elems`` = N * C_out * spatial output size."""
    return 2 * out_elems * cin * kernel_elems


def sdpa_flops(batch_heads: int, q_len: int, k_len: int, head_dim: int) -> int:
    """Scores and weighted values: ``2*q*k*d`` each."""
    return 4 * batch_heads * q_len * k_len * head_dim


def mlp_params(cin: int, hidden: int, cout: int) -> int:
    """Two linear layers with biases (``TimestepMLP``)."""
    return linear_params(cin, hidden) + linear_params(hidden, cout)


def feedforward_params(dim: int, hidden: int, out: int | None = None) -> int:
    """GEGLU feed-forward (``FeedForward``)."""
    return linear_params(dim, 2 * hidden) + linear_params(hidden, out or dim)


def feedforward_flops(tokens: int, dim: int, hidden: int, out: int | None = None) -> int:
    return linear_flops(tokens, dim, 2 * hidden) + linear_flops(tokens, hidden, out or dim)


def feedforward_peak(tokens: int, dim: int, hidden: int) -> int:
    """Projection (2h) alive with the gate (h) and product (h), then with product and output."""
    return tokens * max(4 * hidden, 3 * hidden + dim)


def attention_params(query_dim: int, inner: int, context_dim: int | None = None) -> int:
    """``Attention``: bias-free q/k/v and a biased output projection."""
    kv_dim = context_dim or query_dim
    return query_dim * inner + 2 * kv_dim * inner + linear_params(inner, query_dim)

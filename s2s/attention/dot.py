"""Dot-product attention family: Luong dot / general, scaled dot-product, multi-head.

- Luong, Pham & Manning 2015, https://arxiv.org/abs/1508.04025: score(q, k) = q.k ("dot") or
  q.(W k) ("general").
- Vaswani et al. 2017, https://arxiv.org/abs/1706.03762: score(q, k) = q.k / sqrt(d). Dividing by
  sqrt(d) keeps the scores' variance near 1 whatever the width, so the softmax does not saturate.
- Multi-head: Q = X W_q, K = M W_k, V = M W_v split into h heads, attended in parallel,
  concatenated and projected by W_o.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.attention.additive import query_key_mask
from s2s.attention.core import Attended, as_attention_mask, masked_softmax, recording
from s2s.errors import UserError


class DotAttention(nn.Module):
    """Single-head multiplicative attention; `kind` is "dot", "general" or "scaled"."""

    def __init__(self, query_dim: int, key_dim: int, kind: str = "dot"):
        super().__init__()
        assert kind in ("dot", "general", "scaled"), kind
        if kind != "general" and query_dim != key_dim:
            raise UserError(f"{kind!r} attention needs equal query and key sizes "
                             f"(got {query_dim} and {key_dim}); use 'general'")
        self.kind = kind
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False) if kind == "general" else None
        self.scale = 1.0 / math.sqrt(query_dim) if kind == "scaled" else 1.0

    def prepare(self, memory: Tensor) -> tuple[Tensor]:
        """Keys as the query sees them (projected once for "general")."""
        return (memory if self.key_proj is None else self.key_proj(memory),)  # (B, Tk, Dq)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                prepared: tuple[Tensor] | None = None) -> Attended:
        memory = x if memory is None else memory
        (keys,) = self.prepare(memory) if prepared is None else prepared  # (B, Tk, Dq)
        scores = (x @ keys.transpose(1, 2)) * self.scale  # (B, Tq, Tk)
        weights = masked_softmax(scores, query_key_mask(mask))  # (B, Tq, Tk)
        return Attended(weights @ memory, weights[:, None])  # (B, Tq, Dv), (B, 1, Tq, Tk)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention, for self- and cross-attention alike.

    Uses the fused `F.scaled_dot_product_attention` kernel and returns `weights=None`, unless
    `record_attention()` is on: then it computes softmax(QK^T/sqrt(d)) explicitly and returns the
    weights of every head, (B, H, Tq, Tk).
    """

    def __init__(self, dim: int, heads: int, key_dim: int | None = None, dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        if dim % heads:
            raise UserError(f"model size {dim} is not divisible by {heads} heads")
        key_dim = key_dim or dim
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(key_dim, dim, bias=bias)
        self.v_proj = nn.Linear(key_dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def prepare(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values per head; cross-attention computes them once per sentence."""
        return self.split_heads(self.k_proj(memory)), self.split_heads(self.v_proj(memory))

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                prepared: tuple[Tensor, Tensor] | None = None) -> Attended:
        memory = x if memory is None else memory
        k, v = self.prepare(memory) if prepared is None else prepared  # (B, H, Tk, Dh) each
        q = self.split_heads(self.q_proj(x))  # (B, H, Tq, Dh)
        mask = as_attention_mask(mask)  # (B, 1, Tq|1, Tk)
        dropout = self.dropout if self.training else 0.0
        if recording():
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
            weights = masked_softmax(scores, mask)  # (B, H, Tq, Tk)
            out = F.dropout(weights, dropout, self.training) @ v  # (B, H, Tq, Dh)
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)  # (B, Tq, D)
        return Attended(self.out_proj(out), weights)

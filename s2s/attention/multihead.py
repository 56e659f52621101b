"""Multi-head scaled dot-product attention (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762).

Q = X W_q, K = M W_k, V = M W_v are split into h heads, each attends with
softmax(Q K^T / sqrt(d_head)) V in parallel, and the heads are concatenated and projected by W_o.
The same module serves self-attention (memory = x), causal self-attention and cross-attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.attention.core import ATTENTION, Attended, as_attention_mask, masked_softmax, recording
from s2s.attention.scored import AttentionState, TextAttention
from s2s.errors import UserError
from s2s.typed import PositiveInt, Probability


@ATTENTION.register("multihead")
class MultiHeadAttention(TextAttention):
    """Multi-head scaled dot-product attention, for self- and cross-attention alike.

    Uses the fused `F.scaled_dot_product_attention` kernel and returns `weights=None`, unless
    recording is on: then it computes softmax(QK^T/sqrt(d)) explicitly and returns the weights of
    every head, (B, H, Tq, Tk).
    """

    @dataclass(frozen=True)
    class Config:
        type: Literal["multihead"] = "multihead"
        heads: PositiveInt = 1
        dropout: Probability = 0.0  # on the attention weights

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> "MultiHeadAttention":
        return cls(query_dim, cfg.heads, key_dim=key_dim, dropout=cfg.dropout)

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
                prepared: tuple[Tensor, Tensor] | None = None,
                state: AttentionState | None = None) -> Attended:
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

    def forward_groups(self, x: Tensor, sizes: list[int], prepared: list[tuple[Tensor, Tensor]],
                       masks: list[Tensor | None]) -> Tensor:
        """`forward` (without weights) for groups of rows that attend over different memories:
        x (N, Tq, D) holds groups of `sizes` rows; group g attends over `prepared[g]` with
        `masks[g]`. The projections run once over all N rows, the attention per group, so
        batches of different memory lengths are decoded together without padding."""
        q = self.split_heads(self.q_proj(x))  # (N, H, Tq, Dh)
        out = torch.cat([F.scaled_dot_product_attention(qg, k, v, attn_mask=as_attention_mask(m))
                         for qg, (k, v), m in zip(q.split(sizes), prepared, masks)])
        n, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(n, t, self.heads * self.head_dim))

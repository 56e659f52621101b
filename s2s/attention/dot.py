"""Dot-product scores: Luong's dot and general, and scaled dot-product (single head).

- Luong, Pham & Manning 2015, https://arxiv.org/abs/1508.04025: score(q, k) = q.k ("dot") or
  q.(W k) ("general").
- Vaswani et al. 2017, https://arxiv.org/abs/1706.03762: score(q, k) = q.k / sqrt(d). Dividing by
  sqrt(d) keeps the scores' variance near 1 whatever the width, so the softmax does not saturate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from s2s.attention.core import ATTENTION
from s2s.attention.scored import AttentionState, ScoredAttention
from s2s.errors import UserError

KINDS = {"dot": "dot", "general": "general", "scaled_dot": "scaled"}


@ATTENTION.register("dot", "general", "scaled_dot")
class DotAttention(ScoredAttention):
    """Single-head multiplicative attention; `kind` is "dot", "general" or "scaled"."""

    @dataclass(frozen=True)
    class Config:
        type: Literal["dot", "general", "scaled_dot"] = "dot"

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> "DotAttention":
        return cls(query_dim, key_dim, KINDS[cfg.type])

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

    def score(self, query: Tensor, prepared: tuple[Tensor, ...], mask: Tensor | None,
              state: AttentionState) -> Tensor:
        return (query @ prepared[0].transpose(1, 2)) * self.scale  # (B, Tq, Tk)

"""Additive (Bahdanau) attention: score(q, k) = v^T tanh(W_q q + W_k k).

Bahdanau, Cho & Bengio 2015, https://arxiv.org/abs/1409.0473. The same module is the soft
attention over image regions of Show, Attend and Tell (Xu et al. 2015,
https://arxiv.org/abs/1502.03044): regions take the place of source words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from s2s.attention.core import ATTENTION
from s2s.attention.scored import AttentionState, ScoredAttention
from s2s.typed import NonNegativeInt


@ATTENTION.register("additive")
class AdditiveAttention(ScoredAttention):
    """Bahdanau's MLP score. Keys are projected once per sentence by `prepare`."""

    @dataclass(frozen=True)
    class Config:
        type: Literal["additive"] = "additive"
        dim: NonNegativeInt = 0  # hidden size of the score; 0 = the query size

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> "AdditiveAttention":
        return cls(query_dim, key_dim, cfg.dim or None)

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or query_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def prepare(self, memory: Tensor) -> tuple[Tensor]:
        return (self.key_proj(memory),)  # (B, Tk, A)

    def hidden(self, query: Tensor, keys: Tensor) -> Tensor:
        """W_q q + W_k k for every query and key, (B, Tq, Tk, A): subclasses add their terms."""
        return self.query_proj(query)[:, :, None, :] + keys[:, None, :, :]

    def score(self, query: Tensor, prepared: tuple[Tensor, ...], mask: Tensor | None,
              state: AttentionState) -> Tensor:
        return self.v(torch.tanh(self.hidden(query, prepared[0]))).squeeze(-1)  # (B, Tq, Tk)

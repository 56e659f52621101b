"""Additive (Bahdanau) attention: score(q, k) = v^T tanh(W_q q + W_k k).

Bahdanau, Cho & Bengio 2015, https://arxiv.org/abs/1409.0473. The same module is the soft
attention over image regions of Show, Attend and Tell (Xu et al. 2015,
https://arxiv.org/abs/1502.03044): regions take the place of source words.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s2s.attention.core import Attended, masked_softmax


def query_key_mask(mask: Tensor | None) -> Tensor | None:
    """(B, Tk) key padding or (B, Tq, Tk) -> (B, Tq|1, Tk) for single-head scores."""
    return mask[:, None, :] if mask is not None and mask.dim() == 2 else mask


class AdditiveAttention(nn.Module):
    """Bahdanau's MLP score. Keys are projected once per sentence by `prepare`."""

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or query_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def prepare(self, memory: Tensor) -> tuple[Tensor]:
        """Project the keys once; a decoder keeps this in its state between steps."""
        return (self.key_proj(memory),)  # (B, Tk, A)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                prepared: tuple[Tensor] | None = None) -> Attended:
        memory = x if memory is None else memory
        (keys,) = self.prepare(memory) if prepared is None else prepared  # (B, Tk, A)
        query = self.query_proj(x)  # (B, Tq, A)
        scores = self.v(torch.tanh(query[:, :, None, :] + keys[:, None, :, :])).squeeze(-1)  # (B, Tq, Tk)
        weights = masked_softmax(scores, query_key_mask(mask))  # (B, Tq, Tk)
        return Attended(weights @ memory, weights[:, None])  # (B, Tq, Dv), (B, 1, Tq, Tk)

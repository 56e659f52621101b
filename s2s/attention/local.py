"""Predictive local attention, "local-p" (Luong, Pham & Manning 2015, https://arxiv.org/abs/1508.04025).

The decoder predicts where to look, p_t = (L - 1) sigmoid(v_p^T tanh(W_p h_t)) for a source of L
real tokens, and attends only to the window [p_t - D, p_t + D], favouring positions near p_t with
a Gaussian of standard deviation D / 2 (the paper's choice):

    a_t(s) ∝ exp(h_t^T W h_s) * exp(-(s - p_t)^2 / (2 (D/2)^2))   for |s - p_t| <= D, else 0

Renormalisation: Luong et al. take the softmax over the window and then multiply by the Gaussian,
so their weights sum to less than 1. Here the product is renormalised over the window (the
Gaussian's log is added to the score before the shared softmax), so the weights of every query
still sum to 1, as the attention contract promises and alignment statistics assume. The score
inside the window is Luong's "general" one. p_t is differentiable through the Gaussian; the
window's edges are not (as in the paper). Predicting over L - 1 rather than the padded length
keeps the window on real tokens, so a query always has a key to attend to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from s2s.attention.core import ATTENTION
from s2s.attention.scored import AttentionState, ScoredAttention
from s2s.typed import NonNegativeInt, PositiveInt


@ATTENTION.register("local_p")
class LocalPredictiveAttention(ScoredAttention):
    """Luong's local-p: a predicted centre, a window of +-D tokens, a Gaussian preference."""

    @dataclass(frozen=True)
    class Config:
        type: Literal["local_p"] = "local_p"
        window: PositiveInt = 5  # D: half-width of the window, in source tokens
        dim: NonNegativeInt = 0  # hidden size of the position predictor; 0 = the query size

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> "LocalPredictiveAttention":
        return cls(query_dim, key_dim, cfg.window, cfg.dim or None)

    def __init__(self, query_dim: int, key_dim: int, window: int = 5, hidden_dim: int | None = None):
        super().__init__()
        self.window = window
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False)  # W of the general score
        self.position_hidden = nn.Linear(query_dim, hidden_dim or query_dim, bias=False)  # W_p
        self.position_out = nn.Linear(hidden_dim or query_dim, 1, bias=False)  # v_p

    def prepare(self, memory: Tensor) -> tuple[Tensor]:
        return (self.key_proj(memory),)  # (B, Tk, Dq)

    def centre(self, query: Tensor, mask: Tensor | None, keys: int) -> Tensor:
        """p_t for every query, (B, Tq), in [0, L - 1]."""
        length = mask.sum(-1).float() if mask is not None else torch.full(
            query.shape[:2], float(keys), device=query.device)  # (B, Tq|1)
        where = torch.sigmoid(self.position_out(torch.tanh(self.position_hidden(query)))).squeeze(-1)
        return (length - 1) * where  # (B, Tq)

    def score(self, query: Tensor, prepared: tuple[Tensor, ...], mask: Tensor | None,
              state: AttentionState) -> Tensor:
        keys = prepared[0]
        content = query @ keys.transpose(1, 2)  # (B, Tq, Tk)
        offset = torch.arange(keys.size(1), device=query.device)[None, None, :] \
            - self.centre(query, mask, keys.size(1))[:, :, None]  # (B, Tq, Tk): s - p_t
        sigma = self.window / 2
        scores = content - offset ** 2 / (2 * sigma ** 2)
        return scores.masked_fill(offset.abs() > self.window, float("-inf"))

"""Coverage attention (Tu et al. 2016, https://arxiv.org/abs/1601.04811).

The decoder keeps a coverage vector: how much attention each source token has received so far,
C_{t,j} = sum_{t' < t} a_{t',j} (optionally divided by a predicted fertility, Tu et al.'s
Phi_j = N sigmoid(U_f h_j), so a word may be translated into several)
and the additive score sees it:

    score(h_t, k_j) = v^T tanh(W_q h_t + W_k k_j + V C_{t,j})

so the model can learn to move away from words it has translated and towards words it has not:
fewer dropped and repeated source words. Two optional companions:
- coverage loss (See et al. 2017, https://arxiv.org/abs/1704.04368): `loss` * sum_t sum_j
  min(a_{t,j}, C_{t,j}) added to training, penalising attending again to what is covered;
- coverage penalty in beam search (Wu et al. 2016, https://arxiv.org/abs/1609.08144):
  `decode.coverage_penalty` beta adds beta * sum_j log(min(sum_t a_{t,j}, 1)) to a finished
  hypothesis' score, favouring translations that attended to every source token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from s2s.attention.additive import AdditiveAttention
from s2s.attention.core import ATTENTION
from s2s.attention.scored import AttentionState
from s2s.typed import NonNegativeFloat, NonNegativeInt


@ATTENTION.register("coverage")
class CoverageAttention(AdditiveAttention):
    """Additive attention that also scores the coverage each source token has accumulated."""

    @dataclass(frozen=True)
    class Config:
        type: Literal["coverage"] = "coverage"
        dim: NonNegativeInt = 0  # hidden size of the score; 0 = the query size
        fertility: NonNegativeFloat = 0.0  # N of Tu et al.'s fertility; 0 = plain running sum
        loss: NonNegativeFloat = 0.0  # weight of the coverage loss (See et al. 2017); 0 = off

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> "CoverageAttention":
        return cls(query_dim, key_dim, cfg.dim or None, cfg.fertility, cfg.loss)

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None,
                 fertility: float = 0.0, loss: float = 0.0):
        super().__init__(query_dim, key_dim, hidden_dim)
        self.coverage_proj = nn.Linear(1, self.v.in_features, bias=False)  # V
        self.fertility = nn.Linear(key_dim, 1) if fertility else None  # U_f
        self.max_fertility, self.loss_weight = fertility, loss

    def prepare(self, memory: Tensor) -> tuple[Tensor, ...]:
        keys = self.key_proj(memory)  # (B, Tk, A)
        if self.fertility is None:
            return (keys,)
        return keys, self.max_fertility * torch.sigmoid(self.fertility(memory)).squeeze(-1)  # (B, Tk)

    def init_state(self, memory: Tensor, mask: Tensor | None) -> AttentionState:
        return {"attended": memory.new_zeros(memory.shape[:2])}  # (B, Tk)

    def advance(self, state: AttentionState, weights: Tensor) -> AttentionState:
        return {"attended": state["attended"] + weights}

    def coverage(self, state: AttentionState) -> Tensor:
        return state["attended"]

    def score(self, query: Tensor, prepared: tuple[Tensor, ...], mask: Tensor | None,
              state: AttentionState) -> Tensor:
        covered = state["attended"] if self.fertility is None else state["attended"] / prepared[1]
        hidden = self.hidden(query, prepared[0]) + self.coverage_proj(covered[:, :, None])[:, None]
        return self.v(hidden.tanh()).squeeze(-1)  # (B, Tq, Tk)

    def regularizer(self, weights: Tensor, target_mask: Tensor) -> Tensor | None:
        """loss * sum over real steps and source tokens of min(a_t, C_t) (See et al. 2017)."""
        if not self.loss_weight:
            return None
        rows = weights.mean(1)  # (B, T, S)
        covered = rows.cumsum(1) - rows  # attention received before step t
        overlap = torch.minimum(rows, covered).sum(-1)  # (B, T)
        return self.loss_weight * (overlap * target_mask).sum()

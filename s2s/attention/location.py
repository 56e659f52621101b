"""Location-aware attention (Chorowski et al. 2015, https://arxiv.org/abs/1506.07503).

The additive score also sees where the previous step looked: the previous weights a_{t-1} are
convolved with K filters of width r, f_t = F * a_{t-1}, and

    score(h_t, k_j) = v^T tanh(W_q h_t + W_k k_j + U f_{t,j})

so the decoder can learn "move on from the last position" for monotonic tasks, and tell apart
two source positions with the same content. The previous weights are this mechanism's per-step
state; before the first step they are uniform over the real source tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from s2s.attention.additive import AdditiveAttention
from s2s.attention.core import ATTENTION
from s2s.attention.scored import AttentionState
from s2s.errors import UserError
from s2s.typed import NonNegativeInt, PositiveInt


@ATTENTION.register("location")
class LocationAwareAttention(AdditiveAttention):
    """Additive attention plus a convolution over the previous step's weights."""

    @dataclass(frozen=True)
    class Config:
        type: Literal["location"] = "location"
        dim: NonNegativeInt = 0  # hidden size of the score; 0 = the query size
        filters: PositiveInt = 10  # K
        kernel: PositiveInt = 7  # r, odd, in source tokens

        def __post_init__(self):
            if self.kernel % 2 == 0:
                raise UserError(f"location attention's kernel must be odd to keep the source "
                                f"length, got {self.kernel}")

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> "LocationAwareAttention":
        return cls(query_dim, key_dim, cfg.dim or None, cfg.filters, cfg.kernel)

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None,
                 filters: int = 10, kernel: int = 7):
        super().__init__(query_dim, key_dim, hidden_dim)
        self.conv = nn.Conv1d(1, filters, kernel, padding=kernel // 2, bias=False)
        self.location_proj = nn.Linear(filters, self.v.in_features, bias=False)  # U

    def init_state(self, memory: Tensor, mask: Tensor | None) -> AttentionState:
        real = memory.new_ones(memory.shape[:2]) if mask is None else mask.to(memory.dtype)
        return {"previous": real / real.sum(-1, keepdim=True)}  # (B, Tk) uniform

    def advance(self, state: AttentionState, weights: Tensor) -> AttentionState:
        return {"previous": weights}

    def score(self, query: Tensor, prepared: tuple[Tensor, ...], mask: Tensor | None,
              state: AttentionState) -> Tensor:
        features = self.conv(state["previous"][:, None, :]).transpose(1, 2)  # (B, Tk, K)
        hidden = self.hidden(query, prepared[0]) + self.location_proj(features)[:, None]
        return self.v(hidden.tanh()).squeeze(-1)  # (B, Tq, Tk)

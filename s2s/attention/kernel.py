"""Nadaraya-Watson kernel regression as attention: the simplest query/key/value model.

f(x) = sum_i softmax_i(-(x - x_i)^2 w / 2) y_i (Nadaraya 1964, Watson 1964): the query is x, the
keys are the x_i, the values the y_i, and the only parameter is the kernel width w. It is here
because it shows attention without any learned projections; `s2s` uses it like any other score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.attention.core import ATTENTION
from s2s.attention.scored import AttentionState, ScoredAttention
from s2s.errors import UserError


@ATTENTION.register("gaussian")
class GaussianKernelAttention(ScoredAttention):
    """score(q, k) = -w ||q - k||^2 / 2 with one learned width w > 0."""

    @dataclass(frozen=True)
    class Config:
        type: Literal["gaussian"] = "gaussian"

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> "GaussianKernelAttention":
        return cls(query_dim, key_dim)

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        if query_dim != key_dim:
            raise UserError(f"'gaussian' attention needs equal query and key sizes "
                            f"(got {query_dim} and {key_dim})")
        self.raw_width = nn.Parameter(torch.zeros(()))  # softplus(0) ~ 0.69

    def score(self, query: Tensor, prepared: tuple[Tensor, ...], mask: Tensor | None,
              state: AttentionState) -> Tensor:
        distance = torch.cdist(query, prepared[0]).pow(2)  # (B, Tq, Tk)
        return -F.softplus(self.raw_width) * distance / 2

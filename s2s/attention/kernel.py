"""Nadaraya-Watson kernel regression as attention: the simplest query/key/value model.

f(x) = sum_i softmax_i(-(x - x_i)^2 w / 2) y_i (Nadaraya 1964, Watson 1964): the query is x, the
keys are the x_i, the values the y_i, and the only parameter is the kernel width w. It is here
because it shows attention without any learned projections; `s2s` uses it like any other score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.attention.additive import query_key_mask
from s2s.attention.core import Attended, masked_softmax
from s2s.errors import UserError


class GaussianKernelAttention(nn.Module):
    """score(q, k) = -w ||q - k||^2 / 2 with one learned width w > 0."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        if query_dim != key_dim:
            raise UserError(f"'gaussian' attention needs equal query and key sizes "
                            f"(got {query_dim} and {key_dim})")
        self.raw_width = nn.Parameter(torch.zeros(()))  # softplus(0) ~ 0.69

    def prepare(self, memory: Tensor) -> tuple[Tensor]:
        return (memory,)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                prepared: tuple[Tensor] | None = None) -> Attended:
        memory = x if memory is None else memory
        (keys,) = self.prepare(memory) if prepared is None else prepared  # (B, Tk, D)
        distance = torch.cdist(x, keys).pow(2)  # (B, Tq, Tk)
        scores = -F.softplus(self.raw_width) * distance / 2  # (B, Tq, Tk)
        weights = masked_softmax(scores, query_key_mask(mask))  # (B, Tq, Tk)
        return Attended(weights @ memory, weights[:, None])  # (B, Tq, Dv), (B, 1, Tq, Tk)

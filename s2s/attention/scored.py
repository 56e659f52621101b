"""The base of single-head attention mechanisms: a subclass writes only its score.

    weights = softmax over keys of score(query, keys), masked keys getting exactly zero
    out     = weights @ memory

`ScoredAttention` owns that tail (masking, softmax, weighted sum, returning the weights), so a
mechanism is a `score` method and, if it needs them, two optional pieces:

- `prepare(memory)`: per-sentence constants (projected keys), computed once by the decoder and
  kept in its decoding state;
- a per-step attention state (`init_state`, `advance`): what the mechanism remembers of its own
  past weights (location-aware attention keeps the previous weights, coverage their running sum).
  The state lives in the decoder's decoding state dict, so beam search reorders it with every
  other row state. Given several queries at once (a teacher-forced pass), `forward` walks them
  in order and threads the state through, so step-by-step and teacher-forced passes agree.
"""

from __future__ import annotations

import torch
from torch import Tensor

from s2s.attention.core import Attended, Attention, masked_softmax, query_key_mask

AttentionState = dict[str, Tensor]


class TextAttention(Attention):
    """What a decoder may call on any text attention module, single- or multi-head."""

    def prepare(self, memory: Tensor) -> tuple[Tensor, ...]:
        """Per-sentence constants derived from the memory (B, Tk, Dk); here, the memory itself."""
        return (memory,)

    def init_state(self, memory: Tensor, mask: Tensor | None) -> AttentionState:
        """The per-step state before the first query; empty for stateless mechanisms."""
        return {}

    def advance(self, state: AttentionState, weights: Tensor) -> AttentionState:
        """The state after one query row attended with `weights` (B, Tk)."""
        return state

    def next_state(self, state: AttentionState, weights: Tensor | None) -> AttentionState:
        """The state after every query row of `weights` (B, heads, Tq, Tk), in order."""
        if not state:
            return state
        rows = weights.mean(1)  # (B, Tq, Tk)
        for t in range(rows.size(1)):
            state = self.advance(state, rows[:, t])
        return state

    def coverage(self, state: AttentionState) -> Tensor | None:
        """Attention each source position received so far (B, Tk), if the state keeps it."""
        return None

    def regularizer(self, weights: Tensor, target_mask: Tensor) -> Tensor | None:
        """An extra training loss from the weights (B, heads, T, S) of real steps, or None."""
        return None


class ScoredAttention(TextAttention):
    """Single-head attention from a score: subclasses implement `score` (and maybe the state)."""

    def score(self, query: Tensor, prepared: tuple[Tensor, ...], mask: Tensor | None,
              state: AttentionState) -> Tensor:
        """Scores (B, Tq, Tk) of queries (B, Tq, Dq) against the prepared keys."""
        raise NotImplementedError

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                prepared: tuple[Tensor, ...] | None = None,
                state: AttentionState | None = None) -> Attended:
        memory = x if memory is None else memory
        prepared = self.prepare(memory) if prepared is None else prepared
        mask = query_key_mask(mask)  # (B, Tq|1, Tk)
        state = self.init_state(memory, mask[:, 0] if mask is not None else None) \
            if state is None else state
        if not state:
            weights = masked_softmax(self.score(x, prepared, mask, state), mask)  # (B, Tq, Tk)
        else:  # each query needs the state its predecessors left
            rows = []
            for t in range(x.size(1)):
                row_mask = mask if mask is None or mask.size(1) == 1 else mask[:, t:t + 1]
                row = masked_softmax(self.score(x[:, t:t + 1], prepared, row_mask, state), row_mask)
                state = self.advance(state, row[:, 0])
                rows.append(row)
            weights = torch.cat(rows, 1)  # (B, Tq, Tk)
        return Attended(weights @ memory, weights[:, None])  # (B, Tq, Dv), (B, 1, Tq, Tk)

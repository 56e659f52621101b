"""What every attention module shares: the result type, masks, the recording switch, the registry.

Every module in `s2s.attention` is an `Attention` (an `nn.Module`) whose
`forward(x, memory=None, mask=None)` returns `Attended(out, weights)`, batch-first. `weights` is
what a person would plot: an alignment (B, heads, Tq, Tk), a channel gate (B, C), a spatial gate
(B, H, W) or an affine transform (B, 2, 3). Masks are boolean and True means "may attend".

Multi-head attention skips computing its weights (using the fused SDPA kernel) unless recording
is on (`record_attention()`, or a `Recorder`), so inspection costs nothing when unused and no
module keeps per-batch state for it.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import NamedTuple

import torch
from torch import Tensor, nn

from s2s.registry import Registry

_RECORDING = contextvars.ContextVar("s2s_record_attention", default=False)

ATTENTION: Registry = Registry("attention type")  # text attention mechanisms, by recipe name


class Attended(NamedTuple):
    """The output of an attention module and the weights that produced it."""

    out: Tensor
    weights: Tensor | None


class Attention(nn.Module):
    """Marks a module whose weights a `Recorder` collects (text and vision attention alike)."""


@contextlib.contextmanager
def record_attention(enabled: bool = True):
    """Within this block, modules that can skip their weights (multi-head SDPA) return them."""
    token = _RECORDING.set(enabled)
    try:
        yield
    finally:
        _RECORDING.reset(token)


def recording() -> bool:
    """True inside `record_attention()`."""
    return _RECORDING.get()


def padding_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B,) lengths -> (B, T) bool mask, True on real tokens."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def causal_mask(size: int, device: torch.device | None = None) -> Tensor:
    """(T, T) bool mask: position i may attend to positions j <= i."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


def as_attention_mask(mask: Tensor | None) -> Tensor | None:
    """Key-padding (B, Tk) or full (B, Tq, Tk) masks -> (B, 1, Tq|1, Tk) to broadcast over heads."""
    if mask is None:
        return None
    if mask.dim() == 2:
        return mask[:, None, None, :]  # (B, 1, 1, Tk)
    if mask.dim() == 3:
        return mask[:, None, :, :]  # (B, 1, Tq, Tk)
    return mask


def query_key_mask(mask: Tensor | None) -> Tensor | None:
    """(B, Tk) key padding or (B, Tq, Tk) -> (B, Tq|1, Tk) for single-head scores."""
    return mask[:, None, :] if mask is not None and mask.dim() == 2 else mask


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis where masked-out keys get exactly zero weight.

    Uses -inf rather than a large negative constant, which is not representable in half precision.
    Every query must be allowed at least one key.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(scores.dtype)

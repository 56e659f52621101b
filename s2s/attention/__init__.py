"""The shared attention modules, used by text and vision models alike.

`build_attention(config, query_dim, key_dim)` turns a recipe's `attention:` section into a
module; `ATTENTION.names()` lists the choices. A new mechanism is one class with a nested
`Config` and one `@ATTENTION.register(name)` line (see `scored.py` and, for a small example,
`kernel.py`); importing its module here registers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from s2s.attention.additive import AdditiveAttention
from s2s.attention.core import (ATTENTION, Attended, Attention, as_attention_mask, causal_mask,
                                masked_softmax, padding_mask, query_key_mask, record_attention,
                                recording)
from s2s.attention.coverage import CoverageAttention
from s2s.attention.dot import DotAttention
from s2s.attention.kernel import GaussianKernelAttention
from s2s.attention.local import LocalPredictiveAttention
from s2s.attention.location import LocationAwareAttention
from s2s.attention.multihead import MultiHeadAttention
from s2s.attention.recorder import Recorder
from s2s.attention.scored import AttentionState, ScoredAttention, TextAttention

__all__ = ["ATTENTION", "AdditiveAttention", "Attended", "Attention", "AttentionState",
           "CoverageAttention", "DotAttention", "GaussianKernelAttention",
           "LocalPredictiveAttention", "LocationAwareAttention", "MultiHeadAttention",
           "NoAttention", "Recorder", "ScoredAttention", "TextAttention", "as_attention_mask",
           "attention_config", "build_attention", "causal_mask", "masked_softmax",
           "padding_mask", "query_key_mask", "record_attention", "recording"]


@ATTENTION.register("none")
class NoAttention:
    """`type: none`: no attention module at all; the RNN decoder then sees one fixed context C."""

    @dataclass(frozen=True)
    class Config:
        type: Literal["none"] = "none"

    @classmethod
    def from_config(cls, cfg: Config, query_dim: int, key_dim: int) -> None:
        return None


def attention_config(type: str = "additive", **settings: Any):
    """The settings dataclass of mechanism `type` (an unknown type is a UserError)."""
    return ATTENTION.get(type).Config(type=type, **settings)


def build_attention(config, query_dim: int, key_dim: int) -> nn.Module | None:
    """The module a recipe's settings name, or None for `type: none` (the fixed-context baseline)."""
    return ATTENTION.get(config.type).from_config(config, query_dim, key_dim)

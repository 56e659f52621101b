"""The shared attention modules, used by text and vision models alike.

`build_attention(config, query_dim, key_dim)` turns a recipe's `attention:` section into a
module; `ATTENTION.names()` lists the choices.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from s2s.attention.additive import AdditiveAttention
from s2s.attention.core import (Attended, as_attention_mask, causal_mask, masked_softmax,
                                padding_mask, record_attention, recording)
from s2s.attention.dot import DotAttention, MultiHeadAttention
from s2s.attention.kernel import GaussianKernelAttention
from s2s.registry import Registry

__all__ = ["Attended", "AttentionConfig", "ATTENTION", "AdditiveAttention", "DotAttention",
           "GaussianKernelAttention", "MultiHeadAttention", "as_attention_mask", "build_attention",
           "causal_mask", "masked_softmax", "padding_mask", "record_attention", "recording"]


@dataclass(frozen=True)
class AttentionConfig:
    """Recipe section `model.attention`."""

    type: str = "additive"  # none | additive | dot | general | scaled_dot | multihead | gaussian
    dim: int = 0  # hidden size of the additive score; 0 = the query size
    heads: int = 1  # multihead only
    dropout: float = 0.0  # multihead only


ATTENTION: Registry = Registry("attention type")
ATTENTION.register("none")(None)
ATTENTION.register("additive")(lambda cfg, q, k: AdditiveAttention(q, k, cfg.dim or None))
ATTENTION.register("dot")(lambda cfg, q, k: DotAttention(q, k, "dot"))
ATTENTION.register("general")(lambda cfg, q, k: DotAttention(q, k, "general"))
ATTENTION.register("scaled_dot")(lambda cfg, q, k: DotAttention(q, k, "scaled"))
ATTENTION.register("multihead")(
    lambda cfg, q, k: MultiHeadAttention(q, cfg.heads, key_dim=k, dropout=cfg.dropout))
ATTENTION.register("gaussian")(lambda cfg, q, k: GaussianKernelAttention(q, k))


def build_attention(config: AttentionConfig, query_dim: int, key_dim: int) -> nn.Module | None:
    """The module a recipe names, or None for `type: none` (the fixed-context baseline)."""
    factory = ATTENTION.get(config.type)
    return None if factory is None else factory(config, query_dim, key_dim)

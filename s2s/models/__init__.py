"""Architectures, by the name a recipe gives in `model.arch`.

Each architecture registers its config dataclass (parsed from the recipe) and a builder; the
builder is the only place that chooses between them.
"""

from __future__ import annotations

from typing import Any, Callable

from s2s.models.captioner import Captioner, CaptionerConfig
from s2s.models.rnn import RNNConfig, RNNSeq2Seq
from s2s.models.seq2seq import Seq2Seq, reorder_state
from s2s.models.transformer import TransformerConfig, TransformerSeq2Seq
from s2s.registry import Registry

MODEL_CONFIGS: Registry = Registry("model.arch")
MODEL_BUILDERS: dict[str, Callable[..., Seq2Seq]] = {}


def register(arch: str, config: type, builder: Callable[..., Seq2Seq]) -> None:
    MODEL_CONFIGS.register(arch)(config)
    MODEL_BUILDERS[arch] = builder


register("rnn", RNNConfig, RNNSeq2Seq)
register("transformer", TransformerConfig, TransformerSeq2Seq)
register("captioner", CaptionerConfig, Captioner)


def build_model(cfg: Any, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    """The model a recipe's `model` section describes."""
    return MODEL_BUILDERS[cfg.arch](cfg, src_vocab, tgt_vocab)


__all__ = ["MODEL_CONFIGS", "Seq2Seq", "build_model", "reorder_state", "register"]

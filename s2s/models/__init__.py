"""Architectures, by the name a recipe gives in `model.arch`.

Each architecture is a class registered in `MODELS` that carries its recipe settings as `Config`;
`build_model` is the only place that chooses between them.
"""

from __future__ import annotations

from typing import Any

from s2s.models.captioner import Captioner
from s2s.models.rnn import RNNSeq2Seq
from s2s.models.seq2seq import ATTENTION_KINDS, Seq2Seq, reorder_state
from s2s.models.transformer import TransformerSeq2Seq
from s2s.registry import Registry

MODELS: Registry = Registry("model.arch")
MODELS.register("rnn")(RNNSeq2Seq)
MODELS.register("transformer")(TransformerSeq2Seq)
MODELS.register("captioner")(Captioner)


def build_model(cfg: Any, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    """The model a recipe's `model` section describes."""
    return MODELS.get(cfg.arch)(cfg, src_vocab, tgt_vocab)


__all__ = ["ATTENTION_KINDS", "MODELS", "Seq2Seq", "build_model", "reorder_state"]

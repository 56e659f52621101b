"""The Transformer (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762), its attention built
through the attention registry: multi-head scaled dot-product for self-attention, and for
cross-attention too unless the recipe names another mechanism (`cross_attention: {type: additive}`).

Encoder layer: self-attention, then a position-wise feed-forward network (two linear layers).
Decoder layer: causal self-attention, cross-attention over the encoder output (keys and values),
feed-forward. Pre-norm (LayerNorm before each sub-layer, stabler for small data and no warm-up
tricks) or post-norm (the paper's). Positions are the paper's sinusoids,
P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(i / 10000^(2j/d)), or learned.

Incremental decoding keeps, per decoder layer, the self-attention keys/values of the prefix
(appended one position per step) and the cross-attention keys/values (computed once per sentence)
in the decoding state; the current position is the cache length. A step costs one position's
work, not a pass over the whole prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.attention import ATTENTION, MultiHeadAttention, build_attention, causal_mask, recording
from s2s.errors import UserError
from s2s.models.seq2seq import EncoderDecoder, State
from s2s.ops import dropout
from s2s.typed import PositiveInt, Probability
from s2s.vocab import PAD


@dataclass(frozen=True)
class TransformerDecoderSettings:
    """What the Transformer decoder needs; both configs below contain these fields."""

    d_model: PositiveInt = 256
    heads: PositiveInt = 4
    ffn_dim: PositiveInt = 1024
    dec_layers: PositiveInt = 3
    dropout: Probability = 0.1  # on embeddings and every sub-layer's output
    attn_dropout: Probability = 0.0  # on attention weights
    act_dropout: Probability = 0.0  # inside the feed-forward network
    activation: Literal["relu", "gelu", "swish"] = "relu"  # swish = SiLU, x * sigmoid(x) (Marian)
    norm: Literal["pre", "post"] = "pre"
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_positions: PositiveInt = 1024
    scale_embeddings: bool = True  # token embeddings * sqrt(d_model) before positions are added
    tie_output: bool = True  # the output layer is the target embedding table
    output_bias: bool = False  # a bias on the output layer (Marian's final_logits_bias)
    # the cross-attention mechanism; null = multi-head scaled dot-product with `heads` heads
    cross_attention: Any = field(default=None, metadata={"by_type": ATTENTION})


@dataclass(frozen=True)
class TransformerDecoderConfig(TransformerDecoderSettings):
    """The captioner's `decoder: {type: transformer}` section."""

    type: Literal["transformer"] = "transformer"


@dataclass(frozen=True)
class TransformerConfig(TransformerDecoderSettings):
    """Recipe section `model` for `arch: transformer`: the decoder's settings plus the encoder's."""

    arch: Literal["transformer"] = "transformer"
    enc_layers: PositiveInt = 3
    share_embeddings: bool = True  # one table for source and target (joint vocabulary)


def sinusoids(length: int, dim: int) -> Tensor:
    """P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(i / 10000^(2j/d))."""
    position = torch.arange(length, dtype=torch.float)[:, None]  # (T, 1)
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)
    return table  # (T, D)


def self_attention(cfg: TransformerDecoderSettings) -> nn.Module:
    return build_attention(MultiHeadAttention.Config(heads=cfg.heads, dropout=cfg.attn_dropout),
                           cfg.d_model, cfg.d_model)


def cross_attention(cfg: TransformerDecoderSettings) -> nn.Module:
    mechanism = cfg.cross_attention or MultiHeadAttention.Config(heads=cfg.heads,
                                                                 dropout=cfg.attn_dropout)
    module = build_attention(mechanism, cfg.d_model, cfg.d_model)
    if module is None:
        raise UserError("model.cross_attention cannot be none: the decoder reads the source through it")
    return module


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str, dropout: float):
        super().__init__()
        self.inner, self.outer = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.activation = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu}[activation]
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        hidden = dropout(self.activation(self.inner(x)), self.dropout, self.training)
        return self.outer(hidden)


class Sublayer(nn.Module):
    """x + dropout(f(norm(x))) (pre-norm) or norm(x + dropout(f(x))) (post-norm)."""

    def __init__(self, dim: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm, self.dropout, self.pre_norm = nn.LayerNorm(dim), dropout, pre_norm

    def forward(self, x: Tensor, f) -> tuple[Tensor, Tensor | None]:
        out, weights = f(self.norm(x) if self.pre_norm else x)
        x = x + dropout(out, self.dropout, self.training)
        return (x if self.pre_norm else self.norm(x)), weights


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network; `self_attn` replaces the multi-head
    self-attention the settings describe (image encoders give focal attention)."""

    def __init__(self, cfg: TransformerDecoderSettings, self_attn: nn.Module | None = None):
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attn = self_attention(cfg) if self_attn is None else self_attn
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation, cfg.act_dropout)
        self.attn_block = Sublayer(cfg.d_model, cfg.dropout, pre)
        self.ffn_block = Sublayer(cfg.d_model, cfg.dropout, pre)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x, _ = self.attn_block(x, lambda h: self.self_attn(h, mask=mask))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerDecoderSettings):
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attn = self_attention(cfg)
        self.cross_attn = cross_attention(cfg)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation, cfg.act_dropout)
        self.self_block, self.cross_block, self.ffn_block = (
            Sublayer(cfg.d_model, cfg.dropout, pre) for _ in range(3))

    def forward(self, x: Tensor, memory: Tensor, cross_prepared: tuple, src_mask: Tensor,
                self_mask: Tensor | None, cache: tuple[Tensor, Tensor] | None,
                cross_state: dict) -> tuple[Tensor, Tensor | None, tuple[Tensor, Tensor], dict]:
        """x (B, T, D) -> (x, cross-attention weights (B, h, T, S) or None, self-attention K/V,
        the cross-attention mechanism's state after these positions).

        With `cache` (the keys/values of earlier positions), x holds only new positions.
        """
        new_kv: list = []

        def attend_self(h: Tensor):
            k, v = self.self_attn.prepare(h)  # (B, H, T, Dh) each
            if cache is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            new_kv.append((k, v))
            return self.self_attn(h, mask=self_mask, prepared=(k, v))

        x, _ = self.self_block(x, attend_self)
        x, weights = self.cross_block(x, lambda h: self.cross_attn(h, memory, src_mask,
                                                                    cross_prepared, cross_state))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x, weights, new_kv[0], self.cross_attn.next_state(cross_state, weights)

    def step_groups(self, x: Tensor, sizes: list[int], caches: list[tuple[Tensor, Tensor] | None],
                    crosses: list[tuple], masks: list[Tensor]) -> tuple[Tensor, list[tuple]]:
        """One decoding step of several batches (groups of `sizes` rows of x (N, 1, D), each
        with its own self-attention cache, cross-attention keys/values and source mask): the
        linear layers run once over all rows. Multi-head attention without per-step state only.
        Returns x and each group's self-attention keys/values."""
        new_kv: list = []

        def attend_self(h: Tensor):
            k, v = self.self_attn.prepare(h)  # (N, H, 1, Dh) each
            for kg, vg, cache in zip(k.split(sizes), v.split(sizes), caches):
                new_kv.append((kg, vg) if cache is None else
                              (torch.cat([cache[0], kg], 2), torch.cat([cache[1], vg], 2)))
            return self.self_attn.forward_groups(h, sizes, new_kv, [None] * len(sizes)), None

        x, _ = self.self_block(x, attend_self)
        x, _ = self.cross_block(x, lambda h: (self.cross_attn.forward_groups(h, sizes, crosses, masks),
                                              None))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x, new_kv


def new_embedding(vocab: int, dim: int) -> nn.Embedding:
    table = nn.Embedding(vocab, dim, padding_idx=PAD)
    nn.init.normal_(table.weight, 0.0, dim ** -0.5)
    with torch.no_grad():
        table.weight[PAD].zero_()
    return table


class Positions(nn.Module):
    """Token embeddings * sqrt(d) (unless `scale` is off) + positions (sinusoidal or learned),
    then dropout."""

    def __init__(self, dim: int, kind: str, max_positions: int, dropout_p: float,
                 scale: bool = True):
        super().__init__()
        self.max_positions, self.dropout_p = max_positions, dropout_p
        self.scale = math.sqrt(dim) if scale else 1.0
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(max_positions, dim) * dim ** -0.5)
        else:
            self.register_buffer("table", sinusoids(max_positions, dim), persistent=False)

    def forward(self, embedded: Tensor, start: int = 0) -> Tensor:
        length = embedded.size(1)
        if start + length > self.max_positions:
            raise UserError(f"sequence of {start + length} tokens is longer than model.max_positions "
                            f"({self.max_positions})")
        x = embedded * self.scale + self.table[start:start + length]
        return dropout(x, self.dropout_p, self.training)  # (B, T, D)


class TransformerDecoder(nn.Module):
    """Target embeddings, decoder layers over a memory (B, S, D), the output layer.

    The memory may be an encoder's output or image regions; the decoding state holds each
    layer's cross-attention keys/values (computed once) and self-attention cache (grown per step),
    and the cross-attention mechanism's per-step state when it has one.
    """

    constant_state = ("memory", "mask", "cross.")

    def __init__(self, cfg: TransformerDecoderSettings, vocab: int, embed: nn.Embedding | None = None):
        super().__init__()
        self.embed = embed if embed is not None else new_embedding(vocab, cfg.d_model)
        self.positions = Positions(cfg.d_model, cfg.positions, cfg.max_positions, cfg.dropout,
                                   cfg.scale_embeddings)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.generator = nn.Linear(cfg.d_model, vocab, bias=cfg.output_bias)
        if cfg.output_bias:
            nn.init.zeros_(self.generator.bias)
        if cfg.tie_output:
            self.generator.weight = self.embed.weight

    def attention_names(self) -> dict[str, list[str]]:
        layers = range(len(self.layers))
        return {"cross": [f"layers.{i}.cross_attn" for i in layers],
                "decoder-self": [f"layers.{i}.self_attn" for i in layers]}

    def init_state(self, memory: Tensor, mask: Tensor, summary: Tensor | None = None) -> State:
        """State from a memory (B, S, D) and its mask (B, S); a summary vector is not needed."""
        state: State = {"memory": memory, "mask": mask}
        for i, layer in enumerate(self.layers):
            state[f"cross.{i}"] = layer.cross_attn.prepare(memory)  # keys (and values), once
            state[f"attention.{i}"] = layer.cross_attn.init_state(memory, mask)  # per step
        return state

    def decode(self, state: State, tgt: Tensor, start: int, self_mask: Tensor | None,
               cached: bool) -> tuple[Tensor, State, Tensor | None]:
        x = self.positions(self.embed(tgt), start)
        new_state, layer_weights = dict(state), []
        for i, layer in enumerate(self.layers):
            cache = state[f"self.{i}"] if cached else None
            x, weights, kv, after = layer(x, state["memory"], state[f"cross.{i}"], state["mask"],
                                          self_mask, cache, state[f"attention.{i}"])
            new_state[f"self.{i}"], new_state[f"attention.{i}"] = kv, after
            layer_weights.append(weights)
        weights = None if layer_weights[0] is None else torch.stack(layer_weights, 1)  # (B, L, H, T, S)
        return self.norm(x), new_state, weights

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        x, state, weights = self.decode(state, prev_tokens[:, None], self.decoded(state), None,
                                        "self.0" in state)
        return self.generator(x[:, 0]), state, weights  # (B, V)

    def step_many(self, states: list[State], prev_tokens: list[Tensor]) -> list[tuple[Tensor, State]]:
        """`step` for several decoding states (batches that started at different times, with
        sources of different lengths): embeddings, projections, feed-forward layers and the
        output layer run once over all their rows; only attention runs per batch."""
        fused = len(states) > 1 and not recording() and all(
            type(layer.self_attn) is MultiHeadAttention and type(layer.cross_attn) is MultiHeadAttention
            for layer in self.layers)
        if not fused:
            return [self.step(state, prev)[:2] for state, prev in zip(states, prev_tokens)]
        sizes = [prev.numel() for prev in prev_tokens]
        x = torch.cat([self.positions(self.embed(prev[:, None]), self.decoded(state))
                       for state, prev in zip(states, prev_tokens)])  # (N, 1, D)
        new_states = [dict(state) for state in states]
        for i, layer in enumerate(self.layers):
            x, kvs = layer.step_groups(x, sizes, [state.get(f"self.{i}") for state in states],
                                       [state[f"cross.{i}"] for state in states],
                                       [state["mask"] for state in states])
            for state, kv in zip(new_states, kvs):
                state[f"self.{i}"] = kv
        logits = self.generator(self.norm(x)[:, 0])  # (N, V)
        return list(zip(logits.split(sizes), new_states))

    @staticmethod
    def decoded(state: State) -> int:
        """How many target positions a decoding state holds."""
        return state["self.0"][0].size(2) if "self.0" in state else 0

    def features(self, state: State, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        mask = causal_mask(tgt_in.size(1), tgt_in.device)[None]  # (1, T, T)
        x, _, weights = self.decode(state, tgt_in, 0, mask, cached=False)
        return x, weights

    def regularizer(self, weights: Tensor | None, target_mask: Tensor) -> Tensor:
        """The cross-attention mechanism's own training loss (coverage), summed over layers."""
        total = torch.zeros((), device=target_mask.device)
        if weights is None:
            return total
        for i, layer in enumerate(self.layers):
            own = layer.cross_attn.regularizer(weights[:, i], target_mask)
            total = total if own is None else total + own
        return total

    def coverage(self, state: State) -> Tensor | None:
        """Coverage averaged over the layers whose cross-attention keeps it."""
        found = [layer.cross_attn.coverage(state[f"attention.{i}"])
                 for i, layer in enumerate(self.layers)]
        found = [c for c in found if c is not None]
        if not found:
            return None
        return torch.stack(found).mean(0).masked_fill(~state["mask"], 1.0)


class TransformerSeq2Seq(EncoderDecoder):
    Config = TransformerConfig

    def __init__(self, cfg: TransformerConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        if cfg.share_embeddings and src_vocab != tgt_vocab:
            raise UserError("model.share_embeddings needs a joint vocabulary (tokenizer.joint: true)")
        if cfg.d_model % cfg.heads:
            raise UserError(f"model.d_model ({cfg.d_model}) must be divisible by model.heads "
                            f"({cfg.heads})")
        self.cfg = cfg
        self.src_embed = new_embedding(src_vocab, cfg.d_model)
        self.src_positions = Positions(cfg.d_model, cfg.positions, cfg.max_positions, cfg.dropout,
                                       cfg.scale_embeddings)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.enc_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.decoder = TransformerDecoder(cfg, tgt_vocab,
                                          self.src_embed if cfg.share_embeddings else None)

    def attention_names(self) -> dict[str, list[str]]:
        return {**super().attention_names(),
                "encoder-self": [f"encoder.{i}.self_attn" for i in range(len(self.encoder))]}

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        x = self.src_positions(self.src_embed(src))
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.decoder.init_state(self.enc_norm(x), src_mask)  # memory (B, S, D)

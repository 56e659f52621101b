"""The Transformer (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762), built on
`s2s.attention.MultiHeadAttention` for self- and cross-attention alike.

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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.attention import MultiHeadAttention, causal_mask
from s2s.data.tokenizer import PAD
from s2s.errors import UserError
from s2s.models.seq2seq import EncoderDecoder, State
from s2s.ops import dropout


@dataclass(frozen=True)
class TransformerConfig:
    """Recipe section `model` for `arch: transformer`."""

    arch: str = "transformer"
    d_model: int = 256
    heads: int = 4
    ffn_dim: int = 1024
    enc_layers: int = 3
    dec_layers: int = 3
    dropout: float = 0.1  # on embeddings and every sub-layer's output
    attn_dropout: float = 0.0  # on attention weights
    act_dropout: float = 0.0  # inside the feed-forward network
    activation: str = "relu"  # relu | gelu
    norm: str = "pre"  # pre | post
    positions: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 1024
    share_embeddings: bool = True  # one table for source and target (joint vocabulary)
    tie_output: bool = True  # the output layer is the target embedding table


def sinusoids(length: int, dim: int) -> Tensor:
    """P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(i / 10000^(2j/d))."""
    position = torch.arange(length, dtype=torch.float)[:, None]  # (T, 1)
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)
    return table  # (T, D)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str, dropout: float):
        super().__init__()
        self.inner, self.outer = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.activation = {"relu": F.relu, "gelu": F.gelu}[activation]
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
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.heads, dropout=cfg.attn_dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation, cfg.act_dropout)
        self.attn_block = Sublayer(cfg.d_model, cfg.dropout, pre)
        self.ffn_block = Sublayer(cfg.d_model, cfg.dropout, pre)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x, _ = self.attn_block(x, lambda h: self.self_attn(h, mask=mask))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.heads, dropout=cfg.attn_dropout)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.heads, dropout=cfg.attn_dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation, cfg.act_dropout)
        self.self_block, self.cross_block, self.ffn_block = (
            Sublayer(cfg.d_model, cfg.dropout, pre) for _ in range(3))

    def forward(self, x: Tensor, cross_kv: tuple[Tensor, Tensor], src_mask: Tensor,
                self_mask: Tensor | None, cache: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor | None, tuple[Tensor, Tensor]]:
        """x (B, T, D) -> (x, cross-attention weights (B, H, T, S) or None, self-attention K/V).

        With `cache` (the keys/values of earlier positions), x holds only new positions.
        """
        new_kv: list = []

        def self_attention(h: Tensor):
            k, v = self.self_attn.prepare(h)  # (B, H, T, Dh) each
            if cache is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            new_kv.append((k, v))
            return self.self_attn(h, mask=self_mask, prepared=(k, v))

        x, _ = self.self_block(x, self_attention)
        x, weights = self.cross_block(x, lambda h: self.cross_attn(h, mask=src_mask,
                                                                    prepared=cross_kv))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x, weights, new_kv[0]


@dataclass(frozen=True)
class TransformerDecoderConfig:
    """The decoder's own settings; the captioner's `decoder: {type: transformer}` section."""

    type: str = "transformer"
    d_model: int = 256
    heads: int = 4
    ffn_dim: int = 1024
    layers: int = 3
    dropout: float = 0.1
    attn_dropout: float = 0.0
    act_dropout: float = 0.0
    activation: str = "relu"
    norm: str = "pre"
    positions: str = "sinusoidal"
    max_positions: int = 1024
    tie_output: bool = True


def check(cfg) -> None:
    if cfg.norm not in ("pre", "post") or cfg.positions not in ("sinusoidal", "learned"):
        raise UserError("model norm must be pre or post, and positions sinusoidal or learned")
    if cfg.activation not in ("relu", "gelu"):
        raise UserError(f"model activation must be relu or gelu, not {cfg.activation!r}")


def new_embedding(vocab: int, dim: int) -> nn.Embedding:
    table = nn.Embedding(vocab, dim, padding_idx=PAD)
    nn.init.normal_(table.weight, 0.0, dim ** -0.5)
    with torch.no_grad():
        table.weight[PAD].zero_()
    return table


class Positions(nn.Module):
    """Token embeddings * sqrt(d) + positions (sinusoidal or learned), then dropout."""

    def __init__(self, dim: int, kind: str, max_positions: int, dropout_p: float):
        super().__init__()
        self.dim, self.max_positions, self.dropout_p = dim, max_positions, dropout_p
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(max_positions, dim) * dim ** -0.5)
        else:
            self.register_buffer("table", sinusoids(max_positions, dim), persistent=False)

    def forward(self, embedded: Tensor, start: int = 0) -> Tensor:
        length = embedded.size(1)
        if start + length > self.max_positions:
            raise UserError(f"sequence of {start + length} tokens is longer than model.max_positions "
                            f"({self.max_positions})")
        x = embedded * math.sqrt(self.dim) + self.table[start:start + length]
        return dropout(x, self.dropout_p, self.training)  # (B, T, D)


class TransformerDecoder(nn.Module):
    """Target embeddings, decoder layers over a memory (B, S, D), the output layer.

    The memory may be an encoder's output or image regions; the decoding state holds each
    layer's cross-attention keys/values (computed once) and self-attention cache (grown per step).
    """

    constant_state = ("memory", "mask", "cross.")

    def __init__(self, cfg: TransformerDecoderConfig, vocab: int, embed: nn.Embedding | None = None):
        super().__init__()
        check(cfg)
        layer_cfg = TransformerConfig(d_model=cfg.d_model, heads=cfg.heads, ffn_dim=cfg.ffn_dim,
                                      dropout=cfg.dropout, attn_dropout=cfg.attn_dropout,
                                      act_dropout=cfg.act_dropout, activation=cfg.activation,
                                      norm=cfg.norm)
        self.embed = embed if embed is not None else new_embedding(vocab, cfg.d_model)
        self.positions = Positions(cfg.d_model, cfg.positions, cfg.max_positions, cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(layer_cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.generator = nn.Linear(cfg.d_model, vocab, bias=False)
        if cfg.tie_output:
            self.generator.weight = self.embed.weight

    def init_state(self, memory: Tensor, mask: Tensor) -> State:
        state: State = {"memory": memory, "mask": mask}
        for i, layer in enumerate(self.layers):
            state[f"cross.{i}"] = layer.cross_attn.prepare(memory)  # (B, H, S, Dh) x 2, once
        return state

    def decode(self, state: State, tgt: Tensor, start: int, self_mask: Tensor | None,
               cached: bool) -> tuple[Tensor, State, Tensor | None]:
        x = self.positions(self.embed(tgt), start)
        new_state, layer_weights = dict(state), []
        for i, layer in enumerate(self.layers):
            cache = state[f"self.{i}"] if cached else None
            x, weights, kv = layer(x, state[f"cross.{i}"], state["mask"], self_mask, cache)
            new_state[f"self.{i}"] = kv
            layer_weights.append(weights)
        weights = None if layer_weights[0] is None else torch.stack(layer_weights, 1)  # (B, L, H, T, S)
        return self.norm(x), new_state, weights

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        cached = "self.0" in state
        start = state["self.0"][0].size(2) if cached else 0
        x, state, weights = self.decode(state, prev_tokens[:, None], start, None, cached)
        return self.generator(x[:, 0]), state, weights  # (B, V)

    def features(self, state: State, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        mask = causal_mask(tgt_in.size(1), tgt_in.device)[None]  # (1, T, T)
        x, _, weights = self.decode(state, tgt_in, 0, mask, cached=False)
        return x, weights


class TransformerSeq2Seq(EncoderDecoder):
    def __init__(self, cfg: TransformerConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        check(cfg)
        if cfg.share_embeddings and src_vocab != tgt_vocab:
            raise UserError("model.share_embeddings needs a joint vocabulary (tokenizer.joint: true)")
        self.cfg = cfg
        self.src_embed = new_embedding(src_vocab, cfg.d_model)
        self.src_positions = Positions(cfg.d_model, cfg.positions, cfg.max_positions, cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.enc_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        decoder_cfg = TransformerDecoderConfig(
            d_model=cfg.d_model, heads=cfg.heads, ffn_dim=cfg.ffn_dim, layers=cfg.dec_layers,
            dropout=cfg.dropout, attn_dropout=cfg.attn_dropout, act_dropout=cfg.act_dropout,
            activation=cfg.activation, norm=cfg.norm, positions=cfg.positions,
            max_positions=cfg.max_positions, tie_output=cfg.tie_output)
        self.decoder = TransformerDecoder(decoder_cfg, tgt_vocab,
                                          self.src_embed if cfg.share_embeddings else None)

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        x = self.src_positions(self.src_embed(src))
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.decoder.init_state(self.enc_norm(x), src_mask)  # memory (B, S, D)

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        return self.decoder.step(state, prev_tokens)

    def forward_features(self, src: Tensor, src_mask: Tensor,
                         tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.decoder.features(self.encode(src, src_mask), tgt_in)

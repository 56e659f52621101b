"""Attentional RNN encoder-decoder (Bahdanau et al. 2015; Luong et al. 2015), and the plain
encoder-decoder without attention (Cho et al. 2014; Sutskever et al. 2014).

Encoder: embeddings -> (bidirectional) GRU/LSTM over packed sequences -> memory (B, S, H).
Decoder, per step t (Luong's "global attention" with input feeding):
    h_t = RNN([E y_{t-1}; o_{t-1}], h_{t-1})        input feeding: o_{t-1} carries the last context
    c_t, a_t = attention(h_t, memory)              a_t is row t of the alignment matrix
    c_t = sigmoid(W_g h_t) * c_t                   optional gate (Show, Attend and Tell)
    o_t = tanh(W_c [h_t; c_t])                     the attentional state
    p(y_t) = softmax(W_o o_t)
With `attention: none` the context is one fixed vector C = F(X) (the encoder's final states) for
every step: the baseline that shows what attention buys on long inputs. The decoder only sees a
memory and a summary vector, so the image captioner reuses it with image regions as memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s.attention import ATTENTION, AdditiveAttention, build_attention
from s2s.errors import UserError
from s2s.models.seq2seq import ATTENTION_KINDS, EncoderDecoder, State, init_uniform
from s2s.ops import dropout
from s2s.typed import NonNegativeFloat, PositiveFloat, PositiveInt, Probability
from s2s.vocab import PAD

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass(frozen=True)
class RNNDecoderSettings:
    """What the attentional RNN decoder needs; both configs below contain these fields."""

    cell: Literal["gru", "lstm"] = "gru"
    emb_dim: PositiveInt = 256
    hidden_dim: PositiveInt = 512  # decoder state and memory size (a bidirectional encoder gives half per direction)
    dec_layers: PositiveInt = 1
    dropout: Probability = 0.3
    input_feed: bool = True  # feed o_{t-1} to the next step (sequential); false = parallel decoder RNN
    attention: Any = field(default_factory=AdditiveAttention.Config,
                           metadata={"by_type": ATTENTION})  # any registered mechanism, or none
    tie_output: bool = False  # output layer shares the target embeddings (o_t has emb_dim units)
    gate: bool = False  # scale the context by sigmoid(W_g h_t) (Xu et al. 2015)
    doubly_stochastic: NonNegativeFloat = 0.0  # lambda of sum_r (1 - sum_t a_tr)^2 (Xu et al. 2015)
    init_scale: PositiveFloat = 0.1  # parameters start uniform in [-init_scale, init_scale]


@dataclass(frozen=True)
class RNNDecoderConfig(RNNDecoderSettings):
    """The captioner's `decoder: {type: rnn}` section."""

    type: Literal["rnn"] = "rnn"


@dataclass(frozen=True)
class RNNConfig(RNNDecoderSettings):
    """Recipe section `model` for `arch: rnn`: the decoder's settings plus the encoder's."""

    arch: Literal["rnn"] = "rnn"
    enc_layers: PositiveInt = 1
    bidirectional: bool = True
    share_embeddings: bool = False  # one embedding table for source and target (joint vocabulary)


class RNNEncoder(nn.Module):
    """(Bi)directional RNN over packed sequences, so padding never leaks into the states."""

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        per_direction = cfg.hidden_dim // 2 if cfg.bidirectional else cfg.hidden_dim
        self.rnn = CELLS[cfg.cell](cfg.emb_dim, per_direction, cfg.enc_layers, batch_first=True,
                                   bidirectional=cfg.bidirectional,
                                   dropout=cfg.dropout if cfg.enc_layers > 1 else 0.0)
        self.bidirectional = cfg.bidirectional

    def forward(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """-> memory (B, S, H) and the last layer's final state, both directions (B, H)."""
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.size(1))  # (B, S, H)
        final = final[0] if isinstance(final, tuple) else final  # LSTM: (h, c) -> h
        last = final[-2:] if self.bidirectional else final[-1:]  # (dirs, B, H/dirs)
        return memory, torch.cat(list(last), dim=-1)  # (B, S, H), (B, H)


class AttentionalRNNDecoder(nn.Module):
    """Embeddings, recurrent cell, attention over a memory, and the output layer."""

    constant_state = ("memory", "mask", "keys", "context")  # set by init_state, never by a step

    def __init__(self, cfg: RNNDecoderSettings, memory_dim: int, vocab: int,
                 embed: nn.Embedding | None = None):
        super().__init__()
        self.cfg = cfg
        hid, out_dim = cfg.hidden_dim, cfg.emb_dim if cfg.tie_output else cfg.hidden_dim
        self.embed = embed if embed is not None else nn.Embedding(vocab, cfg.emb_dim, padding_idx=PAD)
        self.bridge = nn.Linear(memory_dim, hid)  # summary of the input -> h_0 (and C without attention)
        feed = out_dim if cfg.input_feed else 0
        fixed = memory_dim if cfg.attention.type == "none" and not cfg.input_feed else 0
        self.rnn = CELLS[cfg.cell](cfg.emb_dim + feed + fixed, hid, cfg.dec_layers, batch_first=True,
                                   dropout=cfg.dropout if cfg.dec_layers > 1 else 0.0)
        self.attention = build_attention(cfg.attention, hid, memory_dim)
        self.gate = nn.Linear(hid, memory_dim) if cfg.gate else None
        self.combine = nn.Linear(hid + memory_dim, out_dim, bias=False)  # W_c
        self.generator = nn.Linear(out_dim, vocab)

    def tie(self) -> None:
        """Output layer = embedding table (after any re-initialisation)."""
        if self.cfg.tie_output:
            self.generator.weight = self.embed.weight

    def drop(self, x: Tensor) -> Tensor:
        return dropout(x, self.cfg.dropout, self.training)

    def attention_names(self) -> dict[str, list[str]]:
        return {} if self.attention is None else {ATTENTION_KINDS[0]: ["attention"]}

    def init_state(self, memory: Tensor, mask: Tensor, summary: Tensor) -> State:
        """State from a memory (B, S, M), its mask (B, S) and a summary vector (B, M)."""
        b, layers = memory.size(0), self.cfg.dec_layers
        start = torch.tanh(self.bridge(summary))  # (B, H)
        state: State = {"memory": memory, "mask": mask,
                        "hidden": start[:, None, :].expand(b, layers, -1).contiguous()}  # (B, L, H)
        if self.cfg.cell == "lstm":
            state["cell"] = torch.zeros_like(state["hidden"])
        if self.attention is None:
            state["context"] = summary  # the one fixed context vector C
        else:
            state["keys"] = self.attention.prepare(memory)
            state["attention"] = self.attention.init_state(memory, mask)  # per-step, reordered
        if self.cfg.input_feed:
            state["feed"] = memory.new_zeros(b, self.combine.out_features)  # (B, O)
        return state

    def _recurrent_state(self, state: State):
        h = state["hidden"].transpose(0, 1).contiguous()  # (L, B, H)
        return (h, state["cell"].transpose(0, 1).contiguous()) if "cell" in state else h

    def _attend(self, query: Tensor, state: State) -> tuple[Tensor, Tensor | None, dict]:
        """Context for each query row (B, T, M), weights (B, 1, heads, T, S), attention state."""
        if self.attention is None:
            return state["context"][:, None, :].expand(-1, query.size(1), -1), None, {}
        context, weights = self.attention(query, state["memory"], state["mask"], state["keys"],
                                          state["attention"])
        if self.gate is not None:
            context = torch.sigmoid(self.gate(query)) * context
        after = self.attention.next_state(state["attention"], weights)
        return context, None if weights is None else weights[:, None], after

    def _output(self, query: Tensor, context: Tensor) -> Tensor:
        return torch.tanh(self.combine(torch.cat([query, context], -1)))  # (B, T, O)

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        output, state, weights = self._step(state, self.drop(self.embed(prev_tokens)))
        return self.generator(self.drop(output)), state, weights  # (B, V)

    def _step(self, state: State, emb: Tensor) -> tuple[Tensor, State, Tensor | None]:
        """One step from the embedded previous token (B, E) -> o_t (B, O)."""
        parts = [emb]
        if self.cfg.input_feed:
            parts.append(state["feed"])
        elif self.attention is None:
            parts.append(state["context"])
        query, recurrent = self.rnn(torch.cat(parts, -1)[:, None, :], self._recurrent_state(state))
        context, weights, attention_state = self._attend(query, state)  # (B, 1, M)
        output = self._output(query, context)[:, 0]  # (B, O)
        state = dict(state)
        if isinstance(recurrent, tuple):
            state["hidden"], state["cell"] = (r.transpose(0, 1) for r in recurrent)
        else:
            state["hidden"] = recurrent.transpose(0, 1)  # (B, L, H)
        if self.cfg.input_feed:
            state["feed"] = output
        if self.attention is not None:
            state["attention"] = attention_state
        return output, state, weights

    def features(self, state: State, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass: (B, T, O) before the output layer, and weights (B, 1, h, T, S)."""
        emb = self.drop(self.embed(tgt_in))  # (B, T, E)
        if self.cfg.input_feed:  # sequential: each step needs the previous o_t
            outputs, weights = [], []
            for t in range(tgt_in.size(1)):
                output, state, w = self._step(state, emb[:, t])
                outputs.append(output)
                weights.append(w)
            aligned = None if weights[0] is None else torch.cat(weights, dim=3)
            return self.drop(torch.stack(outputs, 1)), aligned
        inputs = emb
        if self.attention is None:
            inputs = torch.cat([emb, state["context"][:, None, :].expand(-1, emb.size(1), -1)], -1)
        queries, _ = self.rnn(inputs, self._recurrent_state(state))  # (B, T, H), one call
        context, aligned, _ = self._attend(queries, state)  # (B, T, M)
        return self.drop(self._output(queries, context)), aligned

    def regularizer(self, weights: Tensor | None, target_mask: Tensor) -> Tensor:
        """Doubly stochastic attention: lambda * sum_b sum_s (1 - sum_t a_bts)^2, over real steps;
        plus the attention mechanism's own training loss (coverage), if it has one."""
        total = torch.zeros((), device=target_mask.device)
        if weights is None:
            return total
        if self.cfg.doubly_stochastic:
            received = (weights.mean(dim=(1, 2)) * target_mask[:, :, None]).sum(1)  # (B, S)
            total = total + self.cfg.doubly_stochastic * ((1.0 - received) ** 2).sum()
        own = self.attention.regularizer(weights[:, 0], target_mask)
        return total if own is None else total + own

    def coverage(self, state: State) -> Tensor | None:
        if self.attention is None:
            return None
        received = self.attention.coverage(state["attention"])
        return None if received is None else received.masked_fill(~state["mask"], 1.0)


class RNNSeq2Seq(EncoderDecoder):
    Config = RNNConfig

    def __init__(self, cfg: RNNConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        if cfg.bidirectional and cfg.hidden_dim % 2:
            raise UserError("model.hidden_dim must be even for a bidirectional encoder")
        if cfg.share_embeddings and src_vocab != tgt_vocab:
            raise UserError("model.share_embeddings needs a joint vocabulary (tokenizer.joint: true)")
        self.cfg = cfg
        self.src_embed = nn.Embedding(src_vocab, cfg.emb_dim, padding_idx=PAD)
        self.encoder = RNNEncoder(cfg)
        self.decoder = AttentionalRNNDecoder(cfg, cfg.hidden_dim, tgt_vocab,
                                             self.src_embed if cfg.share_embeddings else None)
        init_uniform(self, cfg.init_scale)
        self.decoder.tie()

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        emb = self.decoder.drop(self.src_embed(src))  # (B, S, E)
        memory, final = self.encoder(emb, src_mask.sum(1))  # (B, S, H), (B, H)
        return self.decoder.init_state(memory, src_mask, final)

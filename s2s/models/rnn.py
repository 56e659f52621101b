"""Attentional RNN encoder-decoder (Bahdanau et al. 2015; Luong et al. 2015), and the plain
encoder-decoder without attention (Cho et al. 2014; Sutskever et al. 2014).

Encoder: embeddings -> (bidirectional) GRU/LSTM over packed sequences -> memory (B, S, H).
Decoder, per step t (Luong's "global attention" with input feeding):
    h_t = RNN([E y_{t-1}; o_{t-1}], h_{t-1})        input feeding: o_{t-1} carries the last context
    c_t, a_t = attention(h_t, memory)              a_t is row t of the alignment matrix
    o_t = tanh(W_c [h_t; c_t])                     the attentional state
    p(y_t) = softmax(W_o o_t)
With `attention: none` the context is one fixed vector C = F(X) (the encoder's final states) for
every step: the baseline that shows what attention buys on long inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s.attention import AttentionConfig, build_attention
from s2s.data.tokenizer import PAD
from s2s.errors import UserError
from s2s.models.seq2seq import Seq2Seq, State, init_uniform
from s2s.ops import dropout

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass(frozen=True)
class RNNConfig:
    """Recipe section `model` for `arch: rnn`."""

    arch: str = "rnn"
    cell: str = "gru"  # gru | lstm
    emb_dim: int = 256
    hidden_dim: int = 512  # decoder state and memory size (a bidirectional encoder gives half per direction)
    enc_layers: int = 1
    dec_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    input_feed: bool = True  # feed o_{t-1} to the next step (sequential); false = parallel decoder RNN
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    share_embeddings: bool = False  # one embedding table for source and target (joint vocabulary)
    tie_output: bool = False  # output layer shares the target embeddings (o_t has emb_dim units)
    init_scale: float = 0.1  # parameters start uniform in [-init_scale, init_scale]


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


class RNNSeq2Seq(Seq2Seq):
    def __init__(self, cfg: RNNConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        if cfg.cell not in CELLS:
            raise UserError(f"model.cell must be one of {', '.join(CELLS)}, not {cfg.cell!r}")
        if cfg.bidirectional and cfg.hidden_dim % 2:
            raise UserError("model.hidden_dim must be even for a bidirectional encoder")
        if cfg.share_embeddings and src_vocab != tgt_vocab:
            raise UserError("model.share_embeddings needs a joint vocabulary (tokenizer.joint: true)")
        self.cfg = cfg
        hid, out_dim = cfg.hidden_dim, cfg.emb_dim if cfg.tie_output else cfg.hidden_dim
        self.src_embed = nn.Embedding(src_vocab, cfg.emb_dim, padding_idx=PAD)
        self.tgt_embed = self.src_embed if cfg.share_embeddings else nn.Embedding(
            tgt_vocab, cfg.emb_dim, padding_idx=PAD)
        self.encoder = RNNEncoder(cfg)
        self.bridge = nn.Linear(hid, hid)  # final encoder state -> initial decoder state / C
        feed = out_dim if cfg.input_feed else 0
        context = hid if cfg.attention.type == "none" and not cfg.input_feed else 0
        self.decoder = CELLS[cfg.cell](cfg.emb_dim + feed + context, hid, cfg.dec_layers,
                                       batch_first=True,
                                       dropout=cfg.dropout if cfg.dec_layers > 1 else 0.0)
        self.attention = build_attention(cfg.attention, hid, hid)
        self.combine = nn.Linear(2 * hid, out_dim, bias=False)  # W_c
        self.generator = nn.Linear(out_dim, tgt_vocab)
        init_uniform(self, cfg.init_scale)
        if cfg.tie_output:
            self.generator.weight = self.tgt_embed.weight

    def _drop(self, x: Tensor) -> Tensor:
        return dropout(x, self.cfg.dropout, self.training)

    # -- encoder ---------------------------------------------------------------------------------

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        emb = self._drop(self.src_embed(src))  # (B, S, E)
        memory, final = self.encoder(emb, src_mask.sum(1))  # (B, S, H), (B, H)
        summary = torch.tanh(self.bridge(final))  # (B, H): C = F(X)
        b, layers = src.size(0), self.cfg.dec_layers
        state: State = {"memory": memory, "mask": src_mask,
                        "hidden": summary[:, None, :].expand(b, layers, -1).contiguous()}  # (B, L, H)
        if self.cfg.cell == "lstm":
            state["cell"] = torch.zeros_like(state["hidden"])
        if self.attention is None:
            state["context"] = summary  # the one fixed context vector
        else:
            state["keys"] = self.attention.prepare(memory)
        if self.cfg.input_feed:
            state["feed"] = memory.new_zeros(b, self.combine.out_features)  # (B, O)
        return state

    # -- decoder ---------------------------------------------------------------------------------

    def _recurrent_state(self, state: State):
        h = state["hidden"].transpose(0, 1).contiguous()  # (L, B, H)
        return (h, state["cell"].transpose(0, 1).contiguous()) if "cell" in state else h

    def _attend(self, query: Tensor, state: State) -> tuple[Tensor, Tensor | None]:
        """Context for each query row (B, T, H) and weights (B, 1, heads, T, S)."""
        if self.attention is None:
            return state["context"][:, None, :].expand_as(query), None
        context, weights = self.attention(query, state["memory"], state["mask"], state["keys"])
        return context, None if weights is None else weights[:, None]

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        output, state, weights = self._decode_step(state, self._drop(self.tgt_embed(prev_tokens)))
        return self.generator(self._drop(output)), state, weights  # (B, V)

    def _decode_step(self, state: State, emb: Tensor) -> tuple[Tensor, State, Tensor | None]:
        """One step from the embedded previous token (B, E) -> o_t (B, O)."""
        parts = [emb]
        if self.cfg.input_feed:
            parts.append(state["feed"])
        elif self.attention is None:
            parts.append(state["context"])
        query, recurrent = self.decoder(torch.cat(parts, -1)[:, None, :],
                                        self._recurrent_state(state))  # (B, 1, H)
        context, weights = self._attend(query, state)  # (B, 1, H)
        output = torch.tanh(self.combine(torch.cat([query, context], -1)))[:, 0]  # (B, O)
        state = dict(state)
        if isinstance(recurrent, tuple):
            state["hidden"], state["cell"] = (r.transpose(0, 1) for r in recurrent)
        else:
            state["hidden"] = recurrent.transpose(0, 1)  # (B, L, H)
        if self.cfg.input_feed:
            state["feed"] = output
        return output, state, weights

    def forward_features(self, src: Tensor, src_mask: Tensor,
                         tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        state = self.encode(src, src_mask)
        emb = self._drop(self.tgt_embed(tgt_in))  # (B, T, E)
        if self.cfg.input_feed:  # sequential: each step needs the previous o_t
            outputs, weights = [], []
            for t in range(tgt_in.size(1)):
                output, state, w = self._decode_step(state, emb[:, t])
                outputs.append(output)
                weights.append(w)
            features = torch.stack(outputs, 1)  # (B, T, O)
            aligned = None if weights[0] is None else torch.cat(weights, dim=3)  # (B, 1, h, T, S)
            return self._drop(features), aligned
        inputs = emb
        if self.attention is None:
            inputs = torch.cat([emb, state["context"][:, None, :].expand(-1, emb.size(1), -1)], -1)
        queries, _ = self.decoder(inputs, self._recurrent_state(state))  # (B, T, H), one call
        context, aligned = self._attend(queries, state)  # (B, T, H)
        features = torch.tanh(self.combine(torch.cat([queries, context], -1)))  # (B, T, O)
        return self._drop(features), aligned

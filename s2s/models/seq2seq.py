"""The protocol every architecture implements, so search, training and inspection need no
knowledge of RNNs, Transformers or images.

- `encode(src, src_mask) -> state`: a dict of batch-first tensors (or tuples and dicts of them):
  memory, masks, pre-projected attention keys, recurrent state, per-layer key/value caches,
  attention mechanisms' per-step states.
- `step(state, prev_tokens) -> (logits, state, weights)`: one decoder step, incremental.
- `forward(src, src_mask, tgt_in) -> (logits, weights)`: the teacher-forced pass, parallel where
  the architecture allows; `forward_features` stops before the output layer, so the loss can
  skip padding before the (expensive) projection onto the vocabulary.
- `attention_names() -> {kind: [module names]}`: which attention modules are the cross-attention
  ("cross", one name per layer), "encoder-self" and "decoder-self"; a `Recorder` reads them.

Alignment weights returned by `forward`/`step` have one layout everywhere: (B, layers, heads,
Tq, Tk); an RNN has one layer and one head. They are None where the model has no attention (or
skips computing it); training regularisers use them. Inspection reads weights through
`s2s.attention.Recorder`, by module name.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

StateValue = Union[Tensor, tuple, dict]
State = dict[str, StateValue]
ATTENTION_KINDS = ("cross", "encoder-self", "decoder-self")


def reorder_state(state: State, index: Tensor, skip: tuple[str, ...] = ()) -> State:
    """Select (and repeat) batch rows of every tensor in a decoding state: beam search's one
    operation on state. Entries whose key starts with a prefix in `skip` are left as they are."""

    def select(value: StateValue) -> StateValue:
        if isinstance(value, tuple):
            return tuple(select(v) for v in value)
        if isinstance(value, dict):
            return {k: select(v) for k, v in value.items()}
        return value.index_select(0, index)

    return {key: value if key.startswith(skip) else select(value)  # () matches no key
            for key, value in state.items()}


class Seq2Seq(nn.Module):
    """Base class: an encoder-decoder with an output layer `generator` over the target vocabulary.

    `constant_state` names (by key prefix) the state entries that `encode` makes and `step` never
    changes: the same for every beam of a sentence, so beam search need not reorder them.
    """

    generator: nn.Linear
    constant_state: tuple[str, ...] = ()

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        raise NotImplementedError

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        raise NotImplementedError

    def step_many(self, states: list[State], prev_tokens: list[Tensor]) -> list[tuple[Tensor, State]]:
        """`step` for several decoding states at once: (logits, state) of each. Models that can
        run their layers once over the rows of all states (the Transformer) override it."""
        return [self.step(state, prev)[:2] for state, prev in zip(states, prev_tokens)]

    def forward_features(self, src: Tensor, src_mask: Tensor,
                         tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Decoder outputs before the output layer, (B, T, D), and alignment weights."""
        raise NotImplementedError

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        features, weights = self.forward_features(src, src_mask, tgt_in)
        return self.generator(features), weights  # (B, T, V)

    def regularizer(self, weights: Tensor | None, target_mask: Tensor) -> Tensor:
        """An extra training loss from the attention weights (summed over the batch); none here."""
        return torch.zeros((), device=target_mask.device)

    def coverage(self, state: State) -> Tensor | None:
        """Attention each source token has received so far (rows, S), 1 on padding, if the
        decoder's attention keeps it (coverage attention); beam search's coverage penalty uses it."""
        return None

    def attention_names(self) -> dict[str, list[str]]:
        """{kind: module names, one per layer} for the kinds in ATTENTION_KINDS this model has."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class EncoderDecoder(Seq2Seq):
    """A Seq2Seq whose `decoder` module owns the target side: embedding, output layer, its
    attention, and the knowledge of which state entries stay constant (the RNN, the Transformer,
    the captioner)."""

    decoder: nn.Module

    @property
    def generator(self) -> nn.Linear:
        return self.decoder.generator

    @property
    def tgt_embed(self) -> nn.Embedding:
        return self.decoder.embed

    @property
    def constant_state(self) -> tuple[str, ...]:
        return self.decoder.constant_state

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        return self.decoder.step(state, prev_tokens)

    def step_many(self, states: list[State], prev_tokens: list[Tensor]) -> list[tuple[Tensor, State]]:
        if hasattr(self.decoder, "step_many"):
            return self.decoder.step_many(states, prev_tokens)
        return super().step_many(states, prev_tokens)

    def forward_features(self, src: Tensor, src_mask: Tensor,
                         tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.decoder.features(self.encode(src, src_mask), tgt_in)

    def regularizer(self, weights: Tensor | None, target_mask: Tensor) -> Tensor:
        return self.decoder.regularizer(weights, target_mask)

    def coverage(self, state: State) -> Tensor | None:
        return self.decoder.coverage(state)

    def attention_names(self) -> dict[str, list[str]]:
        return {kind: [f"decoder.{name}" for name in names]
                for kind, names in self.decoder.attention_names().items()}


def init_uniform(module: nn.Module, scale: float) -> None:
    """Uniform(-scale, scale) for every parameter: the long-standing recipe for attentional RNNs."""
    for p in module.parameters():
        nn.init.uniform_(p, -scale, scale)

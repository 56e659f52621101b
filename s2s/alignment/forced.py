"""Attention of a trained run on given outputs: one teacher-forced pass under a `Recorder`.

Whatever produced an output (greedy, beam, a person), its attention is read by feeding that
output back through the decoder with every attention module recorded, as OpenNMT's report_align
does: beam search need not carry attention, and `--target` can force any translation. The same
pass serves text and images: for a captioner the "source" is the image and the recorder also
holds the encoder's vision gates. Row t of a cross- or decoder self-attention matrix is the
attention used while producing target token t (the last row produces "</s>").

Default layer and heads (for Pharaoh output and the headline scores): an RNN has one attention;
with several decoder layers, the second-to-last, averaged over heads (Garg et al. 2019,
https://arxiv.org/abs/1909.02074, found the penultimate layer the most alignment-like; the
per-head table of `s2s evaluate` shows which head is best for a given model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from s2s.alignment.words import merge_pieces, to_words, word_text
from s2s.attention import Recorder
from s2s.data.batching import collate, pad, token_batches
from s2s.errors import UserError
from s2s.models.seq2seq import Seq2Seq
from s2s.run import Run, autocast
from s2s.vocab import BOS, EOS_PIECE

BOS_PIECE = "<s>"


@dataclass
class Recorded:
    """One recorded pass over a batch: text attention by kind, (B, L, H, rows, columns) each,
    and every other recorded module's weights (vision gates) by module name."""

    kinds: dict[str, Tensor]
    others: dict[str, Tensor] = field(default_factory=dict)


def record_pass(model: Seq2Seq, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Recorded:
    """Run the teacher-forced pass with every attention module recorded."""
    with torch.inference_mode(), Recorder(model) as recorder:
        model(src, src_mask, tgt_in)
    kinds, used = {}, set()
    for kind, names in model.attention_names().items():
        if names and all(n in recorder.calls for n in names):
            kinds[kind] = torch.stack([recorder.weights(n).float() for n in names], 1)
            used.update(names)
    others = {n: recorder.weights(n).float() for n in recorder.names if n not in used}
    return Recorded(kinds, others)


def layers_and_heads(model: Seq2Seq) -> tuple[int, int]:
    """How many decoder layers have cross-attention, and how many heads each."""
    names = model.attention_names().get("cross", [])
    if not names:
        return 0, 0
    return len(names), getattr(model.get_submodule(names[0]), "heads", 1)


def default_choice(run: Run) -> tuple[int, int | str]:
    """(layer, head) used when none is asked for: see the module docstring."""
    layers, heads = layers_and_heads(run.model)
    return (layers - 2 if layers > 1 else 0), ("mean" if heads > 1 else 0)


def describe(run: Run) -> str:
    """'rnn, additive attention' / 'transformer, 3 layers x 4 heads' for titles."""
    layers, heads = layers_and_heads(run.model)
    if heads > 1 or layers > 1:
        return f"{run.recipe.model.arch}, {layers} layers x {heads} heads"
    cfg = getattr(run.recipe.model, "decoder", run.recipe.model)
    mechanism = getattr(cfg, "attention", None) or getattr(cfg, "cross_attention", None)
    return f"{run.recipe.model.arch}, {mechanism.type if mechanism else 'multihead'} attention"


@dataclass
class Aligned:
    """One sentence pair with its attention over pieces, by kind: "cross" (L, H, T, S), and for a
    Transformer "encoder-self" (L, H, S, S) and "decoder-self" (L, H, T, T), T counting "</s>"."""

    source: str
    target: str
    src_pieces: list[str]
    tgt_pieces: list[str]  # the target's pieces and "</s>"
    kinds: dict[str, np.ndarray]

    @property
    def weights(self) -> np.ndarray:
        return self.kinds["cross"]

    def labels(self, kind: str) -> tuple[list[str], list[str]]:
        """(column tokens, row tokens) of a kind's matrices."""
        if kind == "encoder-self":
            return self.src_pieces, self.src_pieces
        if kind == "decoder-self":  # row t produces token t from the inputs <s> y_1 .. y_t
            return [BOS_PIECE] + self.tgt_pieces[:-1], self.tgt_pieces
        return self.src_pieces, self.tgt_pieces

    def matrices(self, kind: str, words: bool = False) -> tuple[list[str], list[str], np.ndarray]:
        """(column tokens, row tokens, (L, H, rows, columns)) of one kind, over pieces or words
        (pieces merged by the rule in `s2s.alignment.words`)."""
        if kind not in self.kinds:
            have = ", ".join(self.kinds) or "no attention"
            raise UserError(f"this model has no {kind} attention (it has: {have})")
        columns, rows = self.labels(kind)
        weights = self.kinds[kind]
        if not words:
            return columns, rows, weights
        column_spans, row_spans = merge_pieces(columns), merge_pieces(rows)
        return (word_text(columns, column_spans), word_text(rows, row_spans),
                to_words(weights, row_spans, column_spans))

    def words(self) -> tuple[list[str], list[str], np.ndarray]:
        """Word-level source tokens, target tokens and cross-attention weights."""
        return self.matrices("cross", words=True)


def forced_attention(run: Run, sources: list[list[int]], targets: list[list[int]],
                     batch_size: int = 64) -> list[dict[str, np.ndarray]]:
    """Every attention kind of each (source ids, target ids) pair, trimmed to its real lengths."""
    src_len = np.array([len(s) for s in sources])
    tgt_len = np.array([len(t) for t in targets])
    results: list[dict[str, np.ndarray]] = [{} for _ in sources]
    for index in token_batches(src_len, tgt_len, np.arange(len(sources)), 10**9,
                               max_sentences=batch_size):
        batch = collate([sources[i] for i in index], [targets[i] for i in index], index)
        batch = batch.to(run.device)
        with autocast(run.device, run.precision):
            recorded = record_pass(run.model, batch.src, batch.src_mask, batch.tgt_in)
        if "cross" not in recorded.kinds:
            raise UserError(f"this model has no attention to show ({describe(run)})")
        arrays = {kind: w.cpu().numpy() for kind, w in recorded.kinds.items()}  # (B, L, H, R, C)
        for row, i in enumerate(index.tolist()):
            s, t = src_len[i], tgt_len[i] + 1
            size = {"cross": (t, s), "encoder-self": (s, s), "decoder-self": (t, t)}
            results[i] = {kind: w[row, :, :, :size[kind][0], :size[kind][1]]
                          for kind, w in arrays.items()}
    return results


def forced_weights(run: Run, sources: list[list[int]], targets: list[list[int]],
                   batch_size: int = 64) -> list[np.ndarray]:
    """Cross-attention (layers, heads, len(target) + 1, len(source)) of each pair, in input order."""
    return [kinds["cross"] for kinds in forced_attention(run, sources, targets, batch_size)]


def align(run: Run, sources: list[str], targets: list[str]) -> list[Aligned]:
    """Every attention kind of each (source, target) text pair."""
    src_ids = run.tokenizer.encode_src(sources)
    tgt_ids = run.tokenizer.encode_tgt(targets)
    for number, ids in enumerate(src_ids, 1):
        if not ids:
            raise UserError(f"source {number} is empty: nothing to align")
    found = forced_attention(run, src_ids, tgt_ids)
    return [Aligned(s, t, run.tokenizer.src_pieces(si), run.tokenizer.tgt_pieces(ti) + [EOS_PIECE], k)
            for s, t, si, ti, k in zip(sources, targets, src_ids, tgt_ids, found)]


def image_attention(run: Run, src: Tensor, captions: list[list[int]]) -> Recorded:
    """The recorded pass of a captioner over model inputs (B, ...) and captions: cross-attention
    (B, L, H, T + 1, regions; rows past a caption's end are padding) and the vision gates."""
    tgt_in = pad(captions, prefix=BOS).to(run.device)
    mask = torch.ones(src.size(0), 1, dtype=torch.bool, device=run.device)
    with autocast(run.device, run.precision):
        return record_pass(run.model, src.to(run.device), mask, tgt_in)

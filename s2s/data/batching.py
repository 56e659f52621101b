"""Tokenised, cached splits and token-based batches from length buckets.

Sentences are sorted by length and cut into batches of about `batch_tokens` padded tokens, so a
batch holds many short sentences or few long ones and carries little padding; the order of the
batches is shuffled each epoch from (seed, epoch), which makes the data order reproducible and
lets an interrupted run resume at the exact batch it stopped at.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from s2s.data.tokenizer import Tokenizer
from s2s.vocab import BOS, EOS, PAD


@dataclass
class Batch:
    """A padded batch, batch-first. Rows keep their dataset indices in `index`."""

    src: Tensor  # (B, S) source ids, or images / image features for captioning
    src_mask: Tensor  # (B, S) True on real source tokens; (B, 1) for an image
    tgt_in: Tensor | None  # (B, T) BOS y_1 .. y_n
    tgt_out: Tensor | None  # (B, T) y_1 .. y_n EOS
    index: np.ndarray  # (B,) rows of the split (or input lines) in this batch

    @property
    def target_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum()) if self.tgt_out is not None else 0

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.src), move(self.src_mask), move(self.tgt_in), move(self.tgt_out),
                     self.index)


def pad(seqs: Sequence[Sequence[int]], prefix: int | None = None, suffix: int | None = None) -> Tensor:
    """Right-pad id sequences into a (B, T) tensor, adding optional BOS/EOS."""
    extra = (prefix is not None) + (suffix is not None)
    out = np.full((len(seqs), max(len(s) for s in seqs) + extra), PAD, dtype=np.int64)
    for row, seq in enumerate(seqs):
        start = 1 if prefix is not None else 0
        if prefix is not None:
            out[row, 0] = prefix
        out[row, start:start + len(seq)] = seq
        if suffix is not None:
            out[row, start + len(seq)] = suffix
    return torch.from_numpy(out)


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None,
            index: np.ndarray) -> Batch:
    src_ids = pad(src)
    if tgt is None:
        return Batch(src_ids, src_ids != PAD, None, None, index)
    return Batch(src_ids, src_ids != PAD, pad(tgt, prefix=BOS), pad(tgt, suffix=EOS), index)


def token_batches(src_lens: np.ndarray, tgt_lens: np.ndarray, rows: np.ndarray,
                  batch_tokens: int, rng: np.random.Generator | None = None,
                  max_sentences: int = 0, by_length: bool = True) -> list[np.ndarray]:
    """Cut `rows` into batches of at most `batch_tokens` padded tokens each.

    Rows are sorted by (target, source) length, ties broken at random when `rng` is given; the
    batch order is then shuffled by `rng`. Without `rng` the order is deterministic (for decoding).
    `by_length=False` (with `rng`) keeps the rows shuffled instead, so every batch is a random
    sample of the data, as BatchNorm in a trainable image encoder needs.
    """
    if len(rows) == 0:
        return []
    order = rows if rng is None else rng.permutation(rows)
    if by_length or rng is None:
        order = order[np.lexsort((src_lens[order], tgt_lens[order]), axis=0)]
    cost = np.maximum(src_lens[order], tgt_lens[order] + 1)  # +1: BOS / EOS
    batches, start, widest = [], 0, 0
    for i, c in enumerate(cost.tolist()):
        widest_if_added = max(widest, c)
        size = i - start + 1
        if i > start and (widest_if_added * size > batch_tokens
                          or (max_sentences and size > max_sentences)):
            batches.append(order[start:i])
            start, widest_if_added = i, c
        widest = widest_if_added
    batches.append(order[start:])
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class TokenizedSplit:
    """A split's text pairs with their token ids, cached on disk by `datasets` (memory-mapped)."""

    length_buckets = True  # training batches hold sentences of similar length (little padding)

    def __init__(self, pairs: datasets.Dataset, tokenizer: Tokenizer, cache_dir: Path, name: str):
        import datasets  # here, not at the top: translating and inspecting never need it (~1 s)

        key = hashlib.sha1(pairs._fingerprint.encode() + tokenizer.src.serialized_model_proto()
                           + tokenizer.tgt.serialized_model_proto()).hexdigest()[:16]
        cache_dir.mkdir(parents=True, exist_ok=True)
        features = datasets.Features({
            **pairs.features,
            "src_ids": datasets.Sequence(datasets.Value("int32")),
            "tgt_ids": datasets.Sequence(datasets.Value("int32")),
            "src_len": datasets.Value("int32"), "tgt_len": datasets.Value("int32")})

        def encode(batch: dict) -> dict:
            src, tgt = tokenizer.encode_src(batch["src"]), tokenizer.encode_tgt(batch["tgt"])
            return {"src_ids": src, "tgt_ids": tgt, "src_len": [len(s) for s in src],
                    "tgt_len": [len(t) for t in tgt]}

        self.data = pairs.map(encode, batched=True, batch_size=2000, features=features,
                              cache_file_name=str(cache_dir / f"{name}-{key}.arrow"),
                              num_proc=2 if len(pairs) > 200_000 else None,
                              desc=f"tokenising {name}")
        self.src_lens = np.asarray(self.data.with_format("numpy")["src_len"], dtype=np.int64)
        self.tgt_lens = np.asarray(self.data.with_format("numpy")["tgt_len"], dtype=np.int64)
        self._ids = self.data.with_format(None, columns=["src_ids", "tgt_ids"])

    def __len__(self) -> int:
        return len(self.data)

    def rows_within(self, max_src: int, max_tgt: int) -> np.ndarray:
        """Rows whose lengths are in 1..max (longer or empty pairs are left out of training)."""
        ok = ((self.src_lens >= 1) & (self.src_lens <= max_src)
              & (self.tgt_lens >= 1) & (self.tgt_lens <= max_tgt))
        return np.flatnonzero(ok)

    def batch(self, rows: np.ndarray) -> Batch:
        ids = self._ids[rows.tolist()]
        return collate(ids["src_ids"], ids["tgt_ids"], rows)

    def texts(self, column: str) -> list[str]:
        return self.data[column]

    def decode_units(self) -> tuple[np.ndarray, list[str]]:
        """Rows to translate for validation, and their references."""
        return np.arange(len(self)), self.texts("tgt")

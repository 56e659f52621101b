"""Batched translation of text: sorted by length into batches, returned in input order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from s2s.alignment.forced import align
from s2s.alignment.metrics import pharaoh, select
from s2s.data.batching import collate, token_batches
from s2s.errors import UserError
from s2s.run import Run, autocast
from s2s.search import BeamSearch, decode, max_lengths, step_together

MAX_INPUT_TOKENS = 1024


@dataclass(frozen=True)
class DecodeOptions:
    beam: int = 5
    n_best: int = 1
    length_penalty: float = 1.0
    coverage_penalty: float = 0.0  # beta of Wu et al. 2016; needs coverage attention
    batch_size: int = 64
    max_len: int = 0  # cap on output tokens; 0 = the recipe's a * source length + b

    @classmethod
    def from_run(cls, run: Run, **overrides) -> "DecodeOptions":
        d = run.recipe.decode
        base = dict(beam=d.beam, length_penalty=d.length_penalty,
                    coverage_penalty=d.coverage_penalty, batch_size=d.batch_size)
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class Translation:
    text: str
    score: float
    tokens: list[int]
    links: str | None = None  # Pharaoh word alignment, when asked for


def translations(run: Run, nbest: list) -> list[Translation]:
    """An n-best list of hypotheses (token ids, score) as text."""
    texts = run.tokenizer.decode_tgt([h.tokens for h in nbest])
    return [Translation(t, h.score, h.tokens) for t, h in zip(texts, nbest)]


def translate_ids(run: Run, sources: list[list[int]], opts: DecodeOptions) -> list[list[Translation]]:
    """Token ids in, n-best translations out (same order); empty sources give no hypotheses."""
    if run.engine is not None:  # another inference engine searches (CTranslate2)
        found = run.engine.search(sources, opts, run.recipe.decode)
        return [translations(run, nbest) for nbest in found]
    results: list[list[Translation]] = [[] for _ in sources]
    lengths = np.array([len(s) for s in sources])
    rows = np.flatnonzero(lengths > 0)
    batches = token_batches(lengths, lengths, rows, batch_tokens=10**9, max_sentences=opts.batch_size)
    d = run.recipe.decode
    for index in batches:
        batch = collate([sources[i] for i in index], None, index).to(run.device)
        with torch.inference_mode(), autocast(run.device, run.precision):
            limit = max_lengths(batch.src_mask, d.max_len_a, d.max_len_b, opts.max_len)
            hyps = decode(run.model, batch.src, batch.src_mask, limit, opts.beam,
                          opts.length_penalty, opts.n_best, opts.coverage_penalty)
        for i, nbest in zip(index.tolist(), hyps):
            results[i] = translations(run, nbest)
    return results


class TranslationStream:
    """Translation with continuous batching, for a server: a batch of sentences can join the
    running decoding at any step, and each sentence leaves as soon as it is done. Each batch is
    its own beam search with its own options; all of them share every forward pass
    (`step_together`), so under load a new sentence waits neither for the batch before it nor
    for the longest sentence of its own batch."""

    def __init__(self, run: Run):
        self.run = run
        self.searches: list[BeamSearch] = []

    def __len__(self) -> int:
        """Sentences still decoding."""
        return sum(len(s) for s in self.searches)

    def add(self, sources: list[list[int]], opts: DecodeOptions,
            tags: list) -> list[tuple[object, list[Translation]]]:
        """Token ids join as one batch, each with its tag; empty ones are done at once (returned)."""
        done = [(tag, []) for ids, tag in zip(sources, tags) if not ids]
        joining = [(ids, tag) for ids, tag in zip(sources, tags) if ids]
        if joining:
            batch = collate([ids for ids, _ in joining], None, np.arange(len(joining))).to(self.run.device)
            d = self.run.recipe.decode
            with torch.inference_mode(), autocast(self.run.device, self.run.precision):
                limit = max_lengths(batch.src_mask, d.max_len_a, d.max_len_b, opts.max_len)
                self.searches.append(BeamSearch(
                    self.run.model, batch.src, batch.src_mask, limit, max(opts.beam, opts.n_best),
                    opts.length_penalty, opts.n_best, opts.coverage_penalty, [tag for _, tag in joining]))
        return done

    def clear(self) -> None:
        """Drop every sentence in flight."""
        self.searches = []

    def step(self) -> list[tuple[object, list[Translation]]]:
        """One token more for every sentence; (tag, n-best translations) of those done."""
        with torch.inference_mode(), autocast(self.run.device, self.run.precision):
            done = step_together(self.run.model, self.searches)
        self.searches = [s for s in self.searches if len(s)]
        return [(tag, translations(self.run, nbest)) for tag, nbest in done]


def encode_sources(run: Run, texts: list[str], first_line: int = 1) -> list[list[int]]:
    ids = run.tokenizer.encode_src([t.strip() for t in texts])
    for number, seq in enumerate(ids, first_line):
        if len(seq) > MAX_INPUT_TOKENS:
            raise UserError(f"input line {number} has {len(seq)} tokens, more than the "
                            f"{MAX_INPUT_TOKENS} allowed; split it into sentences")
    return ids


def translate(run: Run, texts: list[str], opts: DecodeOptions) -> list[list[Translation]]:
    return translate_ids(run, encode_sources(run, texts), opts)


def add_links(run: Run, sources: list[str], results: list[list[Translation]],
              layer: int | str, head: int | str) -> None:
    """Attach word alignments (Pharaoh) of every hypothesis, from one teacher-forced pass."""
    pairs = [(s, t) for s, nbest in zip(sources, results) for t in nbest]
    if not pairs:
        return
    items = align(run, [s for s, _ in pairs], [t.text for _, t in pairs])
    for (_, t), item in zip(pairs, items):
        t.links = pharaoh(select(item.words()[2], layer, head))


def translate_stream(run: Run, chunks: Iterable[list[str]], opts: DecodeOptions,
                     links: tuple | None = None) -> Iterator[list[Translation]]:
    """Translate a stream of chunks of lines, yielding one result per line, in order; each chunk
    is finished (and can be printed) before the next is read.

    With `links` = (layer, head), each hypothesis carries its word alignment.
    """
    done = 0
    for chunk in chunks:
        results = translate_ids(run, encode_sources(run, chunk, done + 1), opts)
        if links is not None:
            add_links(run, [s.strip() for s in chunk], results, *links)
        done += len(chunk)
        yield from results


def fixed_chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Chunks of `size` lines (the last one shorter)."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk

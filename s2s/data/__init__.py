"""Corpora through `datasets`, SentencePiece tokenisers, token batches, and built-in generators."""

import random

SPLITS = ("train", "validation", "test")


def split_stream(corpus: str, split: str, size: int, seed: int) -> random.Random:
    """The random stream of one split of a built-in generated corpus, arguments checked first.

    Seeding with a string hashes it with SHA-512 (unsalted), so every process sees the same
    examples; splits draw from different streams.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    return random.Random(f"s2s.data.{corpus}:{split}:{seed}")

"""What a run needs before its first step: the tokenizer (trained on first use and kept in the
run directory) and the tokenised, cached training and validation splits.

The task says which texts train the tokenizer and how a split is built; under `torchrun` rank 0
does the work and the other ranks read what it wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2s import distributed as dist
from s2s.data.corpus import describe, load_split
from s2s.data.tokenizer import Tokenizer
from s2s.errors import UserError
from s2s.recipe import Recipe
from s2s.run import TOKENIZER_DIR
from s2s.tasks import Task


def run_tokenizer(recipe: Recipe, task: Task, run_dir: Path, log) -> Tokenizer:
    """The run's tokenizer: the recipe's existing SentencePiece models (tokenizer.model), or one
    trained on the training split; made the first time and kept in the run directory."""
    folder = Path(run_dir) / TOKENIZER_DIR
    if folder.exists():
        return Tokenizer.load(folder)
    if dist.is_main() and (recipe.tokenizer.model or recipe.tokenizer.tgt_model):
        tokenizer = Tokenizer.adopt(recipe.tokenizer, folder)
        log(f"using SentencePiece model {recipe.tokenizer.model} ({tokenizer.src_vocab_size} pieces)")
    elif dist.is_main():
        raw = load_split(recipe.data, "train")
        log(f"training {recipe.tokenizer.type} tokenizer ({recipe.tokenizer.vocab_size} pieces) "
            f"on {len(raw):,} examples")
        src_texts, tgt_texts = task.tokenizer_texts(raw, recipe.data)
        Tokenizer.train(recipe.tokenizer, src_texts, tgt_texts, folder)
    dist.barrier()
    return Tokenizer.load(folder)


def run_splits(recipe: Recipe, task: Task, tokenizer: Tokenizer, model, run_dir: Path, log):
    """(training split, validation split, training rows within the length limits)."""
    data, cache = recipe.data, Path(run_dir) / "cache"
    splits, missing = {}, {}
    for split in ("train", "validation"):
        if dist.is_main():  # rank 0 loads (generates), tokenises and caches; the others read
            raw = load_split(data, split)
            splits[split] = task.split(raw, data, tokenizer, model, cache, split)
        dist.barrier()
        if not dist.is_main():
            raw = load_split(data, split)
            splits[split] = task.split(raw, data, tokenizer, model, cache, split)
        n = task.missing_rows(raw, data)  # rows without a source or target: left out
        missing[split] = f" ({n:,} dropped: no source or target)" if n else ""
    train = splits["train"]
    rows: np.ndarray = train.rows_within(data.max_src_len, data.max_tgt_len)
    dropped = len(train) - len(rows)
    log(f"data {describe(data)}: {len(rows):,} training examples{missing['train']}"
        + (f" ({dropped:,} dropped: empty or longer than "
           f"{data.max_src_len}/{data.max_tgt_len} tokens)" if dropped else "")
        + f", {len(splits['validation']):,} validation examples{missing['validation']}")
    if len(rows) == 0:
        raise UserError(f"no training pairs left in {describe(data)} after length filtering")
    return train, splits["validation"], rows

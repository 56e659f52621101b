"""SentencePiece tokenisers, trained on the training split on first use, kept in the run directory.

One joint model (`joint.model`) serves both sides when the recipe says `joint: true`, which lets
the model share source, target and output embeddings; otherwise `src.model` and `tgt.model`.
Ids 0-3 are reserved everywhere: padding, unknown, begin and end of sentence. Existing models
(`tokenizer.model`, and `tokenizer.tgt_model` for a separate target side) are copied in instead of
training new ones, if they reserve the same ids.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

from s2s.data.mapped_tokenizer import VOCAB, MappedTokenizer
from s2s.errors import UserError
from s2s.files import atomic_directory
from s2s.recipe import TokenizerConfig
from s2s.vocab import BOS, EOS, PAD, UNK

__all__ = ["BOS", "EOS", "PAD", "UNK", "Tokenizer"]


class Tokenizer:
    """Source and target SentencePiece processors (the same object when joint)."""

    def __init__(self, src: spm.SentencePieceProcessor, tgt: spm.SentencePieceProcessor):
        self.src, self.tgt = src, tgt

    @property
    def joint(self) -> bool:
        return self.src is self.tgt

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return self.src.encode(texts)

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return self.tgt.encode(texts)

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        return self.tgt.decode(ids)

    def src_pieces(self, ids: list[int]) -> list[str]:
        return [self.src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    @classmethod
    def load(cls, folder: Path) -> "Tokenizer | MappedTokenizer":
        folder = Path(folder)
        if (folder / VOCAB).is_file():  # pieces numbered by a vocabulary file (imported models)
            return MappedTokenizer.load(folder)
        if (folder / "joint.model").is_file():
            joint = _processor(folder / "joint.model")
            return cls(joint, joint)
        if (folder / "src.model").is_file() and (folder / "tgt.model").is_file():
            return cls(_processor(folder / "src.model"), _processor(folder / "tgt.model"))
        raise UserError(f"no SentencePiece model in {folder} (expected joint.model or "
                        "src.model + tgt.model); is this a run directory?")

    @classmethod
    def train(cls, cfg: TokenizerConfig, src_texts: Iterable[str], tgt_texts: Iterable[str],
              folder: Path) -> "Tokenizer":
        """Train on the given texts and save into `folder` (written atomically)."""
        def write(tmp: Path) -> None:
            if cfg.joint:
                _train(cfg, itertools.chain(src_texts, tgt_texts), tmp / "joint")
            else:
                _train(cfg, src_texts, tmp / "src")
                _train(cfg, tgt_texts, tmp / "tgt")

        return cls._install(folder, write)

    @classmethod
    def adopt(cls, cfg: TokenizerConfig, folder: Path) -> "Tokenizer":
        """Copy the existing models `cfg.model` (and `cfg.tgt_model`) into `folder`; how the
        keys pair up is checked when the recipe is loaded (s2s.recipe.check_recipe)."""
        models = {"joint": cfg.model} if cfg.joint else {"src": cfg.model, "tgt": cfg.tgt_model}
        for path in models.values():
            check_reserved_ids(Path(path))

        def write(tmp: Path) -> None:
            for name, path in models.items():
                shutil.copyfile(path, tmp / f"{name}.model")

        return cls._install(folder, write)

    @classmethod
    def _install(cls, folder: Path, write) -> "Tokenizer":
        """Fill a temp folder with `write(tmp)` and put it in place of `folder` (atomically)."""
        with atomic_directory(Path(folder)) as tmp:
            write(tmp)
        return cls.load(folder)


def _processor(path: Path) -> spm.SentencePieceProcessor:
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        raise UserError(f"cannot read SentencePiece model {path}: {e}") from None


def check_reserved_ids(path: Path) -> None:
    """An existing model must number pad, unk, bos and eos 0-3, as the models and search do."""
    if not path.is_file():
        raise UserError(f"SentencePiece model not found: {path}")
    sp = _processor(path)
    ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
    if ids != (PAD, UNK, BOS, EOS):
        raise UserError(f"SentencePiece model {path} has pad={ids[0]} unk={ids[1]} bos={ids[2]} "
                        f"eos={ids[3]}, but s2s reserves ids 0-3 for them; train it with "
                        "spm_train --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3")


def _train(cfg: TokenizerConfig, texts: Iterable[str], prefix: Path) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=(t for t in texts if t), model_prefix=str(prefix),
        model_type=cfg.type, vocab_size=cfg.vocab_size, hard_vocab_limit=False,
        character_coverage=cfg.character_coverage, input_sentence_size=cfg.max_sentences,
        shuffle_input_sentence=True, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        num_threads=2, minloglevel=2)

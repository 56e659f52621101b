"""A tokenizer whose ids come from vocabulary files, not from the SentencePiece models' own ids.

Marian models (the opus-mt family) cut text with SentencePiece (`source.spm`, `target.spm`) but
number the pieces through `vocab.json` (one vocabulary for both sides, or `target_vocab.json`
for the target), and end every source sentence with "</s>". A run imported from such a model
keeps these files in its `tokenizer/` folder, already renumbered so that ids 0-3 are padding,
unknown, start and end of sentence, as everywhere in s2s; `options.json` says whether sources
end with "</s>". A piece missing from the vocabulary is unknown (id 1). A leading language tag
such as ">>fra<<" (multilingual models) is one token, looked up as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm

from s2s.errors import UserError
from s2s.vocab import BOS, EOS, PAD, UNK

SOURCE_SPM, TARGET_SPM = "source.spm", "target.spm"
VOCAB, TARGET_VOCAB, OPTIONS = "vocab.json", "target_vocab.json", "options.json"
SPECIAL = (PAD, UNK, BOS, EOS)


def read_vocab(path: Path) -> dict[str, int]:
    """{piece: id} with ids 0..n-1, each once; errors name the file."""
    try:
        vocab = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read vocabulary {path}: {e}") from None
    if not isinstance(vocab, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in vocab.items()):
        raise UserError(f"vocabulary {path} must be a JSON object of piece -> integer id")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise UserError(f"vocabulary {path}: ids must be 0..{len(vocab) - 1}, each used once")
    return vocab


def load_processor(path: Path) -> spm.SentencePieceProcessor:
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        raise UserError(f"cannot read SentencePiece model {path}: {e}") from None


def split_language_tag(text: str) -> tuple[list[str], str]:
    """'>>fra<< Hello' -> (['>>fra<<'], ' Hello'); text without a tag -> ([], text)."""
    end = text.find("<<") if text.startswith(">>") else -1
    return ([text[:end + 2]], text[end + 2:]) if end > 0 else ([], text)


class MappedTokenizer:
    """Source and target SentencePiece models with their vocabularies (the same dict when joint)."""

    def __init__(self, src: spm.SentencePieceProcessor, tgt: spm.SentencePieceProcessor,
                 src_vocab: dict[str, int], tgt_vocab: dict[str, int], source_eos: bool):
        self.src, self.tgt = src, tgt  # the processors (cache keys of tokenised splits use them)
        self.src_vocab, self.tgt_vocab, self.source_eos = src_vocab, tgt_vocab, source_eos
        self._src_pieces = sorted(src_vocab, key=src_vocab.get)
        self._tgt_pieces = sorted(tgt_vocab, key=tgt_vocab.get)

    @property
    def joint(self) -> bool:
        return self.src_vocab is self.tgt_vocab

    @property
    def src_vocab_size(self) -> int:
        return len(self.src_vocab)

    @property
    def tgt_vocab_size(self) -> int:
        return len(self.tgt_vocab)

    def _ids(self, processor, vocab: dict[str, int], text: str) -> list[int]:
        tags, rest = split_language_tag(text)
        pieces = tags + processor.encode(rest, out_type=str)
        return [vocab.get(p, UNK) for p in pieces]

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        """Ids of each source, with "</s>" at the end when the model was trained so (an empty
        text stays empty: there is nothing to translate)."""
        end = [EOS] if self.source_eos else []
        return [(self._ids(self.src, self.src_vocab, t) + end) if t else [] for t in texts]

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return [self._ids(self.tgt, self.tgt_vocab, t) for t in texts]

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        """Text of each id sequence; special tokens (unknown included) are left out."""
        return [self.tgt.decode_pieces([self._tgt_pieces[i] for i in seq if i not in SPECIAL])
                for seq in ids]

    def src_pieces(self, ids: list[int]) -> list[str]:
        return [self._src_pieces[i] for i in ids]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self._tgt_pieces[i] for i in ids]

    @classmethod
    def load(cls, folder: Path) -> "MappedTokenizer":
        folder = Path(folder)
        for name in (SOURCE_SPM, TARGET_SPM):
            if not (folder / name).is_file():
                raise UserError(f"{folder} has {VOCAB} but no {name}")
        src_vocab = read_vocab(folder / VOCAB)
        tgt_vocab = read_vocab(folder / TARGET_VOCAB) if (folder / TARGET_VOCAB).is_file() else src_vocab
        options = {}
        if (folder / OPTIONS).is_file():
            try:
                options = json.loads((folder / OPTIONS).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise UserError(f"cannot read {folder / OPTIONS}: {e}") from None
        return cls(load_processor(folder / SOURCE_SPM), load_processor(folder / TARGET_SPM),
                   src_vocab, tgt_vocab, bool(options.get("source_eos", True)))

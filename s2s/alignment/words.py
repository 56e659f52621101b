"""Pieces -> words: the rule every word-level view, link and score in s2s follows.

The rules, stated once:

* Pieces -> words: a piece starting with "▁" (U+2581) begins a word, any other piece continues
  the word before it. Special tokens such as "</s>" or "<unk>" are words of their own. A lone
  "▁" (SentencePiece writes "▁", "4" when "▁4" is not in the vocabulary) begins a word together
  with the piece after it.
* Word-level attention: along the source axis the weights of a word's pieces are SUMMED (the
  probability mass the word received); along the target axis the rows of a word's pieces are
  AVERAGED (a word row still sums to 1 when piece rows did).
* Pharaoh links are "i-j" with i the SOURCE word and j the TARGET word, and each target word
  links to its highest-weighted source word. The last target row (the end-of-sentence token) is
  dropped by default: it attends to whatever ends the source and would add a spurious link.
* Gold alignments use the same "src-tgt" order. Accepted tokens: "i-j" and "i-j-S" (sure),
  "i?j" and "i-j-P" (possible), S and P in either case; the "sentence i j S|P" one-link-per-line
  files of the 2003 shared task must be converted first. Possible links include the sure ones.
"""

from __future__ import annotations

import re

import numpy as np

from s2s.errors import UserError

__all__ = ["WORD_START", "as_array", "char_spans", "merge_pieces", "to_words", "word_text"]

WORD_START = "▁"
_SPECIAL = re.compile(r"^<[^<>\s]+>$")  # </s>, <unk>, <pad>, <s>, <2de> ...


def as_array(x) -> np.ndarray:
    """numpy or torch (any dtype, any device) -> numpy."""
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def merge_pieces(pieces: list[str]) -> list[tuple[int, int]]:
    """Half-open word spans [start, end) over piece indices (see the module docstring)."""
    spans: list[list[int]] = []
    for i, piece in enumerate(pieces):
        special = bool(_SPECIAL.match(piece))
        after_special = i > 0 and bool(_SPECIAL.match(pieces[i - 1]))
        after_lone_start = i > 0 and pieces[i - 1] == WORD_START and not special
        if spans and not special and not after_special and (
                after_lone_start or not piece.startswith(WORD_START)):
            spans[-1][1] = i + 1  # continues the current word
        else:
            spans.append([i, i + 1])
    return [(start, end) for start, end in spans]


def word_text(pieces: list[str], spans: list[tuple[int, int]]) -> list[str]:
    """The text of each word: its pieces joined, without "▁"."""
    return ["".join(pieces[start:end]).replace(WORD_START, "") for start, end in spans]


def _check_spans(spans: list[tuple[int, int]], size: int, what: str) -> None:
    if not spans or spans[0][0] != 0 or spans[-1][1] != size:
        covered = spans[-1][1] if spans else 0
        raise UserError(f"the {what} words cover {covered} pieces but the matrix has {size}")


def to_words(matrix, tgt_spans: list[tuple[int, int]],
             src_spans: list[tuple[int, int]]) -> np.ndarray:
    """(..., T, S) piece attention -> (..., Tw, Sw) word attention: source sum, target mean."""
    m = as_array(matrix)
    _check_spans(tgt_spans, m.shape[-2], "target")
    _check_spans(src_spans, m.shape[-1], "source")
    m = np.stack([m[..., a:b].sum(-1) for a, b in src_spans], axis=-1)  # (..., T, Sw)
    return np.stack([m[..., a:b, :].mean(-2) for a, b in tgt_spans], axis=-2)  # (..., Tw, Sw)


def char_spans(processor, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """SentencePiece ids and the [start, end) character span of each piece in `text`.

    Pieces are matched left to right against the text ("▁" stands for the spaces before a
    word). That is exact unless the normaliser rewrote characters (e.g. full-width forms); then
    the piece's length is used, which can shift later spans by a character or two.
    """
    ids = processor.encode(text)
    spans, position = [], 0
    for i in ids:
        piece = processor.id_to_piece(i)
        if piece.startswith(WORD_START):
            while position < len(text) and text[position].isspace():
                position += 1
            piece = piece[1:]
        if processor.is_unknown(i):
            piece = text[position:position + 1]
        start = position
        position = min(len(text), position + len(piece))
        spans.append((start, position))
    return ids, spans

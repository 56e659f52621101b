"""Line-oriented input and output for `s2s translate`: a well-behaved Unix filter.

Input is read as bytes and decoded line by line, so a non-UTF-8 line is reported by number; output
is flushed after every batch, so a pipeline sees results as they come.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from s2s.errors import UserError


def decode_lines(stream, name: str) -> Iterator[str]:
    for number, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise UserError(f"{name}, line {number}: not valid UTF-8") from None


def read_file_lines(path: Path) -> Iterator[str]:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    with f:
        yield from decode_lines(f, str(path))


def input_lines(texts: tuple[str, ...], path: Path | None) -> tuple[Iterable[str], bool]:
    """The lines to translate and whether they come from a person typing (translate at once)."""
    if texts and path:
        raise UserError("give TEXT or --input FILE, not both")
    if texts:
        return list(texts), False
    if path:
        return read_file_lines(path), False
    return decode_lines(sys.stdin.buffer, "stdin"), sys.stdin.isatty()


@contextlib.contextmanager
def output_stream(path: Path | None):
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path is None:
        yield sys.stdout
        return
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_translations(results: Iterable[list], out: TextIO, n_best: int) -> None:
    for nbest in results:
        if n_best > 1:
            for t in nbest[:n_best] if nbest else [None] * n_best:  # n_best lines per input
                out.write(f"{t.text}\t{t.score:.4f}\n" if t else "\t\n")
        else:
            out.write((nbest[0].text if nbest else "") + "\n")
        out.flush()

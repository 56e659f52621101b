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
    """One line per input line (n_best lines with --n-best), " ||| links" when aligned."""
    def text(t) -> str:
        if t is None:
            return ""
        return t.text if t.links is None else f"{t.text} ||| {t.links}"

    for nbest in results:
        if n_best > 1:
            for t in nbest[:n_best] if nbest else [None] * n_best:
                out.write(f"{text(t)}\t{t.score:.4f}\n" if t else "\t\n")
        else:
            out.write(text(nbest[0] if nbest else None) + "\n")
        out.flush()


def parse_choice(value: str | None, default: int | str | None) -> int | str | None:
    """CLI text -> layer/head choice: an integer, or a word such as 'all' / 'mean'."""
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return value


def parse_patch(value: str | None) -> tuple[int, int] | None:
    """CLI text 'ROW,COL' -> (row, column) of a patch, or None."""
    if value is None:
        return None
    parts = value.split(",")
    try:
        row, col = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        row = col = None
    if row is None or row < 0 or col < 0:
        raise UserError(f"--patch must be ROW,COL (two whole numbers from 0), not {value!r}")
    return row, col


def print_report(report: dict, as_json: bool) -> None:
    """Scores as JSON, or as the few lines a person reads (tables of layers/heads kept short)."""
    import json

    import click

    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(report["data"] + (f": {report['sentences']} sentences" if "sentences" in report else ""))
    if "bleu" in report:
        click.echo(f"BLEU  {report['bleu']:6.2f}  {report['bleu_signature']}")
        click.echo(f"chrF  {report['chrf']:6.2f}  {report['chrf_signature']}")
        click.echo(f"exact {report['exact']:6.2f}%")
    if "bleu4" in report:
        click.echo("  ".join(f"BLEU-{n} {report[f'bleu{n}']:.2f}" for n in range(1, 5)))
    if "localisation" in report:
        click.echo(f"attention localisation {report['localisation']:.2f}% "
                   f"({report['localised_nouns']} shape nouns)")
    if "aer" in report:
        click.echo(f"AER {100 * report['aer']:.1f}%  precision {100 * report['precision']:.1f}%  "
                   f"recall {100 * report['recall']:.1f}%  ({report['default']}; "
                   f"best: {report['best']}, AER {100 * report['best_aer']:.1f}%)")
    if "dates_alignment" in report:
        d = report["dates_alignment"]
        click.echo(f"alignment accuracy {d['accuracy']:.1f}% ({d['default']}; "
                   f"best: {d['best']}, {d['best_accuracy']:.1f}%)")
    if "attention" in report:
        a = report["attention"]
        click.echo(f"attention: entropy {a['mean_entropy']:.2f} nats/token, source tokens with "
                   f"coverage < 0.2: {100 * a['low_coverage_share']:.1f}%, "
                   f"> 2: {100 * a['high_coverage_share']:.1f}%")

"""Line-oriented input and output for `s2s translate`: a well-behaved Unix filter.

Input is read as bytes and decoded line by line, so a non-UTF-8 line is reported by number; output
is flushed after every batch, so a pipeline sees results as they come.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from s2s.errors import UserError
from s2s.files import atomic_path
from s2s.translate import fixed_chunks


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


def input_chunks(texts: tuple[str, ...], path: Path | None, size: int) -> Iterator[list[str]]:
    """The lines to translate, in chunks of up to `size`.

    Standard input is read by a thread and each chunk takes only the lines already there (the
    first one waited for): a line written by a co-process or typed by a person is answered
    without waiting for later ones, and a fast pipe still fills whole chunks.
    """
    if texts and path:
        raise UserError("give TEXT or --input FILE, not both")
    if texts:
        return fixed_chunks(list(texts), size)
    if path:
        return fixed_chunks(read_file_lines(path), size)
    return available_chunks(decode_lines(sys.stdin.buffer, "stdin"), size)


def available_chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Chunks of the lines read so far (at least one, at most `size`), read ahead by a thread."""
    ahead: queue.Queue = queue.Queue(maxsize=4 * size)
    end = object()

    def read() -> None:
        try:
            for line in lines:
                ahead.put(line)
            ahead.put(end)
        except BaseException as e:  # a bad line: raised in the reading thread's place, in order
            ahead.put(e)

    threading.Thread(target=read, daemon=True).start()
    while True:
        chunk: list[str] = []
        item = ahead.get()
        while isinstance(item, str):
            chunk.append(item)
            if len(chunk) >= size:
                break
            try:
                item = ahead.get_nowait()
            except queue.Empty:
                break
        if chunk:
            yield chunk
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item


def check_output_file(path: Path) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    if path.is_dir():
        raise UserError(f"output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"cannot write {path}: directory {path.parent} is not writable")


@contextlib.contextmanager
def output_stream(path: Path | None):
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path is None:
        yield sys.stdout
        return
    check_output_file(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


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
    for key, name in (("bleu", "BLEU "), ("chrf", "chrF "), ("ter", "TER  ")):
        if key in report:
            click.echo(f"{name} {report[key]:6.2f}  {report[f'{key}_signature']}")
    if "exact" in report:
        click.echo(f"exact {report['exact']:6.2f}%")
    if "paired_bootstrap" in report:
        print_paired_bootstrap(report["paired_bootstrap"])
    if "bleu4" in report:
        click.echo("  ".join(f"BLEU-{n} {report[f'bleu{n}']:.2f}" for n in range(1, 5)))
    if "cider_d" in report:
        click.echo(f"CIDEr-D {report['cider_d']:.3f}")
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


def print_paired_bootstrap(test: dict) -> None:
    """Both systems' scores as sacreBLEU prints them: score (bootstrap mean ± 95% CI), and the
    p-value of the difference, starred below 0.05."""
    import click

    click.echo(f"paired bootstrap resampling ({test['samples']} resamples), score "
               f"(mean ± 95% CI), baseline {test['baseline']}:")
    names = {"bleu": "BLEU", "chrf": "chrF", "ter": "TER"}
    width = max(len(test["baseline"]), len(test["system"]))
    for key, name in names.items():
        if key not in test:
            continue
        base, system = test[key]["baseline"], test[key]["system"]
        star = "*" if system["p_value"] <= 0.05 else ""
        click.echo(f"{name:5} {test['baseline']:{width}}  {base['score']:6.2f} "
                   f"({base['mean']:.2f} ± {base['ci']:.2f})")
        click.echo(f"{'':5} {test['system']:{width}}  {system['score']:6.2f} "
                   f"({system['mean']:.2f} ± {system['ci']:.2f}) (p = {system['p_value']:.4f}){star}")
        click.echo(f"{'':5} {test[key]['signature']}")

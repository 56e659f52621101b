"""Corpus scores with sacreBLEU, reported with their signatures so they can be compared.

BLEU uses sacreBLEU's defaults (13a tokenisation, cased) on detokenised text, the way published
Multi30k and WMT figures are computed; chrF is reported beside it, and exact match for tasks
with one right answer (the dates corpus).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import sacrebleu

from s2s.errors import UserError


@dataclass
class Scores:
    bleu: float
    chrf: float
    exact: float  # percentage of hypotheses equal to (one of) their references
    sentences: int
    bleu_signature: str
    chrf_signature: str

    def line(self) -> str:
        return f"BLEU {self.bleu:.2f} | chrF {self.chrf:.2f} | exact {self.exact:.2f}%"

    def as_dict(self) -> dict:
        return asdict(self)


def score(hypotheses: list[str], references: list[str] | list[list[str]]) -> Scores:
    """Score hypotheses against one reference each, or a list of references each."""
    if len(hypotheses) != len(references):
        raise UserError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise UserError("nothing to score: no hypotheses and no references")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    streams = reference_streams(refs)
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    exact = sum(h.strip() in [x.strip() for x in r] for h, r in zip(hypotheses, refs))
    return Scores(bleu=bleu.corpus_score(hypotheses, streams).score,
                  chrf=chrf.corpus_score(hypotheses, streams).score,
                  exact=100.0 * exact / max(len(hypotheses), 1), sentences=len(hypotheses),
                  bleu_signature=str(bleu.get_signature()),
                  chrf_signature=str(chrf.get_signature()))


def reference_streams(references: list[list[str]]) -> list[list[str]]:
    """sacreBLEU's layout: stream k holds every sentence's k-th reference ("" where it has fewer)."""
    return [[r[k] if k < len(r) else "" for r in references] for k in range(max(map(len, references)))]


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, without line endings; errors name the file and line."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    lines = data.decode("utf-8", errors="replace").splitlines()
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}, line {number}: not valid UTF-8") from None
    return lines


def score_files(hyp: Path, ref: Path) -> Scores:
    hyps, refs = read_lines(hyp), read_lines(ref)
    if len(hyps) != len(refs):
        raise UserError(f"{hyp} has {len(hyps)} lines but {ref} has {len(refs)}")
    if not hyps:
        raise UserError(f"{hyp} and {ref} are empty: nothing to score")
    return score(hyps, refs)


def evaluate_run(run, split: str, opts):
    """Translate a split of the run's own corpus and score it -> (scores, hypotheses, pairs)."""
    from s2s.data.corpus import load_split, text_pairs
    from s2s.translate import translate

    if split not in ("train", "validation", "test"):
        raise UserError(f"--split must be train, validation or test, not {split!r}")
    pairs = text_pairs(load_split(run.recipe.data, split), run.recipe.data)
    results = translate(run, pairs["src"], opts)
    hypotheses = [r[0].text if r else "" for r in results]
    return score(hypotheses, pairs["tgt"]), hypotheses, pairs

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
from s2s.files import read_lines


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


def score_files(hyp: Path, ref: Path) -> Scores:
    hyps, refs = read_lines(hyp), read_lines(ref)
    if len(hyps) != len(refs):
        raise UserError(f"{hyp} has {len(hyps)} lines but {ref} has {len(refs)}")
    return score(hyps, refs)


def bleu_orders(hypotheses: list[str], references: list[list[str]]) -> dict:
    """BLEU-1 .. BLEU-4, as captioning papers report them (all references of each image)."""
    streams = reference_streams(references)
    return {f"bleu{n}": sacrebleu.metrics.BLEU(max_ngram_order=n).corpus_score(hypotheses, streams).score
            for n in range(1, 5)}

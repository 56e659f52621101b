"""Corpus scores with sacreBLEU, reported with their signatures so they can be compared.

BLEU uses sacreBLEU's defaults (13a tokenisation, cased) on detokenised text, the way published
Multi30k and WMT figures are computed; chrF is reported beside it (and TER when asked for), and
exact match for tasks with one right answer (the dates corpus).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import sacrebleu

from s2s.errors import UserError
from s2s.files import read_lines


METRICS = {"bleu": sacrebleu.metrics.BLEU, "chrf": sacrebleu.metrics.CHRF,
           "ter": sacrebleu.metrics.TER}  # sacreBLEU's, with their default settings
DEFAULT_METRICS = ("bleu", "chrf")


def parse_metrics(text: str) -> tuple[str, ...]:
    """'bleu,chrf,ter' -> ("bleu", "chrf", "ter"), each one checked."""
    names = tuple(dict.fromkeys(m.strip().lower() for m in text.split(",") if m.strip()))
    for name in names:
        if name not in METRICS:
            raise UserError(f"--metrics: unknown metric {name!r}; choose from {', '.join(METRICS)}")
    if not names:
        raise UserError(f"--metrics needs at least one of {', '.join(METRICS)}")
    return names


@dataclass
class Scores:
    exact: float  # percentage of hypotheses equal to (one of) their references
    sentences: int
    bleu: float | None = None  # each metric and its signature: None when not asked for
    chrf: float | None = None
    ter: float | None = None  # translation edit rate: lower is better
    bleu_signature: str | None = None
    chrf_signature: str | None = None
    ter_signature: str | None = None

    def line(self) -> str:
        return f"BLEU {self.bleu:.2f} | chrF {self.chrf:.2f} | exact {self.exact:.2f}%"

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def score(hypotheses: list[str], references: list[str] | list[list[str]],
          metrics: tuple[str, ...] = DEFAULT_METRICS) -> Scores:
    """Score hypotheses against one reference each, or a list of references each."""
    if len(hypotheses) != len(references):
        raise UserError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise UserError("nothing to score: no hypotheses and no references")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    streams = reference_streams(refs)
    exact = sum(h.strip() in [x.strip() for x in r] for h, r in zip(hypotheses, refs))
    values = {}
    for name in metrics:
        metric = METRICS[name]()
        values[name] = metric.corpus_score(hypotheses, streams).score
        values[f"{name}_signature"] = str(metric.get_signature())
    return Scores(exact=100.0 * exact / len(hypotheses), sentences=len(hypotheses), **values)


def paired_bootstrap(baseline: tuple[str, list[str]], system: tuple[str, list[str]],
                     references: list[str] | list[list[str]],
                     metrics: tuple[str, ...] = DEFAULT_METRICS, samples: int = 1000) -> dict:
    """sacreBLEU's paired bootstrap resampling (Koehn 2004) of two systems' translations of the
    same sentences: each system's score, bootstrap mean and 95% confidence interval, and the
    p-value of the difference (the chance of a difference this large if both systems were the
    same). Each argument system is (name, hypotheses); the resampling seed is sacreBLEU's."""
    from sacrebleu.significance import PairedTest

    if not (len(baseline[1]) == len(system[1]) == len(references)):
        raise UserError(f"paired bootstrap needs as many hypotheses of each system as references "
                        f"({len(baseline[1])}, {len(system[1])}, {len(references)})")
    streams = reference_streams([[r] if isinstance(r, str) else list(r) for r in references])
    test = PairedTest([baseline, system], {name: METRICS[name]() for name in metrics},
                      references=streams, test_type="bs", n_samples=samples)
    signatures, results = test()
    report = {"baseline": baseline[0], "system": system[0], "samples": test.n_samples}
    for name, key in zip(metrics, signatures):  # sacreBLEU's keys: BLEU, chrF2, TER
        base, other = results[key]  # numpy floats, made plain for JSON
        report[name] = {"baseline": {"score": float(base.score), "mean": float(base.mean),
                                     "ci": float(base.ci)},
                        "system": {"score": float(other.score), "mean": float(other.mean),
                                   "ci": float(other.ci), "p_value": float(other.p_value)},
                        "signature": str(signatures[key])}
    return report


def reference_streams(references: list[list[str]]) -> list[list[str]]:
    """sacreBLEU's layout: stream k holds every sentence's k-th reference ("" where it has fewer)."""
    return [[r[k] if k < len(r) else "" for r in references] for k in range(max(map(len, references)))]


def score_files(hyp: Path, ref: Path, metrics: tuple[str, ...] = DEFAULT_METRICS) -> Scores:
    hyps, refs = read_lines(hyp), read_lines(ref)
    if len(hyps) != len(refs):
        raise UserError(f"{hyp} has {len(hyps)} lines but {ref} has {len(refs)}")
    if not hyps:
        raise UserError(f"{hyp} and {ref} are empty: nothing to score")
    return score(hyps, refs, metrics)


def bleu_orders(hypotheses: list[str], references: list[list[str]]) -> dict:
    """BLEU-1 .. BLEU-4, as captioning papers report them (all references of each image)."""
    streams = reference_streams(references)
    return {f"bleu{n}": sacrebleu.metrics.BLEU(max_ngram_order=n).corpus_score(hypotheses, streams).score
            for n in range(1, 5)}

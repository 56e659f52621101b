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


def score_files(hyp: Path, ref: Path, metrics: tuple[str, ...] = DEFAULT_METRICS) -> Scores:
    hyps, refs = read_lines(hyp), read_lines(ref)
    if len(hyps) != len(refs):
        raise UserError(f"{hyp} has {len(hyps)} lines but {ref} has {len(refs)}")
    if not hyps:
        raise UserError(f"{hyp} and {ref} are empty: nothing to score")
    return score(hyps, refs, metrics)


def evaluate_run(run, split: str, opts, metrics: tuple[str, ...] = DEFAULT_METRICS):
    """Translate a split of the run's own corpus and score it -> (scores, hypotheses, pairs)."""
    from s2s.data.corpus import load_split, text_pairs
    from s2s.translate import translate

    if split not in ("train", "validation", "test"):
        raise UserError(f"--split must be train, validation or test, not {split!r}")
    pairs = text_pairs(load_split(run.recipe.data, split), run.recipe.data)
    hypotheses = best_translations(run, pairs["src"], opts)
    return score(hypotheses, pairs["tgt"], metrics), hypotheses, pairs


def best_translations(run, sources: list[str], opts) -> list[str]:
    """The best translation of each source line ("" for an empty line)."""
    from s2s.translate import translate

    return [r[0].text if r else "" for r in translate(run, sources, opts)]


def evaluate_files(run, src: Path, ref: Path, opts, metrics: tuple[str, ...] = DEFAULT_METRICS):
    """Translate an external test set (a sentence per line) and score it against its references
    -> (scores, hypotheses, pairs)."""
    import datasets

    sources, references = read_lines(src), read_lines(ref)
    if len(sources) != len(references):
        raise UserError(f"{src} has {len(sources)} lines but {ref} has {len(references)}")
    if not sources:
        raise UserError(f"{src} and {ref} are empty: nothing to evaluate")
    hypotheses = best_translations(run, sources, opts)
    pairs = datasets.Dataset.from_dict({"src": sources, "tgt": references})
    return score(hypotheses, references, metrics), hypotheses, pairs

"""Numbers about alignment matrices: choosing layers and heads, Pharaoh links, gold alignments
and AER, entropy and coverage, span accuracy, attention rollout. Pure functions of arrays.

Pharaoh links are "i-j" with i the SOURCE word and j the TARGET word, and each target word links
to its highest-weighted source word. The last target row (the end-of-sentence token) is dropped
by default: it attends to whatever ends the source and would add a spurious link. Gold
alignments use the same "src-tgt" order. Accepted tokens: "i-j" and "i-j-S" (sure), "i?j" and
"i-j-P" (possible), S and P in either case; the "sentence i j S|P" one-link-per-line files of the
2003 shared task must be converted first. Possible links include the sure ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from s2s.alignment.words import as_array
from s2s.errors import UserError

__all__ = ["alignment_error_rate", "attention_stats", "corpus_attention_stats", "parse_alignment_line",
           "pharaoh", "read_alignments", "rollout", "select", "span_accuracy"]


def _index(choice: int | str, count: int, what: str, modes: tuple[str, ...]) -> int | str:
    """An index in range (negative counts from the end) or one of `modes`; errors name both."""
    if isinstance(choice, str) and choice in modes:
        return choice
    try:
        index = int(choice)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be an index or {' or '.join(map(repr, modes))}, "
                        f"not {choice!r}") from None
    if not -count <= index < count:
        have = f"{what}s 0-{count - 1}" if count > 1 else f"only {what} 0"
        raise UserError(f"{what} {index} does not exist; this model has {have}")
    return index % count


def select(weights, layer: int | str = -1, head: int | str = "mean") -> np.ndarray:
    """Pick from (L, H, T, S): layer index or "all"; head index, "mean" or "all".

    Returns (T, S), or (H, T, S) for head="all", (L, T, S) for layer="all", (L, H, T, S) for both.
    """
    w = as_array(weights)
    if w.ndim != 4:
        raise UserError(f"attention weights must be (layers, heads, T, S), got shape {w.shape}")
    layer = _index(layer, w.shape[0], "layer", ("all",))
    head = _index(head, w.shape[1], "head", ("mean", "all"))
    w = w if layer == "all" else w[layer:layer + 1]  # (L', H, T, S)
    if head == "mean":
        w = w.mean(1)  # (L', T, S)
    elif head != "all":
        w = w[:, head]  # (L', T, S)
    return w if layer == "all" else w[0]


def pharaoh(matrix, drop_last_target: bool = True) -> str:
    """'i-j' links (source i, target j) from each target row's argmax, sorted, space separated.

    The last row (end of sentence) is dropped unless `drop_last_target` is False; rows with no
    weight at all (padding) get no link.
    """
    m = as_array(matrix)  # (Tw, Sw)
    if drop_last_target:
        m = m[:-1]
    links = sorted((int(row.argmax()), j) for j, row in enumerate(m) if row.max() > 0)
    return " ".join(f"{i}-{j}" for i, j in links)


_LINK = re.compile(r"^(\d+)(?:-(\d+)(?:-([SPsp]))?|\?(\d+))$")


def parse_alignment_line(line: str, line_number: int,
                         path: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """One line of gold links -> (sure, possible) sets of (source, target), possible ⊇ sure."""
    sure, possible = set(), set()
    for token in line.split():
        match = _LINK.match(token)
        if not match:
            raise UserError(f"{path}, line {line_number}: cannot read alignment '{token}'")
        src, tgt, kind, possible_tgt = match.groups()
        if possible_tgt is not None:
            possible.add((int(src), int(possible_tgt)))
        elif kind in ("P", "p"):
            possible.add((int(src), int(tgt)))
        else:
            sure.add((int(src), int(tgt)))
    return sure, possible | sure


def read_alignments(path) -> list[tuple[set, set]]:
    """A UTF-8 file of one line per sentence (an empty line: no links) -> [(sure, possible)]."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not valid UTF-8") from None
    return [parse_alignment_line(line, n, str(path)) for n, line in enumerate(text.splitlines(), 1)]


def alignment_error_rate(predicted: list[set],
                         gold: list[tuple[set, set]]) -> dict:
    """Corpus-level AER, precision and recall (Och & Ney 2003) of predicted links A.

    precision = |A∩P| / |A|, recall = |A∩S| / |S|, AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|);
    an empty denominator gives 0.0.
    """
    if len(predicted) != len(gold):
        raise UserError(f"{len(predicted)} predicted alignments but {len(gold)} gold ones")
    a = s = a_s = a_p = 0
    for links, (sure, possible) in zip(predicted, gold):
        links, possible = set(links), set(possible) | set(sure)
        a, s = a + len(links), s + len(sure)
        a_s, a_p = a_s + len(links & sure), a_p + len(links & possible)
    return {"aer": 1.0 - (a_s + a_p) / (a + s) if a + s else 0.0,
            "precision": a_p / a if a else 0.0, "recall": a_s / s if s else 0.0,
            "sentences": len(gold), "predicted_links": a, "sure_links": s}


def attention_stats(matrix) -> dict:
    """Row entropy in nats (low = sharp) and coverage, the attention each source token received.

    Coverage near 0 hints at a dropped source word, well above 1 at one translated twice.
    """
    m = as_array(matrix).astype(np.float64)  # (T, S)
    terms = np.where(m > 0, -m * np.log(np.where(m > 0, m, 1.0)), 0.0)  # 0 log 0 = 0
    entropy = terms.sum(-1)  # (T,)
    return {"entropy": entropy.tolist(), "mean_entropy": float(entropy.mean()) if m.size else 0.0,
            "coverage": m.sum(0).tolist()}


def corpus_attention_stats(matrices: list[np.ndarray]) -> dict:
    """Over many (T, S) matrices (end-of-sentence rows already dropped): mean per-token entropy
    (nats), and the share of source tokens that received almost no attention (coverage < 0.2:
    dropped?) or a lot (> 2: repeated?)."""
    entropies, coverage = [], []
    for matrix in matrices:
        stats = attention_stats(matrix)
        entropies.extend(stats["entropy"])
        coverage.extend(stats["coverage"])
    coverage = np.asarray(coverage)
    return {"mean_entropy": float(np.mean(entropies)) if entropies else 0.0,
            "low_coverage_share": float((coverage < 0.2).mean()) if coverage.size else 0.0,
            "high_coverage_share": float((coverage > 2.0).mean()) if coverage.size else 0.0}


def rollout(weights) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020, https://arxiv.org/abs/2005.00928) of self-attention
    (L, H, S, S): how much each output position draws on each input position through every layer.

    Per layer the heads are averaged and the residual connection is accounted for as an identity,
    A_l = (mean_h W_l + I) / 2 with rows renormalised; rollout = A_L ... A_1. Rows sum to 1.
    """
    w = as_array(weights).astype(np.float64)
    if w.ndim != 4 or w.shape[-1] != w.shape[-2]:
        raise UserError(f"rollout needs self-attention weights (layers, heads, S, S), got {w.shape}")
    result = np.eye(w.shape[-1])
    for layer in w:
        a = layer.mean(0) + np.eye(w.shape[-1])
        a /= a.sum(-1, keepdims=True)
        result = a @ result
    return result


def span_accuracy(matrix, src_char_spans: list[tuple[int, int]],
                  target_char_positions: dict[str, list[int]],
                  gold_spans: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Does each target token of a field attend to the right part of the source text?

    For every field (e.g. "year") and every target token index listed for it, the source token
    with the highest weight is looked up in `src_char_spans` (half-open character spans of the
    source tokens in the source text); it is correct when that span overlaps the field's gold
    span. A listed index past the last row (a short hypothesis) counts as wrong. Returns
    {field: (correct, total)}, to be summed over a corpus.
    """
    m = as_array(matrix)  # (T, S)
    if len(src_char_spans) != m.shape[1]:
        raise UserError(f"{len(src_char_spans)} source character spans for {m.shape[1]} "
                        "source tokens")
    result = {}
    for field, positions in target_char_positions.items():
        if field not in gold_spans:
            raise UserError(f"no gold span for field {field!r}; have {', '.join(gold_spans)}")
        gold_start, gold_end = gold_spans[field]
        correct = 0
        for t in positions:
            if 0 <= t < m.shape[0]:
                start, end = src_char_spans[int(m[t].argmax())]
                correct += start < gold_end and gold_start < end
        result[field] = (correct, len(positions))
    return result

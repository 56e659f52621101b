"""Probes of where attention should fall, for the two built-in corpora that record the truth.

- dates: the generator records which source characters gave the year, the month and the day;
  `dates_alignment_accuracy` checks whether each output digit attended inside its field's span.
- shapes: the generator records every object's box; `shapes_localisation` checks whether the
  attention maximum lies inside the object when the caption names its shape.
Generic alignment code lives in the other modules of this package; these know their corpus.
"""

from __future__ import annotations

import numpy as np

from s2s.alignment.forced import default_choice, forced_weights
from s2s.alignment.metrics import select, span_accuracy
from s2s.alignment.words import char_spans, merge_pieces, word_text
from s2s.run import Run

DATE_FIELDS = {"year": range(0, 4), "month": range(5, 7), "day": range(8, 10)}  # in "1998-07-04"
SHAPE_WORDS = ("circle", "square", "triangle", "diamond", "cross")


def choices(weights: np.ndarray) -> list[tuple[int | str, int | str]]:
    """Every (layer, head) of a weights array, plus each layer's head mean."""
    layers, heads = weights.shape[:2]
    return [(layer, head) for layer in range(layers)
            for head in ([*range(heads), "mean"] if heads > 1 else [0])]


def dates_alignment_accuracy(run: Run, sources: list[str], targets: list[str],
                             spans: dict[str, list]) -> dict:
    """For the dates corpus: the fraction of year, month and day output characters whose
    strongest attention falls inside the source span the generator recorded for that field.

    Forced on the reference output; reported for every layer/head, their mean per layer, and
    the default choice.
    """
    src = [char_spans(run.tokenizer.src, s) for s in sources]
    tgt = [char_spans(run.tokenizer.tgt, t) for t in targets]
    weights = forced_weights(run, [ids for ids, _ in src], [ids for ids, _ in tgt])
    counts: dict[tuple, list[int]] = {}
    for i, w in enumerate(weights):
        positions = {field: [k for k, (a, b) in enumerate(tgt[i][1]) if a < b and a in chars]
                     for field, chars in DATE_FIELDS.items()}
        gold = {field: tuple(spans[field][i]) for field in DATE_FIELDS}
        for layer, head in choices(w):
            found = span_accuracy(select(w, layer, head), src[i][1], positions, gold)
            tally = counts.setdefault((layer, head), [0, 0])
            tally[0] += sum(c for c, _ in found.values())
            tally[1] += sum(n for _, n in found.values())
    table = {f"layer {l} head {h}": 100.0 * c / max(n, 1) for (l, h), (c, n) in counts.items()}
    default = default_choice(run)
    best = max(table, key=table.get)
    return {"default": f"layer {default[0]} head {default[1]}",
            "accuracy": table[f"layer {default[0]} head {default[1]}"],
            "best": best, "best_accuracy": table[best], "per_layer_head": table}


def shapes_localisation(attention: np.ndarray, pieces: list[str], boxes: list, grid: tuple[int, int],
                        image_size: int) -> tuple[int, int]:
    """For each shape noun of one caption, is the attention maximum inside that object's box?

    `attention` is (T + 1, regions) over the caption's pieces; the k-th shape noun refers to the
    k-th object in reading order (the order the generator writes them); a region counts as
    inside when its centre lies in the box. Returns (hits, nouns).
    """
    h, w = grid
    spans = merge_pieces(pieces)
    words = word_text(pieces, spans)
    nouns = [(start, end) for (start, end), word in zip(spans, words) if word in SHAPE_WORDS]
    hits = 0
    for k, (start, end) in enumerate(nouns[:len(boxes)]):
        region = int(attention[start:end].mean(0).argmax())
        y, x = (region // w + 0.5) * image_size / h, (region % w + 0.5) * image_size / w
        x0, y0, x1, y1 = boxes[k]
        hits += x0 <= x < x1 and y0 <= y < y1
    return hits, min(len(nouns), len(boxes))

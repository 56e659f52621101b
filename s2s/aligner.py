"""Alignment matrices from a trained run: teacher-forced passes with attention recorded.

Whatever produced an output (greedy, beam, a person), its alignment is read by feeding that
output back through the decoder with `record_attention()` on, as OpenNMT's report_align does: so
beam search need not carry attention, and `--target` can force any translation. Row t of a
matrix is the attention used while producing target token t (the last row produces "</s>").

Default layer and heads (for Pharaoh output and the headline scores): an RNN has one attention;
for a Transformer the second-to-last decoder layer, averaged over heads (Garg et al. 2019,
https://arxiv.org/abs/1909.02074, found the penultimate layer the most alignment-like; the
per-head table of `s2s evaluate` shows which head is best for a given model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from s2s import alignment
from s2s.attention import record_attention
from s2s.data.batching import collate, token_batches
from s2s.errors import UserError
from s2s.run import Run, autocast

EOS_PIECE = "</s>"


@dataclass
class Aligned:
    """One sentence pair with its attention: weights (layers, heads, T, S) over pieces."""

    source: str
    target: str
    src_pieces: list[str]
    tgt_pieces: list[str]  # the target's pieces and "</s>"
    weights: np.ndarray

    def words(self) -> tuple[list[str], list[str], np.ndarray]:
        """Word-level tokens and weights (pieces merged by the rule in `s2s.alignment`)."""
        src_spans, tgt_spans = (alignment.merge_pieces(self.src_pieces),
                                alignment.merge_pieces(self.tgt_pieces))
        return (alignment.word_text(self.src_pieces, src_spans),
                alignment.word_text(self.tgt_pieces, tgt_spans),
                alignment.to_words(self.weights, tgt_spans, src_spans))


def default_choice(run: Run) -> tuple[int, int | str]:
    """(layer, head) used when none is asked for: see the module docstring."""
    layers = getattr(run.recipe.model, "dec_layers", 1) if run.recipe.model.arch == "transformer" else 1
    return (layers - 2 if layers > 1 else 0), ("mean" if run.recipe.model.arch == "transformer" else 0)


def describe(run: Run) -> str:
    """'rnn, additive attention' / 'transformer, 4 heads x 3 layers' for titles."""
    m = run.recipe.model
    if m.arch == "transformer":
        return f"transformer, {m.dec_layers} layers x {m.heads} heads"
    return f"{m.arch}, {m.attention.type} attention"


def forced_weights(run: Run, sources: list[list[int]], targets: list[list[int]],
                   batch_size: int = 64) -> list[np.ndarray]:
    """(layers, heads, len(target) + 1, len(source)) for each pair, in input order."""
    src_len = np.array([len(s) for s in sources])
    tgt_len = np.array([len(t) for t in targets])
    results: list[np.ndarray | None] = [None] * len(sources)
    for index in token_batches(src_len, tgt_len, np.arange(len(sources)), 10**9,
                               max_sentences=batch_size):
        batch = collate([sources[i] for i in index], [targets[i] for i in index], index)
        batch = batch.to(run.device)
        with torch.inference_mode(), autocast(run.device, run.precision), record_attention():
            _, weights = run.model(batch.src, batch.src_mask, batch.tgt_in)
        if weights is None:
            raise UserError(f"this model has no attention to show ({describe(run)})")
        weights = weights.float().cpu().numpy()  # (B, L, H, T, S)
        for row, i in enumerate(index.tolist()):
            results[i] = weights[row, :, :, :tgt_len[i] + 1, :src_len[i]]
    return results


def align(run: Run, sources: list[str], targets: list[str]) -> list[Aligned]:
    """Alignment of each (source, target) text pair."""
    src_ids = run.tokenizer.encode_src(sources)
    tgt_ids = run.tokenizer.encode_tgt(targets)
    for number, ids in enumerate(src_ids, 1):
        if not ids:
            raise UserError(f"source {number} is empty: nothing to align")
    weights = forced_weights(run, src_ids, tgt_ids)
    return [Aligned(s, t, run.tokenizer.src_pieces(si), run.tokenizer.tgt_pieces(ti) + [EOS_PIECE], w)
            for s, t, si, ti, w in zip(sources, targets, src_ids, tgt_ids, weights)]


def pharaoh_lines(items: list[Aligned], layer: int | str, head: int | str) -> list[str]:
    """Word-level Pharaoh links ("src-tgt", end-of-sentence row dropped) for each pair."""
    lines = []
    for item in items:
        _, _, words = item.words()
        lines.append(alignment.pharaoh(alignment.select(words, layer, head)))
    return lines


def choices(weights: np.ndarray) -> list[tuple[int | str, int | str]]:
    """Every (layer, head) of a weights array, plus each layer's head mean."""
    layers, heads = weights.shape[:2]
    return [(layer, head) for layer in range(layers)
            for head in ([*range(heads), "mean"] if heads > 1 else [0])]


def gold_alignment_scores(items: list[Aligned], gold: list[tuple[set, set]],
                          default: tuple[int, int | str]) -> dict:
    """AER / precision / recall for the default choice and for every layer and head."""
    if len(items) != len(gold):
        raise UserError(f"{len(items)} sentence pairs but {len(gold)} gold alignment lines")
    table = {}
    for layer, head in choices(items[0].weights):
        predicted = [_links(line) for line in pharaoh_lines(items, layer, head)]
        table[f"layer {layer} head {head}"] = alignment.alignment_error_rate(predicted, gold)
    best = min(table, key=lambda k: table[k]["aer"])
    return {"default": f"layer {default[0]} head {default[1]}",
            **table[f"layer {default[0]} head {default[1]}"], "best": best,
            "best_aer": table[best]["aer"], "per_layer_head": table}


def _links(line: str) -> set[tuple[int, int]]:
    return {tuple(int(x) for x in link.split("-")) for link in line.split()}


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
        if piece.startswith("▁"):
            while position < len(text) and text[position].isspace():
                position += 1
            piece = piece[1:]
        if processor.is_unknown(i):
            piece = text[position:position + 1]
        start = position
        position = min(len(text), position + len(piece))
        spans.append((start, position))
    return ids, spans


DATE_FIELDS = {"year": range(0, 4), "month": range(5, 7), "day": range(8, 10)}  # in "1998-07-04"


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
            found = alignment.span_accuracy(alignment.select(w, layer, head), src[i][1], positions, gold)
            tally = counts.setdefault((layer, head), [0, 0])
            tally[0] += sum(c for c, _ in found.values())
            tally[1] += sum(n for _, n in found.values())
    table = {f"layer {l} head {h}": 100.0 * c / max(n, 1) for (l, h), (c, n) in counts.items()}
    default = default_choice(run)
    best = max(table, key=table.get)
    return {"default": f"layer {default[0]} head {default[1]}",
            "accuracy": table[f"layer {default[0]} head {default[1]}"],
            "best": best, "best_accuracy": table[best], "per_layer_head": table}


def attention_summary(items: list[Aligned], layer: int | str, head: int | str) -> dict:
    """Corpus statistics of one layer/head over pieces: mean per-token entropy (nats), and the
    share of source tokens that received almost no attention (coverage < 0.2: dropped?) or a
    lot (> 2: repeated?)."""
    entropies, coverage = [], []
    for item in items:
        stats = alignment.attention_stats(alignment.select(item.weights, layer, head)[:-1])
        entropies.extend(stats["entropy"])
        coverage.extend(stats["coverage"])
    coverage = np.asarray(coverage)
    return {"layer": layer, "head": head, "mean_entropy": float(np.mean(entropies)),
            "low_coverage_share": float((coverage < 0.2).mean()),
            "high_coverage_share": float((coverage > 2.0).mean())}


PLOTS, MATRICES = (".png", ".svg", ".pdf"), (".json", ".npz")


def parse_choice(value: str | None, default: int | str) -> int | str:
    """CLI text -> layer/head choice: an integer, or a word such as 'all' / 'mean'."""
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return value


def record_extra(run: Run, item: Aligned, words: bool) -> dict:
    """The metadata saved beside the matrices (`s2s inspect -o x.json`, the API, the service)."""
    return {"run": str(run.dir), "model": describe(run), "source": item.source,
            "target": item.target, "words": words}


def sentence_record(run: Run, item: Aligned, words: bool) -> dict:
    """The JSON-able record `s2s inspect -o x.json` writes for one aligned sentence pair."""
    src, tgt, weights = item.words() if words else (item.src_pieces, item.tgt_pieces, item.weights)
    return alignment.attention_record(src, tgt, weights, record_extra(run, item, words))


def inspect_sentence(run: Run, item: Aligned, layer: int | str, head: int | str, words: bool,
                     output=None, color: bool = True) -> str:
    """The text `s2s inspect` prints (grid and statistics); writes `output` if given."""
    src, tgt, weights = item.words() if words else (item.src_pieces, item.tgt_pieces, item.weights)
    chosen = alignment.select(weights, layer, head)  # (T, S), (H, T, S), (L, T, S) or (L, H, T, S)
    title = f"{run.recipe.name} ({describe(run)}), layer {layer}, head {head}"
    if output is not None:
        suffix = output.suffix.lower()
        if suffix in MATRICES:
            alignment.save_matrices(output, src, tgt, weights, record_extra(run, item, words))
        elif suffix in PLOTS:
            grid = _as_grid(chosen, layer, head)
            if grid is None:
                alignment.plot_heatmap(chosen, src, tgt, output, title)
            else:
                alignment.plot_grid(grid, src, tgt, output, title)
        else:
            raise UserError(f"unknown output type {output.suffix!r}: use one of "
                            f"{', '.join(PLOTS + MATRICES)}")
    lines = [title, f"source: {item.source}", f"output: {item.target}"]
    panels = chosen.reshape(-1, *chosen.shape[-2:])
    for i, panel in enumerate(panels):
        if len(panels) > 1:
            lines.append(f"panel {i + 1} of {len(panels)}")
        lines.append(alignment.render_terminal(panel, src, tgt, color=color))
    stats = alignment.attention_stats(panels.mean(0)[:-1])  # without the "</s>" row
    low = [src[j] for j, c in enumerate(stats["coverage"]) if c < 0.2]
    high = [src[j] for j, c in enumerate(stats["coverage"]) if c > 2.0]
    lines.append(f"mean entropy {stats['mean_entropy']:.2f} nats per target token; "
                 f"little attention (<0.2): {' '.join(low) or '-'}; "
                 f"much attention (>2): {' '.join(high) or '-'}")
    if output is not None:
        lines.append(f"wrote {output}")
    return "\n".join(lines)


def _as_grid(chosen: np.ndarray, layer, head) -> np.ndarray | None:
    """A (L, H, T, S) grid for 'all' selections, None for a single matrix."""
    if chosen.ndim == 2:
        return None
    if chosen.ndim == 4:
        return chosen
    return chosen[:, None] if layer == "all" else chosen[None]  # (L, 1, T, S) or (1, H, T, S)


def read_pairs(path) -> tuple[list[str], list[str]]:
    """'source<TAB>target' or 'source ||| target' lines -> two lists (errors name the line)."""
    from s2s.evaluate import read_lines

    sources, targets = [], []
    for number, line in enumerate(read_lines(path), 1):
        parts = line.split(" ||| ") if " ||| " in line else line.split("\t")
        if len(parts) != 2 or not parts[0].strip():
            raise UserError(f"{path}, line {number}: expected 'source<TAB>target' or "
                            "'source ||| target'")
        sources.append(parts[0].strip())
        targets.append(parts[1].strip())
    return sources, targets


def model_alignment_report(run: Run, pairs, hypotheses: list[str]) -> dict:
    """What `s2s evaluate` adds about attention: statistics of the model's own outputs, and for
    the dates corpus the span accuracy against the generator's gold spans. Empty without attention."""
    report: dict = {}
    kept = [(s, h) for s, h in zip(pairs["src"], hypotheses) if s.strip() and h.strip()]
    try:
        items = align(run, [s for s, _ in kept], [h for _, h in kept])
    except UserError:  # a model without attention
        return report
    report["attention"] = attention_summary(items, *default_choice(run))
    if "year_span" in pairs.column_names:
        report["dates_alignment"] = dates_alignment_accuracy(
            run, pairs["src"], pairs["tgt"], {f: pairs[f"{f}_span"] for f in DATE_FIELDS})
    return report

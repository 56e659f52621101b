"""Translation: text pairs in, text out; alignments over source and target pieces."""

from __future__ import annotations

import numpy as np

from s2s.alignment.forced import Aligned, align, default_choice, describe
from s2s.alignment.metrics import (alignment_error_rate, attention_stats, corpus_attention_stats,
                                   pharaoh, read_alignments, rollout, select)
from s2s.alignment.probes import DATE_FIELDS, choices, dates_alignment_accuracy
from s2s.alignment.render import (matrices_record, plot_grid, plot_heatmap, render_terminal,
                                  save_matrices)
from s2s.data.batching import TokenizedSplit
from s2s.data.corpus import load_split, text_pairs
from s2s.errors import UserError
from s2s.evaluate import DEFAULT_METRICS, paired_bootstrap, score
from s2s.files import read_lines
from s2s.run import Run
from s2s.tasks.base import TASKS, InspectRequest, Task
from s2s.translate import DecodeOptions, translate, translate_stream

PLOTS, MATRICES = (".png", ".svg", ".pdf"), (".json", ".npz")
KINDS = ("cross", "encoder-self", "decoder-self", "encoder-rollout")


@TASKS.register("translation")
class TranslationTask(Task):
    name = "translation"

    def tokenizer_texts(self, raw, data):
        pairs = text_pairs(raw, data)
        column = lambda name: (t for b in pairs.iter(batch_size=10_000) for t in b[name])  # noqa: E731
        return column("src"), column("tgt")

    def split(self, raw, data, tokenizer, model, cache_dir, name):
        return TokenizedSplit(text_pairs(raw, data), tokenizer, cache_dir, name)

    def missing_rows(self, raw, data):
        return len(raw) - len(text_pairs(raw, data))

    def translate(self, run, chunks, opts, links=None):
        return translate_stream(run, chunks, opts, links)

    def evaluate(self, run: Run, split: str, opts: DecodeOptions, metrics=DEFAULT_METRICS,
                 pairs=None, baseline=None) -> tuple[dict, list[str]]:
        """Translate a split of the run's own corpus (or `pairs`), score it, and describe its
        attention; with a baseline, sacreBLEU's paired bootstrap test of the difference."""
        if pairs is None:
            pairs = text_pairs(load_split(run.recipe.data, split), run.recipe.data)
        hypotheses = best_translations(run, pairs["src"], opts)
        report = {**score(hypotheses, pairs["tgt"], metrics).as_dict(),
                  **model_alignment_report(run, pairs, hypotheses)}
        if baseline is not None:
            name, other, other_opts = baseline
            theirs = best_translations(other, pairs["src"], other_opts)
            report["paired_bootstrap"] = paired_bootstrap(
                (name, theirs), (str(run.dir), hypotheses), pairs["tgt"], metrics)
        return report, hypotheses

    def inspect(self, run: Run, inputs: list[str], request: InspectRequest,
                opts: DecodeOptions) -> list[str]:
        if request.patch is not None:
            raise UserError("--patch applies to images: a captioning run with a vit or focal encoder")
        source = " ".join(inputs).strip()
        if not source:
            raise UserError("nothing to inspect: the sentence is empty")
        target = request.target
        if target is None:
            target = translate(run, [source], opts)[0][0].text
        item = align(run, [source], [target])[0]
        return [inspect_sentence(run, item, request)]


def kind_matrices(item: Aligned, kind: str, words: bool) -> tuple[list[str], list[str], np.ndarray]:
    """(columns, rows, (L, H, R, C)) of a kind; the encoder's rollout is one (1, 1, S, S) matrix."""
    if kind not in KINDS:
        raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "encoder-rollout":
        columns, rows, weights = item.matrices("encoder-self", words)
        return columns, rows, rollout(weights)[None, None]
    return item.matrices(kind, words)


def default_layer_head(run: Run, kind: str, weights: np.ndarray) -> tuple[int | str, int | str]:
    if kind == "cross":
        return default_choice(run)
    return weights.shape[0] - 1, ("mean" if weights.shape[1] > 1 else 0)


def inspect_sentence(run: Run, item: Aligned, request: InspectRequest) -> str:
    """The text `s2s inspect` prints (grid and statistics); writes `request.output` if given."""
    kind = request.kind
    columns, rows, weights = kind_matrices(item, kind, request.words)
    default = default_layer_head(run, kind, weights)
    layer = default[0] if request.layer is None else request.layer
    head = default[1] if request.head is None else request.head
    chosen = select(weights, layer, head)  # (R, C), (H, R, C), (L, R, C) or (L, H, R, C)
    what = "" if kind == "cross" else f"{kind}, "
    title = f"{run.recipe.name} ({describe(run)}), {what}layer {layer}, head {head}"
    output = request.output
    if output is not None:
        suffix = output.suffix.lower()
        if suffix in MATRICES:
            export(run, item, request.words, output)
        elif suffix in PLOTS:
            grid = as_grid(chosen, layer, head)
            if grid is None:
                plot_heatmap(chosen, columns, rows, output, title)
            else:
                plot_grid(grid, columns, rows, output, title)
        else:
            raise UserError(f"unknown output type {output.suffix!r}: use one of "
                            f"{', '.join(PLOTS + MATRICES)}")
    lines = [title, f"source: {item.source}", f"output: {item.target}"]
    panels = chosen.reshape(-1, *chosen.shape[-2:])
    for i, panel in enumerate(panels):
        if len(panels) > 1:
            lines.append(f"panel {i + 1} of {len(panels)}")
        lines.append(render_terminal(panel, columns, rows, color=request.color))
    if kind == "cross":
        stats = attention_stats(panels.mean(0)[:-1])  # without the "</s>" row
        low = [columns[j] for j, c in enumerate(stats["coverage"]) if c < 0.2]
        high = [columns[j] for j, c in enumerate(stats["coverage"]) if c > 2.0]
        lines.append(f"mean entropy {stats['mean_entropy']:.2f} nats per target token; "
                     f"little attention (<0.2): {' '.join(low) or '-'}; "
                     f"much attention (>2): {' '.join(high) or '-'}")
    if output is not None:
        lines.append(f"wrote {output}")
    return "\n".join(lines)


def export_parts(run: Run, item: Aligned, words: bool) -> tuple:
    """What an export holds: cross-attention columns, rows and weights, metadata, and the other
    kinds ({kind: (rows, columns, weights)})."""
    columns, rows, weights = item.matrices("cross", words)
    others = {kind: (r, c, w) for kind in ("encoder-self", "decoder-self") if kind in item.kinds
              for c, r, w in [item.matrices(kind, words)]}
    return columns, rows, weights, {"run": str(run.dir), "model": describe(run),
                                    "source": item.source, "target": item.target,
                                    "words": words}, others


def sentence_record(run: Run, item: Aligned, words: bool) -> dict:
    """The JSON-able record `s2s inspect -o x.json` writes (the Python API returns it too)."""
    return matrices_record(*export_parts(run, item, words))


def export(run: Run, item: Aligned, words: bool, output) -> None:
    """Every kind's matrices (all layers and heads) with their tokens, to .json or .npz."""
    save_matrices(output, *export_parts(run, item, words))


def as_grid(chosen: np.ndarray, layer, head) -> np.ndarray | None:
    """A (L, H, T, S) grid for 'all' selections, None for a single matrix."""
    if chosen.ndim == 2:
        return None
    if chosen.ndim == 4:
        return chosen
    return chosen[:, None] if layer == "all" else chosen[None]  # (L, 1, T, S) or (1, H, T, S)


def pharaoh_links(items: list[Aligned], layer: int | str, head: int | str) -> list[set]:
    """Word-level links (source, target) of each pair for one layer/head choice."""
    found = []
    for item in items:
        line = pharaoh(select(item.words()[2], layer, head))
        found.append({tuple(int(x) for x in link.split("-")) for link in line.split()})
    return found


def gold_alignment_scores(items: list[Aligned], gold: list[tuple[set, set]],
                          default: tuple[int, int | str]) -> dict:
    """AER / precision / recall for the default choice and for every layer and head."""
    if len(items) != len(gold):
        raise UserError(f"{len(items)} sentence pairs but {len(gold)} gold alignment lines")
    table = {f"layer {layer} head {head}": alignment_error_rate(pharaoh_links(items, layer, head), gold)
             for layer, head in choices(items[0].weights)}
    best = min(table, key=lambda k: table[k]["aer"])
    return {"default": f"layer {default[0]} head {default[1]}",
            **table[f"layer {default[0]} head {default[1]}"], "best": best,
            "best_aer": table[best]["aer"], "per_layer_head": table}


def score_gold_alignments(run: Run, pairs_file, alignments_file) -> dict:
    """`s2s evaluate RUN --alignments GOLD --data PAIRS`."""
    sources, targets = read_pairs(pairs_file)
    gold = read_alignments(alignments_file)
    return gold_alignment_scores(align(run, sources, targets), gold, default_choice(run))


def read_pairs(path) -> tuple[list[str], list[str]]:
    """'source<TAB>target' or 'source ||| target' lines -> two lists (errors name the line)."""
    sources, targets = [], []
    for number, line in enumerate(read_lines(path), 1):
        parts = line.split(" ||| ") if " ||| " in line else line.split("\t")
        if len(parts) != 2 or not parts[0].strip():
            raise UserError(f"{path}, line {number}: expected 'source<TAB>target' or "
                            "'source ||| target'")
        sources.append(parts[0].strip())
        targets.append(parts[1].strip())
    return sources, targets


def best_translations(run: Run, sources: list[str], opts: DecodeOptions) -> list[str]:
    """The best translation of each source line ("" for an empty line)."""
    return [r[0].text if r else "" for r in translate(run, sources, opts)]


def read_parallel_files(src, ref) -> dict[str, list[str]]:
    """An external test set for `evaluate --src --ref`: a sentence per line in each file."""
    sources, references = read_lines(src), read_lines(ref)
    if len(sources) != len(references):
        raise UserError(f"{src} has {len(sources)} lines but {ref} has {len(references)}")
    if not sources:
        raise UserError(f"{src} and {ref} are empty: nothing to evaluate")
    return {"src": sources, "tgt": references}


def model_alignment_report(run: Run, pairs, hypotheses: list[str]) -> dict:
    """What `s2s evaluate` adds about attention: statistics of the model's own outputs, and for
    the dates corpus the span accuracy against the generator's gold spans. Empty without attention."""
    kept = [(s, h) for s, h in zip(pairs["src"], hypotheses) if s.strip() and h.strip()]
    if not kept or "cross" not in run.model.attention_names():
        return {}
    items = align(run, [s for s, _ in kept], [h for _, h in kept])
    layer, head = default_choice(run)
    stats = corpus_attention_stats([select(item.weights, layer, head)[:-1] for item in items])
    report: dict = {"attention": {"layer": layer, "head": head, **stats}}
    if "year_span" in getattr(pairs, "column_names", pairs):
        report["dates_alignment"] = dates_alignment_accuracy(
            run, pairs["src"], pairs["tgt"], {f: pairs[f"{f}_span"] for f in DATE_FIELDS})
    return report

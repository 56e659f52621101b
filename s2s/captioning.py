"""Captioning runs: caption images, score them, and show where the decoder looked.

Attention over regions is read the same way as alignments in translation: a teacher-forced pass
over the produced caption with `record_attention()` on. Row t is the attention while emitting
word t; upsampled from the region grid to the image, it is what a person overlays on the photo.
"""

from __future__ import annotations

import numpy as np
import sacrebleu
import torch

from s2s import alignment
from s2s.aligner import default_choice
from s2s.attention import record_attention
from s2s.data.batching import pad, token_batches
from s2s.data.captions import CaptionSplit
from s2s.data.corpus import load_split
from s2s.data.images import load_images
from s2s.data.tokenizer import BOS
from s2s.evaluate import DEFAULT_METRICS, reference_streams, score
from s2s.run import Run, autocast
from s2s.search import decode, max_lengths
from s2s.translate import DecodeOptions, Translation

SHAPE_WORDS = ("circle", "square", "triangle", "diamond", "cross")


def model_inputs(run: Run, images: torch.Tensor) -> torch.Tensor:
    """What the model's encoder takes for (B, 3, H, W) images: the images, or backbone features."""
    return run.model.backbone_features(images.to(run.device))


def caption_inputs(run: Run, src: torch.Tensor, opts: DecodeOptions) -> list[list[Translation]]:
    """Captions for a batch of model inputs."""
    mask = torch.ones(src.size(0), 1, dtype=torch.bool, device=run.device)
    d = run.recipe.decode
    with torch.inference_mode(), autocast(run.device, run.precision):
        limit = max_lengths(mask, d.max_len_a, d.max_len_b, opts.max_len)
        hyps = decode(run.model, src.to(run.device), mask, limit, opts.beam, opts.length_penalty,
                      opts.n_best)
    return [[Translation(t, h.score, h.tokens) for t, h in
             zip(run.tokenizer.decode_tgt([h.tokens for h in nbest]), nbest)] for nbest in hyps]


def caption_files(run: Run, paths: list[str], opts: DecodeOptions) -> list[list[Translation]]:
    size = run.recipe.model.encoder.image_size
    results = []
    for start in range(0, len(paths), opts.batch_size):
        images = load_images(paths[start:start + opts.batch_size], size)
        results.extend(caption_inputs(run, model_inputs(run, images), opts))
    return results


def region_attention(run: Run, src: torch.Tensor, captions: list[list[int]]) -> np.ndarray:
    """(B, layers, heads, T + 1, regions) attention of each caption (padded rows are zero)."""
    tgt_in = pad(captions, prefix=BOS).to(run.device)
    mask = torch.ones(src.size(0), 1, dtype=torch.bool, device=run.device)
    with torch.inference_mode(), autocast(run.device, run.precision), record_attention():
        _, weights = run.model(src.to(run.device), mask, tgt_in)
    return weights.float().cpu().numpy()


def evaluate_captions(run: Run, split: str, opts: DecodeOptions,
                      metrics: tuple[str, ...] = DEFAULT_METRICS) -> tuple[dict, list[str]]:
    """BLEU-1..4 (sacreBLEU, all references), chrF, exact match; for shapes, localisation."""
    data = CaptionSplit(load_split(run.recipe.data, split), run.recipe.data, run.tokenizer,
                        run.model, run.dir / "cache", split)
    rows, references = data.decode_units()
    results: dict[int, Translation] = {}
    localised = [0, 0]
    has_boxes = "boxes" in data.ds.column_names
    for index in token_batches(data.src_lens, data.tgt_lens, rows, 10**9, max_sentences=opts.batch_size):
        images = data.image_of_row[index]
        src = data.images(images)
        found = caption_inputs(run, src, opts)
        for row, nbest in zip(index.tolist(), found):
            results[row] = nbest[0]
        if has_boxes:
            hits, total = localisation(run, data, images, src, [nbest[0].tokens for nbest in found])
            localised[0] += hits
            localised[1] += total
    hypotheses = [results[r].text for r in rows.tolist()]
    report = {**score(hypotheses, references, metrics).as_dict(),
              **bleu_orders(hypotheses, references)}
    if has_boxes:
        report["localisation"] = 100.0 * localised[0] / max(localised[1], 1)
        report["localised_nouns"] = localised[1]
    return report, hypotheses


def bleu_orders(hypotheses: list[str], references: list[list[str]]) -> dict:
    """BLEU-1 .. BLEU-4, as captioning papers report them (all references of each image)."""
    streams = reference_streams(references)
    return {f"bleu{n}": sacrebleu.metrics.BLEU(max_ngram_order=n).corpus_score(hypotheses, streams).score
            for n in range(1, 5)}


def localisation(run: Run, data: CaptionSplit, images: np.ndarray, src: torch.Tensor,
                 captions: list[list[int]]) -> tuple[int, int]:
    """For each shape noun emitted, is the attention maximum inside that object's box?

    The k-th shape noun of a caption refers to the k-th object in reading order (the order the
    generator writes them); a region counts as inside when its centre lies in the box.
    """
    weights = region_attention(run, src, captions)
    layer, head = default_choice(run)
    h, w = run.model.grid_size
    size = run.recipe.model.encoder.image_size
    hits = total = 0
    for b, (image, caption) in enumerate(zip(images.tolist(), captions)):
        boxes = data.ds[int(image)]["boxes"]
        pieces = run.tokenizer.tgt_pieces(caption)
        spans = alignment.merge_pieces(pieces)
        words = alignment.word_text(pieces, spans)
        attention = alignment.select(weights[b], layer, head)  # (T + 1, R)
        nouns = [(start, end) for (start, end), word in zip(spans, words) if word in SHAPE_WORDS]
        for k, (start, end) in enumerate(nouns[:len(boxes)]):
            region = int(attention[start:end].mean(0).argmax())
            y, x = (region // w + 0.5) * size / h, (region % w + 0.5) * size / w
            x0, y0, x1, y1 = boxes[k]
            hits += x0 <= x < x1 and y0 <= y < y1
            total += 1
    return hits, total


def overlays(run: Run, path: str, opts: DecodeOptions, output, layer, head) -> str:
    """Draw the image once per generated word with that word's attention over regions, and the
    encoder's spatial gates and spatial-transformer transform when it has them."""
    size = run.recipe.model.encoder.image_size
    images = load_images([path], size)
    src = model_inputs(run, images)
    result = caption_inputs(run, src, opts)[0][0]
    weights = region_attention(run, src, [result.tokens])[0]  # (L, H, T + 1, R)
    attention = alignment.select(weights, layer, head)
    h, w = run.model.grid_size
    words = run.tokenizer.tgt_pieces(result.tokens) + ["</s>"]
    with torch.inference_mode():
        _, records = run.model.image_features(src)
    plot_overlays(images[0], words, attention.reshape(len(words), h, w), records, output,
                  f"{run.recipe.name}: {result.text}")
    return result.text


def plot_overlays(image: torch.Tensor, words: list[str], maps: np.ndarray, records: list,
                  path, title: str) -> None:
    """A grid of panels: one per word (attention upsampled onto the image), then the gates."""
    import torch.nn.functional as F

    from s2s.alignment import new_figure, save_figure

    picture = image.permute(1, 2, 0).numpy()  # (H, W, 3)
    size = picture.shape[:2]
    panels = [(w.replace("▁", "") or "▁", m) for w, m in zip(words, maps)]
    panels += [(name, weights[0].float().numpy()) for name, weights in records
               if name.endswith("spatial gate")]  # (h, w) gates of CBAM
    thetas = [(name, weights[0]) for name, weights in records if name == "spatial transformer"]
    columns = min(6, len(panels) + len(thetas))
    rows = -(-(len(panels) + len(thetas)) // columns)
    fig = new_figure(2.2 * columns, 2.4 * rows + 0.4)
    for i, (name, grid) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        up = F.interpolate(torch.as_tensor(grid, dtype=torch.float)[None, None], size=size,
                           mode="bicubic", align_corners=False)[0, 0].clamp(min=0).numpy()
        ax.imshow(picture)
        ax.imshow(up / max(up.max(), 1e-9), cmap="jet", alpha=0.45, extent=(0, size[1], size[0], 0))
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    for j, (name, theta) in enumerate(thetas):
        ax = fig.add_subplot(rows, columns, len(panels) + j + 1)
        ax.imshow(picture)
        corners = torch.tensor([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1.0]])
        mapped = (corners @ theta.float().T).numpy()  # output corners -> input coordinates
        ax.plot((mapped[:, 0] + 1) / 2 * size[1], (mapped[:, 1] + 1) / 2 * size[0], "y-", lw=2)
        ax.set_title(f"{name}: sampled region", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path)

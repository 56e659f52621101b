"""Captioning: images in, captions out; attention over image regions and the encoder's gates.

Attention over regions is read the same way as alignments in translation: the teacher-forced
pass over the produced caption under a `Recorder` (`s2s.alignment.forced.image_attention`). Row t
is the attention while emitting word t; upsampled from the region grid to the image, it is what
a person overlays on the photo. A self-attention encoder (ViT, focal) adds, for a chosen patch,
its attention in every layer, the rollout over the layers and, for focal attention, the fine
region and the coarse sub-windows that patch attended to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from s2s.alignment.forced import default_choice, image_attention
from s2s.alignment.metrics import rollout, select
from s2s.alignment.probes import shapes_localisation
from s2s.alignment.render import PatchView, plot_overlays
from s2s.attention.focal import FocalSelfAttention
from s2s.data.batching import token_batches
from s2s.data.captions import CaptionSplit, caption_lists
from s2s.data.corpus import load_split
from s2s.data.images import load_images
from s2s.errors import UserError
from s2s.evaluate import DEFAULT_METRICS, bleu_orders, score
from s2s.run import Run, autocast
from s2s.search import decode, max_lengths
from s2s.self_critical import CiderD
from s2s.tasks.base import TASKS, InspectRequest, Task
from s2s.translate import DecodeOptions, Translation
from s2s.vocab import EOS_PIECE


@TASKS.register("captioning")
class CaptioningTask(Task):
    name = "captioning"

    def tokenizer_texts(self, raw, data):
        return [], [c for caps in caption_lists(raw, data) for c in caps]

    def split(self, raw, data, tokenizer, model, cache_dir, name):
        return CaptionSplit(raw, data, tokenizer, model, cache_dir, name)

    def caption(self, run: Run, images: list[str], opts: DecodeOptions) -> list[list[Translation]]:
        return caption_files(run, images, opts)

    def evaluate(self, run: Run, split: str, opts: DecodeOptions, metrics=DEFAULT_METRICS,
                 pairs=None, baseline=None) -> tuple[dict, list[str]]:
        """BLEU-1..4 (sacreBLEU, all references), chrF, exact match, CIDEr-D; for shapes,
        localisation."""
        if pairs is not None:
            raise UserError(f"{run.dir} is a captioning run: --src takes text to translate")
        if baseline is not None:
            raise UserError("--paired-bootstrap compares two translation runs")
        data = CaptionSplit(load_split(run.recipe.data, split), run.recipe.data, run.tokenizer,
                            run.model, run.dir / "cache", split)
        rows, references = data.decode_units()
        results: dict[int, Translation] = {}
        localised = [0, 0]
        has_boxes = "boxes" in data.ds.column_names
        for index in token_batches(data.src_lens, data.tgt_lens, rows, 10**9,
                                   max_sentences=opts.batch_size):
            images = data.image_of_row[index]
            src = data.images(images)
            found = caption_inputs(run, src, opts)
            for row, nbest in zip(index.tolist(), found):
                results[row] = nbest[0]
            if has_boxes:
                captions = [nbest[0].tokens for nbest in found]
                hits, total = localisation(run, src, captions, [data.ds[int(i)]["boxes"] for i in images])
                localised[0] += hits
                localised[1] += total
        hypotheses = [results[r].text for r in rows.tolist()]
        report = {**score(hypotheses, references, metrics).as_dict(), **bleu_orders(hypotheses, references),
                  "cider_d": CiderD(references).corpus(hypotheses)}
        if has_boxes:
            report["localisation"] = 100.0 * localised[0] / max(localised[1], 1)
            report["localised_nouns"] = localised[1]
        return report, hypotheses

    def inspect(self, run: Run, inputs: list[str], request: InspectRequest,
                opts: DecodeOptions) -> list[str]:
        output = request.output
        if output is None or output.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UserError("inspecting an image draws its attention: give -o FILE.png (or .svg, .pdf)")
        lines = []
        for path in inputs:
            target = output if len(inputs) == 1 else output.with_name(f"{Path(path).stem}-{output.name}")
            caption = overlays(run, path, opts, target, request.layer, request.head, request.patch)
            lines.append(f"{path}: {caption}\nwrote {target}")
        return lines


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
                      opts.n_best, opts.coverage_penalty)
    return [[Translation(t, h.score, h.tokens) for t, h in
             zip(run.tokenizer.decode_tgt([h.tokens for h in nbest]), nbest)] for nbest in hyps]


def caption_files(run: Run, paths: list[str], opts: DecodeOptions) -> list[list[Translation]]:
    size = run.recipe.model.encoder.image_size
    results = []
    for start in range(0, len(paths), opts.batch_size):
        images = load_images(paths[start:start + opts.batch_size], size)
        results.extend(caption_inputs(run, model_inputs(run, images), opts))
    return results


def localisation(run: Run, src: torch.Tensor, captions: list[list[int]],
                 boxes: list[list]) -> tuple[int, int]:
    """Shape nouns whose attention maximum lies inside their object, and how many were named."""
    weights = image_attention(run, src, captions).kinds["cross"].cpu().numpy()  # (B, L, H, T+1, R)
    layer, head = default_choice(run)
    hits = total = 0
    for b, caption in enumerate(captions):
        found = shapes_localisation(select(weights[b], layer, head), run.tokenizer.tgt_pieces(caption),
                                    boxes[b], run.model.grid_size, run.recipe.model.encoder.image_size)
        hits, total = hits + found[0], total + found[1]
    return hits, total


def patch_views(run: Run, encoder_self: np.ndarray, patch: tuple[int, int]) -> list[PatchView]:
    """Patch (row, column)'s self-attention in each encoder layer (heads averaged; focal layers
    with their regions) and its attention rollout, from weights (L, H, N, N)."""
    h, w = run.model.grid_size
    row, col = patch
    if not (0 <= row < h and 0 <= col < w):
        raise UserError(f"--patch {row},{col} is outside the {h}x{w} patch grid "
                        f"(rows 0-{h - 1}, columns 0-{w - 1})")
    index = row * w + col
    views = []
    for layer, name in enumerate(run.model.attention_names()["encoder-self"]):
        module = run.model.get_submodule(name)
        regions = tuple(module.regions(row, col)) if isinstance(module, FocalSelfAttention) else ()
        views.append(PatchView(f"layer {layer}, patch {row},{col}",
                               encoder_self[layer].mean(0)[index].reshape(h, w), patch, regions))
    views.append(PatchView(f"rollout, patch {row},{col}", rollout(encoder_self)[index].reshape(h, w),
                           patch))
    return views


def overlays(run: Run, path: str, opts: DecodeOptions, output, layer, head,
             patch: tuple[int, int] | None = None) -> str:
    """Draw the image once per generated word with that word's attention over regions, and the
    encoder's spatial gates and spatial-transformer transform when it has them; with `patch`,
    that patch's self-attention in the encoder (`patch_views`)."""
    size = run.recipe.model.encoder.image_size
    images = load_images([path], size)
    src = model_inputs(run, images)
    result = caption_inputs(run, src, opts)[0][0]
    recorded = image_attention(run, src, [result.tokens])
    default = default_choice(run)
    attention = select(recorded.kinds["cross"][0].cpu().numpy(),
                       default[0] if layer is None else layer, default[1] if head is None else head)
    h, w = run.model.grid_size
    words = run.tokenizer.tgt_pieces(result.tokens) + [EOS_PIECE]
    labels = run.model.vision_gates()
    gates = [(labels[name], weights[0].cpu().numpy()) for name, weights in recorded.others.items()
             if name in labels and labels[name].endswith("spatial gate")]  # (h, w) of CBAM
    thetas = [(labels[name], weights[0].cpu().numpy()) for name, weights in recorded.others.items()
              if labels.get(name) == "spatial transformer"]
    views = []
    if patch is not None:
        if "encoder-self" not in recorded.kinds:
            raise UserError(f"--patch needs an encoder with self-attention (vit or focal); this "
                            f"run's encoder is {run.recipe.model.encoder.type}")
        views = patch_views(run, recorded.kinds["encoder-self"][0].cpu().numpy(), patch)
    picture = images[0].permute(1, 2, 0).numpy()  # (H, W, 3)
    plot_overlays(picture, words, np.asarray(attention).reshape(len(words), h, w), gates, thetas,
                  output, f"{run.recipe.name}: {result.text}", views)
    return result.text

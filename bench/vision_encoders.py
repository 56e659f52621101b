"""Image encoders for captioning side by side: the CNN (plain, +SE, +CBAM, +STN), the Vision
Transformer and focal self-attention, on the shapes corpus.

    python bench/vision_encoders.py cost                  # parameters, FLOPs, training speed
    python bench/vision_encoders.py scaling               # FLOPs as the patch grid grows
    python bench/vision_encoders.py train --variants vit,focal --root bench-runs/vision

`cost`: per variant, parameters of the whole captioner, forward FLOPs per image of the encoder
(torch.utils.flop_counter; a multiply-add counts 2) and training images/s: full training steps
(forward, backward, AdamW) on batches of 48 images with 11-token captions, the best of `--steps`
timed steps per variant after a warm-up step, the variants taking turns step by step, so that a
busy machine slows them alike and the ratios stay fair.
`scaling`: forward FLOPs per image of the ViT and focal encoders, and of one self-attention
layer alone, at several image sizes with the same 8-pixel patches (8x8, 16x16, 32x32 grids).
`train`: trains each variant's recipe (its own step count), then scores the test split: exact
captions, localisation (the shape noun's attention maximum inside its object), BLEU-4.
Each prints one JSON record per line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2s.attention import MultiHeadAttention  # noqa: E402
from s2s.attention.focal import FocalSelfAttention  # noqa: E402
from s2s.models import build_model  # noqa: E402
from s2s.recipe import load_recipe  # noqa: E402
from s2s.run import Run  # noqa: E402
from s2s.tasks import task_of  # noqa: E402
from s2s.train import train  # noqa: E402
from s2s.translate import DecodeOptions  # noqa: E402

VARIANTS = {  # name: (recipe, overrides)
    "cnn": ("shapes-caption", []),
    "cnn+se": ("shapes-caption", ["model.encoder.attention=se"]),
    "cnn+cbam": ("shapes-caption", ["model.encoder.attention=cbam"]),
    "cnn+stn": ("shapes-caption", ["model.encoder.spatial_transformer=true"]),
    "vit": ("shapes-caption-vit", []),
    "focal": ("shapes-caption-focal", []),
}
VOCAB = 32  # the shapes recipes' word vocabulary


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """The CPU fused attention kernel, which FlopCounterMode does not know: QK^T and AV."""
    return sdpa_flop_count(query, key, value)


def counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops})


def forward_flops(module, x: torch.Tensor) -> float:
    """Forward FLOPs per input row of `module(x)`."""
    with torch.no_grad(), counter() as flops:
        module(x)
    return flops.get_total_flops() / x.size(0)


def model_of(name: str, overrides: list[str] = ()):
    recipe, extra = VARIANTS[name]
    return build_model(load_recipe(recipe, [*extra, *overrides]).model, VOCAB, VOCAB)


def training_step(model, batch: int = 48, length: int = 11):
    """A function that runs one training step on random images and captions: its seconds."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    size = model.cfg.encoder.image_size
    images = torch.rand(batch, 3, size, size)
    captions = torch.randint(4, VOCAB, (batch, length))
    mask = torch.ones(batch, 1, dtype=torch.bool)

    def step() -> float:
        model.train()
        started = time.perf_counter()
        logits, _ = model(images, mask, captions)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), captions.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started
    return step


def cost(args) -> None:
    names = args.variants.split(",")
    models = {name: model_of(name) for name in names}
    steps = {name: training_step(model) for name, model in models.items()}
    times = {name: [] for name in names}
    for _ in range(args.steps + 1):  # the variants take turns; the first round warms up
        for name in names:
            times[name].append(steps[name]())
    for name, model in models.items():
        size = model.cfg.encoder.image_size
        print(json.dumps({
            "variant": name, "parameters": sum(p.numel() for p in model.parameters()),
            "encoder_parameters": sum(p.numel() for p in model.head.parameters()),
            "grid": list(model.grid_size),
            "encoder_mflops_per_image": round(forward_flops(model.eval().image_features,
                                                            torch.rand(4, 3, size, size)) / 1e6, 1),
            "training_images_per_s": round(48 / min(times[name][1:]), 1)}), flush=True)


def scaling(args) -> None:
    for size in map(int, args.sizes.split(",")):
        record = {"image_size": size}
        for name in ("cnn", "vit", "focal"):
            model = model_of(name, [f"model.encoder.image_size={size}"]).eval()
            record["grid"] = list(model.grid_size)
            record[f"{name}_encoder_mflops"] = round(
                forward_flops(model.image_features, torch.rand(2, 3, size, size)) / 1e6, 1)
            if name == "focal":
                cfg = model.cfg.encoder
                tokens = torch.randn(2, model.grid_size[0] * model.grid_size[1], cfg.d_model)
                full = MultiHeadAttention(cfg.d_model, cfg.heads)
                focal = FocalSelfAttention(cfg.d_model, cfg.heads, model.grid_size, cfg.window, cfg.levels)
                record["full_attention_layer_mflops"] = round(forward_flops(full, tokens) / 1e6, 2)
                record["focal_attention_layer_mflops"] = round(forward_flops(focal, tokens) / 1e6, 2)
                record["focal_keys_per_patch"] = focal.key_index.size(1)
        record["vit_over_focal"] = round(record["vit_encoder_mflops"] / record["focal_encoder_mflops"], 2)
        print(json.dumps(record), flush=True)


def summary(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if r["kind"] == "train"][1:]
    return {"minutes": round(max(r["elapsed"] for r in records) / 60, 2),
            "steps": max(r["step"] for r in records),
            "target_tokens_per_s": round(sum(speeds) / max(len(speeds), 1)),
            "validation_exact": [round(r["exact"], 1) for r in records if r["kind"] == "valid"]}


def train_and_score(args) -> None:
    for name in args.variants.split(","):
        recipe_name, overrides = VARIANTS[name]
        recipe = load_recipe(recipe_name, [*overrides, *args.set])
        run_dir = args.root / name
        if not args.skip_train:
            train(recipe, run_dir, overwrite=True, log=lambda *a: None)
        run = Run.open(run_dir)
        report, _ = task_of(run.recipe).evaluate(run, "test", DecodeOptions.from_run(run))
        print(json.dumps({"variant": name, "overrides": overrides + args.set,
                          "parameters": sum(p.numel() for p in run.model.parameters()),
                          **summary(run_dir), "test_exact": round(report["exact"], 2),
                          "test_localisation": round(report["localisation"], 2),
                          "test_bleu4": round(report["bleu4"], 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["cost", "scaling", "train"])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=5, help="cost: timed training steps")
    parser.add_argument("--sizes", default="64,128,256", help="scaling: image sizes")
    parser.add_argument("--root", type=Path, default=Path("bench-runs/vision"), help="train: runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="train: override every variant's recipe")
    parser.add_argument("--skip-train", action="store_true", help="train: only score the runs")
    args = parser.parse_args()
    {"cost": cost, "scaling": scaling, "train": train_and_score}[args.what](args)


if __name__ == "__main__":
    main()

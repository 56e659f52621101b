"""What vision attention changes on the shapes corpus: the same recipe with and without SE, CBAM
and the spatial transformer, each trained for the same time, then scored on the test split.

    python bench/shapes_ablation.py --minutes 5

Prints one JSON record per variant: parameters, training steps and speed, validation curve,
test exact match, localisation (attention maximum inside the named object's box) and BLEU-4.
Run it on an otherwise idle machine: every variant gets the same wall-clock budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2s.recipe import load_recipe  # noqa: E402
from s2s.run import Run  # noqa: E402
from s2s.tasks import task_of  # noqa: E402
from s2s.train import train  # noqa: E402
from s2s.translate import DecodeOptions  # noqa: E402
from train_and_score import training_summary  # noqa: E402  (bench/ is the script's directory)

VARIANTS = {
    "plain": [],
    "se": ["model.encoder.attention=se"],
    "cbam": ["model.encoder.attention=cbam"],
    "stn": ["model.encoder.spatial_transformer=true"],
    "cbam+stn": ["model.encoder.attention=cbam", "model.encoder.spatial_transformer=true"],
    "doubly-stochastic": ["model.decoder.doubly_stochastic=1.0"],  # Show, Attend and Tell's lambda
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="shapes-caption")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--root", type=Path, default=Path("bench-runs/shapes-ablation"))
    args = parser.parse_args()
    for name in args.variants.split(","):
        overrides = VARIANTS[name] + [f"train.max_minutes={args.minutes}"]
        recipe = load_recipe(args.recipe, overrides)
        run_dir = args.root / name
        train(recipe, run_dir, overwrite=True, log=lambda *a: None)
        run = Run.open(run_dir)
        report, _ = task_of(run.recipe).evaluate(run, "test", DecodeOptions.from_run(run))
        summary = training_summary(run_dir)
        print(json.dumps({
            "variant": name, "overrides": VARIANTS[name],
            "parameters": sum(p.numel() for p in run.model.parameters()),
            "steps": summary["steps"],
            "target_tokens_per_s": summary["train_target_tokens_per_s"],
            "validation_exact": [round(r["exact"], 1) for r in summary["validation"]],
            "test_exact": round(report["exact"], 2),
            "test_localisation": round(report["localisation"], 2),
            "test_bleu4": round(report["bleu4"], 2)}), flush=True)


if __name__ == "__main__":
    main()

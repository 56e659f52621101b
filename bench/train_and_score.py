"""Train a recipe, then score it on a split: the figures an issue asks for, in one command.

    python bench/train_and_score.py dates-rnn-bahdanau
    python bench/train_and_score.py multi30k-de-en-rnn-bahdanau --data ../shared/data/multi30k

Prints training wall time (validation included), steps, epochs, mean training speed (target
tokens/s) and the sacreBLEU BLEU / chrF (with signatures) and exact match on the split.
Run it on an otherwise idle machine: on 2 cores anything else running halves the speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2s.recipe import load_recipe  # noqa: E402
from s2s.run import Run  # noqa: E402
from s2s.tasks import task_of  # noqa: E402
from s2s.train import train  # noqa: E402
from s2s.translate import DecodeOptions  # noqa: E402


def training_summary(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    speeds = [r["tokens_per_s"] for r in train_records[1:]] or [r["tokens_per_s"] for r in train_records]
    return {"train_minutes": round(max(r["elapsed"] for r in records) / 60, 2),
            "steps": max(r["step"] for r in records),
            "epochs": max(r["epoch"] for r in records),
            "train_target_tokens_per_s": round(sum(speeds) / max(len(speeds), 1)),
            "validation": [{k: round(r[k], 2) for k in ("step", "elapsed", "bleu", "exact")}
                           for r in valid]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data", help="local copy of the corpus (sets data.path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--run-dir", type=Path, help="default: bench-runs/RECIPE")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beam", type=int, help="default: the recipe's decode.beam")
    parser.add_argument("--skip-train", action="store_true", help="only score an existing run")
    args = parser.parse_args()

    overrides = args.overrides + ([f"data.path={args.data}"] if args.data else [])
    recipe = load_recipe(args.recipe, overrides)
    run_dir = args.run_dir or Path("bench-runs") / recipe.name
    if not args.skip_train:
        train(recipe, run_dir, overwrite=True)
    run = Run.open(run_dir)
    opts = DecodeOptions.from_run(run, beam=args.beam)
    started = time.perf_counter()
    scores, _ = task_of(run.recipe).evaluate(run, args.split, opts)
    seconds = time.perf_counter() - started
    report = {"recipe": recipe.name, "run_dir": str(run_dir), "checkpoint": run.checkpoint.name,
              **training_summary(run_dir), "split": args.split, "beam": opts.beam,
              "decode_seconds": round(seconds, 1), **scores}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

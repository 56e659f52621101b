"""Training throughput of two s2s source trees (before and after a change), taking turns.

    python bench/train_speed_trees.py /path/to/old-checkout . --rounds 3 --steps 20

Each round runs one fresh process per tree: the `multi30k-de-en-transformer` recipe of that tree,
fp32, `--threads` threads, `--steps` timed training steps after 3 warm-up steps, on the same
batches (the order depends only on the seed). Alternating the trees round by round makes a busy
machine slow them alike. Prints one JSON line per process, then each tree's best.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ONE_TREE = """
import json, sys, tempfile, time
from pathlib import Path
tree, data, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, tree)
import torch
torch.set_num_threads(threads)
from s2s.recipe import load_recipe
from s2s.train import Trainer, prepare_run
recipe = load_recipe(str(Path(tree) / "recipes/multi30k-de-en-transformer.yaml"),
                     [f"data.path={data}", "train.precision=fp32", f"train.threads={threads}"])
with tempfile.TemporaryDirectory() as tmp:
    prepare_run(recipe, Path(tmp), resume=False, overwrite=True)
    trainer = Trainer(recipe, Path(tmp), device="cpu", log=lambda *a: None)
    batches = trainer.epoch_batches(1)
    for rows in batches[:3]:
        trainer.train_step([rows])
    tokens, start = 0, time.perf_counter()
    for rows in batches[4:4 + steps]:
        tokens += trainer.train_data.batch(rows).target_tokens
        trainer.train_step([rows])
    seconds = time.perf_counter() - start
print(json.dumps({"tree": tree, "steps": steps, "target_tokens_per_s": round(tokens / seconds)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts of s2s")
    parser.add_argument("--data", default="../shared/data/multi30k", help="local Multi30k copy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    best: dict[str, int] = {}
    for _ in range(args.rounds):
        for tree in args.trees:
            out = subprocess.run([sys.executable, "-c", ONE_TREE, str(tree.resolve()), data,
                                  str(args.steps), str(args.threads)],
                                 check=True, capture_output=True, text=True).stdout
            record = json.loads(out.strip().splitlines()[-1])
            print(json.dumps(record), flush=True)
            best[record["tree"]] = max(best.get(record["tree"], 0), record["target_tokens_per_s"])
    print(json.dumps({"best_target_tokens_per_s": best}))


if __name__ == "__main__":
    main()

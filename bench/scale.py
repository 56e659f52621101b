"""Preparation time and peak memory as the corpus grows: 100k, 1M and 2M generated pairs.

    python bench/scale.py --sizes 100000,1000000,2000000

For each size, a fresh process generates the `dates` corpus (streamed into a memory-mapped
Arrow file), trains the tokenizer on a sample, tokenises in parallel into the run's cache, builds
the token batches and runs a few training steps of a small Transformer. It prints the time of
each phase and the process's peak RSS (children included). Peak memory should stay flat: no phase
materialises the corpus in Python lists.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one_size(size: int, steps: int) -> dict:
    from s2s.recipe import load_recipe
    from s2s.train import Trainer, prepare_run

    recipe = load_recipe("dates-transformer", [
        f"data.sizes.train={size}", "data.sizes.validation=1000", "data.seed=7",
        "tokenizer.max_sentences=200000"])
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        prepare_run(recipe, run_dir, resume=False, overwrite=True)
        start = time.perf_counter()
        trainer = Trainer(recipe, run_dir, device="cpu", log=lambda *a: None)
        timings["prepare_s"] = round(time.perf_counter() - start, 1)  # generate+tokenizer+tokenise
        start = time.perf_counter()
        batches = trainer.epoch_batches(1)
        timings["batching_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        for rows in batches[:steps]:
            trainer.train_step([rows])
        timings["train_steps_s"] = round(time.perf_counter() - start, 1)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"pairs": size, "batches": len(batches), **timings,
            "peak_rss_mb": round(max(own, children) / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,2000000")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.steps)), flush=True)
        return
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as hf_home:  # a cold `datasets` cache for each size
            env = {"HF_HOME": hf_home, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                   "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
            out = subprocess.run([sys.executable, __file__, "--one", str(size), "--steps",
                                  str(args.steps)], env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()

"""Data-parallel check: 2 torchrun processes (gloo) against 1 process with the same global batch.

    python bench/ddp.py multi30k-de-en-transformer --data ../shared/data/multi30k --steps 20

Trains N steps both ways with dropout off (so the only differences are floating-point reduction
order), then prints the per-step losses, the largest relative difference, the largest parameter
difference between the two final models, and the wall time of each. Rank 0 alone writes; the
trainer itself checks at every validation that all ranks hold identical parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file


def train(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stdout[-3000:] + out.stderr[-3000:])
    if "parameters identical on 2 ranks" in out.stdout:
        print("trainer: parameters identical on 2 ranks", flush=True)
    return time.perf_counter() - start


def losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data", help="local copy of the corpus (sets data.path)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    sets = [f"train.max_steps={args.steps}", f"train.eval_every={args.steps}", "train.log_every=1",
            "model.dropout=0.0", "train.max_minutes=0"] + ([f"data.path={args.data}"] if args.data else [])
    flags = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        two = train([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                     "-m", "s2s", "train", args.recipe, "--run-dir", str(tmp / "ddp"), "--device",
                     "cpu", *flags], env)
        one = train([sys.executable, "-m", "s2s", "train", args.recipe, "--run-dir", str(tmp / "one"),
                     "--device", "cpu", *flags, "--set", "train.accumulate=2"],
                    {**os.environ, "OMP_NUM_THREADS": "2"})
        a, b = losses(tmp / "ddp"), losses(tmp / "one")
        wa = load_file(str(tmp / "ddp" / "checkpoints" / "last" / "model.safetensors"))
        wb = load_file(str(tmp / "one" / "checkpoints" / "last" / "model.safetensors"))
        worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    print(json.dumps({
        "steps": args.steps, "loss_2_processes": [round(x, 5) for x in a],
        "loss_1_process_accumulate_2": [round(x, 5) for x in b],
        "max_relative_loss_difference": max(abs(x - y) / abs(y) for x, y in zip(a, b)),
        "max_abs_parameter_difference": worst,
        "seconds_2_processes": round(two, 1), "seconds_1_process": round(one, 1)}, indent=2))


if __name__ == "__main__":
    main()

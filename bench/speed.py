"""Training and decoding speed of a recipe on this machine, fp32 and bf16.

    python bench/speed.py multi30k-de-en-transformer --data ../shared/data/multi30k \
        --run-dir runs/multi30k-de-en-transformer

Prints (as JSON): the CPU's measured matmul peak (fp32, bf16); training target tokens/s over
real batches, FLOPs per target token (counted by torch's FlopCounterMode) and the fraction of
peak reached; peak RSS; and, when --run-dir names a trained run, decoding sentences/s and target
tokens/s on the test split (batch 64, greedy and beam 5), with and without the KV cache.
Runs with 2 threads; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2s.attention import causal_mask  # noqa: E402
from s2s.data.corpus import load_split, text_pairs  # noqa: E402
from s2s.models.seq2seq import Seq2Seq  # noqa: E402
from s2s.recipe import load_recipe  # noqa: E402
from s2s.run import Run  # noqa: E402
from s2s.objectives import batch_loss  # noqa: E402
from s2s.train import Trainer, prepare_run  # noqa: E402
from s2s.translate import DecodeOptions, translate  # noqa: E402


def matmul_peak(dtype: torch.dtype, n: int, repeats: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9  # GFLOP/s


def training_speed(recipe_name: str, overrides: list[str], precision: str, steps: int) -> dict:
    recipe = load_recipe(recipe_name, overrides + [f"train.precision={precision}"])
    with tempfile.TemporaryDirectory() as tmp:
        prepare_run(recipe, Path(tmp), resume=False, overwrite=True)
        trainer = Trainer(recipe, Path(tmp), device="cpu", log=lambda *a: None)
        batches = trainer.epoch_batches(1)
        for rows in batches[:3]:  # warm-up
            trainer.train_step([rows])
        flops = flops_per_token(trainer, batches[3])
        tokens, start = 0, time.perf_counter()
        for rows in batches[4:4 + steps]:
            tokens += trainer.train_data.batch(rows).target_tokens
            trainer.train_step([rows])
        seconds = time.perf_counter() - start
    return {"precision": trainer.precision, "steps": steps, "target_tokens_per_s": round(tokens / seconds),
            "flops_per_target_token": round(flops), "achieved_gflops": round(tokens / seconds * flops / 1e9, 1)}


def flops_per_token(trainer: Trainer, rows) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    batch = trainer.train_data.batch(rows)
    with FlopCounterMode(display=False) as counter:
        loss = batch_loss(trainer.cross_entropy.loss, batch)
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch.target_tokens


class WithoutCache(Seq2Seq):
    """Decodes by re-running the decoder over the whole prefix at every step, as a plain
    nn.Transformer loop does: the baseline the KV cache is measured against."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model, self.generator = model, model.generator

    def encode(self, src, src_mask):
        state = self.model.encode(src, src_mask)
        return {**state, "prefix": src.new_zeros(src.size(0), 0)}

    def step(self, state, prev_tokens):
        prefix = torch.cat([state["prefix"], prev_tokens[:, None]], 1)
        fixed = {k: v for k, v in state.items() if not k.startswith("self.")}
        mask = causal_mask(prefix.size(1), prefix.device)[None]
        x, _, _ = self.model.decoder.decode(fixed, prefix, 0, mask, cached=False)
        return self.generator(x[:, -1]), {**state, "prefix": prefix}, None


def decoding_speed(run: Run, sources: list[str], beam: int, cache: bool) -> dict:
    model = run.model
    if not cache:
        run.model = WithoutCache(model)
    opts = DecodeOptions.from_run(run, beam=beam, batch_size=64)
    translate(run, sources[:64], opts)  # warm-up
    start = time.perf_counter()
    results = translate(run, sources, opts)
    seconds = time.perf_counter() - start
    run.model = model
    tokens = sum(len(r[0].tokens) + 1 for r in results if r)
    return {"beam": beam, "kv_cache": cache, "sentences_per_s": round(len(sources) / seconds, 1),
            "target_tokens_per_s": round(tokens / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data", help="local copy of the corpus (sets data.path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--run-dir", type=Path, help="a trained run, for decoding speed")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--no-cache-sentences", type=int, default=200,
                        help="test sentences for the (slow) decoding without KV cache")
    args = parser.parse_args()
    torch.set_num_threads(2)
    overrides = args.overrides + ([f"data.path={args.data}"] if args.data else [])
    report: dict = {"threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "peak_gflops": {"fp32": round(matmul_peak(torch.float32, 4096, 5), 1),
                                    "bf16": round(matmul_peak(torch.bfloat16, 1024, 2), 1)}}
    report["training"] = []
    for precision in args.precisions.split(","):
        result = training_speed(args.recipe, overrides, precision, args.steps)
        result["fraction_of_peak"] = round(result["achieved_gflops"] / report["peak_gflops"][precision], 3)
        report["training"].append(result)
        print(json.dumps(result), flush=True)
    if args.run_dir:
        run = Run.open(args.run_dir, device="cpu")
        sources = text_pairs(load_split(run.recipe.data, "test"), run.recipe.data)["src"]
        report["decoding"] = []
        for beam in (1, 5):
            for cache in (True, False):
                if not cache and not hasattr(getattr(run.model, "decoder", None), "decode"):
                    continue
                subset = sources if cache else sources[:args.no_cache_sentences]
                result = {**decoding_speed(run, subset, beam, cache), "sentences": len(subset)}
                report["decoding"].append(result)
                print(json.dumps(result), flush=True)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

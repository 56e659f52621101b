"""Decoding a trained run in fp32, bf16 and int8 (`--quantize int8`) side by side.

fp32 is what `s2s translate` runs on a CPU (linear weights packed for oneDNN, `s2s.packed`);
fp32-unpacked is the same model through plain `nn.Linear`, to show what packing gains.

    python bench/quantize.py bench-runs/dates-rnn-bahdanau --split test
    python bench/quantize.py runs/multi30k-de-en-transformer --data ../shared/data/multi30k --beams 1,5

For each arithmetic and beam size: sentences/s over the whole split (the best of `--repeat`
passes, the arithmetics taking turns pass by pass so that a busy machine slows them alike), and
the scores of the hypotheses (sacreBLEU BLEU with its signature, exact match). One JSON record per
line. bf16 is listed only where it is fast (CUDA, or a CPU with AMX tiles).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2s.data.corpus import load_split, text_pairs  # noqa: E402
from s2s.evaluate import score  # noqa: E402
from s2s.packed import unpack_linears  # noqa: E402
from s2s.quantize import int8_engine  # noqa: E402
from s2s.run import Run, fast_bf16  # noqa: E402
from s2s.translate import DecodeOptions, translate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--data", help="local copy of the corpus (replaces data.path)")
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = {"fp32": Run.open(args.run_dir, device="cpu", precision="fp32"),
            "fp32-unpacked": Run.open(args.run_dir, device="cpu", precision="fp32"),
            "int8": Run.open(args.run_dir, device="cpu", quantize="int8")}
    unpack_linears(runs["fp32-unpacked"].model)
    if fast_bf16(torch.device("cpu")):
        runs["bf16"] = Run.open(args.run_dir, device="cpu", precision="bf16")
    data = runs["fp32"].recipe.data
    if args.data:
        from dataclasses import replace

        data = replace(data, path=args.data)
    pairs = text_pairs(load_split(data, args.split), data)
    sources, references = list(pairs["src"]), list(pairs["tgt"])
    for beam in map(int, args.beams.split(",")):
        best = {name: float("inf") for name in runs}
        hypotheses = {}
        for _ in range(args.repeat):
            for name, run in runs.items():
                opts = DecodeOptions.from_run(run, beam=beam, batch_size=args.batch_size)
                started = time.perf_counter()
                hypotheses[name] = [r[0].text if r else "" for r in translate(run, sources, opts)]
                best[name] = min(best[name], time.perf_counter() - started)
        for name in runs:
            scores = score(hypotheses[name], references)
            print(json.dumps({
                "run": str(args.run_dir), "split": args.split, "sentences": len(sources),
                "arithmetic": name, "engine": int8_engine() if name == "int8" else None,
                "beam": beam, "threads": args.threads,
                "sentences_per_s": round(len(sources) / best[name], 1),
                "bleu": round(scores.bleu, 2), "exact": round(scores.exact, 2),
                "same_as_fp32": round(100 * sum(a == b for a, b in zip(hypotheses[name],
                                                                        hypotheses["fp32"]))
                                      / len(sources), 2),
                "bleu_signature": scores.bleu_signature}), flush=True)


if __name__ == "__main__":
    main()

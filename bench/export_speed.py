"""s2s's own decoding against its CTranslate2 exports (float32, int8): quality and speed.

    python bench/export_speed.py RUN_DIR [--split test] [--threads 2] [--batch-size 64]

Exports the run's best checkpoint to CTranslate2 (float32 and int8, into a temporary folder),
translates the split with each system (and with s2s's own `--quantize int8`), greedy and beam 5,
and prints one JSON line per (system, search): sentences per second (translation only, models
already loaded), BLEU (sacreBLEU), and the share of output lines identical to s2s's own (fp32)
with the same search. Ends with the machine's load average, since timings are only final on an
idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from s2s.data.corpus import load_split, text_pairs
from s2s.evaluate import score
from s2s.export.ctranslate2 import export_ctranslate2, open_export
from s2s.run import Run
from s2s.translate import DecodeOptions, translate

SEARCHES = {"greedy": 1, "beam5": 5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=0, help="First N sentences only (smoke tests).")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = Run.open(a.run_dir, "best", "cpu", precision="fp32")  # what CTranslate2 float32 computes
    pairs = text_pairs(load_split(run.recipe.data, a.split), run.recipe.data)
    sources, references = list(pairs["src"]), list(pairs["tgt"])
    if a.limit:
        sources, references = sources[:a.limit], references[:a.limit]
    with tempfile.TemporaryDirectory() as tmp:
        systems = {"s2s": run, "s2s-int8": Run.open(a.run_dir, "best", "cpu", quantize="int8")}
        for quantization in ("float32", "int8"):
            out = export_ctranslate2(run, Path(tmp) / quantization, quantization)
            systems[f"ctranslate2-{quantization}"] = open_export(out, threads=a.threads)
        own: dict[str, list[str]] = {}
        for search, beam in SEARCHES.items():
            opts = DecodeOptions(beam=beam, batch_size=a.batch_size,
                                 length_penalty=run.recipe.decode.length_penalty)
            for name, system in systems.items():
                start = time.perf_counter()
                hyps = [r[0].text if r else "" for r in translate(system, sources, opts)]
                seconds = time.perf_counter() - start
                own.setdefault(search, hyps)
                same = sum(h == o for h, o in zip(hyps, own[search])) / len(hyps)
                print(json.dumps({"system": name, "search": search, "sentences": len(hyps),
                                  "sentences_per_s": round(len(hyps) / seconds, 1),
                                  "bleu": round(score(hyps, references).bleu, 2),
                                  "identical_to_s2s": round(100 * same, 2), "threads": a.threads,
                                  "batch_size": a.batch_size}), flush=True)
    print(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count(),
                      "run": str(a.run_dir), "split": a.split}))


if __name__ == "__main__":
    sys.exit(main())

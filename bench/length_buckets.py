"""Exact match per source-length bucket, for several runs side by side.

    python bench/length_buckets.py bench-runs/dates-rnn-bahdanau bench-runs/dates-rnn-none

Shows what attention buys: without it, one fixed context vector must carry the whole input, and
accuracy falls as inputs grow longer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2s.data.corpus import load_split, text_pairs  # noqa: E402
from s2s.run import Run  # noqa: E402
from s2s.translate import DecodeOptions, translate  # noqa: E402

EDGES = (10, 15, 20, 25, 30, 35)


def bucket(length: int) -> str:
    low = 0
    for edge in EDGES:
        if length <= edge:
            return f"{low + 1}-{edge}"
        low = edge
    return f">{EDGES[-1]}"


def exact_by_bucket(run_dir: Path, split: str, beam: int | None) -> dict[str, tuple[int, int]]:
    run = Run.open(run_dir)
    pairs = text_pairs(load_split(run.recipe.data, split), run.recipe.data)
    results = translate(run, pairs["src"], DecodeOptions.from_run(run, beam=beam))
    counts: dict[str, list[int]] = {}
    for src, ref, hyps in zip(pairs["src"], pairs["tgt"], results):
        right, total = counts.setdefault(bucket(len(src)), [0, 0])
        counts[bucket(len(src))] = [right + (bool(hyps) and hyps[0].text == ref), total + 1]
    return {k: tuple(v) for k, v in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--beam", type=int)
    args = parser.parse_args()
    tables = {run: exact_by_bucket(run, args.split, args.beam) for run in args.runs}
    order = [bucket(e) for e in EDGES] + [f">{EDGES[-1]}"]
    names = [run.name for run in args.runs]
    print("| source chars | sentences | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for key in order + ["all"]:
        cells, n = [], 0
        for run in args.runs:
            t = tables[run]
            right = sum(v[0] for v in t.values()) if key == "all" else t.get(key, (0, 0))[0]
            total = sum(v[1] for v in t.values()) if key == "all" else t.get(key, (0, 0))[1]
            n = total
            cells.append(f"{100 * right / total:.1f}%" if total else "-")
        if n:
            print(f"| {key} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

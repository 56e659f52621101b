"""Start-up time: `s2s translate RUN "x"` (and `s2s --help`, `s2s recipes`) beyond `import torch`.

    python bench/startup.py bench-runs/dates-rnn-bahdanau --repeat 7

Each command runs as a fresh process, the commands taking turns; the best of `--repeat` wall
times is kept for each, so that a busy machine slows them alike. Prints one JSON record.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    commands = {
        "import torch": [sys.executable, "-c", "import torch"],
        "s2s --help": [sys.executable, "-m", "s2s", "--help"],
        "s2s recipes": [sys.executable, "-m", "s2s", "recipes"],
        "s2s translate": [sys.executable, "-m", "s2s", "translate", args.run_dir, "4 July 1998",
                          "--device", "cpu"],
    }
    best = {name: float("inf") for name in commands}
    for _ in range(args.repeat):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            best[name] = min(best[name], time.perf_counter() - started)
    report = {name: round(seconds, 3) for name, seconds in best.items()}
    report["translate_beyond_import_torch"] = round(best["s2s translate"] - best["import torch"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Load test of `s2s serve`: throughput and latency under concurrent clients, against `s2s translate -i`.

    python bench/serve_load.py runs/multi30k-de-en-transformer --data ../shared/data/multi30k

Starts `s2s serve RUN` in its own process, then for 1, 8 and 32 concurrent clients (each sends one
sentence per request and waits for the answer before the next; keep-alive connections) for 60 s
each prints sentences/s, p50 and p99 latency, errors (non-200 answers, answers for another
sentence, requests without an answer), and checks with /health that the service answered each
request exactly once. The baseline is the throughput of `s2s translate RUN -i FILE` on the same
sentences with the same beam (its code path, timed after the model is loaded), measured before and
after each load (the machine's speed drifts; each load is compared with the mean of the two on
either side of it). The bar: at 32 clients, at least 80% of that.

--data takes a folder with test.jsonl (the Multi30k layout: the source column is the run's
`data.src`, e.g. "de"), a .jsonl file, or a text file with one sentence per line. Run it on an
otherwise idle machine: the clients share its cores with the service.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from served import served  # bench/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
BASELINE = """
import sys, time
from s2s.run import Run
from s2s.translate import DecodeOptions, fixed_chunks, translate_stream
run = Run.open(sys.argv[1], "best", sys.argv[2])
lines = open(sys.argv[3], encoding="utf-8").read().splitlines()
opts = DecodeOptions.from_run(run, beam=int(sys.argv[4]) if sys.argv[4] != "-" else None)
start = time.perf_counter()
done = sum(1 for _ in translate_stream(run, fixed_chunks(lines, opts.batch_size * 8), opts))
print(done / (time.perf_counter() - start), opts.beam)
"""


def read_sentences(path: Path, column: str | None) -> list[str]:
    """Sentences of a Multi30k-style folder or .jsonl file (one column), or a text file."""
    if path.is_dir():
        path = path / "test.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        lines = [json.loads(line)[column] for line in lines if line.strip()]
    return [line.strip() for line in lines if line.strip()]


def source_column(run_dir: Path) -> str | None:
    import yaml

    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    return recipe.get("data", {}).get("src")


def request(connection, body: bytes) -> tuple[int, dict]:
    connection.request("POST", "/v1/translate", body=body,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def health(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/health")
    return json.loads(connection.getresponse().read())


def load(port: int, sentences: list[str], clients: int, seconds: float, beam: int | None) -> dict:
    """`clients` threads, each one request at a time, for `seconds`; latencies and errors."""
    counter, lock = itertools.count(), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < stop:
            with lock:
                sentence = sentences[next(counter) % len(sentences)]
            body = json.dumps({"text": [sentence], **({"beam": beam} if beam else {})}).encode()
            started = time.perf_counter()
            try:
                status, answer = request(connection, body)
            except (OSError, http.client.HTTPException, ValueError) as e:
                errors.append(f"no answer: {e!r}")
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            took = time.perf_counter() - started
            if status != 200:
                errors.append(f"HTTP {status}: {answer}")
            elif [t["source"] for t in answer["translations"]] != [sentence]:
                errors.append(f"answered {answer['translations']!r} for {sentence!r}")
            else:
                latencies.append(took)

    before = health(port)["models"]
    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    after = health(port)["models"]
    sent = len(latencies) + len(errors)
    (name,) = after
    jobs = after[name]["jobs"] - before[name]["jobs"]
    batches = after[name]["batches"] - before[name]["batches"]
    if jobs != sent:
        errors.append(f"the service answered {jobs} jobs for {sent} requests")
    latencies.sort()
    pick = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None  # noqa: E731
    return {"clients": clients, "requests": sent, "sentences_per_s": len(latencies) / elapsed,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99), "errors": len(errors),
            "first_errors": errors[:3], "sentences_per_batch": len(latencies) / max(batches, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="Folder, .jsonl or text file.")
    parser.add_argument("--column", help="Source column of .jsonl data (default: the run's data.src).")
    parser.add_argument("--clients", default="1,8,32", help="Comma-separated client counts.")
    parser.add_argument("--seconds", type=float, default=60.0, help="Duration of each load.")
    parser.add_argument("--beam", type=int, help="Beam size (default: the run's).")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    sentences = read_sentences(args.data, args.column or source_column(args.run_dir))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("S2S_API_KEY", None)
    listing = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-load-{os.getpid()}.txt"
    listing.write_text("\n".join(sentences) + "\n", encoding="utf-8")

    def translate_rate() -> tuple[float, int]:
        rate, beam = subprocess.run(
            [sys.executable, "-c", BASELINE, str(args.run_dir), args.device, str(listing),
             str(args.beam) if args.beam else "-"],
            env=env, check=True, capture_output=True, text=True).stdout.split()
        print(f"s2s translate -i: {float(rate):.1f} sentences/s ({len(sentences)} sentences, "
              f"beam {beam})", flush=True)
        return float(rate), int(beam)

    try:
        baseline, beam = translate_rate()
        results = []
        for clients in (int(c) for c in args.clients.split(",")):
            with served([str(args.run_dir)], "--device", args.device, env=env) as port:
                result = load(port, sentences, clients, args.seconds, args.beam)
            # the machine's speed drifts: compare with translate -i measured just before and after
            after, _ = translate_rate()
            result["translate_sentences_per_s"] = (baseline + after) / 2
            result["ratio_to_translate"] = result["sentences_per_s"] / result["translate_sentences_per_s"]
            results.append(result)
            print(f"{clients:3d} clients: {result['sentences_per_s']:7.1f} sentences/s "
                  f"({100 * result['ratio_to_translate']:.0f}% of translate -i before and after), "
                  f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
                  f"{result['sentences_per_batch']:.1f} sentences per batch, "
                  f"errors {result['errors']} {result['first_errors'] or ''}", flush=True)
            baseline = after
    finally:
        listing.unlink()
    print(json.dumps({"run": str(args.run_dir), "sentences": len(sentences), "beam": beam,
                      "loads": results}, indent=2))

if __name__ == "__main__":
    main()

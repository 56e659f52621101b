"""The side-by-side table of a `bench/peers_compare.py run` results folder: throughput, achieved
FLOP/s against the measured GEMM rates, BLEU, and the ratios s2s / peer the project commits to.

    python bench/peers_table.py RESULTS_DIR

FLOPs are the analytic matrix-multiply count of common/peak_flops.py (attention scores and
non-matmul work ignored), split here by GEMM shape so that each part can be divided by the rate
measured for its own shape.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

BARS = {  # (what, peer) -> the ratio s2s / peer the project commits to
    ("train", "fairseq"): 1.5, ("train", "opennmt-py"): 1.5, ("train", "torch-ref"): 1.5,
    ("beam5", "ctranslate2-int8"): 1.3, ("beam5", "fairseq"): 2.0, ("greedy", "fairseq"): 2.0,
}
KINDS = ("qkv/out", "ffn up", "ffn down", "vocab proj")
TRAIN_ROWS = 3500  # rows of the training-shape GEMMs common/peak_flops.py measures
SRC_TGT_RATIO = 1.0348  # source/target tokens incl. EOS of the training corpus, as peak_flops.py uses
BUSY = 0.05  # a job during which other processes took more than this share of the CPUs is flagged


def model_flops(d: int = 256, ff: int = 1024, vocab: int = 8000, layers: int = 3) -> dict:
    """Forward matmul FLOPs of the shared model by GEMM kind, per source and per target token.

    Per source token: encoder self-attention q, k, v, out (4 d x d), its FFN (d x ff, ff x d) and
    the decoder's cross-attention keys and values (2 d x d). Per target token (and hypothesis):
    decoder self-attention (4 d x d), cross-attention q and out (2 d x d), FFN, output layer.
    """
    ffn = layers * 2 * d * ff
    return {"src": {"qkv/out": layers * 2 * 6 * d * d, "ffn up": ffn, "ffn down": ffn},
            "tgt": {"qkv/out": layers * 2 * 6 * d * d, "ffn up": ffn, "ffn down": ffn,
                    "vocab proj": 2 * d * vocab}}


def train_flops_by_kind(counts: dict) -> dict:
    """Training (forward + backward = 3 x forward) FLOPs per target token, by GEMM kind."""
    return {k: 3 * (counts["tgt"].get(k, 0) + SRC_TGT_RATIO * counts["src"].get(k, 0)) for k in KINDS}


def weighted_rate(flops: dict, rates: dict, rows: int) -> float | None:
    """GFLOP/s of a mix of GEMMs when each kind runs at the rate measured for its shape."""
    if not all((k, rows) in rates for k in flops):
        return None
    return sum(flops.values()) / sum(f / rates[(k, rows)] for k, f in flops.items())


def decode_cost(counts: dict, rates: dict, src_len: float, out_len: float | None,
                beam: int) -> tuple[float | None, float | None]:
    """Matmul FLOPs per sentence, and the sentences/s if every GEMM ran at its measured rate.

    Source tokens go through the encoder at the training-shape rates (a batch of 64 sentences
    holds ~1,000 of them); every output token incl. EOS of each of the `beam` hypotheses goes
    through one decoder step at the rate measured for 64 x beam rows.
    """
    if out_len is None:
        return None, None
    steps = (out_len + 1) * beam
    flops = src_len * sum(counts["src"].values()) + steps * sum(counts["tgt"].values())
    rows = 64 * beam
    if not all((k, TRAIN_ROWS) in rates for k in counts["src"]) or not all((k, rows) in rates for k in KINDS):
        return flops, None
    seconds = sum(src_len * f / rates[(k, TRAIN_ROWS)] for k, f in counts["src"].items())
    seconds += sum(steps * f / rates[(k, rows)] for k, f in counts["tgt"].items())
    return flops, 1e9 / seconds


# ------------------------------------------------------------------------------------------------
# reading a results folder


def read_lines(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def read_results(results: Path) -> tuple[list[dict], dict, list[dict]]:
    """(every measurement, the machine's state at the start, one state line per job)."""
    rows = [r for p in sorted(results.glob("*.jsonl")) if p.name != "machine.jsonl" for r in read_lines(p)]
    state = read_lines(results / "machine.jsonl") if (results / "machine.jsonl").is_file() else []
    machine = next((s for s in state if s.get("kind") == "machine"), {})
    return rows, machine, [s for s in state if s.get("kind") == "job"]


def gemm_rates(rows: list[dict]) -> dict:
    """(kind, rows) -> median measured fp32 GFLOP/s, and 'square' -> the square GEMM's."""
    found: dict = {}
    for r in rows:
        if r.get("metric") != "matmul_gflops" or r.get("dtype") != "float32":
            continue
        m = re.match(r"(qkv/out|ffn up|ffn down|vocab proj) (\d+)x", r["shape"])
        key = (m.group(1), int(m.group(2))) if m else "square" if r["shape"].startswith("square") else None
        if key:
            found.setdefault(key, []).append(r["value"])
    return {k: median(v) for k, v in found.items()}


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, pattern: str = "{:,.0f}") -> str:
    return "–" if value is None else pattern.format(value)


def spread(values) -> str:
    values = [v for v in values if v is not None]
    return f" ({min(values):,.1f}-{max(values):,.1f})" if len(values) > 1 else ""


def versus(ratio: float, bar: float | None) -> str:
    return f"**{ratio:.2f}x**" + (f" (bar {bar}x: {'met' if ratio >= bar else 'NOT met'})" if bar else "")


def tokens_per_step(row: dict, peers: Path | None) -> float | None:
    """Mean target tokens per step in the throughput window, read from the job's own log with
    the harness's parsers (the same reading measure_train.py made)."""
    if peers is None or not Path(row.get("log") or "/nonexistent").is_file():
        return None
    sys.path.insert(0, str(peers / "common"))
    import measure_train

    lines = []
    for line in Path(row["log"]).read_text(errors="replace").splitlines():
        m = re.match(r"\[\s*([\d.]+)\] (.*)", line)
        if m:
            lines.append((float(m.group(1)), m.group(2)))
    lo, hi = (int(x) for x in re.findall(r"\d+", row["window"]))
    parser = {"fairseq": "fairseq", "opennmt-py": "onmt"}.get(row["system"], "stepline")
    tokens = sum(tok for n, _, tok in measure_train.PARSERS[parser](lines) if lo < n <= hi)
    return tokens / (hi - lo) if tokens else None


# ------------------------------------------------------------------------------------------------
# the table


def header(machine: dict, jobs: list[dict]) -> list[str]:
    m = machine
    out = [f"# s2s and its peers, side by side ({m.get('time', '?')})", "",
           f"Machine: {m.get('cpu_model', '?')} (AVX-512 {m.get('avx512', '?')}, AMX {m.get('amx', '?')}), "
           f"nproc {m.get('nproc', '?')}, load average at the start {m.get('load_average', '?')}; "
           f"s2s {m.get('s2s_commit', '?')}. Training: throughput over steps {m.get('warm')}.."
           f"{(m.get('warm') or 0) + (m.get('window') or 0)}, fp32, 2 threads. Decoding: "
           f"{m.get('decode_sentences')} test sentences from step-{m.get('steps')} checkpoints, "
           "batches of 64, at most 128 output tokens, 2 threads.", ""]
    bad = [j for j in jobs if j["foreign_cpu_frac"] > BUSY or j["rc"]]
    if m.get("forced") or bad:
        out += ["**NOT VALID: " + ("started on a busy machine (--force). " if m.get("forced") else "")
                + "; ".join(f"{j['job']}: other processes {100 * j['foreign_cpu_frac']:.0f}% of the CPUs"
                            + (f", exit {j['rc']}" if j["rc"] else "") for j in bad) + "**", ""]
    return out


def training_table(rows: list[dict], rates: dict, peers: Path | None, data: Path) -> list[str]:
    flops = median(r["value"] for r in rows if r.get("metric") == "train_flops_per_tgt_token")
    by_kind = train_flops_by_kind(model_flops())
    at_shapes = weighted_rate(by_kind, rates, TRAIN_ROWS)
    out = []
    if flops:
        out += [f"Analytic training cost {flops / 1e6:.1f} MFLOP per target token (3 x forward matmuls, "
                f"common/peak_flops.py). Measured fp32 GEMM rate, 2 threads: square {fmt(rates.get('square'))} "
                f"GFLOP/s; at the model's shapes ({TRAIN_ROWS} rows) "
                + ", ".join(f"{k} {fmt(rates.get((k, TRAIN_ROWS)))}" for k in KINDS)
                + f", i.e. {fmt(at_shapes)} GFLOP/s for this model's mix of them.", ""]
    systems: dict = {}
    for r in rows:
        if r.get("metric") in ("train_tgt_tok_per_s", "train_max_rss") and r.get("mode", "fp32") == "fp32":
            systems.setdefault(r["system"], {}).setdefault(r["metric"], []).append(r)
    speed = {s: median(r.get("value") for r in m.get("train_tgt_tok_per_s", [])) for s, m in systems.items()}
    out += ["## Training throughput (fp32)", "",
            "| system | version | target tok/s | tgt tok/step | achieved GFLOP/s | of square GEMM "
            "| of GEMM rate at model shapes | max RSS MiB | s2s / system |", "|---" * 9 + "|"]
    for system, m in systems.items():
        runs = m.get("train_tgt_tok_per_s", [])
        if not runs:
            continue
        tok = speed[system]
        achieved = tok * flops / 1e9 if tok and flops else None
        ratio = versus(speed["s2s"] / tok, BARS.get(("train", system))) \
            if system != "s2s" and speed.get("s2s") and tok else "–"
        failed = "" if tok else " " + runs[0].get("notes", "")[-120:]
        out.append(f"| {system} | {runs[0].get('version', '')} | {fmt(tok)}{spread(r.get('value') for r in runs)}"
                   f"{failed} | {fmt(median(tokens_per_step(r, peers) for r in runs))} | {fmt(achieved, '{:.1f}')} "
                   f"| {fmt(achieved and rates.get('square') and 100 * achieved / rates['square'], '{:.0f}%')} "
                   f"| {fmt(achieved and at_shapes and 100 * achieved / at_shapes, '{:.0f}%')} "
                   f"| {fmt(median(r.get('value') for r in m.get('train_max_rss', [])))} | {ratio} |")
    return out + ["", "Target tokens are each system's own pieces incl. EOS: the peers share the harness's "
                  "SentencePiece model, s2s trains its own (unigram 8k, same text). "
                  + pieces_note(systems.get("s2s", {}).get("train_tgt_tok_per_s", []), data), ""]


def pieces_note(s2s_runs: list[dict], data: Path) -> str:
    """How many target pieces s2s's tokenizer makes of the training text against the harness's."""
    ours = None
    for r in s2s_runs:
        if Path(r.get("log") or "/nonexistent").is_file():
            found = re.search(r"PEERS_TRAIN_TGT_TOKENS (\d+)", Path(r["log"]).read_text(errors="replace"))
            ours = int(found.group(1)) if found else ours
    stats = data / "stats.json"
    if ours is None or not stats.is_file():
        return ""
    theirs = json.loads(stats.read_text())["train.en"]["pieces_plus_eos"]
    return (f"Training targets: {ours:,} s2s pieces against {theirs:,} harness pieces (ratio {ours / theirs:.4f}; "
            "divide s2s's tok/s ratios by it to compare sentences/s).")


def decoding_table(rows: list[dict], rates: dict, machine: dict, data: Path) -> list[str]:
    runs: dict = {}
    for r in rows:
        m = re.match(r"decode_(greedy|beam5)_sent_per_s", r.get("metric", ""))
        if m and r.get("value") is not None:
            runs.setdefault((r["system"], m.group(1)), []).append(r)
    speed = {k: median(r["value"] for r in rs) for k, rs in runs.items()}
    stats_file = data / "stats.json"
    stats = json.loads(stats_file.read_text())["test.de"] if stats_file.is_file() else None
    src_len = stats["pieces_plus_eos"] / stats["sentences"] if stats else 16.0
    ours = sorted({s for s, _ in runs if s.startswith("s2s")})
    out = [f"## Decoding the test set (step-{machine.get('steps')} checkpoints)", "",
           "| system | search | sentences/s | out tok/s | BLEU | mean out len | achieved GFLOP/s "
           "| GEMM-bound limit sent/s | of limit | s2s / system |", "|---" * 10 + "|"]
    order = sorted(runs, key=lambda k: (k[1], not k[0].startswith("s2s"), k[0]))
    for system, search in order:
        rs, sent = runs[(system, search)], speed[(system, search)]
        out_len = median(r.get("mean_out_pieces") for r in rs)
        flops, limit = decode_cost(model_flops(), rates, src_len, out_len, 1 if search == "greedy" else 5)
        ratios = [f"{s}: " + versus(speed[(s, search)] / sent, BARS.get((search, system)))
                  for s in ours if not system.startswith("s2s") and (s, search) in speed]
        out.append(f"| {system} | {search} | {fmt(sent, '{:,.1f}')}{spread(r['value'] for r in rs)} "
                   f"| {fmt(median(r.get('out_tok_per_s') for r in rs))} | {fmt(median(r.get('bleu') for r in rs), '{:.2f}')} "
                   f"| {fmt(out_len, '{:.2f}')} | {fmt(flops and flops * sent / 1e9, '{:.1f}')} "
                   f"| {fmt(limit, '{:,.1f}')} | {fmt(limit and 100 * sent / limit, '{:.0f}%')} "
                   f"| {'; '.join(ratios) or '–'} |")
    decode_rates = "; ".join(f"{rows} rows: " + ", ".join(f"{k} {fmt(rates.get((k, rows)))}" for k in KINDS)
                             for rows in (64, 320))
    return out + ["", "Decoding time excludes loading the model (each toolkit's own timer; for s2s a timer "
                  "around its batched decoding calls). BLEU: sacreBLEU 13a on detokenised output, output "
                  "lengths and tok/s in the harness's pieces, for every system (common/decode_report.py). "
                  "GEMM-bound limit: the model's matmul FLOPs for the same outputs (encoder per source token "
                  "at the training-shape rates, one decoder step per output token incl. EOS and hypothesis "
                  f"at the rate for 64 or 320 rows; {decode_rates} GFLOP/s) over those rates; "
                  "achieved GFLOP/s counts the same FLOPs (int8 ones included).", ""]


def jobs_table(jobs: list[dict]) -> list[str]:
    out = ["## Jobs, one at a time", "", "| job | wall s | 1-min load before -> after "
           "| other processes' CPU share | exit |", "|---" * 5 + "|"]
    for j in jobs:
        out.append(f"| {j['job']} | {j['wall_s']} | {j['load_before'][0]} -> {j['load_after'][0]} "
                   f"| {100 * j['foreign_cpu_frac']:.0f}% | {j['rc']} |")
    return out


def make_table(results: Path) -> str:
    rows, machine, jobs = read_results(results)
    rates = gemm_rates(rows)
    peers = Path(machine["peers"]) if machine.get("peers") else None
    data = Path(machine.get("peers_data", "/tmp/peers-data"))
    return "\n".join(header(machine, jobs) + training_table(rows, rates, peers, data)
                     + decoding_table(rows, rates, machine, data) + jobs_table(jobs)) + "\n"


if __name__ == "__main__":
    print(make_table(Path(sys.argv[1])))

"""bench/peers_compare.py and bench/peers_s2s.py: s2s trains the peer harness's model, and the
side-by-side table computes the ratios (and flags a busy machine) from the harness's JSON lines."""

import importlib.util
import json
from pathlib import Path

import pytest

from s2s.recipe import load_recipe

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_s2s_recipe_overrides_give_the_harness_model_and_protocol(monkeypatch):
    for name in ("D_MODEL", "DROPOUT", "PEAK_LR", "WARMUP_STEPS", "BATCH_TOKENS", "MAX_DEC_LEN"):
        monkeypatch.delenv(name, raising=False)
    peers_s2s = load("peers_s2s")
    r = load_recipe(peers_s2s.RECIPE, peers_s2s.harness_overrides("/data/multi30k", 300))
    m, t, d = r.model, r.train, r.decode
    assert r.data.path == "/data/multi30k"
    assert (m.d_model, m.heads, m.ffn_dim, m.enc_layers, m.dec_layers) == (256, 4, 1024, 3, 3)
    assert (m.dropout, m.attn_dropout, m.act_dropout, m.norm) == (0.1, 0.0, 0.0, "pre")
    assert m.share_embeddings and m.tie_output
    assert (r.tokenizer.vocab_size, r.tokenizer.joint) == (8000, True)
    assert (t.batch_tokens, t.lr, t.betas, t.warmup_steps, t.schedule) == (
        4096, 1e-3, (0.9, 0.98), 500, "inverse_sqrt")
    assert (t.clip_norm, t.weight_decay, t.label_smoothing, t.precision) == (0.0, 0.0, 0.1, "fp32")
    assert (t.max_steps, t.max_minutes, t.max_epochs, t.patience, t.cooldown_steps) == (300, 0, 0, 0, 0)
    assert t.eval_every == 300  # one validation and checkpoint, at the last step
    assert (d.max_len_a, d.max_len_b, d.batch_size, d.length_penalty) == (0.0, 128, 64, 1.0)


def write_results(folder: Path, busy: float) -> None:
    rows = {
        "micro-peak-flops": [
            {"system": "cpu-peak", "metric": "matmul_gflops", "shape": "square 2048^3", "dtype": "float32",
             "value": 100.0},
            {"system": "model", "metric": "train_flops_per_tgt_token", "value": 45.9e6}],
        "train-fairseq-fp32": [{"system": "fairseq", "metric": "train_tgt_tok_per_s", "mode": "fp32",
                                "value": 1000.0, "window": "steps 20..120"}],
        "train-s2s-fp32": [{"system": "s2s", "metric": "train_tgt_tok_per_s", "mode": "fp32",
                            "value": 1400.0, "window": "steps 20..120"}],
        "decode-fairseq": [{"system": "fairseq", "metric": "decode_beam5_sent_per_s", "value": 50.0,
                            "bleu": 30.0, "mean_out_pieces": 14.0}],
        "decode-ct2": [{"system": "ctranslate2-int8", "metric": "decode_beam5_sent_per_s", "value": 80.0,
                        "bleu": 30.1, "mean_out_pieces": 14.0}],
        "decode-s2s-0": [{"system": "s2s", "metric": "decode_beam5_sent_per_s", "value": 110.0,
                          "bleu": 31.0, "mean_out_pieces": 14.2}],
    }
    for name, lines in rows.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    state = [{"kind": "machine", "time": "now", "steps": 300, "warm": 20, "window": 100},
             {"kind": "job", "job": "train-s2s-fp32", "rc": 0, "wall_s": 60.0, "load_before": [0.1] * 3,
              "load_after": [1.9] * 3, "foreign_cpu_frac": busy, "steal_frac": 0.0}]
    (folder / "machine.jsonl").write_text("".join(json.dumps(x) + "\n" for x in state))


def test_table_prints_ratios_against_the_bars(tmp_path):
    write_results(tmp_path, busy=0.0)
    table = load("peers_table").make_table(tmp_path)
    assert "**1.40x** (bar 1.5x: NOT met)" in table  # training, s2s / fairseq
    assert "s2s: **2.20x** (bar 2.0x: met)" in table  # beam 5, s2s / fairseq
    assert "s2s: **1.38x** (bar 1.3x: met)" in table  # beam 5, s2s / CTranslate2 int8
    assert "| 64.3 |" in table  # achieved GFLOP/s = 1400 x 45.9 MFLOP per token
    assert "NOT VALID" not in table


def test_table_flags_a_job_that_shared_the_machine(tmp_path):
    write_results(tmp_path, busy=0.3)
    table = load("peers_table").make_table(tmp_path)
    assert "NOT VALID" in table and "train-s2s-fp32: other processes 30% of the CPUs" in table


@pytest.mark.parametrize("loads, expected", [([0.2], True), ([0.9, 0.9], False)])
def test_a_busy_machine_is_refused(monkeypatch, loads, expected):
    monkeypatch.syspath_prepend(str(BENCH))
    compare = load("peers_compare")
    seen = iter(loads * 10)
    monkeypatch.setattr(compare, "load_average", lambda: (next(seen), 0.0, 0.0))
    monkeypatch.setattr(compare.time, "sleep", lambda s: None)
    assert compare.wait_for_idle(0.5, 0) is expected

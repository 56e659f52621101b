"""Data-parallel training with torchrun (2 processes, gloo on CPU) matches one process that sees
the same global batch, and only rank 0 writes."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, write_recipe

STEPS = ["train.max_steps=6", "train.eval_every=3", "train.log_every=1", "model.dropout=0.0"]


def losses(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "train"]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml", TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sets = [a for s in STEPS for a in ("--set", s)]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
         "29517", "-m", "s2s", "train", str(recipe), "--run-dir", str(tmp_path / "ddp"),
         "--device", "cpu", *sets], env=env, capture_output=True, text=True, timeout=280)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "parameters identical on 2 ranks" in ddp.stdout
    assert ddp.stdout.count("valid step 6") == 1  # only rank 0 reports

    single = subprocess.run(
        [sys.executable, "-m", "s2s", "train", str(recipe), "--run-dir", str(tmp_path / "one"),
         "--device", "cpu", *sets, "--set", "train.accumulate=2"],
        env=env, capture_output=True, text=True, timeout=280)
    assert single.returncode == 0, single.stderr[-3000:]

    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
    a = load_file(str(tmp_path / "ddp" / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "checkpoints" / "last" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)

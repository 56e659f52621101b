"""Data-parallel training with torchrun (2 processes, gloo on CPU) matches one process that sees
the same global batch, and only rank 0 writes."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, write_recipe

STEPS = ["train.max_steps=6", "train.eval_every=3", "train.log_every=1", "model.dropout=0.0"]


def run(args, env):
    """Run a command in its own process group; on timeout kill the group (torchrun's workers too)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out: {' '.join(args)}\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def losses(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "train"]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml", TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sets = [a for s in STEPS for a in ("--set", s)]
    ddp = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", "29517", "-m", "s2s", "train", str(recipe), "--run-dir",
               str(tmp_path / "ddp"), "--device", "cpu", *sets], env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "parameters identical on 2 ranks" in ddp.stdout
    assert ddp.stdout.count("valid step 6") == 1  # only rank 0 reports

    single = run([sys.executable, "-m", "s2s", "train", str(recipe), "--run-dir",
                  str(tmp_path / "one"), "--device", "cpu", *sets, "--set", "train.accumulate=2"], env)
    assert single.returncode == 0, single.stderr[-3000:]

    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
    a = load_file(str(tmp_path / "ddp" / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "checkpoints" / "last" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_self_critical_training_keeps_ranks_identical(tmp_path):
    """Self-critical steps sample from the bare model (not DDP's forward): their gradients are
    averaged by hand, and the trainer checks the ranks' parameters at every validation."""
    from test_captioning import TINY_SHAPES

    recipe = write_recipe(tmp_path / "tiny-shapes.yaml", TINY_SHAPES)
    sets = ["train.max_steps=4", "train.eval_every=4", "train.log_every=1", "train.self_critical_from=2",
            "train.self_critical_images=4", "train.self_critical_samples=2"]
    ddp = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", "29518", "-m", "s2s", "train", str(recipe), "--run-dir",
               str(tmp_path / "ddp"), "--device", "cpu", *[a for s in sets for a in ("--set", s)]],
              {**os.environ, "OMP_NUM_THREADS": "1"})
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "parameters identical on 2 ranks" in ddp.stdout and "valid step 4" in ddp.stdout
    lines = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert ["reward" in r for r in lines if r["kind"] == "train"] == [False, False, True, True]

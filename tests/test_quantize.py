"""Decoding with --quantize int8: a copy of the model with dynamic int8 linear layers."""

import hashlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from s2s.cli import cli
from s2s.data.batching import collate
from s2s.data.corpus import load_split, text_pairs
from s2s.run import Run
from s2s.vocab import PAD


def digests(run_dir):
    return {p.relative_to(run_dir): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def teacher_forced(run, pairs):
    """Log-probabilities (N, T, V) of the references and where the targets are."""
    src, tgt = run.tokenizer.encode_src(list(pairs["src"])), run.tokenizer.encode_tgt(list(pairs["tgt"]))
    batch = collate(src, tgt, np.arange(len(src)))
    with torch.no_grad():
        logits, _ = run.model(batch.src, batch.src_mask, batch.tgt_in)
    return logits.log_softmax(-1), batch.tgt_out, batch.tgt_out != PAD


def test_int8_predicts_like_fp32_and_leaves_the_run_untouched(trained_run):
    """Every linear layer (the output projection too) becomes int8; the next-token choices of
    the reference prefixes stay those of fp32 and their log-probabilities move little. (Exact
    match of a fully trained dates run, fp32 vs int8: bench/quantize.py.)"""
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    before = digests(trained_run)
    fp32 = Run.open(trained_run, device="cpu", precision="fp32")
    int8 = Run.open(trained_run, device="cpu", quantize="int8")
    assert isinstance(int8.model.generator, Int8Linear)
    assert not any(isinstance(m, Int8Linear) for m in fp32.model.modules())
    assert sum(isinstance(m, nn.Linear) for m in int8.model.modules()) == 0
    pairs = text_pairs(load_split(fp32.recipe.data, "test"), fp32.recipe.data)
    (ours, target, where), (theirs, _, _) = (teacher_forced(run, pairs) for run in (fp32, int8))
    agree = (ours.argmax(-1) == theirs.argmax(-1))[where].float().mean().item()
    gold = [lp.gather(-1, target[..., None])[..., 0][where] for lp in (ours, theirs)]
    assert agree >= 0.95 and (gold[0] - gold[1]).abs().mean().item() < 0.05, agree
    assert digests(trained_run) == before  # nothing written: no quantized checkpoint


def test_quantize_from_the_command_line(trained_run):
    runner = CliRunner()
    result = runner.invoke(cli, ["translate", str(trained_run), "4 July 1998", "--quantize", "int8",
                                 "--device", "cpu"])
    assert result.exit_code == 0 and result.output.strip(), result.output
    result = runner.invoke(cli, ["translate", str(trained_run), "4 July 1998", "--quantize", "int8",
                                 "--engine", "ctranslate2"])
    assert result.exit_code == 2 and "--quantization int8" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("verb", [["evaluate", "--split", "test", "--beam", "1"],
                                  ["inspect", "4 July 1998"]])
def test_evaluate_and_inspect_take_quantize(trained_run, verb):
    result = CliRunner().invoke(cli, [verb[0], str(trained_run), *verb[1:], "--quantize", "int8",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output

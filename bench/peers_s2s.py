"""s2s under the peer harness's protocol (../shared/peers): the shared model, its training
throughput and its timed decoding, measured exactly as the harness measures the other toolkits.

    python bench/peers_s2s.py overrides                  # the recipe overrides, one per line
    python bench/peers_s2s.py train-steps RUN_DIR --steps N
    python bench/peers_s2s.py decode RUN_DIR --search beam5 --source test.de --out hyp.txt \
        [--checkpoint step-300] [--extra-args "--quantize int8"]

`train-steps` runs N optimiser steps of s2s's own Trainer on the run's recipe (tokenizer and
tokenised data are prepared first, outside any timing) and prints, per step, the harness's
`PEERS_STEP step=<n> tgt_tokens=<k>` line (non-padding target tokens incl. EOS), so
`common/measure_train.py` times it like every peer. `decode` runs `s2s translate` in this process
and times only the batched decoding (`s2s.translate.translate_ids`: the model is loaded and the
input read before the clock starts), printing the harness's `PEERS_DECODE_SECONDS <s>` line;
`--extra-args` go to `s2s translate` as given, so any decoding option can be measured.
`bench/peers_compare.py` drives both.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import s2s.translate  # noqa: E402
from s2s.cli import cli  # noqa: E402
from s2s.recipe import apply_overrides, load_recipe, recipe_from_dict, recipe_to_dict  # noqa: E402
from s2s.run import RECIPE_FILE, TOKENIZER_DIR, load_run_recipe  # noqa: E402
from s2s.train import Trainer, prepare_run  # noqa: E402

RECIPE = "multi30k-de-en-transformer"


def harness_overrides(data: str, steps: int) -> list[str]:
    """The recipe overrides that make s2s train the harness's model with its protocol.

    Values come from the environment that `common/hparams.sh` sets (its defaults otherwise):
    d 256, 4 heads, FFN 1024, 3+3 pre-norm layers, dropout 0.1 (none on attention weights or
    inside the FFN, as fairseq's --attention-dropout 0 --activation-dropout 0), label smoothing
    0.1, all embeddings shared with the output layer, ~4096-token batches, Adam(0.9, 0.98) without
    weight decay or gradient clipping (--clip-norm 0), peak lr 1e-3 after 500 linear warm-up
    steps then inverse-sqrt, fp32, 2 threads, exactly `steps` steps (no time limit, no early
    stopping; one validation and checkpoint at the last step). Decoding: batches of 64, beam 5,
    length penalty 1, at most MAX_DEC_LEN output tokens whatever the source length.
    """
    env = lambda name, default: os.environ.get(name, default)  # noqa: E731
    return [
        f"data.path={data}",
        f"model.d_model={env('D_MODEL', '256')}", f"model.heads={env('HEADS', '4')}",
        f"model.ffn_dim={env('FFN', '1024')}", f"model.enc_layers={env('ENC_LAYERS', '3')}",
        f"model.dec_layers={env('DEC_LAYERS', '3')}", f"model.dropout={env('DROPOUT', '0.1')}",
        "model.attn_dropout=0.0", "model.act_dropout=0.0", "model.norm=pre",
        "model.activation=relu", "model.positions=sinusoidal",
        "model.share_embeddings=true", "model.tie_output=true",
        "tokenizer.type=unigram", "tokenizer.vocab_size=8000", "tokenizer.joint=true",
        "tokenizer.character_coverage=1.0",
        f"train.batch_tokens={env('BATCH_TOKENS', '4096')}", "train.accumulate=1",
        f"train.lr={env('PEAK_LR', '0.001')}", "train.betas=[0.9, 0.98]", "train.weight_decay=0.0",
        "train.schedule=inverse_sqrt", f"train.warmup_steps={env('WARMUP_STEPS', '500')}",
        "train.cooldown_steps=0", "train.clip_norm=0.0",
        f"train.label_smoothing={env('LABEL_SMOOTHING', '0.1')}", "train.precision=fp32",
        f"train.max_steps={steps}", "train.max_epochs=0", "train.max_minutes=0", "train.patience=0",
        f"train.eval_every={steps}", "train.log_every=10", f"train.seed={env('SEED', '1')}",
        f"train.threads={env('OMP_NUM_THREADS', '2')}",
        "decode.beam=5", "decode.length_penalty=1.0", "decode.max_len_a=0",
        f"decode.max_len_b={env('MAX_DEC_LEN', '128')}", f"decode.batch_size={env('DEC_BATCH', '64')}",
    ]


def unique_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() already skips tied copies


def train_steps(run_dir: Path, steps: int, work: Path) -> None:
    """`steps` optimiser steps of a fresh model on `run_dir`'s recipe, tokenizer and data cache,
    with the threads this process was given (OMP_NUM_THREADS), whatever the run was trained with."""
    threads = f"train.threads={os.environ.get('OMP_NUM_THREADS', '2')}"
    recipe = recipe_from_dict(apply_overrides(recipe_to_dict(load_run_recipe(run_dir)), [threads]))
    if work.exists():
        shutil.rmtree(work)
    prepare_run(recipe, work, resume=False, overwrite=True)
    shutil.copytree(run_dir / TOKENIZER_DIR, work / TOKENIZER_DIR)
    if (run_dir / "cache").is_dir():
        shutil.copytree(run_dir / "cache", work / "cache")
    trainer = Trainer(recipe, work, device="cpu", log=lambda *a: None)
    print(f"PEERS_PARAMS {unique_parameters(trainer.model)}", flush=True)
    lengths = trainer.train_data.tgt_lens  # s2s's own pieces; the harness counts its own likewise
    print(f"PEERS_TRAIN_TGT_TOKENS {int(lengths.sum()) + len(lengths)}", flush=True)
    step = 0
    while step < steps:
        for rows in trainer.epoch_batches(trainer.progress.epoch):
            tokens = trainer.train_data.batch(rows).target_tokens
            trainer.train_step([rows])
            step += 1
            print(f"PEERS_STEP step={step} tgt_tokens={tokens}", flush=True)
            if step >= steps:
                break
        trainer.progress.epoch += 1
    shutil.rmtree(work)


def timed_decode(run_dir: Path, checkpoint: str, beam: int, source: Path, out: Path,
                 extra_args: list[str]) -> float:
    """Run `s2s translate` here and return the seconds spent in batched decoding alone."""
    spent = [0.0, 0]
    inner = s2s.translate.translate_ids

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = inner(*args, **kwargs)
        spent[0] += time.perf_counter() - start
        spent[1] += 1
        return result

    s2s.translate.translate_ids = timed
    args = ["translate", str(run_dir), "-i", str(source), "-o", str(out), "--beam", str(beam),
            "--batch-size", os.environ.get("DEC_BATCH", "64"),
            "--max-len", os.environ.get("MAX_DEC_LEN", "128"),
            "--device", "cpu", "--checkpoint", checkpoint, *extra_args]
    try:
        status = cli.main(args, prog_name="s2s", standalone_mode=False)
    except click.ClickException as e:  # e.g. an option this version of s2s does not have
        raise SystemExit(f"s2s translate: {e.format_message()}") from None
    finally:
        s2s.translate.translate_ids = inner
    if status:  # a user error, already printed as one line
        raise SystemExit(status)
    if not spent[1]:
        raise SystemExit("s2s translate decoded nothing through s2s.translate.translate_ids; "
                         "the timing hook in bench/peers_s2s.py needs updating")
    return spent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    o = sub.add_parser("overrides", help="print the recipe overrides, one per line")
    o.add_argument("--data", default="../shared/data/multi30k")
    o.add_argument("--steps", type=int, default=300)
    t = sub.add_parser("train-steps", help="timed training steps (PEERS_STEP lines)")
    t.add_argument("run_dir", type=Path)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--work", type=Path, default=None, help="scratch run directory (deleted)")
    d = sub.add_parser("decode", help="timed decoding of a file (PEERS_DECODE_SECONDS line)")
    d.add_argument("run_dir", type=Path)
    d.add_argument("--search", choices=["greedy", "beam5"], required=True)
    d.add_argument("--source", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--checkpoint", default="last")
    d.add_argument("--extra-args", default="", help="more `s2s translate` options, one string")
    a = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if a.command == "overrides":
        load_recipe(RECIPE, harness_overrides(a.data, a.steps))  # every key must exist
        print("\n".join(harness_overrides(a.data, a.steps)))
    elif a.command == "train-steps":
        if not (a.run_dir / RECIPE_FILE).is_file():
            raise SystemExit(f"{a.run_dir} is not an s2s run directory")
        train_steps(a.run_dir, a.steps, a.work or a.run_dir.with_name(a.run_dir.name + "-speed"))
    else:
        beam = 1 if a.search == "greedy" else 5
        seconds = timed_decode(a.run_dir, a.checkpoint, beam, a.source, a.out, shlex.split(a.extra_args))
        print(f"PEERS_DECODE_SECONDS {seconds:.3f}", flush=True)


if __name__ == "__main__":
    main()

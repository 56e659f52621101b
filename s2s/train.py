"""The training loop: schedule, precision, validation, checkpoints, resume.

The loop asks the objective (`s2s.objectives`) for each step's batches and gradients, and the
task (through `s2s.prepare`) for the tokenizer and the data; it owns only the order of things.

Everything that decides what happens next is saved with each checkpoint (step, epoch, position in
the epoch's batch order, optimiser, learning-rate scale, RNG, best score, elapsed time), so
`--resume` continues as if the run had never stopped. Ctrl-C (or SIGTERM) stops the run at the
next step boundary, saves and exits.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from s2s import distributed as dist
from s2s.checkpoint import (has_checkpoints, load_trainer_state, load_weights, prune_checkpoints,
                            remove_stale_temps, resolve_checkpoint, save_checkpoint, set_pointer)
from s2s.data.batching import token_batches
from s2s.errors import UserError
from s2s.files import atomic_write_text
from s2s.evaluate import Scores, score
from s2s.models import build_model
from s2s.objectives import CrossEntropy, SelfCriticalObjective, TokenLoss, batch_loss, self_critical_at
from s2s.prepare import run_splits, run_tokenizer
from s2s.recipe import (Recipe, TrainConfig, apply_overrides, load_recipe, recipe_from_dict,
                        recipe_to_dict, save_recipe)
from s2s.run import (CHECKPOINT_DIR, METRICS_FILE, RECIPE_FILE, autocast, load_run_recipe,
                     pick_device, resolve_precision)
from s2s.rundir import RunLock, clear_run_dir
from s2s.search import decode, max_lengths
from s2s.tasks import task_of
from s2s.tensorboard_log import TensorBoardLog

HIGHER_IS_BETTER = {"bleu": True, "exact": True, "loss": False}


def say(message: str) -> None:
    """Log lines reach a file or pipe as they happen, not when a buffer fills."""
    print(message, flush=True)


def learning_rate(cfg: TrainConfig, step: int, scale: float, left: int | None = None) -> float:
    """lr at optimiser step `step` (1-based): linear warm-up, the schedule's shape, cool-down.

    The cool-down takes the lr linearly to min_lr over the run's last `cooldown_steps`: a short
    run then ends in a minimum instead of wherever the last step landed. `left` is the number of
    steps after this one (default: up to max_steps; a time budget may end the run sooner, see
    `Trainer.steps_left`). Self-critical steps use their own constant lr.
    """
    if self_critical_at(cfg, step):
        return cfg.self_critical_lr
    warm = min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.schedule == "inverse_sqrt" and cfg.warmup_steps and step > cfg.warmup_steps:
        lr = max(cfg.lr * math.sqrt(cfg.warmup_steps / step), cfg.min_lr)
    else:
        lr = max(cfg.lr * warm * scale, cfg.min_lr if step > cfg.warmup_steps else 0.0)
    if left is None and cfg.max_steps:
        left = cfg.max_steps - step
    if cfg.cooldown_steps and left is not None and left < cfg.cooldown_steps:
        lr = cfg.min_lr + (lr - cfg.min_lr) * max(left + 1, 0) / cfg.cooldown_steps
    return lr


@dataclass
class Progress:
    """The part of the trainer's state that is not tensors (saved with every checkpoint)."""

    step: int = 0
    epoch: int = 1
    batch_in_epoch: int = 0
    elapsed: float = 0.0
    target_tokens: int = 0
    best: float | None = None
    bad_evals: int = 0
    lr_scale: float = 1.0
    validated: int = 0  # the step of the last validation (a finished run has validated its last)


class Trainer:
    def __init__(self, recipe: Recipe, run_dir: Path, device: str = "auto", resume: bool = False,
                 log=say):
        self.created = time.monotonic()  # a fresh run's time budget includes data preparation
        self.recipe, self.cfg, self.run_dir, self.log = recipe, recipe.train, Path(run_dir), log
        self.device = pick_device(device if not dist.active() else dist.device_for_rank(device))
        self.precision = resolve_precision(self.cfg.precision, self.device)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.tensorboard = (TensorBoardLog(run_dir) if self.cfg.tensorboard and dist.is_main()
                            else None)
        torch.manual_seed(self.cfg.seed)
        task = task_of(recipe)
        self.tokenizer = run_tokenizer(recipe, task, self.run_dir, log)
        self.model = build_model(recipe.model, self.tokenizer.src_vocab_size,
                                 self.tokenizer.tgt_vocab_size)
        self.train_data, self.valid_data, self.train_rows = run_splits(
            recipe, task, self.tokenizer, self.model, self.run_dir, log)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr,
                                           betas=self.cfg.betas, weight_decay=self.cfg.weight_decay)
        self.progress = Progress()
        self._ranks_checked, self._saved_step = False, -1
        if resume:
            self._restore()
        self._pace_from = (self.progress.step, self.progress.elapsed)  # (step, elapsed) of this session's start
        self.cross_entropy = CrossEntropy(self.model, self.train_data, self.cfg, self.device,
                                          self.precision)
        self.self_critical = (SelfCriticalObjective(self.model, self.train_data, self.tokenizer,
                                                    self.cfg, recipe.decode.max_len_b, self.device,
                                                    self.precision)
                              if self.cfg.self_critical_from else None)

    def objective_at(self, step: int):
        """The objective of optimiser step `step` (1-based)."""
        return self.self_critical if self_critical_at(self.cfg, step) else self.cross_entropy

    # -- set-up ----------------------------------------------------------------------------------

    def _restore(self) -> None:
        where = resolve_checkpoint(self.run_dir, "last")
        load_weights(self.model, where)
        state = load_trainer_state(where)
        self.optimizer.load_state_dict(state["optimizer"])
        progress = dict(state["progress"])
        if "validated" not in progress:  # saved before s2s recorded it: metrics.jsonl knows
            done = progress["step"] in validated_steps(self.run_dir / METRICS_FILE)
            progress["validated"] = progress["step"] if done else 0
        self.progress = Progress(**progress)
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda_rng"])
        self._saved_step = self.progress.step
        if dist.is_main():
            keep_metrics_until(self.run_dir / METRICS_FILE, self.progress.step)
        self.log(f"resumed from {where} (step {self.progress.step}, epoch {self.progress.epoch})")

    # -- the loop --------------------------------------------------------------------------------

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches in order: a function of (seed, epoch) only; sharded across ranks.

        Rows of the split, or, once self-critical training has begun, image indices."""
        rng = np.random.default_rng([self.cfg.seed, epoch])
        objective = self.objective_at(self.progress.step + 1)
        return dist.shard(objective.batches(self.train_rows, rng))

    def finished(self) -> bool:
        """Whether a limit is reached; under DDP all ranks stop together (clocks differ)."""
        p, c = self.progress, self.cfg
        return dist.any_rank(bool(
            (c.max_steps and p.step >= c.max_steps) or (c.max_epochs and p.epoch > c.max_epochs)
            or (c.max_minutes and p.elapsed >= 60 * c.max_minutes)
            or (c.patience and p.bad_evals >= c.patience)))

    def train(self) -> None:
        p = self.progress
        if self.finished() and p.validated == p.step:
            self.log(f"{self.run_dir} is already finished (step {p.step}, epoch {p.epoch}); nothing "
                     "to do (raise train.max_steps, max_epochs or max_minutes with --set to go on)")
            return
        bar = self._progress_bar()
        if p.step == 0:
            p.elapsed = time.monotonic() - self.created
        started, tokens_at_log, time_at_log = time.monotonic() - p.elapsed, p.target_tokens, p.elapsed
        self._pace_from = (p.step, p.elapsed)  # after data preparation
        stop = _StopOnSignal()
        try:
            while not self.finished():
                batches = self.epoch_batches(p.epoch)
                while p.batch_in_epoch < len(batches) and not self.finished():
                    group = batches[p.batch_in_epoch:p.batch_in_epoch + self.cfg.accumulate]
                    loss = self.train_step(group)
                    p.batch_in_epoch += len(group)
                    p.elapsed = time.monotonic() - started
                    bar.update(1)
                    if p.step % self.cfg.log_every == 0:
                        speed = (p.target_tokens - tokens_at_log) / max(p.elapsed - time_at_log, 1e-9)
                        tokens_at_log, time_at_log = p.target_tokens, p.elapsed
                        self._log_train(bar, loss, speed)
                    switching = p.step == self.cfg.self_critical_from
                    if switching:  # self-critical epochs go over images: a new epoch begins
                        p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                    if self.cfg.eval_every and p.step % self.cfg.eval_every == 0:
                        self.validate_and_save()
                    stop.check()
                    if switching:
                        break
                if p.batch_in_epoch >= len(batches):
                    p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                    if not self.cfg.eval_every:
                        self.validate_and_save()
            if p.validated != p.step:
                self.validate_and_save()
        except StopRequested:
            bar.close()
            if dist.is_main() and self._saved_step != p.step:
                self.save()
            self.log(f"\ninterrupted at step {p.step}: checkpoint saved; continue with "
                     f"`s2s train {self.run_dir} --resume`")
            raise SystemExit(130) from None
        except KeyboardInterrupt:  # a second Ctrl-C: the step may be half done, so no saving
            bar.close()
            self.log(f"\nstopped at once, without saving; `s2s train {self.run_dir} --resume` "
                     "continues from the last checkpoint")
            raise SystemExit(130) from None
        finally:
            stop.restore()
            bar.close()
        self.log(f"done: {p.step} steps in {p.elapsed / 60:.1f} min (epoch {p.epoch}); "
                 f"best {self.cfg.eval_metric} {p.best}; checkpoints in {self.run_dir / CHECKPOINT_DIR}")

    def steps_left(self) -> int | None:
        """Steps after the current one until the run ends: at max_steps, or sooner when
        max_minutes will stop it first (estimated from this session's pace, validations
        included), so that a cool-down ends with a time-limited run on any machine."""
        p, c = self.progress, self.cfg
        left = c.max_steps - p.step if c.max_steps else None
        if not (c.max_minutes and c.cooldown_steps):
            return left
        first_step, first_elapsed = self._pace_from
        if p.step - first_step > 10:
            pace = (p.elapsed - first_elapsed) / (p.step - 1 - first_step)  # seconds per step
            by_time = int((60 * c.max_minutes - p.elapsed) / max(pace, 1e-9))
            left = by_time if left is None else min(left, by_time)
        return dist.from_main(left)  # every rank takes the same lr

    def train_step(self, group: list[np.ndarray]) -> float:
        """One optimiser step; returns the loss per token (or, self-critical, the mean reward)."""
        p = self.progress
        objective = self.objective_at(p.step + 1)
        self.model.train(objective.dropout)
        p.step += 1
        lr = learning_rate(self.cfg, p.step, p.lr_scale, self.steps_left())  # once: may talk to other ranks
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        value, tokens = objective.gradients(group)
        if self.cfg.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        p.target_tokens += tokens
        return value

    # -- validation and checkpoints --------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> tuple[float, Scores]:
        """Validation loss (teacher-forced, no smoothing) and scores of free greedy decoding."""
        self.model.eval()
        data, d = self.valid_data, self.recipe.decode
        total, tokens, loss_fn = 0.0, 0, TokenLoss(self.model, 0.0)
        every = np.arange(len(data))
        for index in token_batches(data.src_lens, data.tgt_lens, every, self.cfg.batch_tokens):
            batch = data.batch(index).to(self.device)
            with autocast(self.device, self.precision):
                total += batch_loss(loss_fn, batch).item()
            tokens += batch.target_tokens
        rows, references = data.decode_units()
        hypotheses: dict[int, str] = {}
        for index in token_batches(data.src_lens, data.tgt_lens, rows, self.cfg.batch_tokens):
            batch = data.batch(index).to(self.device)
            with autocast(self.device, self.precision):
                limit = max_lengths(batch.src_mask, d.max_len_a, d.max_len_b)
                hyps = decode(self.model, batch.src, batch.src_mask, limit, beam=1)
            hypotheses.update(zip(index.tolist(), self.tokenizer.decode_tgt([h[0].tokens for h in hyps])))
        return total / tokens, score([hypotheses[i] for i in rows.tolist()], references)

    def validate_and_save(self) -> None:
        """Rank 0 validates and saves; every rank then adopts its verdict (best, patience, lr)."""
        if dist.active():
            if not dist.parameters_identical(self.model):
                raise RuntimeError("DDP ranks hold different parameters")
            if not self._ranks_checked:
                self.log(f"parameters identical on {dist.world_size()} ranks")
                self._ranks_checked = True
        self.progress.validated = self.progress.step
        if dist.is_main():
            self._validate_and_save()
        p = self.progress
        p.best, p.bad_evals, p.lr_scale = dist.from_main((p.best, p.bad_evals, p.lr_scale))

    def _validate_and_save(self) -> None:
        p = self.progress
        loss, scores = self.validate()
        value = {"bleu": scores.bleu, "exact": scores.exact, "loss": loss}[self.cfg.eval_metric]
        sign = 1 if HIGHER_IS_BETTER[self.cfg.eval_metric] else -1
        improved = p.best is None or sign * (value - p.best) > 0
        if improved:
            p.best, p.bad_evals = value, 0
        else:
            p.bad_evals += 1
            if self.cfg.schedule == "plateau" and p.bad_evals % self.cfg.plateau_patience == 0:
                p.lr_scale *= self.cfg.plateau_factor
        self.log(f"valid step {p.step} | epoch {p.epoch} | loss {loss:.3f} | ppl {math.exp(min(loss, 50)):.2f} | "
                 f"{scores.line()}{' | best' if improved else ''}")
        self._metrics({"kind": "valid", "step": p.step, "epoch": p.epoch, "loss": loss,
                       "bleu": scores.bleu, "chrf": scores.chrf, "exact": scores.exact,
                       "elapsed": round(p.elapsed, 1), "best": improved})
        where = self.save()
        if improved:
            set_pointer(self.run_dir / CHECKPOINT_DIR, "best", where.name)
        prune_checkpoints(self.run_dir / CHECKPOINT_DIR, self.cfg.keep_checkpoints)

    def save(self) -> Path:
        state = {"optimizer": self.optimizer.state_dict(), "progress": vars(self.progress),
                 "rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state()
        self._saved_step = self.progress.step
        return save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.progress.step, self.model, state)

    # -- reporting -------------------------------------------------------------------------------

    def _progress_bar(self):
        c, p = self.cfg, self.progress
        total = c.max_steps or None
        return tqdm(total=total, initial=p.step, desc="train", unit="step", dynamic_ncols=True,
                    disable=not (sys.stderr.isatty() and dist.is_main()), leave=False)

    def _log_train(self, bar, loss: float, speed: float) -> None:
        p, c = self.progress, self.cfg
        lr = self.optimizer.param_groups[0]["lr"]
        name = self.objective_at(p.step).name
        eta = ""
        if c.max_minutes:
            eta = f" | {max(60 * c.max_minutes - p.elapsed, 0) / 60:.1f} min left"
        if bar.disable:
            self.log(f"step {p.step} | epoch {p.epoch} | {name} {loss:.3f} | lr {lr:.2e} | "
                     f"{speed:,.0f} tok/s | {p.elapsed / 60:.1f} min{eta}")
        else:
            bar.set_postfix_str(f"epoch {p.epoch} {name} {loss:.3f} lr {lr:.1e} {speed:,.0f} tok/s{eta}")
        self._metrics({"kind": "train", "step": p.step, "epoch": p.epoch, name: loss, "lr": lr,
                       "tokens_per_s": round(speed, 1), "elapsed": round(p.elapsed, 1)})

    def _metrics(self, record: dict) -> None:
        if dist.is_main():
            with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if self.tensorboard:
                self.tensorboard.write(record)


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop the lines a resumed run will write again (and a half line a kill left), atomically:
    a reader of metrics.jsonl sees each step once, in order."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if line.endswith("\n") and record.get("step", 0) <= step:
            kept.append(line)
    if kept != lines:
        atomic_write_text(path, "".join(kept))


def validated_steps(path: Path) -> set[int]:
    """The steps with a validation line in metrics.jsonl."""
    steps = set()
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("kind") == "valid":
                steps.add(record.get("step"))
    return steps


class StopRequested(Exception):
    """Raised at a step boundary after Ctrl-C or SIGTERM: the state is whole, save it."""


class _StopOnSignal:
    """Turn Ctrl-C (SIGINT) and SIGTERM into a request to stop at the next step boundary.

    A signal handled where it lands (inside a step, inside the optimiser) would leave a state
    that is half updated, and a resumed run would diverge. The first signal only sets a flag,
    checked between steps, then saved from; a second one gets the default handling back and
    stops at once (without saving).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.previous = {}
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            self.restore()

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signum, self.previous[signum])

    def check(self) -> None:
        """At a step boundary: stop if any rank was asked to (all ranks stop together)."""
        if dist.any_rank(self.requested):
            raise StopRequested

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def check_resumable(run_dir: Path) -> None:
    if not (run_dir / CHECKPOINT_DIR / "last").exists():
        raise UserError(f"nothing to resume in {run_dir} (no checkpoints/last)")


def prepare_run(recipe: Recipe, run_dir: Path, resume: bool, overwrite: bool) -> Recipe:
    """Create (or check) the run directory and save the recipe the run goes on with.

    On resume that is the saved recipe plus this call's overrides: a later resume, `evaluate`
    or `translate` sees the limits and settings the run really had. Called with the run
    directory locked.
    """
    ckpts = run_dir / CHECKPOINT_DIR
    if dist.is_main():
        remove_stale_temps(ckpts)
    dist.barrier()
    if resume:
        check_resumable(run_dir)
        if dist.is_main():
            save_recipe(recipe, run_dir / RECIPE_FILE)
        return recipe
    if has_checkpoints(ckpts):
        if not overwrite:
            raise UserError(f"{run_dir} already holds a trained run; use --resume to continue it, "
                            "--overwrite to start again, or --run-dir for a new directory")
    if dist.is_main():
        if overwrite and run_dir.exists():
            clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, run_dir / RECIPE_FILE)
    dist.barrier()
    return recipe


def resolve_recipe(name: str, overrides, run_dir: Path | None, resume: bool) -> tuple[Recipe, Path]:
    """The recipe `s2s train NAME` runs and its run directory.

    NAME is a recipe name or file (run directory: runs/NAME unless given), or a run directory.
    Resuming a run uses its saved recipe (plus this call's overrides), so later changes to the
    recipe file do not change a run half-way.
    """
    if (Path(name) / RECIPE_FILE).is_file():  # a run directory
        saved = load_run_recipe(Path(name))
        return recipe_from_dict(apply_overrides(recipe_to_dict(saved), overrides)), run_dir or Path(name)
    recipe = load_recipe(name, overrides)
    run_dir = run_dir or Path("runs") / recipe.name
    if resume and (run_dir / RECIPE_FILE).is_file():
        saved = load_run_recipe(run_dir)
        recipe = recipe_from_dict(apply_overrides(recipe_to_dict(saved), overrides))
    return recipe, run_dir


@contextlib.contextmanager
def exclusive(run_dir: Path):
    """Hold the run directory's lock for the whole run (rank 0 holds it for every rank)."""
    lock, refused = None, None
    if dist.is_main():
        try:
            lock = RunLock.acquire(run_dir)
        except UserError as e:
            refused = str(e)
    refused = dist.from_main(refused)
    if refused:
        raise UserError(refused)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def train(recipe: Recipe, run_dir: Path, device: str = "auto", resume: bool = False,
          overwrite: bool = False, log=say) -> Trainer:
    """Train `recipe` into `run_dir` (a library entry point; `s2s train` is a thin shell on it)."""
    run_dir = Path(run_dir)
    if resume and not run_dir.is_dir():
        check_resumable(run_dir)  # before the lock creates the directory
    with exclusive(run_dir):
        prepare_run(recipe, run_dir, resume, overwrite)
        trainer = Trainer(recipe, run_dir, device, resume, log if dist.is_main() else (lambda *a: None))
        trainer.train()
    return trainer

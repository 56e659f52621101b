"""Checkpoints that survive being killed at any moment, and load without unpickling.

Layout under a run directory:

    checkpoints/step-00001200/model.safetensors   weights (safetensors: tensors only, no code)
    checkpoints/step-00001200/trainer.pt          optimiser, schedule, RNG, data position
    checkpoints/last -> step-00001200             pointers, swapped atomically
    checkpoints/best -> step-00001000

A step directory is written under a temporary name and renamed into place, then the pointer is
replaced with `os.replace`; a run killed at any instant leaves either the old checkpoint or the
new one, never half of one. `trainer.pt` is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from s2s.errors import UserError
from s2s.files import atomic_directory

WEIGHTS, TRAINER = "model.safetensors", "trainer.pt"
ASIDE = ".old."  # a re-saved step waits in .NAME.old.*/NAME until its new copy is in (files.py)


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(root: Path, step: int, model: nn.Module, trainer_state: dict | None) -> Path:
    """Write checkpoints/step-N atomically and point `last` at it."""
    final = root / step_name(step)
    try:
        with atomic_directory(final) as tmp:
            save_model(model, str(tmp / WEIGHTS))
            if trainer_state is not None:
                torch.save(trainer_state, tmp / TRAINER)
    except BaseException as e:
        if out_of_space(e):
            need = tensor_bytes(model.state_dict()) + tensor_bytes(trainer_state)
            free = shutil.disk_usage(root).free
            raise UserError(f"no space left on the device of {root.parent} to write checkpoint "
                            f"{final.name} (it needs about {need / 2**20:,.1f} MB, "
                            f"{free / 2**20:,.1f} MB free); the last checkpoint is intact: free "
                            f"some space, then `s2s train {root.parent} --resume`") from None
        raise
    set_pointer(root, "last", final.name)
    return final


def out_of_space(error: BaseException) -> bool:
    """Whether a failed write ran out of disk space (or quota).

    torch.save reports it as a RuntimeError from its zip writer (`inline_container`) that says
    only that the write failed; safetensors as a SafetensorError quoting the OS error.
    """
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    if isinstance(error, RuntimeError) and "inline_container" in text:
        return any(m in text for m in ("file write failed", "unexpected pos", "failed writing"))
    return isinstance(error, SafetensorError) and f"os error {errno.ENOSPC}" in text


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) state dict: about what a checkpoint of it takes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def remove_stale_temps(root: Path) -> None:
    """Clear what a killed save left in checkpoints/: temp entries (names starting with ".").

    Only with the run directory locked (a live save owns its temp entries). A step renamed
    aside (`.NAME.old.*/NAME`) whose new copy never arrived is renamed back.
    """
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if not entry.name.startswith("."):
            continue
        original = root / entry.name[1:].split(ASIDE)[0]
        if ASIDE in entry.name and (entry / original.name).is_dir() and not original.exists():
            os.replace(entry / original.name, original)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def has_checkpoints(root: Path) -> bool:
    """Whether checkpoints/ holds anything but temp entries (names starting with ".")."""
    return root.is_dir() and any(not p.name.startswith(".") for p in root.iterdir())


def set_pointer(root: Path, name: str, target: str) -> None:
    """Atomically make `root/name` a relative symlink to `root/target`."""
    tmp = root / f".{name}.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, root / name)


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` step directories, never the one `best` points to."""
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    protected = {(root / n).resolve() for n in ("best", "last") if (root / n).exists()}
    for old in steps[: max(len(steps) - keep, 0)]:
        if old.resolve() not in protected:
            shutil.rmtree(old)


def resolve_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """The directory of checkpoint `which` (best | last | step-N | a path) of a run."""
    candidate = Path(which)
    if (candidate / WEIGHTS).is_file():
        return candidate
    path = Path(run_dir) / "checkpoints" / which
    if not (path / WEIGHTS).is_file() and which == "best":
        path = Path(run_dir) / "checkpoints" / "last"  # trained without validation
    if not (path / WEIGHTS).is_file():
        raise UserError(f"no checkpoint {which!r} in {run_dir} (missing {path / WEIGHTS}); "
                        "train first with `s2s train`")
    return path


def load_weights(model: nn.Module, checkpoint: Path) -> None:
    """Load safetensors weights into a model, strictly; a damaged file is a user error."""
    path = Path(checkpoint) / WEIGHTS
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise UserError(f"checkpoint {path} is corrupt or incomplete ({str(e).splitlines()[0]}); "
                        "use another checkpoint or retrain") from None
    if missing or unexpected:
        raise UserError(f"checkpoint {path} does not fit this model (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}); was the recipe changed?")


def load_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    path = Path(checkpoint) / WEIGHTS
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"checkpoint {path} is corrupt or incomplete ({e})") from None


def load_trainer_state(checkpoint: Path) -> dict:
    path = Path(checkpoint) / TRAINER
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # unpickling errors come in many types; all mean "damaged"
        raise UserError(f"trainer state {path} is corrupt or missing ({type(e).__name__}); "
                        "resume from another checkpoint or retrain") from None


def check_checkpoint_name(name: str) -> None:
    """A name for a new checkpoint: one plain entry of checkpoints/, never the run's own ones.

    `last`, `best` and `step-N` belong to training (replacing one would break `--resume`);
    a path or a name starting with "." (the temp entries) would write outside or be swept away.
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"--name {name!r} is not a plain name: give one without '/' or '..' "
                        "(the checkpoint is written under the run's checkpoints/)")
    if name in ("last", "best") or name.startswith(("step-", ".")):
        raise UserError(f"--name {name!r} is reserved for the run's own checkpoints (last, best, "
                        "step-N) and temporary entries (.*); choose another name")


def average_checkpoints(run_dir: Path, last: int, name: str | None = None) -> Path:
    """Average the weights of the newest `last` step checkpoints into checkpoints/NAME.

    Averaging the last few checkpoints of a run smooths out the noise of the final updates and
    usually gains a little BLEU for free (Vaswani et al. 2017 averaged the last 5 or 20).
    """
    if name is not None:
        check_checkpoint_name(name)
    root = Path(run_dir) / "checkpoints"
    steps = sorted(p for p in root.glob("step-*") if (p / WEIGHTS).is_file())
    if last < 1 or len(steps) < last:
        raise UserError(f"{root} has {len(steps)} step checkpoints, cannot average the last {last} "
                        "(train.keep_checkpoints sets how many are kept)")
    chosen = steps[-last:]
    total: dict[str, torch.Tensor] = {}
    for path in chosen:
        for key, value in load_tensors(path).items():
            total[key] = total.get(key, 0) + value.double()
    first = load_tensors(chosen[0])
    averaged = {k: (v / len(chosen)).to(first[k].dtype).contiguous() for k, v in total.items()}
    final = root / (name or f"average-last{last}")
    with atomic_directory(final) as tmp:
        save_file(averaged, str(tmp / WEIGHTS),
                  metadata={"averaged": ",".join(p.name for p in chosen)})
    return final

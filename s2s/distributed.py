"""Multi-process data parallel training with `torchrun` (PyTorch DDP): gloo on CPU, NCCL on GPU.

Each rank takes every world_size-th batch of the same (seeded) epoch order, gradients are averaged
by DDP, and only rank 0 logs, validates and writes. With one process every helper is a no-op.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as td
from torch import nn


def init_from_env() -> None:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not td.is_initialized():
        td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def active() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if active() else 0


def world_size() -> int:
    return td.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        td.barrier()


def device_for_rank(device: str) -> str:
    """Each rank gets its own GPU (LOCAL_RANK); CPU ranks share the CPU."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def shard(batches: list) -> list:
    """This rank's share of the batches; every rank gets the same number of them."""
    if not active():
        return batches
    usable = len(batches) - len(batches) % world_size()
    return batches[rank():usable:world_size()]


def all_sum(value: float | int) -> float | int:
    if not active():
        return value
    t = torch.tensor(float(value), dtype=torch.float64)
    td.all_reduce(t)
    return type(value)(t.item())


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    if not active():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def no_sync_unless(module: nn.Module, sync: bool):
    """Skip the gradient all-reduce for all but the last of several accumulated batches."""
    if sync or not isinstance(module, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step)."""
    if not active():
        return flag
    t = torch.tensor(int(flag))
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())


def from_main(value):
    """Rank 0's value of a picklable object, on every rank."""
    if not active():
        return value
    box = [value]
    td.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(module: nn.Module) -> None:
    """Average gradients over ranks after a backward pass that did not go through DDP's forward
    (self-critical training samples from the bare model)."""
    if not active():
        return
    for param in module.parameters():
        if param.grad is not None:
            td.all_reduce(param.grad)
            param.grad /= world_size()


def parameters_identical(module: nn.Module) -> bool:
    """Whether every rank holds the same parameters (a cheap checksum, compared across ranks)."""
    if not active():
        return True
    with torch.no_grad():
        checksum = torch.stack([p.double().sum() for p in module.parameters()]).cpu()
    gathered = [torch.empty_like(checksum) for _ in range(world_size())]
    td.all_gather(gathered, checksum)
    return all(torch.equal(gathered[0], g) for g in gathered)

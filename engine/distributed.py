"""Data-parallel meta-training under torchrun: each process's share of a meta-batch, and the
all-reduces that make N processes compute the one-process meta-gradient and curves.

A meta-batch is a list of episodes drawn from the seeded stream; every process draws the whole
list (so the stream is the one a single process sees) and adapts to its contiguous share only.
The functional inner loop does not fit DistributedDataParallel (the meta-gradient flows through
per-task parameter dicts, not one module call), so the summed meta-gradients are all-reduced here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0 (or no process group): the one process that writes checkpoints, logs and progress."""
    return world()[0] == 0


def launched_world_size() -> int:
    """The world size torchrun announced in the environment (1 when not launched by it)."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(text))
    except ValueError:
        raise RuntimeError(f"WORLD_SIZE must be an integer, got {text!r}") from None


def init_from_env(device: str) -> bool:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...): gloo for CPU tensors, NCCL for CUDA ones, each process on the GPU of its
    LOCAL_RANK. Returns True if a group of more than one process is now initialised."""
    if launched_world_size() == 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo")
    return True


def shutdown(wait_for_others: bool = True) -> None:
    """Leave the process group. After a clean run every process first waits for the others: a
    gloo process that tears down its connections while a peer still uses them aborts the peer
    ("terminate called without an active exception"). After a failure nobody waits (the others
    may never arrive)."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_others:
            dist.barrier()
        dist.destroy_process_group()


def shard(items: Sequence[T], rank: int, size: int) -> list[T]:
    """Rank ``rank``'s contiguous share of ``items``; shares differ in length by at most one, in order."""
    n = len(items)
    return list(items[rank * n // size : (rank + 1) * n // size])


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum each number over all processes (float64, so sums of float32 losses lose nothing)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (so all stop together)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum the gradients over all processes in one fused all-reduce.

    A process whose share touched no path to a parameter (or that had no tasks) holds None there;
    it takes zeros wherever another process has a gradient, so every process ends with the same
    set of gradients, and a parameter no process reached keeps None (as in one process)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    device = params[0].device
    has = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    reached = [p for p, h in zip(params, has.tolist()) if h > 0]
    for p in reached:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not reached:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in reached])
    dist.all_reduce(flat)
    offset = 0
    for p in reached:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (the same start, whatever each built)."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)

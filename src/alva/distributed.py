"""Runs over several processes with ``torchrun``: a thin layer over :mod:`torch.distributed`.

``torchrun --nproc_per_node N -m alva.cli.main train ...`` starts N processes and sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_from_env` joins them into one process group (gloo on CPU,
NCCL on GPUs). Without ``WORLD_SIZE`` nothing is initialised and every helper here answers as for one process,
so single-process code paths are unchanged.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def is_initialized() -> bool:
    """Whether this process is part of a process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process of the group (nothing without a group)."""
    if is_initialized():
        dist.barrier()


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """The indices of ``range(n)`` that process ``rank`` of ``world`` handles: ``rank, rank + world, ...``.

    The shards of all ranks are disjoint and together cover ``range(n)``.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank} and world {world}")
    return list(range(rank, n, world))


def all_gather_objects(obj: T) -> list[T]:
    """``obj`` of every rank, in rank order (``[obj]`` without a group): :func:`torch.distributed.all_gather_object`."""
    if not is_initialized():
        return [obj]
    gathered: list[Any] = [None] * world_size()  # filled with every rank's obj
    dist.all_gather_object(gathered, obj)
    return gathered


def init_from_env(device: str | torch.device = "cpu") -> str:
    """Join the process group that ``torchrun`` describes in the environment and return the device to use.

    With ``WORLD_SIZE`` unset (a plain run) nothing happens and ``device`` is returned as it is. Otherwise the
    backend is NCCL for a CUDA ``device`` (each process on GPU ``LOCAL_RANK``: ``cuda:LOCAL_RANK``) and gloo
    on CPU. Calling it again in an initialised process is harmless.
    """
    device = str(device)
    if "WORLD_SIZE" not in os.environ:
        return device
    cuda = device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group, if any (at the end of a command)."""
    if is_initialized():
        dist.destroy_process_group()

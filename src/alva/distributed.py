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


def shard_indices(n: int, rank: int | None = None, world: int | None = None) -> list[int]:
    """The indices of ``range(n)`` that process ``rank`` of ``world`` handles: ``rank, rank + world, ...``.

    The shards of all ranks are disjoint and together cover ``range(n)``. ``rank`` and ``world`` default to
    this process's (:func:`rank`, :func:`world_size`): without a group, every index.
    """
    here = (dist.get_rank(), dist.get_world_size()) if is_initialized() else (0, 1)
    rank = here[0] if rank is None else rank
    world = here[1] if world is None else world
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


def _gather_tensor(t: torch.Tensor) -> list[torch.Tensor]:
    """``t`` of every rank in rank order; the first dimension may differ between ranks (padded to send)."""
    if not is_initialized():
        return [t]
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    wire = t.to(device, torch.uint8 if t.dtype == torch.bool else t.dtype).contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(wire)], dtype=torch.long, device=device))
    longest = max(int(s) for s in sizes)
    padded = torch.zeros((longest, *wire.shape[1:]), dtype=wire.dtype, device=device)
    padded[:len(wire)] = wire
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return [p[:int(s)].to(t.device, t.dtype) for p, s in zip(parts, sizes, strict=True)]


def gather_samples(index: torch.Tensor, values: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample tensors of every rank merged into one set, ordered by the samples' global ``index``.

    Each rank gives the global indices of the samples it handled (int64, ``N_rank``) and tensors whose first
    dimension is those samples; every rank gets back the sorted indices of all ranks and the tensors in that
    order: with the shards of :func:`shard_indices`, exactly what one process would have computed. Sent with
    :func:`torch.distributed.all_gather` (no pickling); without a group the input comes back sorted.

    Args:
        index: The global index of each local sample.
        values: Per-sample tensors (first dimension ``len(index)``; bool, integer or float; same trailing
            shape and dtype on every rank).
    """
    index = index.detach().long().cpu()
    for name, t in values.items():
        if len(t) != len(index):
            raise ValueError(f"{name} has {len(t)} rows but there are {len(index)} indices")
    every = torch.cat(_gather_tensor(index))
    order = torch.argsort(every)
    merged = {name: torch.cat(_gather_tensor(t.detach().cpu()))[order] for name, t in values.items()}
    return every[order], merged


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

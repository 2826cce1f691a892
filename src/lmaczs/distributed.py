"""Multi-process helpers for ``torchrun``: world detection, process group, rank-0 work, reductions.

``torchrun --nproc_per_node N`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` for every process; the same
variables set by hand (plus ``MASTER_ADDR``/``MASTER_PORT``) work too. Without them everything here is a no-op for
a single process, so library code can call these helpers unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes; ``device`` its torch device."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # True when :func:`setup` created the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment (``(0, 1, 0)`` without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, size, local


def setup(device: str | None = None) -> World:
    """Join the torchrun job if there is one: gloo on CPU, nccl when the ranks use CUDA.

    Args:
        device: ``None`` picks ``cuda:LOCAL_RANK`` under torchrun when CUDA is available, else CPU.
    """
    rank, size, local = env_world()
    if dist.is_available() and dist.is_initialized():
        rank, size = dist.get_rank(), dist.get_world_size()
    if device is None:
        device = f"cuda:{local}" if size > 1 and torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if size == 1:
        return World(device=dev)
    owns = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=size)
        owns = True
    return World(rank, size, local, dev, owns)


def teardown(world: World) -> None:
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if not world.distributed:
        return
    if world.device.type == "cuda":
        dist.barrier(device_ids=[world.device.index])
    else:
        dist.barrier()


def all_reduce_sum(world: World, values: torch.Tensor) -> torch.Tensor:
    """Sum a float tensor over ranks (returns the input unchanged for one process)."""
    if not world.distributed:
        return values
    out = values.detach().clone().to(world.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(values.device)


def rank_slice(n: int, world: World) -> slice:
    """This rank's equal share of ``n`` items (``n`` must be divisible by the world size)."""
    per = n // world.size
    return slice(world.rank * per, (world.rank + 1) * per)

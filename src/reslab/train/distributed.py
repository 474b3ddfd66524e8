"""torchrun integration: one process per device, PyTorch DDP as the engine.

`torchrun --nproc_per_node=N -m reslab train ...` sets RANK / WORLD_SIZE / LOCAL_RANK;
we join the process group (NCCL on GPUs, gloo on CPUs) and nothing more: process
start-up, rendezvous and restarts are torchrun's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> Dist:
    """Join the process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank, world, local)


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


def broadcast_flag(dist: Dist, flag: bool) -> bool:
    """Rank 0's boolean, on every rank (e.g. 'stop now')."""
    if not dist.enabled:
        return flag
    t = torch.tensor([int(flag)])
    tdist.broadcast(t, 0)
    return bool(t.item())


def shutdown(dist: Dist) -> None:
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()

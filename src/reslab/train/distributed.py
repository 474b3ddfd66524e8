"""torchrun integration: one process per device, PyTorch DDP as the engine.

`torchrun --nproc_per_node=N -m reslab train ...` sets RANK / WORLD_SIZE / LOCAL_RANK;
we join the process group (NCCL on GPUs, gloo on CPUs) and nothing more: process
start-up, rendezvous and restarts are torchrun's. After a restart (`--max-restarts`),
TORCHELASTIC_RESTART_COUNT > 0 and `train` resumes from the run's checkpoints/last.pt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import Tensor, nn


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
        # torchrun's store outlives a restart: without a per-attempt prefix, a restarted rank can read the
        # dead attempt's gloo addresses and wait forever to connect.
        store, _, _ = next(tdist.rendezvous("env://"))
        store = tdist.PrefixStore(f"reslab/attempt{restart_count()}/", store)
        # On GPUs, NCCL for CUDA tensors and gloo for the few CPU ones (flags, the plateau lr).
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
        tdist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
    return Dist(rank, world, local)


def restart_count() -> int:
    """How many times torchrun has restarted this worker group (0 on the first attempt or without torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def elastic_run_id() -> str | None:
    """torchrun's run id, the same on every rank and every restart (a uuid with --standalone);
    None outside torchrun or when left at torchrun's default 'none'."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return run_id if run_id and run_id != "none" else None


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


def broadcast_float(dist: Dist, value: float) -> float:
    """Rank 0's number, on every rank (e.g. the plateau rule's lr)."""
    if not dist.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    tdist.broadcast(t, 0)
    return float(t)


def mean_over_ranks(dist: Dist, t: Tensor) -> Tensor:
    """The element-wise mean of `t` over all ranks (a copy; `t` itself on one process)."""
    if not dist.enabled:
        return t
    t = t.clone()
    tdist.all_reduce(t)
    return t / dist.world


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: the sum's gradient reaches every rank's input."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        t = t.clone()
        tdist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad.contiguous())


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with the statistics of the global batch in training (every rank's share), for CPUs:
    PyTorch's nn.SyncBatchNorm refuses CPU tensors. Each rank must pass the same number of images;
    mean and variance are two all-reduces (two passes: no E[x^2] - E[x]^2 cancellation), in fp32."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and tdist.is_available() and tdist.is_initialized()):
            return super().forward(x)
        n = x.numel() // x.shape[1] * tdist.get_world_size()
        xf = x.float()
        mean = _AllReduceSum.apply(xf.sum((0, 2, 3))) / n
        centred = xf - mean[None, :, None, None]
        var = _AllReduceSum.apply(centred.square().sum((0, 2, 3))) / n
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), m)  # unbiased, as BatchNorm2d keeps it
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """--sync-bn: nn.SyncBatchNorm on CUDA; on CPU each BatchNorm2d becomes a GlobalBatchNorm2d in place
    (same parameters and buffers, same state-dict names)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
    return model


def shutdown(dist: Dist) -> None:
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()

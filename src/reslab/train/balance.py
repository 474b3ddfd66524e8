"""Imbalanced data: class-balanced sampling or inverse-frequency loss weights (`--balance`).

Neither is in the paper, whose datasets are balanced; both are the usual remedies (e.g.
torch.utils.data.WeightedRandomSampler; the "balanced" class weights of scikit-learn,
N / (k * n_c), King & Zeng 2001).

`sampler`: each epoch has as many draws as the training set has images, split equally between
the classes (the remainder to classes chosen by the seed); a class cycles through seeded
permutations of its images, so a rare class's images are each seen about equally often. The
order is a pure function of (seed, epoch), like the plain permutation (train/batches.py), so a
resumed run draws the same batches bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler


def class_counts(labels: Tensor, num_classes: int) -> Tensor:
    """labels (N,) int64 -> images per class (K,) int64."""
    return torch.bincount(labels.cpu(), minlength=num_classes)


def loss_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Inverse-frequency cross-entropy weights (K,) float32: N / (K * n_c), 1 for every class of a
    balanced set; a class without training images gets weight 0 (it has no loss term anyway)."""
    counts = class_counts(labels, num_classes).double()
    w = len(labels) / (num_classes * counts)
    return torch.where(counts > 0, w, torch.zeros_like(w)).float()


def balanced_order(labels: Tensor, g: torch.Generator) -> Tensor:
    """One epoch of class-balanced draws: (N,) int64 indices into labels (N,), each class present
    drawn N // K or N // K + 1 times, in a random order drawn from `g`."""
    labels = labels.cpu()
    present = labels.unique()
    k, n = len(present), len(labels)
    share = torch.full((k,), n // k, dtype=torch.long)
    share[torch.randperm(k, generator=g)[:n % k]] += 1
    draws = []
    for c, m in zip(present.tolist(), share.tolist(), strict=True):
        members = (labels == c).nonzero().flatten()
        cycles = -(-m // len(members))
        perms = [members[torch.randperm(len(members), generator=g)] for _ in range(cycles)]
        draws.append(torch.cat(perms)[:m])
    order = torch.cat(draws)
    return order[torch.randperm(n, generator=g)]


class BalancedSampler(Sampler[int]):
    """`balanced_order` as a DataLoader sampler for image folders: epoch `set_epoch(e)` is seeded by
    (seed, e), and process `rank` of `world` takes every world-th draw (as DistributedSampler does)."""

    def __init__(self, targets: list[int], *, seed: int, rank: int = 0, world: int = 1) -> None:
        self.labels = torch.tensor(targets, dtype=torch.long)
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels) // self.world

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)  # DistributedSampler's seeding
        order = balanced_order(self.labels, g)
        return iter(order[self.rank::self.world][:len(self)].tolist())


def epoch_order(mode: str, labels: Tensor):
    """For InMemoryBatches: the class-balanced epoch order with `mode` "sampler", else None (a permutation)."""
    if mode != "sampler":
        return None
    cpu = labels.cpu()
    return lambda g: balanced_order(cpu, g)


def class_weight(mode: str, labels: Tensor, num_classes: int, device: torch.device) -> Tensor | None:
    """The cross-entropy weights (K,) on `device` with `mode` "loss", else None (unweighted)."""
    return loss_weights(labels, num_classes).to(device) if mode == "loss" else None

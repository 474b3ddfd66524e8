"""Where training batches come from.

In-memory datasets: batch `it` is a pure function of (seed, it): the epoch's permutation
is seeded by the epoch and the augmentation draws by the iteration. Resuming at any
iteration therefore replays exactly the batches an uninterrupted run would see, and in
multi-process training each rank takes its own slice of the same global batch.

No host sync per batch on CUDA: the training images are normalised once, on their device (the
same element-wise arithmetic as normalising each batch, so the same bits); the epoch's
permutation moves to the device once per epoch; the augmentation draws, made on the CPU from
the seeded generator, travel through pinned memory without blocking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from reslab.console import plural
from reslab.data.augment import BatchAugment, CropFlip, crop_flip
from reslab.data.datasets import InMemoryDataset
from reslab.errors import ReslabError


def _seed(*parts: int) -> int:
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p + 0x632BE59BD9B4E019 + (h << 6) + (h >> 2))) & 0x7FFF_FFFF_FFFF_FFFF
    return h


class InMemoryBatches:
    """Global batches of `batch_size` drawn without replacement each epoch (last partial batch
    dropped); this process's share is rows [rank*b, (rank+1)*b) with b = batch_size // world.
    `order(g)`: an epoch's (N,) indices drawn from the epoch's generator instead of a permutation
    (train/balance.py's class-balanced draws)."""

    def __init__(self, data: InMemoryDataset, aug: BatchAugment, *, batch_size: int, seed: int,
                 augment: bool = True, rank: int = 0, world: int = 1,
                 order: Callable[[torch.Generator], Tensor] | None = None) -> None:
        if batch_size % world:
            raise ReslabError(f"batch size {batch_size} is not divisible by the {world} processes; pass a "
                              f"--batch-size that is a multiple of {world}. Received: --batch-size {batch_size}")
        self.data, self.aug, self.augment = data, aug, augment
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.order = order or (lambda g: torch.randperm(len(data), generator=g))
        self.steps_per_epoch = len(data) // batch_size
        if self.steps_per_epoch < 1:
            raise ReslabError(f"the training set has {plural(len(data), 'image')}, fewer than one batch; lower "
                              f"--batch-size. "
                              f"Received: --batch-size {batch_size}")
        self.device = data.labels.device
        self.images = aug.normalize(data.images)  # (N, C, H, W) float32 on the data's device
        self._perm_epoch, self._perm = -1, torch.empty(0)

    def indices(self, it: int) -> Tensor:
        """This rank's sample indices of global iteration `it`."""
        epoch, step = divmod(it, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(_seed(self.seed, epoch))
            self._perm, self._perm_epoch = _to(self.order(g), self.device), epoch
        local = self.batch_size // self.world
        start = step * self.batch_size + self.rank * local
        return self._perm[start:start + local]

    def batch(self, it: int) -> tuple[Tensor, Tensor]:
        """This rank's share of global batch `it`: images (b, C, H, W) float32, labels (b,) int64."""
        idx = self.indices(it)
        x, y = self.images[idx], self.data.labels[idx]
        if self.augment:
            # Draw for the whole global batch, then take this rank's rows: every world size sees
            # the same augmented global batch.
            g = torch.Generator().manual_seed(_seed(self.seed, it, 1))
            params = self.aug.sample(self.batch_size, g)
            local = self.batch_size // self.world
            params = CropFlip(*(_to(p[self.rank * local:(self.rank + 1) * local], self.device) for p in params))
            x = crop_flip(x, self.aug.pad, params)
        return x, y


def _to(t: Tensor, device: torch.device) -> Tensor:
    """`t` (on the CPU) on `device`; to a GPU through pinned memory, so the host does not wait."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class LoaderBatches:
    """Batches from a DataLoader (folder datasets), consumed in order; resuming mid-epoch
    skips the batches already seen (the random transforms then differ from the first run)."""

    def __init__(self, make_loader, steps_per_epoch: int) -> None:  # make_loader(epoch) -> DataLoader
        self.make_loader, self.steps_per_epoch = make_loader, steps_per_epoch
        self._it: Iterator | None = None
        self._next = -1

    def batch(self, it: int) -> tuple[Tensor, Tensor]:
        if it != self._next or self._it is None:
            epoch, step = divmod(it, self.steps_per_epoch)
            self._it = iter(self.make_loader(epoch))
            for _ in range(step):
                next(self._it)
        elif it % self.steps_per_epoch == 0:
            self._it = iter(self.make_loader(it // self.steps_per_epoch))
        self._next = it + 1
        return next(self._it)

"""MixUp and CutMix on the training batch (not in the paper; `--mixup`, `--cutmix`, the modern recipe).

MixUp (Zhang et al. 2018) blends each image with its neighbour in the batch by a Beta(alpha, alpha)
share; CutMix (Yun et al. 2019) pastes a box of the neighbour in, the box's area setting the share.
Both are torchvision.transforms.v2's, applied to the batch where it already is (on the GPU for the
in-memory datasets: nothing waits for the device); with both alphas set each batch uses one of the two,
picked with equal odds (v2.RandomChoice), as torchvision's reference recipe does. The labels become soft
targets (N, K) whose rows sum to 1, which the loss takes as they are (train/step.py).

The draws of batch `it` are seeded by (seed, it), like its crop and flip (train/batches.py): a resumed
run mixes exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import v2

from reslab.train.batches import InMemoryBatches, LoaderBatches, _seed
from reslab.train.config import TrainConfig


def batch_mixer(mixup: float, cutmix: float, num_classes: int) -> v2.Transform | None:
    """The v2 transform (images (N, C, H, W), labels (N,)) -> (mixed images, soft labels (N, K)), or
    None when both alphas are 0."""
    mixers = [t(alpha=a, num_classes=num_classes) for t, a in ((v2.MixUp, mixup), (v2.CutMix, cutmix)) if a > 0]
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


class MixedBatches:
    """`inner`'s batches on `device`, mixed: images (b, C, H, W) float32, soft labels (b, K) float32."""

    def __init__(self, inner: InMemoryBatches | LoaderBatches, mixer: v2.Transform, device: torch.device,
                 seed: int) -> None:
        self.inner, self.mixer, self.device, self.seed = inner, mixer, device, seed
        self.steps_per_epoch = inner.steps_per_epoch

    def batch(self, it: int) -> tuple[Tensor, Tensor]:
        x, y = self.inner.batch(it)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with torch.random.fork_rng(devices=[]):  # v2 draws from the global CPU generator, restored after
            torch.default_generator.manual_seed(_seed(self.seed, it, 2))  # the CPU's only: CUDA's is untouched
            return self.mixer(x, y)


def mixed(batches: InMemoryBatches | LoaderBatches, cfg: TrainConfig, num_classes: int,
          device: torch.device) -> InMemoryBatches | LoaderBatches | MixedBatches:
    """`batches`, mixed when `cfg.mixup` or `cfg.cutmix` is set."""
    mixer = batch_mixer(cfg.mixup, cfg.cutmix, num_classes)
    return batches if mixer is None else MixedBatches(batches, mixer, device, cfg.seed)

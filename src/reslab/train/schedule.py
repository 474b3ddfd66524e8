"""Learning-rate schedules as plain functions of the iteration (and, for plateau, of history)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def step_lr(it: int, *, base_lr: float, milestones: tuple[int, ...], gamma: float = 0.1,
            warmup_iters: int = 0, warmup_lr: float = 0.01) -> float:
    """The paper's CIFAR schedule: `base_lr`, times `gamma` at each milestone passed.

    With `warmup_iters`, iterations [0, warmup_iters) use `warmup_lr` (Section 4.2, ResNet-110).
    """
    if it < warmup_iters:
        return warmup_lr
    return base_lr * gamma ** sum(it >= m for m in milestones)


def cosine_lr(it: int, *, base_lr: float, total: int, warmup_iters: int = 0, warmup_lr: float = 0.01) -> float:
    """Cosine decay to zero (Loshchilov & Hutter 2017); not the paper's, offered for short budgets."""
    if it < warmup_iters:
        return warmup_lr
    t = (it - warmup_iters) / max(1, total - warmup_iters)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(t, 1.0)))


@dataclass
class Plateau:
    """Section 3.4: divide the lr by 10 when the validation error stops improving.

    `patience` evaluations without an improvement of at least `threshold` (relative) trigger
    a division; the state is saved in checkpoints.
    """

    lr: float
    patience: int = 3
    threshold: float = 1e-3
    gamma: float = 0.1
    best: float = math.inf
    bad_evals: int = 0

    def step(self, val_error: float) -> float:
        if val_error < self.best * (1 - self.threshold):
            self.best, self.bad_evals = val_error, 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                self.lr *= self.gamma
                self.bad_evals = 0
        return self.lr

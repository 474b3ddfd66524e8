"""The learning-rate schedule: one `Schedule` built from the config and the epoch length.

It owns the rescaling of the recipe's reference schedule, the warm-up (a count, or Section 4.2's
"until the training error is below 80%" rule), the step / plateau / cosine decay, `lr(it)`, and
the state a checkpoint must carry so a resumed run follows the same schedule.

One rescaling rule for `--iterations N` and `--epochs E` (E x steps per epoch iterations): the
milestones keep their fraction of the run (`rescale_milestones`); the warm-up keeps its length in
iterations and is never cut, because it exists to get past the first iterations, not to last a
fraction of training (with the error rule it ends by itself once the error is below the threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

WARMUP_WINDOW = 10  # mini-batches whose mean training error the warm-up rule compares with its threshold
# Section 4.2: "For the 110-layer network, we use 0.01 to warm up the training until the training error
# is below 80% (about 400 iterations), and then go back to 0.1". Applied to ResNet-110 and deeper: lr
# 0.01 until the mean training error of the last WARMUP_WINDOW mini-batches is below 80%, at most 400
# iterations (the paper's estimate; the cap also ends it where 80% means little, e.g. 100 classes).
WARMUP_DEPTH = 110
WARMUP_BELOW = 0.8
WARMUP_CAP = 400


def paper_warmup(recipe: str, family: str, depth: int) -> tuple[int, float] | None:
    """(iterations at most, error threshold) of Section 4.2's warm-up where the paper uses it: the CIFAR
    recipe on CIFAR nets of depth 110 and more; None elsewhere."""
    if recipe == "cifar-paper" and family == "cifar" and depth >= WARMUP_DEPTH:
        return WARMUP_CAP, WARMUP_BELOW
    return None


class ScheduleConfig(Protocol):
    """The fields of a run's config that make its schedule (train/config.py's TrainConfig has them)."""

    schedule: str
    lr: float
    iterations: int
    epochs: float | None
    milestones: tuple[int, ...]
    gamma: float
    warmup_iters: int
    warmup_below: float | None
    warmup_lr: float
    warmup_shape: str
    plateau_patience: int


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


def linear_warmup_lr(it: int, *, base_lr: float, warmup_iters: int, warmup_lr: float) -> float:
    """Goyal et al. 2017's gradual warm-up: from `warmup_lr` at iteration 0 in equal steps towards
    `base_lr`, which iteration `warmup_iters` (the schedule's first) reaches."""
    return warmup_lr + (base_lr - warmup_lr) * it / warmup_iters


def rescale_milestones(milestones: tuple[int, ...], reference: int, total: int) -> tuple[int, ...]:
    """Milestones of a `reference`-iteration schedule moved to a `total`-iteration run, each keeping
    its fraction of the run (at least iteration 1; one that lands on the end is dropped)."""
    return tuple(sorted({max(1, round(m * total / reference)) for m in milestones} - {total}))


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


@dataclass
class WarmupRule:
    """Section 4.2's warm-up: lr 0.01 "until the training error is below 80%", then the schedule.

    With `below` None the warm-up lasts `length` iterations. With `below`, `length` is the cap and
    becomes the iteration after which the mean training error of the last WARMUP_WINDOW mini-batches
    first fell below `below`. Saved in checkpoints, so a resumed run switches at the same iteration.
    """

    length: int
    below: float | None = None
    ended: bool = False
    recent: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ended = self.ended or self.below is None or self.length == 0

    def active(self, it: int) -> bool:
        """Whether iteration `it`'s training error decides when the warm-up ends."""
        return not self.ended and it < self.length

    def recent_mean(self) -> float:
        return sum(self.recent) / max(1, len(self.recent))

    def observe(self, it: int, err: float) -> bool:
        """Record iteration `it`'s (global) mini-batch error; True when the warm-up ends here."""
        self.recent = [*self.recent, err][-WARMUP_WINDOW:]
        assert self.below is not None
        if self.recent_mean() < self.below or it + 1 >= self.length:
            self.length, self.ended = it + 1, True
        return self.ended

    def state(self) -> dict[str, Any]:
        return {"length": self.length, "below": self.below, "ended": self.ended, "recent": list(self.recent)}


@dataclass
class Schedule:
    """lr(it) for a run of `total` iterations: warm-up at `warmup_lr`, then step / plateau / cosine.

    The warm-up is constant at `warmup_lr` (the paper's, Section 4.2) or, with `warmup_shape`
    "linear", a ramp from `warmup_lr` at iteration 0 towards `base_lr` (Goyal et al. 2017, "gradual
    warmup"; not in the paper).

    Like flax's `create_learning_rate_fn`: built once from the config (`from_config`), then asked
    for `lr(it)`; `observe` feeds the warm-up rule its training errors and `evaluated` the plateau
    rule its validation errors. `state_dict` / `load_state_dict` carry both through checkpoints.
    """

    kind: str  # step | plateau | cosine
    base_lr: float
    total: int
    milestones: tuple[int, ...]
    gamma: float
    warmup_lr: float
    warmup: WarmupRule
    plateau: Plateau | None = None
    warmup_shape: str = "constant"  # constant | linear

    @classmethod
    def from_config(cls, cfg: ScheduleConfig, steps_per_epoch: int) -> Schedule:
        """`cfg`'s schedule (in `cfg.iterations` units), rescaled to `cfg.epochs` epochs when given."""
        total, milestones = cfg.iterations, tuple(cfg.milestones)
        if cfg.epochs is not None:
            total = max(1, round(cfg.epochs * steps_per_epoch))
            milestones = rescale_milestones(milestones, cfg.iterations, total)
        plateau = Plateau(cfg.lr, patience=cfg.plateau_patience) if cfg.schedule == "plateau" else None
        return cls(cfg.schedule, cfg.lr, total, milestones, cfg.gamma, cfg.warmup_lr,
                   WarmupRule(cfg.warmup_iters, cfg.warmup_below), plateau, cfg.warmup_shape)

    @property
    def warmup_iters(self) -> int:
        """The warm-up's length: the planned count, or where the error rule ended it."""
        return self.warmup.length

    def lr(self, it: int) -> float:
        """The learning rate of iteration `it` (0-based)."""
        warm = self.warmup.length
        if it < warm and self.warmup_shape == "linear":
            return linear_warmup_lr(it, base_lr=self.base_lr, warmup_iters=warm, warmup_lr=self.warmup_lr)
        if self.plateau is not None:
            return self.warmup_lr if it < warm else self.plateau.lr
        if self.kind == "cosine":
            return cosine_lr(it, base_lr=self.base_lr, total=self.total, warmup_iters=warm, warmup_lr=self.warmup_lr)
        return step_lr(it, base_lr=self.base_lr, milestones=self.milestones, gamma=self.gamma, warmup_iters=warm,
                       warmup_lr=self.warmup_lr)

    def observing(self, it: int) -> bool:
        """Whether the warm-up rule needs iteration `it`'s training error (a host sync: warm-up only)."""
        return self.warmup.active(it)

    def observe(self, it: int, train_err: float) -> bool:
        """Iteration `it`'s mini-batch training error, for the warm-up rule; True when the warm-up ends here."""
        return self.warmup.observe(it, train_err)

    def evaluated(self, val_err: float) -> bool:
        """A validation error, for the plateau rule; True when the run should stop (the lr divided three
        times, where the paper stops, Section 3.4)."""
        if self.plateau is None:
            return False
        self.plateau.step(val_err)
        return self.plateau.lr < self.base_lr * 1e-3 - 1e-12

    def state_dict(self) -> dict[str, Any]:
        return {"warmup": self.warmup.state(), "plateau": vars(self.plateau).copy() if self.plateau else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A `state_dict` (or a whole checkpoint, which holds its keys)."""
        if state.get("warmup"):
            self.warmup = WarmupRule(**state["warmup"])
        if self.plateau is not None and state.get("plateau"):
            self.plateau = Plateau(**state["plateau"])

"""A time budget for training (`reslab train --time-budget 10m`): the run's length in whole epochs, chosen
from the step rate measured on the run's own first iterations.

The run starts on the length asked for (--epochs, --iterations or the recipe's). Iterations [warm, until)
are timed (the first `warm` carry one-time costs: allocations, oneDNN primitives, torch.compile's first
calls); one forward pass of a training batch in eval mode prices the evaluations (each validation pass, the
final test with its views, e.g. 10 crops). From these and the time already spent since `train` started, the
most whole epochs that fit (at most the length asked for) are chosen at iteration `until`, and the schedule
is rebuilt for them by the one rescaling rule (`Schedule.from_config` with `epochs`, train/schedule.py).

Determinism: the measured iterations are training iterations and count; they run at the lr of the asked
length's schedule. config.json records the choice (`time_budget`: what was asked, `measured_iters`, the rate,
the epochs chosen), so `--config run/config.json` and `--resume` replay the same run without measuring: the
asked schedule up to `measured_iters`, then the chosen one, bit-for-bit where the kernels are deterministic
(the CPU; CUDA with --deterministic). Measuring reads the clock and runs one eval-mode forward pass (no
weight, BN statistic or random draw changes), so where the budget allows the whole asked length the run is
the same, bit for bit, as the run without --time-budget. A second run with the same `--time-budget` may
choose another length (the machine's speed is not deterministic); only the recorded choice reproduces.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reslab.train.config import TrainConfig

clock: Callable[[], float] = time.perf_counter  # the budget's clock (tests replace it with a simulated one)

WARM = 5  # first iterations not timed: one-time costs (allocation, oneDNN primitives, torch.compile)
MEASURE = 20  # iterations timed after them
FINISH_SHARE = 0.03  # of the budget kept for what follows the test: weights, curves, report


def chosen(cfg: TrainConfig) -> bool:
    """Whether the run's length under its budget is already chosen (a run's config.json replayed)."""
    return cfg.time_budget is not None and "measured_iters" in cfg.time_budget


def opening_config(cfg: TrainConfig) -> TrainConfig:
    """The config of the iterations before the choice: the asked length (a replayed run's record says which)."""
    if chosen(cfg):
        assert cfg.time_budget is not None
        return dataclasses.replace(cfg, epochs=cfg.time_budget["asked_epochs"])
    return cfg


def forward_seconds_per_image(model: nn.Module, x: torch.Tensor, *, device: torch.device, amp: bool) -> float:
    """Seconds per image of an eval-mode forward pass over `x` (N, C, H, W), the second of two (the first
    pays one-time costs). Changes nothing in the model (no gradient, BN in eval mode)."""
    import torch

    from reslab.evaluate import eval_mode

    seconds = math.inf
    with eval_mode(model), torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for _ in range(2):
            _sync(device)
            t = clock()
            model(x)
            _sync(device)
            seconds = clock() - t
    return seconds / max(1, len(x))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


@dataclass
class Costs:
    """What the choice is made from, in seconds (all measured on this run, at its start)."""

    step: float  # one training iteration
    evaluation: float  # one validation pass (0 without a validation set)
    test: float  # the final test, with its views
    spent: float  # since `train` started, up to the choice (set-up, the iterations already run)


def choose_epochs(budget: float, costs: Costs, *, steps_per_epoch: int, asked_total: int, done: int,
                  eval_every: int) -> tuple[int | None, float]:
    """(whole epochs to train, the run's expected seconds) in `budget` seconds: None when the asked length
    (`asked_total` iterations) fits as it is; else the most whole epochs that fit, at least 1."""
    def expected(total: int) -> float:
        return (costs.spent + max(0, total - done) * costs.step + math.ceil(total / eval_every) * costs.evaluation
                + costs.test + FINISH_SHARE * budget)

    if expected(asked_total) <= budget:
        return None, expected(asked_total)
    fits = [e for e in range(1, max(1, asked_total // steps_per_epoch) + 1)
            if expected(e * steps_per_epoch) <= budget]
    epochs = max(fits, default=1)
    return epochs, expected(epochs * steps_per_epoch)


@dataclass
class Measure:
    """Times iterations [warm, until) of a run whose length is not chosen yet."""

    warm: int
    until: int
    started: float  # `clock()` when train started
    t_warm: float | None = None

    @classmethod
    def at(cls, start: int, steps_per_epoch: int, total: int, started: float) -> Measure:
        """From iteration `start` (0, or a resumed run's): WARM untimed, MEASURE timed, inside the first epoch
        (and the run) where it is shorter."""
        end = min(total, max(start + 1, steps_per_epoch))
        warm = min(start + WARM, max(start, end - 2))
        return cls(warm, min(warm + MEASURE, end), started, clock() if warm == start else None)

    def tick(self, done: int) -> bool:
        """After iteration `done`: True when the measurement has ended (the length is to be chosen now)."""
        if done == self.warm:
            self.t_warm = clock()
        return done == self.until

    def step_seconds(self) -> float:
        assert self.t_warm is not None
        return (clock() - self.t_warm) / max(1, self.until - self.warm)


def choice_line(record: dict[str, Any], *, batch_size: int, asked: str) -> str:
    """What the run chose under its budget, and why, in one line."""
    n = record["epochs"]
    trains = (f"trains {n} whole epoch{'s' if n > 1 else ''} of the {asked} asked" if record["fewer"]
              else f"trains the {asked} asked")
    if record["expected_seconds"] > record["seconds"]:
        trains += ", over the budget: not even one epoch fits"

    return (f"time budget {record['seconds'] / 60:.1f} min: {batch_size / record['step_seconds']:,.0f} images/s "
            f"measured on iterations {record['measured_from']}-{record['measured_iters']} "
            f"({record['step_seconds']:.3f} s each), validation ~{record['eval_seconds']:.1f} s per pass, final test "
            f"~{record['test_seconds']:.1f} s, {record['spent_seconds']:.0f} s spent so far; {trains} (expected "
            f"{record['expected_seconds'] / 60:.1f} min in all)")

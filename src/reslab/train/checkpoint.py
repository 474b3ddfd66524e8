"""Atomic training checkpoints: a crash or a kill never leaves a half-written file.

Serialised in memory, written to a temporary file in the same folder, flushed and fsync'ed,
then moved into place with os.replace (atomic on POSIX) and the folder fsync'ed
(fileio.atomic_write_serialized: a full disk is one line, the previous checkpoint intact). Read back with
torch.load(weights_only=True): a checkpoint never runs code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.errors import ReslabError
from reslab.fileio import atomic_write_serialized
from reslab.train.ema import Ema
from reslab.train.schedule import Schedule


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_write_serialized(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"no checkpoint at {path}; resume needs a run directory with checkpoints/last.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReslabError(f"{path} is not a readable reslab checkpoint ({type(e).__name__}); "
                          "it may be truncated or not from reslab") from e


class TrainingDiverged(ReslabError):
    """The loss or the weights became non-finite; the message names the iteration and the last good checkpoint."""


@dataclass
class TrainState:
    """Where a run stands: iterations done, best validation error, and training seconds (resumed runs
    add the seconds of their earlier attempts); with --ema, which weights reached the best (raw | ema)."""

    iteration: int = 0
    best_val: float = math.inf
    elapsed0: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    best_weights: str = "raw"

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0


def save_train_checkpoint(path: Path, *, model: nn.Module, opt: torch.optim.Optimizer, schedule: Schedule,
                          state: TrainState, steps_per_epoch: int, config: dict[str, Any], last: Path,
                          write: bool = True, ema: Ema | None = None) -> None:
    """Everything a resumed run needs to continue bit for bit; refuses non-finite weights, so that `last`
    (the last good checkpoint, named in the error) is never overwritten by a diverged state. Every rank
    checks its weights; only the one with `write` (rank 0) writes."""
    weights = model.state_dict()
    floats = [v for v in weights.values() if v.is_floating_point()]
    if floats and not torch.stack([torch.isfinite(v).all() for v in floats]).all():
        raise TrainingDiverged(f"weights became non-finite by iteration {state.iteration}; the last good "
                               f"checkpoint is {last}")
    if not write:
        return
    save_checkpoint(path, {"model": weights, "optimizer": opt.state_dict(), "iteration": state.iteration,
                           "epoch": state.iteration / steps_per_epoch, "best_val_err": state.best_val,
                           **schedule.state_dict(), "rng_cpu": torch.get_rng_state(),
                           "elapsed_s": state.elapsed(), "config": config,
                           "best_weights": state.best_weights, **(ema.state_dict() if ema else {})})


def load_train_checkpoint(path: Path, *, model: nn.Module, opt: torch.optim.Optimizer,
                          schedule: Schedule, ema: Ema | None = None) -> TrainState:
    """Load `path` into the model, optimiser, schedule, EMA and CPU generator; the state to continue from.
    The schedule's state sits at the top level ("warmup", "plateau"), as before the Schedule existed."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt)
    torch.set_rng_state(ckpt["rng_cpu"])
    if ema is not None:
        ema.load_state_dict(ckpt)
    return TrainState(ckpt["iteration"], ckpt["best_val_err"], ckpt["elapsed_s"],
                      best_weights=ckpt.get("best_weights", "raw"))

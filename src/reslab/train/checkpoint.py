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
from reslab.safeparse import shown
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
                          classes: list[str], write: bool = True, ema: Ema | None = None) -> None:
    """Everything a resumed run needs to continue bit for bit, and the data's `classes` (names, in output
    order) that a resumed run must find again (`check_resumed_classes`); refuses non-finite weights, so that
    `last` (the last good checkpoint, named in the error) is never overwritten by a diverged state. Every
    rank checks its weights; only the one with `write` (rank 0) writes."""
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
                           "elapsed_s": state.elapsed(), "config": config, "classes": list(classes),
                           "best_weights": state.best_weights, **(ema.state_dict() if ema else {})})


def _names(names: list[str]) -> str:
    return ", ".join(shown(n, 40) for n in names[:4]) + (f" and {len(names) - 4:,} more" if len(names) > 4 else "")


def check_resumed_classes(ckpt: dict[str, Any], classes: list[str], path: Path) -> None:
    """The data's classes (names and order) are those the checkpoint `path` trained on; else one line that
    says what changed: a class folder added, removed or renamed, or the order. A checkpoint written before
    reslab recorded them has only its output layer's size, which `load_train_checkpoint` compares."""
    saved = ckpt.get("classes")
    if not isinstance(saved, list) or saved == list(classes):
        return
    added = [c for c in classes if c not in saved]
    removed = [c for c in saved if c not in classes]
    if added and len(added) == len(removed):
        pairs = list(zip(removed, added, strict=True))
        what = "renamed " + ", ".join(f"{shown(a, 40)} -> {shown(b, 40)}" for a, b in pairs[:4]) + (
            f" and {len(pairs) - 4:,} more" if len(pairs) > 4 else "")
    elif added or removed:
        what = "; ".join(([f"added {_names(added)}"] if added else []) + ([f"removed {_names(removed)}"]
                                                                          if removed else []))
    else:
        what = f"the same {len(classes):,} classes in another order ({_names(list(classes))})"
    raise ReslabError(f"the data's classes changed since {path} was written ({len(saved):,} then, "
                      f"{len(classes):,} now): {what}; a run's outputs are tied to its classes: put the data back "
                      f"as it was to resume, or train a new run on this data with --out (--init {path.parent.parent} "
                      f"starts from its weights)")


def load_train_checkpoint(source: Path | dict[str, Any], *, model: nn.Module, opt: torch.optim.Optimizer,
                          schedule: Schedule, ema: Ema | None = None) -> TrainState:
    """Load `source` (a checkpoint's path, or the checkpoint loaded) into the model, optimiser, schedule, EMA
    and CPU generator; the state to continue from. The schedule's state sits at the top level ("warmup",
    "plateau"), as before the Schedule existed. Weights of other shapes than the network's (the data has
    another number of classes) are one line naming the first tensor that differs."""
    ckpt = load_checkpoint(source) if isinstance(source, Path) else source
    own = model.state_dict()
    for key, value in ckpt["model"].items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise ReslabError(f"the checkpoint's {key} has shape {tuple(value.shape)}, the network built from the "
                              f"run's config and today's data {tuple(own[key].shape)}: did a class folder come or "
                              f"go? Put the data back as it was to resume, or train a new run with --out")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt)
    torch.set_rng_state(ckpt["rng_cpu"])
    if ema is not None:
        ema.load_state_dict(ckpt)
    return TrainState(ckpt["iteration"], ckpt["best_val_err"], ckpt["elapsed_s"],
                      best_weights=ckpt.get("best_weights", "raw"))

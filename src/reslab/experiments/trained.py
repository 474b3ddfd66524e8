"""What the analyses of trained nets share (lesion, landscape): the nets of a degradation folder, read
only, and the images they are measured on, normalised as each net was trained."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reslab.data.datasets import load_dataset
from reslab.errors import ReslabError
from reslab.experiments.config import ExperimentConfig, experiment_dir
from reslab.experiments.records import RunRecord
from reslab.experiments.responses import response_images
from reslab.experiments.runs import experiment_folder, read_manifest, write_manifest
from reslab.metadata import WeightsMeta
from reslab.modes import eval_mode


@contextmanager
def from_degradation(cfg: ExperimentConfig) -> Iterator[tuple[Path, list[RunRecord]]]:
    """The output folder (claimed while the block runs: `runs.experiment_folder`) and the plain / residual
    runs of `cfg.from_dir`, which is never written to.

    The config takes the source's data, budget, seeds and batch size: summary.md describes how the
    measured nets were trained.
    """
    if not cfg.from_dir:
        raise ReslabError(f"{cfg.name} measures trained nets: pass --from with a folder that `reslab experiment "
                          "degradation` wrote. Received: no --from")
    source = Path(cfg.from_dir)
    src, records = read_manifest(source)
    records = [r for r in records if r.model.startswith(("plain", "resnet"))]
    if not records:
        raise ReslabError(f"{source} holds no trained plain or residual nets")
    out = experiment_dir(cfg).resolve()
    if out == source.resolve() or source.resolve() in out.parents:
        raise ReslabError(f"--out must lie outside the source folder, which is only read. Received: --out {out}")
    with experiment_folder(cfg) as folder:
        for key in ("data", "iterations", "seeds", "batch_size"):
            setattr(cfg, key, getattr(src, key))
        cfg.data_dir = cfg.data_dir or src.data_dir
        write_manifest(folder, cfg, records, source=str(source.resolve()))
        yield folder, records


def dataset_tensors(meta: WeightsMeta, split: str, n: int, *, data_dir: str | None,
                    seed: int = 0) -> tuple[Tensor, Tensor]:
    """The first `n` images of `split` (N, C, H, W), normalised as the net of `meta` was trained, and labels (N,).

    "train" is the run's own training split (the validation images held out by `seed`, as in training).
    """

    name = meta["preprocess"].get("dataset")
    if not name or name == "folder":
        raise ReslabError(f"needs an in-memory dataset (fashion-mnist, mnist, cifar10, cifar100). "
                          f"Received: a net trained on {name!r}")
    data = load_dataset(name, split, data_dir=data_dir, seed=seed)
    return response_images(meta, data.images[:n]), data.labels[:n]


def fast_eval(model: nn.Module) -> nn.Module:
    """The model in eval mode and channels_last (faster convolutions on CPU, same function)."""
    return model.eval().to(memory_format=torch.channels_last)


def error_and_loss(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 500) -> tuple[float, float]:
    """(top-1 error as a fraction, mean cross-entropy from log-softmax) of `model` in eval mode on the
    normalised images `x` (N, C, H, W) with labels `y` (N,)."""
    device = next(model.parameters()).device
    wrong, loss = 0, 0.0
    with eval_mode(model):
        for i in range(0, len(y), batch_size):
            xb = x[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
            yb = y[i:i + batch_size].to(device)
            logits = model(xb).float()
            wrong += int((logits.argmax(1) != yb).sum())
            loss += F.cross_entropy(logits, yb, reduction="sum").item()
    return wrong / len(y), loss / len(y)


class Ticker:
    """Progress of a long measurement, as complete lines on stderr (they read the same in a log file):
    one every `every` seconds with the time left, and one when `total` steps are done."""

    def __init__(self, what: str, total: int, *, unit: str = "points", quiet: bool = False, every: float = 15.0):
        self.what, self.total, self.unit, self.quiet, self.every = what, total, unit, quiet, every
        self.done, self.t0 = 0, time.perf_counter()
        self.last = self.t0

    def tick(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.quiet or (now - self.last < self.every and self.done < self.total):
            return
        self.last, spent = now, now - self.t0
        left = spent / self.done * (self.total - self.done)
        tail = f", about {left / 60:.1f} min left" if self.done < self.total else ""
        print(f"{self.what}: {self.done:,}/{self.total:,} {self.unit}, {spent / 60:.1f} min{tail}",
              file=sys.stderr, flush=True)

"""`reslab lr-find`: the learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training
Neural Networks", Section 3.3): train a copy of the model for a few hundred iterations while the lr
grows exponentially from `min_lr` to `max_lr`, and read the lr to train with off the loss curve.

Not in the paper (He et al. use lr 0.1 throughout); a tool to choose `--lr` for other models, data
and batch sizes. The loss is smoothed as fastai's `lr_find` does (an exponential moving average
with beta 0.98, debiased) and the sweep stops once the smoothed loss exceeds 4x its minimum. The
suggestion is the lr of the steepest descent of the smoothed loss against log(lr) (fastai v1's
suggestion), one of the swept lrs by construction; the lr of the minimum divided by 10 (fastai's
`lr_min`) is reported beside it. The sweep writes only its own folder: a run it starts from is read.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text
from reslab.hardware import native_bf16, pick_device
from reslab.outputs import output_folder
from reslab.plotting import pyplot, save_figure
from reslab.train.config import TrainConfig
from reslab.train.data import TrainData, prepare_data
from reslab.train.distributed import Dist
from reslab.train.finetune import FineTune
from reslab.train.rundir import is_run
from reslab.train.schedule import Schedule
from reslab.train.step import build_model, make_optimizer, model_kwargs, set_lr, train_step

BETA = 0.98  # fastai's smoothing of the loss
STOP_FACTOR = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum (fastai)
SKIP_START, SKIP_END = 10, 5  # points left out of the steepest-descent search at each end (fastai v1)
MIN_ITERATIONS = 10
AUTO_ITERATIONS = 100  # `reslab train --lr find`'s sweep (fastai's lr_find default)
EDGE = 0.05  # a suggestion within this share of the searched points from either end is "at the edge"
FILES = ("lr-find.csv", "lr-find.png", "lr-find.json")


@dataclass
class LRFindConfig:
    train: TrainConfig  # model, data, batch, augmentation, optimiser (momentum, weight decay), device, seed
    min_lr: float = 1e-5
    max_lr: float = 10.0
    iterations: int = 200
    out: str | None = None  # default: lr-find/<model>-<data>-<time>
    overwrite: bool = False  # replace reslab's earlier lr-find output in `out` (docs/files.md)
    train_args: list[str] = field(default_factory=list)  # `reslab train` flags of the same config, for the command


@dataclass
class LRFindResult:
    lrs: list[float]  # the swept lrs, one per iteration run
    losses: list[float]  # each iteration's mini-batch loss
    smoothed: list[float]  # the smoothed loss
    suggested_lr: float  # the steepest descent of the smoothed loss
    min_lr_over_10: float  # the lr of the smoothed loss's minimum, / 10 (may lie below the sweep)
    stopped_early: bool  # the smoothed loss exceeded STOP_FACTOR x its minimum before the last iteration
    out: Path
    train_command: str
    edge: str | None = None  # a warning when the suggestion sits at the edge of the searched points


def sweep_lrs(min_lr: float, max_lr: float, iterations: int) -> list[float]:
    """`iterations` lrs from `min_lr` to `max_lr`, each the previous times the same factor."""
    return [min_lr * (max_lr / min_lr) ** (i / (iterations - 1)) for i in range(iterations)]


class Smoother:
    """The exponential moving average of the losses added, debiased (divided by 1 - beta^n), as fastai's."""

    def __init__(self, beta: float = BETA) -> None:
        self.beta, self.avg, self.n = beta, 0.0, 0

    def add(self, loss: float) -> float:
        self.avg, self.n = self.beta * self.avg + (1 - self.beta) * loss, self.n + 1
        return self.avg / (1 - self.beta ** self.n)


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """`losses` smoothed (`Smoother`)."""
    s = Smoother(beta)
    return [s.add(loss) for loss in losses]


def search_window(n: int) -> tuple[int, int]:
    """The points [lo, hi) of an n-point sweep that the steepest-descent search reads: all but the first
    SKIP_START and the last SKIP_END (fastai v1's rule), or all of them when fewer than 5 would remain."""
    lo, hi = SKIP_START, n - SKIP_END
    return (lo, hi) if hi - lo >= 5 else (0, n)


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(the lr of the steepest descent of `smoothed` against log(lr), the lr of its minimum / 10), over
    the points before the loss first became non-finite, in `search_window`."""
    finite = next((i for i, s in enumerate(smoothed) if not math.isfinite(s)), len(smoothed))
    if finite == 0:
        raise ReslabError(f"the loss was not finite at the first lr of the sweep; lower --min-lr. "
                          f"Received: --min-lr {lrs[0]:g}")
    lrs, smoothed = lrs[:finite], smoothed[:finite]
    lo, hi = search_window(len(lrs))
    y, x = np.array(smoothed[lo:hi]), np.log(np.array(lrs[lo:hi]))
    steepest = lrs[lo + int(np.argmin(np.gradient(y, x)))] if len(y) > 1 else lrs[lo]
    return steepest, lrs[int(np.argmin(smoothed))] / 10


def edge_warning(lrs: list[float], smoothed: list[float], suggested: float) -> str | None:
    """A warning when `suggested` is among the first or last EDGE share (at least 2 points) of the searched
    points: the loss may fall faster beyond the sweep, so the suggestion is not a reading of the curve."""
    finite = next((i for i, s in enumerate(smoothed) if not math.isfinite(s)), len(smoothed))
    lo, hi = search_window(finite)
    i, margin = lrs.index(suggested), max(2, round(EDGE * (hi - lo)))
    if lo + margin <= i < hi - margin:
        return None
    end, fix = ("start", "lower --min-lr") if i < lo + margin else ("end", "raise --max-lr")
    return (f"the suggested lr {suggested:.3g} sits at the {end} of the sweep (point {i + 1 - lo} of the {hi - lo} "
            f"searched, {lrs[lo]:.3g} to {lrs[hi - 1]:.3g}): the loss may fall faster beyond it; {fix}, or "
            f"lengthen --iterations, and read lr-find.png before training with it")


def check_config(cfg: LRFindConfig) -> None:
    """Refuse a sweep that cannot run, naming the value received."""
    if not (math.isfinite(cfg.min_lr) and math.isfinite(cfg.max_lr) and 0 < cfg.min_lr < cfg.max_lr):
        raise ReslabError(f"--min-lr must be below --max-lr, both positive; the sweep grows from one to the other. "
                          f"Received: --min-lr {cfg.min_lr:g} --max-lr {cfg.max_lr:g}")
    if cfg.iterations < MIN_ITERATIONS:
        raise ReslabError(f"--iterations must be at least {MIN_ITERATIONS} for a loss curve to read (Smith 2017 "
                          f"sweeps a few hundred). Received: --iterations {cfg.iterations}")


def output_dir(cfg: LRFindConfig, *, inside_run: bool = False) -> Path:
    """The sweep's folder: --out, or a new lr-find/<model>-<data>-<time>; never a run or inside one (unless
    `inside_run`: the sweep of `reslab train --lr find`, written into its own new run)."""
    tc = cfg.train
    out = Path(cfg.out) if cfg.out else Path("lr-find") / f"{tc.model}-{tc.data}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise ReslabError(f"--out {out} is a file; give a folder for the sweep's CSV and plot")
    for folder in () if inside_run else (out, *out.resolve().parents):
        if is_run(folder):
            raise ReslabError(f"--out {out} is inside the run {folder}; lr-find never writes into a run, "
                              f"choose another folder")
    return out


def lr_find(cfg: LRFindConfig, *, log: Callable[[str], None] = print, inside_run: bool = False) -> LRFindResult:
    """The range test: the sweep, then lr-find.csv, lr-find.png and lr-find.json in the output folder. `log`
    gets the progress lines, the expected duration (after the first timed iterations) and the warnings."""
    check_config(cfg)
    out = output_dir(cfg, inside_run=inside_run)
    # A sweep of its own claims its folder now (a bad --out fails before the sweep); one inside a new run
    # writes into the run, which `train` holds.
    with nullcontext() if inside_run else output_folder(out, "lr-find", overwrite=cfg.overwrite):
        return _lr_find(cfg, out, log, announce=not inside_run)


def _lr_find(cfg: LRFindConfig, out: Path, log: Callable[[str], None], *, announce: bool) -> LRFindResult:
    tc = cfg.train
    device = pick_device(tc.device)
    amp, channels_last = tc.amp == "bf16" or (tc.amp == "auto" and native_bf16(device)), tc.channels_last != "off"
    torch.manual_seed(tc.seed)
    data = prepare_data(tc, device, Dist(), amp)
    model = build_model(tc, model_kwargs(tc, len(data.classes), data.in_chans), device, channels_last)
    # --init (weights, only read), --freeze, --head-epochs and --lr-decay-per-stage as `reslab train` applies them;
    # inside `train --lr find` the run's own set-up says what --init changed, once
    tuning = FineTune.setup(tc, model, data, Schedule.from_config(tc, data.batches.steps_per_epoch), Dist(),
                            fresh=True, announce=announce)
    lrs, losses = _sweep(cfg, model, data, tuning, device, amp, channels_last, log)
    smoothed = smooth(losses)
    steepest, min_over_10 = suggest(lrs, smoothed)
    command = shlex.join(["reslab", "train", *cfg.train_args, "--lr", f"{steepest:.3g}"])
    result = LRFindResult(lrs, losses, smoothed, steepest, min_over_10, len(lrs) < cfg.iterations, out, command,
                          edge_warning(lrs, smoothed, steepest))
    if result.edge:
        log(f"warning: {result.edge}")
    _write(result, cfg)
    return result


def _sweep(cfg: LRFindConfig, model: nn.Module, data: TrainData, tuning: FineTune, device: torch.device, amp: bool,
           channels_last: bool, log: Callable[[str], None]) -> tuple[list[float], list[float]]:
    """Train at each lr of the sweep until the smoothed loss exceeds STOP_FACTOR x its minimum (or is not finite);
    returns the lrs run and their mini-batch losses. Batches (b, C, H, W) float32 come from `data.batches.batch(it)`."""
    opt = make_optimizer(model, cfg.train, device)
    lrs, losses, every = [], [], max(1, cfg.iterations // 10)
    smoother, best = Smoother(), math.inf
    model.train()
    timed_from, timed = TIMED
    t0 = time.perf_counter()
    for it, lr in enumerate(sweep_lrs(cfg.min_lr, cfg.max_lr, cfg.iterations)):
        if it == timed_from:
            t0 = time.perf_counter()
        elif it == timed_from + timed and cfg.iterations > it:
            each = (time.perf_counter() - t0) / timed
            log(f"{cfg.iterations} iterations of batch {cfg.train.batch_size}: about "
                f"{_duration(each * (cfg.iterations - it))} more at {each:.2g} s each (timed on iterations "
                f"{timed_from + 1}-{timed_from + timed}; it stops early once the loss blows up)")
        tuning.phase(0)  # with --head-epochs the whole sweep is of the first phase, the head's
        set_lr(opt, lr)
        x, y = data.batches.batch(it)
        loss, _ = train_step(model, opt, x.to(device), y.to(device), amp=amp, channels_last=channels_last,
                             label_smoothing=cfg.train.label_smoothing, class_weight=data.loss_weight)
        lrs.append(lr)
        losses.append(loss.item())
        smoothed = smoother.add(losses[-1])
        best = min(best, smoothed)
        if not cfg.train.quiet and ((it + 1) % every == 0 or it == 0):
            log(f"{it + 1}/{cfg.iterations} lr {lr:.3g} loss {losses[-1]:.4f} (smoothed {smoothed:.4f})")
        if not math.isfinite(smoothed) or smoothed > STOP_FACTOR * best:
            log(f"stopped at lr {lr:.3g} (iteration {it + 1}): the smoothed loss {smoothed:.4g} is above "
                f"{STOP_FACTOR:g}x its minimum {best:.4g}")
            break
    return lrs, losses


TIMED = (1, 3)  # (first, count) of the iterations timed for the expected duration: the first one warms up


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _write(result: LRFindResult, cfg: LRFindConfig) -> None:
    out = result.out
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("iteration", "lr", "loss", "smoothed_loss"))
    w.writerows((i, f"{lr:.6g}", f"{loss:.6g}", f"{s:.6g}") for i, (lr, loss, s) in
                enumerate(zip(result.lrs, result.losses, result.smoothed, strict=True)))
    atomic_write_text(out / FILES[0], buf.getvalue())
    plot(result, out / FILES[1], title=f"lr range test: {cfg.train.model} on {cfg.train.data}, "
                                       f"batch {cfg.train.batch_size}")
    summary = {"suggested_lr": result.suggested_lr, "rule": "steepest descent of the smoothed loss",
               "min_lr_over_10": result.min_lr_over_10, "min_lr": cfg.min_lr, "max_lr": cfg.max_lr,
               "iterations": len(result.lrs), "planned_iterations": cfg.iterations,
               "stopped_early": result.stopped_early, "edge_warning": result.edge, "init": cfg.train.init,
               "train_command": result.train_command,
               "config": cfg.train.to_dict()}
    atomic_write_text(out / FILES[2], json.dumps(summary, indent=2, default=list) + "\n")


def plot(result: LRFindResult, path: Path, *, title: str) -> Path:
    """Loss against lr (log scale): each mini-batch thin, the smoothed loss bold, the suggestion marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(result.lrs, result.losses, lw=0.6, color="0.7", label="mini-batch loss")
    ax.plot(result.lrs, result.smoothed, lw=2.0, color="tab:blue", label="smoothed loss")
    ax.axvline(result.suggested_lr, color="tab:red", ls="--", label=f"suggested lr {result.suggested_lr:.3g}")
    if result.min_lr_over_10 >= result.lrs[0]:
        ax.axvline(result.min_lr_over_10, color="tab:green", ls=":", label=f"minimum / 10: {result.min_lr_over_10:.3g}")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:  # the smoothed curve decides the scale; a diverging mini-batch loss would flatten it
        low = min(finite)
        ax.set_ylim(low - 0.1 * abs(low), min(max(finite), STOP_FACTOR * low) * 1.05 + 1e-6)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)

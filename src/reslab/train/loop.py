"""The training loop: step, log, evaluate, checkpoint; all visible in `train`."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reslab.data.augment import BatchAugment
from reslab.data.datasets import dataset_spec, load_dataset, per_pixel_mean
from reslab.errors import ReslabError
from reslab.evaluate import EvalResult, metrics_from_probs, predict_probs, save_confusion_png, tensor_batches
from reslab.models.registry import create_model
from reslab.train.batches import InMemoryBatches, LoaderBatches
from reslab.train.checkpoint import load_checkpoint, save_checkpoint
from reslab.train.config import WARMUP_WINDOW, TrainConfig, scaled_schedule
from reslab.train.distributed import (
    Dist,
    barrier,
    broadcast_flag,
    convert_sync_batchnorm,
    elastic_run_id,
    init_distributed,
    mean_over_ranks,
    restart_count,
    shutdown,
)
from reslab.train.progress import Progress
from reslab.train.report import write_report
from reslab.train.rundir import RunDir, plot_curves
from reslab.train.schedule import Plateau, cosine_lr, step_lr


class TrainingDiverged(ReslabError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    seconds: float
    best_val_err: float
    test: EvalResult | None


@dataclass
class _Data:
    batches: Any
    evaluate_val: Any  # (model) -> EvalResult
    evaluate_test: Any
    classes: list[str]
    in_chans: int
    preprocess: dict[str, Any]


def pick_device(name: str, dist: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReslabError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
        return torch.device("cuda", dist.local_rank) if dist.enabled else torch.device(name)
    if name != "cpu":
        raise ReslabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is a speed-up here: CUDA, or a CPU with bf16 instructions (AVX512-BF16 or
    AMX). With channels_last, ResNet-20 on 2 EPYC cores trains about 2x faster than fp32 NCHW (1375 vs
    661 img/s, docs/benchmarks.md); the weights, optimiser and loss stay fp32."""
    if device.type == "cuda":
        return True
    from reslab.hardware import native_bf16_cpu

    return device.type == "cpu" and native_bf16_cpu()


def prepare_data(cfg: TrainConfig, device: torch.device, dist: Dist, amp: bool) -> _Data:
    """The training batches (this rank's share) and the validation / test evaluators of `cfg.data`."""
    spec = dataset_spec(cfg.data)
    common = dict(data_dir=cfg.data_dir, download=cfg.download and dist.main, seed=cfg.seed)
    if cfg.data == "folder":
        return _prepare_folder(cfg, device, dist, amp)
    train = load_dataset(cfg.data, "train", val_size=cfg.val_size, **common)
    val = load_dataset(cfg.data, "val", val_size=cfg.val_size, **common)
    test = load_dataset(cfg.data, "test", **common)
    mean_image = per_pixel_mean(train.images)  # the paper subtracts the training set's per-pixel mean
    aug = BatchAugment(std=spec.std, mode=cfg.normalize, pixel_mean=mean_image.to(device), mean=spec.mean,
                       pad=4, hflip=spec.hflip)
    train, val, test = train.to(device), val.to(device), test.to(device)
    batches = InMemoryBatches(train, aug, batch_size=cfg.batch_size, seed=cfg.seed, augment=cfg.augment,
                              rank=dist.rank, world=dist.world)

    def evaluator(split, ten_crop=False):
        def run(model: nn.Module) -> EvalResult:
            if len(split) == 0:
                return EvalResult(math.nan, math.nan, math.nan, 0, [], torch.zeros(0))
            probs, labels = predict_probs(model, tensor_batches(split.images, split.labels, aug.normalize,
                                                                ten_crop_pad=4 if ten_crop else None),
                                          device=device, amp=amp)
            return metrics_from_probs(probs, labels, len(split.classes))
        return run

    preprocess = {"image_size": spec.image_size, "in_chans": spec.in_chans, "mode": cfg.normalize,
                  "mean": list(spec.mean), "std": list(spec.std), "resize": None, "crop": spec.image_size,
                  "dataset": cfg.data, "mean_image": mean_image.cpu()}
    return _Data(batches, evaluator(val), evaluator(test, cfg.ten_crop), train.classes, spec.in_chans, preprocess)


def _prepare_folder(cfg: TrainConfig, device: torch.device, dist: Dist, amp: bool) -> _Data:
    from torch.utils.data import DataLoader, DistributedSampler

    from reslab.data.datasets import find_data_dir
    from reslab.data.folder import IMAGENET_MEAN, IMAGENET_STD, folder_dataset

    root = find_data_dir("folder", cfg.data_dir)
    train = folder_dataset(root, "train", train=True)
    per_rank = cfg.batch_size // dist.world

    def make_loader(epoch: int) -> DataLoader:
        sampler = DistributedSampler(train, dist.world, dist.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        sampler.set_epoch(epoch)
        g = torch.Generator().manual_seed(cfg.seed + epoch)
        return DataLoader(train, per_rank, sampler=sampler, num_workers=cfg.workers, drop_last=True,
                          pin_memory=device.type == "cuda", generator=g, persistent_workers=False)

    steps = len(train) // cfg.batch_size
    if steps < 1:
        raise ReslabError(f"{root}/train has {len(train)} images, fewer than one batch of {cfg.batch_size}")

    def evaluator(ten_crop: bool):
        def run(model: nn.Module) -> EvalResult:
            ds = folder_dataset(root, "val", train=False, ten_crop=ten_crop)
            loader = DataLoader(ds, 64, num_workers=cfg.workers)
            probs, labels = predict_probs(model, loader, device=device, amp=amp)
            return metrics_from_probs(probs, labels, len(train.classes))
        return run

    preprocess = {"image_size": 224, "in_chans": 3, "mode": "channel", "mean": list(IMAGENET_MEAN),
                  "std": list(IMAGENET_STD), "resize": 256, "crop": 224, "dataset": "folder"}
    # Folders have no separate test split: val/ is the test set, as for ImageNet.
    return _Data(LoaderBatches(make_loader, steps), evaluator(False), evaluator(cfg.ten_crop), train.classes, 3,
                 preprocess)


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


def _lr_at(cfg: TrainConfig, it: int, total: int, miles: tuple[int, ...], warm: int, plateau: Plateau | None) -> float:
    if cfg.schedule == "plateau":
        assert plateau is not None
        return cfg.warmup_lr if it < warm else plateau.lr
    if cfg.schedule == "cosine":
        return cosine_lr(it, base_lr=cfg.lr, total=total, warmup_iters=warm, warmup_lr=cfg.warmup_lr)
    return step_lr(it, base_lr=cfg.lr, milestones=miles, gamma=cfg.gamma, warmup_iters=warm,
                   warmup_lr=cfg.warmup_lr)


def _maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return model
    try:
        return torch.compile(model)
    except Exception as e:
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); training in eager mode", stacklevel=2)
        return model


def default_run_dir(cfg: TrainConfig) -> Path:
    # Under torchrun every rank and every restart must find the same folder: name it by the run id.
    if "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = elastic_run_id()
        if run_id is None:
            raise ReslabError("under torchrun without --standalone or --rdzv-id, pass --out RUN_DIR so that every "
                              "rank and every restart uses the same run directory. Received: TORCHELASTIC_RUN_ID=none")
        return Path("runs") / f"{cfg.model}-{cfg.data}-{run_id}"
    return Path("runs") / f"{cfg.model}-{cfg.data}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, *, amp: bool,
               channels_last: bool, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """One SGD step on a batch x (N, C, H, W) float, y (N,) int64, both on the model's device: forward
    under bf16 autocast when `amp` (weights, optimiser and loss stay fp32), backward, update.
    Returns the loss () and logits (N, classes), detached; nothing waits for the device."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


def train(cfg: TrainConfig, *, resume: str | Path | None = None, command: str | None = None) -> TrainResult:
    """Train `cfg.model` on `cfg.data`; returns the run directory and final errors.

    With `resume`, the run directory's config and checkpoints/last.pt are loaded and the run
    continues at the saved iteration.
    """
    dist = init_distributed(cfg.device)
    try:
        return _train(cfg, dist, resume, command or " ".join(["reslab", *sys.argv[1:]]))
    finally:
        shutdown(dist)


def _train(cfg: TrainConfig, dist: Dist, resume: str | Path | None, command: str) -> TrainResult:
    device = pick_device(cfg.device, dist)
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and native_bf16(device))
    channels_last = cfg.channels_last in ("on", "auto")  # measured faster on CUDA and on oneDNN CPUs
    run = RunDir(Path(resume) if resume else Path(cfg.out) if cfg.out else default_run_dir(cfg))
    restarts = restart_count()
    # torchrun restarted us after a failure: continue from the last checkpoint, if rank 0 sees one.
    if restarts and resume is None and broadcast_flag(dist, run.last_ckpt.exists()):
        if not run.last_ckpt.exists():
            raise ReslabError(f"rank {dist.rank} cannot see {run.last_ckpt}, which rank 0 resumes from; put the run "
                              "directory (--out) on a filesystem every node shares")
        resume = run.path
    torch.manual_seed(cfg.seed)
    data = prepare_data(cfg, device, dist, amp)
    steps_per_epoch = data.batches.steps_per_epoch
    total, miles, warm = scaled_schedule(cfg, steps_per_epoch)
    eval_every = cfg.eval_every or steps_per_epoch
    ckpt_every = cfg.ckpt_every or eval_every

    model_kwargs = {"num_classes": len(data.classes), "in_chans": data.in_chans, **cfg.model_kwargs}
    sync_bn = model_kwargs.pop("sync_bn", False)  # a training option, not the architecture's
    model = create_model(cfg.model, **model_kwargs).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=cfg.nesterov, fused=device.type == "cuda" or None)
    plateau = Plateau(cfg.lr, patience=cfg.plateau_patience) if cfg.schedule == "plateau" else None
    start_it, best_val, elapsed0 = 0, math.inf, 0.0
    warmup = WarmupRule(warm, cfg.warmup_below)
    if resume:
        state = load_checkpoint(run.last_ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_it, best_val, elapsed0 = state["iteration"], state["best_val_err"], state["elapsed_s"]
        if plateau is not None and state.get("plateau"):
            plateau = Plateau(**state["plateau"])
        if state.get("warmup"):
            warmup = WarmupRule(**state["warmup"])
        torch.set_rng_state(state["rng_cpu"])
        if dist.main:
            run.truncate_metrics(start_it)
    elif dist.main:
        run.path.mkdir(parents=True, exist_ok=True)
        if restarts and run.metrics_path.exists():  # restarted before the first checkpoint: start clean
            run.truncate_metrics(0)
        run.write_config({**cfg.to_dict(), "resolved": {"iterations": total, "milestones": list(miles),
                          "warmup_iters": warm, "steps_per_epoch": steps_per_epoch, "world_size": dist.world,
                          "device": str(device), "amp": amp, "channels_last": channels_last}})
    ddp_model: nn.Module = model
    if dist.enabled:
        if sync_bn:
            model = convert_sync_batchnorm(model, device)
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    step_model = _maybe_compile(ddp_model, cfg.compile)

    def checkpoint(path: Path, it: int) -> None:
        state = model.state_dict()
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):  # keep the good one
            raise TrainingDiverged(f"weights became non-finite by iteration {it}; the last good checkpoint is "
                                   f"{run.last_ckpt}")
        if dist.main:
            save_checkpoint(path, {"model": state, "optimizer": opt.state_dict(), "iteration": it,
                                   "epoch": it / steps_per_epoch, "best_val_err": best_val,
                                   "plateau": vars(plateau) if plateau else None, "warmup": warmup.state(),
                                   "rng_cpu": torch.get_rng_state(),
                                   "elapsed_s": elapsed0 + time.perf_counter() - t0, "config": cfg.to_dict()})

    # Tests: SIGKILL ourselves after an iteration (only RESLAB_TEST_KILL_RANK if set; first attempt only).
    kill_at = int(os.environ.get("RESLAB_TEST_KILL_AT_ITER", "-1"))
    if restarts or int(os.environ.get("RESLAB_TEST_KILL_RANK", dist.rank)) != dist.rank:
        kill_at = -1
    progress = Progress(total=total, start=start_it, steps_per_epoch=steps_per_epoch,
                        quiet=cfg.quiet or not dist.main, title=f"{cfg.model} on {cfg.data}")
    losses = torch.zeros(cfg.log_every, device=device)
    errs = torch.zeros(cfg.log_every, device=device)
    t0 = tw = time.perf_counter()
    window_start = start_it
    model.train()
    for it in range(start_it, total):
        lr = _lr_at(cfg, it, total, miles, warmup.length, plateau)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = data.batches.batch(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss, logits = train_step(step_model, opt, x, y, amp=amp, channels_last=channels_last,
                                  label_smoothing=cfg.label_smoothing)
        k = it - window_start
        losses[k] = loss.float()
        errs[k] = (logits.argmax(1) != y).float().mean()
        done = it + 1
        # The paper's warm-up rule: one host sync per iteration, for the warm-up's few iterations only.
        if warmup.active(it) and warmup.observe(it, mean_over_ranks(dist, errs[k]).item()):
            err, below = warmup.recent_mean(), cfg.warmup_below
            why = f"training error {err:.0%}, below {below:.0%}" if err < below else f"the cap; error {err:.0%}"
            progress.note(f"warm-up at lr {cfg.warmup_lr:g} ended after {warmup.length:,} iterations ({why})")
        if done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

        # Log: one host sync per window, of the global batch's loss (the mean over ranks); a non-finite
        # loss stops the run on every rank, naming its iteration.
        if k + 1 == cfg.log_every or done % eval_every == 0 or done % ckpt_every == 0 or done == total:
            window, window_err = mean_over_ranks(dist, torch.stack([losses[:k + 1], errs[:k + 1]])).cpu()
            bad = (~torch.isfinite(window)).nonzero()
            if len(bad):
                raise TrainingDiverged(f"loss became {window[bad[0, 0]].item()} at iteration {window_start + bad[0, 0]}"
                                       f" (lr {lr:g}); the last good checkpoint is {run.last_ckpt}")
            now = time.perf_counter()
            ips = (k + 1) * cfg.batch_size / (now - tw)
            row = {"kind": "iter", "iteration": done, "epoch": done / steps_per_epoch, "lr": lr,
                   "train_loss": window.mean().item(), "train_err": window_err.mean().item(),
                   "images_per_s": ips, "elapsed_s": elapsed0 + now - t0}
            if dist.main:
                run.append_metrics(row)
            progress.update(done, loss=row["train_loss"], err=row["train_err"], ips=ips, lr=lr)
            tw, window_start = now, done

        if done % eval_every == 0 or done == total:
            stop = False
            if dist.main:
                res = data.evaluate_val(model)
                run.append_metrics({"kind": "eval", "iteration": done, "epoch": done / steps_per_epoch, "lr": lr,
                                    "val_loss": res.loss, "val_err": res.top1_err,
                                    "elapsed_s": elapsed0 + time.perf_counter() - t0})
                progress.evaluated(done, res.top1_err, best_val)
                if res.n and res.top1_err < best_val:
                    best_val = res.top1_err
                    checkpoint(run.best_ckpt, done)
                if plateau is not None and res.n:
                    plateau.step(res.top1_err)
                    stop = plateau.lr < cfg.lr * 1e-3 - 1e-12  # three divisions: the paper stops here
            if plateau is not None and dist.enabled:  # every rank follows rank 0's schedule
                t = torch.tensor([plateau.lr], dtype=torch.float64)
                torch.distributed.broadcast(t, 0)
                plateau.lr = float(t)
            if broadcast_flag(dist, stop):
                break
            tw = time.perf_counter()  # evaluation time is not training throughput
        if done % ckpt_every == 0 or done == total:
            checkpoint(run.last_ckpt, done)
            barrier(dist)
    progress.close()
    seconds = elapsed0 + time.perf_counter() - t0
    if not dist.main:
        return TrainResult(run.path, total, seconds, best_val, None)
    return _finish(cfg, run, model, data, total, seconds, best_val, command, device)


def _finish(cfg: TrainConfig, run: RunDir, model: nn.Module, data: _Data, iterations: int, seconds: float,
            best_val: float, command: str, device: torch.device) -> TrainResult:
    """Model selection on validation; the test set evaluated once; weights, curves, report."""
    from reslab.weights import save_weights

    if run.best_ckpt.exists():
        model.load_state_dict(load_checkpoint(run.best_ckpt)["model"])
    test = data.evaluate_test(model)
    run.append_metrics({"kind": "test", "iteration": iterations, "val_loss": test.loss, "val_err": test.top1_err})
    model_kwargs = {"num_classes": len(data.classes), "in_chans": data.in_chans, **cfg.model_kwargs}
    model_kwargs.pop("sync_bn", None)
    save_weights(model.to(memory_format=torch.contiguous_format), run.path, model_name=cfg.model,
                 model_kwargs=model_kwargs, classes=data.classes, preprocess=data.preprocess)
    plot_curves(run.read_metrics(), run.path / "curves.png", title=f"{cfg.model} on {cfg.data}")
    if test.n:
        save_confusion_png(test.confusion, data.classes, run.path / "confusion.png",
                           title=f"{cfg.model} on {cfg.data} test: {100 * (1 - test.top1_err):.2f}% top-1")
    write_report(run, cfg, command=command, seconds=seconds, iterations=iterations, best_val=best_val, test=test,
                 classes=data.classes, device=device)
    return TrainResult(run.path, iterations, seconds, best_val, test)

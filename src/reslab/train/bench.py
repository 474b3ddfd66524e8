"""`reslab bench train`: end-to-end training throughput, reslab vs the common PyTorch recipe, in one process.

The reference is the loop most tutorials write: torchvision's FashionMNIST dataset (or synthetic
CIFAR-shaped images served as PIL images, as torchvision's CIFAR10 serves its arrays), PIL transforms
(RandomCrop(28, padding=4), RandomHorizontalFlip, ToTensor, Normalize), a shuffling DataLoader with
the best of 0..2 workers, and the same network in eager NCHW, fp32 on CPU and bf16 autocast on CUDA
(the common loop moved to a GPU with AMP). reslab's side is `train()`'s own
step: in-memory uint8 batches augmented on the device (`InMemoryBatches` + `BatchAugment`),
channels_last, bf16 autocast where the hardware has native bf16 (`native_bf16`), `train_step`.
Both count everything a training iteration costs: loading, augmentation, forward, backward, update.

Timing: warm-up, then rounds that run a block of each side in turn (the side that goes first
alternates) and a matrix-multiply probe (fp32 and bf16), so background load hits all alike;
medians over blocks. Both also train `curve_iters` iterations from the same initial weights, and
reslab once more with another data order (the run-to-run spread): the smoothed loss curves show
that the two sides train the same model, not just run fast.

On CUDA (or with --resnet50-iters) it also times reslab's ResNet-50 against torchvision's on
synthetic 224x224 batches on the device, both with the same fast step; with --full-schedule, the
wall time of a whole `reslab train` run (the paper's 64k iterations). The GPU commands: docs/gpu.md.
Evidence and numbers: docs/benchmarks.md ("Training throughput").
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from rich.table import Table
from torch import nn
from torchvision import transforms

from reslab.console import console
from reslab.data.augment import BatchAugment
from reslab.data.datasets import InMemoryDataset, dataset_spec, find_data_dir
from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text
from reslab.hardware import describe, describe_line, matmul_gflops, native_bf16, pick_device, probe_size
from reslab.models.analysis import count_macs
from reslab.models.registry import create_model
from reslab.outputs import claim_file
from reslab.plotting import pyplot, save_figure
from reslab.train.batches import InMemoryBatches
from reslab.train.config import resolve_config
from reslab.train.data import prepare_data
from reslab.train.distributed import Dist
from reslab.train.loop import train
from reslab.train.step import compile_model, kernel_choice, make_optimizer, train_step

SMOOTH = 20  # iterations in the moving average of the loss curves
_TV_CLASS = {"fashion-mnist": ("FashionMNIST", "FashionMNIST"), "mnist": ("MNIST", "MNIST")}
SYNTHETIC_MEAN, SYNTHETIC_STD = (0.45, 0.31, 0.31), (0.2, 0.18, 0.18)  # of `synthetic_images`, in 0..1 units
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


@dataclass
class TrainBenchConfig:
    model: str = "resnet20"
    data: str | None = None  # fashion-mnist | mnist | synthetic (CIFAR's 32x32x3); None: synthetic on CUDA
    data_dir: str | None = None
    batch_size: int = 128
    iterations: int = 100  # timed iterations per side, split into `rounds` blocks
    rounds: int = 5
    warmup: int = 10
    curve_iters: int = 200
    workers: tuple[int, ...] = (0, 1, 2)  # the reference's DataLoader workers to try; the fastest is used
    device: str = "auto"
    threads: int | None = None  # torch's intra-op threads, both sides; None: torch's default (the cores)
    compile: str = "off"  # reslab's side: torch.compile mode (off | default | max-autotune | reduce-overhead)
    lr: float = 0.1
    seed: int = 0
    synthetic_images: int = 50_000  # training images of --data synthetic (CIFAR-10's count)
    resnet50_iters: int | None = None  # timed iterations per side of the ResNet-50 pair; None: 50 on CUDA, else 0 (off)
    resnet50_batch: int = 256
    resnet50_size: int = 224
    full_schedule: int = 0  # iterations of a timed `train` run of `model` (64000: the paper's schedule); 0: off

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):  # a bare --compile switch means mode "default"
            self.compile = "default" if self.compile else "off"


@dataclass
class _Bench:
    """What both sides train on: the device, reslab's batches, the reference's dataset, the initial weights."""

    cfg: TrainBenchConfig
    device: torch.device
    amp: bool  # reslab's autocast; the reference uses autocast on CUDA ("moved to CUDA with AMP"), fp32 on CPU
    ref_amp: bool
    batches: Any  # InMemoryBatches
    reference_data: Any  # (root folder) -> torch Dataset of PIL-transformed images
    init: nn.Module
    image_size: int
    macs: int


def synthetic_images(n: int, seed: int) -> InMemoryDataset:
    """n CIFAR-shaped images (n, 3, 32, 32) uint8 and labels (n,): noise plus a class-dependent brightness of
    the red channel, so that the loss curves fall as on real data."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 160, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    images[:, 0] += (labels * 9).to(torch.uint8)[:, None, None]
    return InMemoryDataset(images, labels, [str(c) for c in range(10)])


class _PILImages(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) images served as PIL images through `transform`, as torchvision's CIFAR10 serves its
    arrays: the reference pipeline over the synthetic images."""

    def __init__(self, data: InMemoryDataset, transform: Callable) -> None:
        self.images, self.labels, self.transform = data.images.permute(0, 2, 3, 1).numpy(), data.labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _reference_transform(image_size: int, mean: tuple, std: tuple, hflip: bool) -> Callable:
    tf = [transforms.RandomCrop(image_size, padding=4)] + ([transforms.RandomHorizontalFlip()] if hflip else [])
    return transforms.Compose([*tf, transforms.ToTensor(), transforms.Normalize(mean, std)])


def _setup(cfg: TrainBenchConfig, data: str, device: torch.device) -> _Bench:
    """Both sides' data and the initial weights: the dataset's files (torchvision reads them for the reference),
    or synthetic images held on the device for reslab and served as PIL images to the reference."""
    amp = native_bf16(device)
    if data == "synthetic":
        ds = synthetic_images(cfg.synthetic_images, cfg.seed)
        aug = BatchAugment(std=SYNTHETIC_STD, mode="channel", mean=SYNTHETIC_MEAN, pad=4)
        batches = InMemoryBatches(ds.to(device), aug, batch_size=cfg.batch_size, seed=cfg.seed)
        tf = _reference_transform(32, SYNTHETIC_MEAN, SYNTHETIC_STD, True)
        reference_data, in_chans, size = (lambda root: _PILImages(ds, tf)), 3, 32
    else:
        tcfg = resolve_config("cifar-paper", model=cfg.model, data=data, data_dir=cfg.data_dir,
                              batch_size=cfg.batch_size, device=str(device), seed=cfg.seed, lr=cfg.lr)
        batches, spec = prepare_data(tcfg, device, Dist(), amp).batches, dataset_spec(data)
        tf = _reference_transform(spec.image_size, spec.mean, spec.std, spec.hflip)
        in_chans, size = spec.in_chans, spec.image_size

        def reference_data(root: Path) -> torch.utils.data.Dataset:
            return getattr(torchvision.datasets, _TV_CLASS[data][0])(str(root), train=True, transform=tf)
    torch.manual_seed(cfg.seed)
    init = create_model(cfg.model, num_classes=10, in_chans=in_chans)
    return _Bench(cfg, device, amp, device.type == "cuda", batches, reference_data, init, size,
                  count_macs(init, (in_chans, size, size)))


def _sgd(model: nn.Module, cfg: TrainBenchConfig, fast: bool) -> torch.optim.SGD:
    """The reference's SGD written the common way; reslab's as `train` builds it (fused on CUDA)."""
    if fast:
        return make_optimizer(model, resolve_config("cifar-paper", lr=cfg.lr), next(model.parameters()).device)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=1e-4)


class _Sides:
    """The two training loops from the same initial weights, each continuing its own training."""

    def __init__(self, b: _Bench, batches: Any) -> None:
        self.b, self.batches, self.it = b, batches, 0
        self.ref = copy.deepcopy(b.init).to(b.device).train()
        self.ref_opt = _sgd(self.ref, b.cfg, fast=False)
        self.res = copy.deepcopy(b.init).to(b.device).to(memory_format=torch.channels_last).train()
        self.res_step = compile_model(self.res, b.cfg.compile)
        self.res_opt = _sgd(self.res, b.cfg, fast=True)

    def ref_steps(self, it: Iterator, n: int) -> list[float]:
        out, dev = [], self.b.device
        for x, y in (next(it) for _ in range(n)):  # written the common way
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            self.ref_opt.zero_grad()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.b.ref_amp):
                loss = F.cross_entropy(self.ref(x), y)
            loss.backward()
            self.ref_opt.step()
            out.append(loss.item())
        return out

    def res_steps(self, n: int) -> list[float]:
        losses = []
        for _ in range(n):
            x, y = self.batches.batch(self.it)
            loss, _ = train_step(self.res_step, self.res_opt, x, y, amp=self.b.amp, channels_last=True,
                                 cuda_graphs=self.b.cfg.compile == "reduce-overhead" and self.b.device.type == "cuda")
            losses.append(loss)
            self.it += 1
        return [v.item() for v in losses]  # one device sync at the end, as train() logs


def _timed(fn: Callable[[], Any], n: int, batch: int, device: torch.device) -> float:
    """Images per second of `fn`, which trains n batches of `batch`."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return n * batch / (time.perf_counter() - t)


def _check(cfg: TrainBenchConfig, data: str) -> None:
    if data not in (*_TV_CLASS, "synthetic"):
        raise ReslabError(f"bench train compares against torchvision's IDX datasets or synthetic CIFAR-shaped "
                          f"images; use fashion-mnist, mnist or synthetic. Received: --data {data}")
    if cfg.rounds < 1 or cfg.iterations < cfg.rounds or cfg.curve_iters < 2 * SMOOTH or not cfg.workers:
        raise ReslabError(f"need rounds >= 1, iterations >= rounds, curve_iters >= {2 * SMOOTH} and some workers. "
                          f"Received: rounds={cfg.rounds}, iterations={cfg.iterations}, "
                          f"curve_iters={cfg.curve_iters}, workers={cfg.workers}")


def bench_train(cfg: TrainBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark; returns the report (also what `save_report` writes). On CUDA (or when asked) it adds
    the ResNet-50 pair ("resnet50") and a timed full-schedule run ("full_schedule"). On CUDA both sides
    run with cudnn.benchmark, as `train` does (`kernel_choice`)."""
    device = pick_device(cfg.device)
    with kernel_choice(device, deterministic=False):
        return _bench_train(cfg, device, log)


def _bench_train(cfg: TrainBenchConfig, device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    data = cfg.data or ("synthetic" if device.type == "cuda" else "fashion-mnist")
    _check(cfg, data)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    b = _setup(cfg, data, device)
    log(f"{describe_line(device)}")
    log(f"{cfg.model} on {data}: {b.macs / 1e6:.1f} M multiply-adds per {b.image_size}x{b.image_size} image; reslab "
        f"side: channels_last, {'bf16 autocast' if b.amp else 'fp32'}, compile {cfg.compile}; reference: "
        f"{'bf16 autocast' if b.ref_amp else 'fp32'}")
    with tempfile.TemporaryDirectory(prefix="reslab-bench-train-") as tmp:
        root = Path(tmp) if data == "synthetic" else torchvision_root(data, find_data_dir(data, cfg.data_dir),
                                                                       Path(tmp))
        report = _resnet_pair(b, b.reference_data(root), log)
    report["config"]["data"] = data
    r50 = cfg.resnet50_iters if cfg.resnet50_iters is not None else (50 if device.type == "cuda" else 0)
    if r50:
        report["resnet50"] = bench_resnet50(cfg, device, r50, log)
    if cfg.full_schedule:
        report["full_schedule"] = bench_full_schedule(cfg, "fashion-mnist" if data == "synthetic" else data,
                                                      device, log)
    return report


def _resnet_pair(b: _Bench, reference_data: torch.utils.data.Dataset, log: Callable[[str], None]) -> dict[str, Any]:
    """The reference's best DataLoader, the loss curves from the same weights, the interleaved timed blocks."""
    cfg = b.cfg
    sides = _Sides(b, b.batches)
    probe, loaders = {}, {}
    for w in cfg.workers:  # the reference's best DataLoader worker count (both sides warm up here too)
        loaders[w] = _reference_loader(cfg, reference_data, w, b.device)
        it = _forever(loaders[w])
        sides.ref_steps(it, max(2, cfg.warmup // 2))
        probe[w] = _timed(lambda it=it: sides.ref_steps(it, cfg.warmup), cfg.warmup, cfg.batch_size, b.device)
        del it
        log(f"reference DataLoader with num_workers={w}: {probe[w]:.0f} images/s")
    workers = max(probe, key=probe.__getitem__)
    loaders = {workers: loaders[workers]}  # shuts down the others' worker processes
    sides.res_steps(cfg.warmup)
    curves, sides, ref_iter = _curves(b, loaders[workers], log)
    rates = _rounds(b, sides, ref_iter, log)
    ref_iter.close()
    loaders.clear()  # stops the worker processes
    return _pair_report(b, rates, curves, workers, probe)


def _curves(b: _Bench, loader: Any, log: Callable[[str], None]) -> tuple[dict[str, Any], _Sides, Iterator]:
    """Same initial weights, same lr: the two loss curves, and reslab's again with another data order and
    augmentation (the run-to-run spread). Returns the curves and the sides to time, still training."""
    cfg = b.cfg
    sides, ref_iter = _Sides(b, b.batches), _forever(loader)
    log(f"loss curves: {cfg.curve_iters} iterations each from the same initial weights")
    t = time.perf_counter()
    ref_curve = sides.ref_steps(ref_iter, cfg.curve_iters)
    ref_s, t = time.perf_counter() - t, time.perf_counter()
    res_curve = sides.res_steps(cfg.curve_iters)
    res_s = time.perf_counter() - t
    other = _Sides(b, InMemoryBatches(b.batches.data, b.batches.aug, batch_size=cfg.batch_size, seed=cfg.seed + 1))
    res_curve2 = other.res_steps(cfg.curve_iters)
    sides.res_step, sides.res_opt, sides.res = other.res_step, other.res_opt, other.res  # time the fresh one
    sides.batches, sides.it = other.batches, other.it
    agree = curve_agreement(ref_curve, res_curve)
    agree["seed_to_seed_mean_abs_diff"] = curve_agreement(res_curve, res_curve2)["mean_abs_diff"]
    return ({"reference": ref_curve, "reslab": res_curve, "reslab_other_seed": res_curve2, "agreement": agree,
             "reference_smoothed": moving_average(ref_curve).tolist(),
             "reslab_smoothed": moving_average(res_curve).tolist(), "reference_s": ref_s, "reslab_s": res_s},
            sides, ref_iter)


def _rounds(b: _Bench, sides: _Sides, ref_iter: Iterator, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Interleaved timed blocks (the side that goes first alternates) and a matmul probe per round."""
    cfg = b.cfg
    block = cfg.iterations // cfg.rounds
    rates: dict[str, list[float]] = {"ref": [], "res": [], "fp32": [], "bf16": []}
    for r in range(cfg.rounds):
        order = [("ref", lambda: sides.ref_steps(ref_iter, block)), ("res", lambda: sides.res_steps(block))]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            rates[name].append(_timed(fn, block, cfg.batch_size, b.device))
        rates["fp32"].append(matmul_gflops(torch.float32, b.device))
        rates["bf16"].append(matmul_gflops(torch.bfloat16, b.device))
        log(f"round {r + 1}/{cfg.rounds}: reference {rates['ref'][-1]:.0f}, reslab {rates['res'][-1]:.0f} images/s; "
            f"matmul {rates['fp32'][-1]:.0f} GFLOP/s fp32, {rates['bf16'][-1]:.0f} bf16")
    return rates


def _pair_report(b: _Bench, rates: dict[str, list[float]], curves: dict[str, Any], workers: int,
                 probe: dict[int, float]) -> dict[str, Any]:
    cfg, device = b.cfg, b.device
    flops_per_image = 3 * b.macs * 2  # forward + backward (2x forward), 2 FLOPs per multiply-add
    ref_ips, res_ips = statistics.median(rates["ref"]), statistics.median(rates["res"])
    p32, p16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
    ref_peak, res_peak = (p16 if b.ref_amp else p32), (p16 if b.amp else p32)
    rows = [
        {"name": "reference", "detail": f"torchvision dataset + PIL transforms + DataLoader({workers} workers), "
                                        f"eager NCHW {'bf16 autocast' if b.ref_amp else 'fp32'}",
         "images_per_s": ref_ips, "blocks": rates["ref"], "train_gflops": ref_ips * flops_per_image / 1e9,
         "peak": "bf16" if b.ref_amp else "fp32", "fraction_of_peak": ref_ips * flops_per_image / 1e9 / ref_peak},
        {"name": "reslab", "detail": f"in-memory batches + on-device augmentation, channels_last, "
                                     f"{'bf16 autocast' if b.amp else 'fp32'}, compile {cfg.compile}",
         "images_per_s": res_ips, "blocks": rates["res"], "train_gflops": res_ips * flops_per_image / 1e9,
         "peak": "bf16" if b.amp else "fp32", "fraction_of_peak": res_ips * flops_per_image / 1e9 / res_peak},
    ]
    return {
        "benchmark": "train", "config": {**asdict(cfg), "workers": list(cfg.workers)},
        "hardware": describe(device), "hardware_line": describe_line(device), "device": str(device),
        "load_avg": list(_loadavg()), "model_macs": b.macs, "train_flops_per_image": flops_per_image,
        "reference_workers": workers, "reference_workers_probe": {str(k): v for k, v in probe.items()},
        "matmul_gflops": {"fp32": p32, "bf16": p16, "fp32_rounds": rates["fp32"], "bf16_rounds": rates["bf16"],
                          "n": {"fp32": probe_size(torch.float32, device), "bf16": probe_size(torch.bfloat16, device)}},
        "rows": rows, "speedup": res_ips / ref_ips,
        "speedup_per_round": [r / a for a, r in zip(rates["ref"], rates["res"], strict=True)], "curves": curves,
    }


def bench_resnet50(cfg: TrainBenchConfig, device: torch.device, iterations: int,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """reslab's resnet50 against torchvision's, both stepped by `train_step` (bf16 autocast where native,
    channels_last, `train`'s SGD: fused on CUDA) on one synthetic batch (N, 3, S, S) held on the device:
    the models' speed, nothing else. Interleaved blocks over `cfg.rounds`, medians."""
    torch.manual_seed(cfg.seed)
    n, size = cfg.resnet50_batch, cfg.resnet50_size
    x = torch.randn(n, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (n,), device=device)
    amp, graphs = native_bf16(device), cfg.compile == "reduce-overhead" and device.type == "cuda"
    steps = {}
    for name, model in (("torchvision", torchvision.models.resnet50()), ("reslab", create_model("resnet50"))):
        model = model.to(device).to(memory_format=torch.channels_last).train()
        step_fn, opt = compile_model(model, cfg.compile), _sgd(model, cfg, fast=True)
        steps[name] = lambda k, m=step_fn, o=opt: [train_step(m, o, x, y, amp=amp, channels_last=True,
                                                              cuda_graphs=graphs) for _ in range(k)]
        steps[name](max(1, cfg.warmup))
    block = max(1, iterations // cfg.rounds)
    rates: dict[str, list[float]] = {"torchvision": [], "reslab": []}
    for r in range(cfg.rounds):
        for name in (("torchvision", "reslab") if r % 2 == 0 else ("reslab", "torchvision")):
            rates[name].append(_timed(lambda s=steps[name]: s(block), block, n, device))
        log(f"resnet50 round {r + 1}/{cfg.rounds}: torchvision {rates['torchvision'][-1]:.0f}, "
            f"reslab {rates['reslab'][-1]:.0f} images/s")
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"batch": n, "image_size": size, "amp": amp, "compile": cfg.compile, "blocks": rates,
            "images_per_s": med, "speedup": med["reslab"] / med["torchvision"]}


def bench_full_schedule(cfg: TrainBenchConfig, data: str, device: torch.device,
                        log: Callable[[str], None] = print) -> dict[str, Any]:
    """The wall time of `train` running `cfg.model`'s cifar-paper schedule at `cfg.full_schedule` iterations
    (64000: the paper's), with its evaluations and checkpoints, in a temporary run directory."""
    with tempfile.TemporaryDirectory(prefix="reslab-bench-schedule-") as tmp:
        tcfg = resolve_config("cifar-paper", model=cfg.model, data=data, data_dir=cfg.data_dir,
                              iterations=cfg.full_schedule, batch_size=cfg.batch_size, device=str(device),
                              seed=cfg.seed, compile=cfg.compile,
                              quiet=True, out=str(Path(tmp) / "run"))
        log(f"full schedule: {cfg.model} on {data}, {cfg.full_schedule:,} iterations of batch {tcfg.batch_size}")
        t = time.perf_counter()
        result = train(tcfg, command="reslab bench train --full-schedule")
        wall = time.perf_counter() - t
    test_err = result.test.top1_err if result.test is not None else math.nan
    log(f"full schedule: {wall:.1f} s wall ({result.seconds:.1f} s in the loop), test error {100 * test_err:.2f}%")
    return {"model": cfg.model, "data": data, "iterations": result.iterations, "wall_s": wall,
            "loop_s": result.seconds, "test_top1_err": test_err, "compile": cfg.compile}


def torchvision_root(data: str, folder: Path, tmp: Path) -> Path:
    """A torchvision root (<tmp>/<Class>/raw/<files>) over reslab's IDX files: symlinks to the plain
    files, or decompressed copies of the .gz ones (torchvision reads only the decompressed files)."""
    raw = tmp / _TV_CLASS[data][1] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in _IDX_FILES:
        if (folder / name).is_file():
            (raw / name).symlink_to((folder / name).resolve())
        elif (folder / f"{name}.gz").is_file():
            with gzip.open(folder / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            raise ReslabError(f"{folder} has no {name}[.gz]; the reference pipeline needs the official IDX files")
    return tmp


def _reference_loader(cfg: TrainBenchConfig, ds: torch.utils.data.Dataset, workers: int, device: torch.device):
    g = torch.Generator().manual_seed(cfg.seed)
    return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                                       drop_last=True, pin_memory=device.type == "cuda", generator=g,
                                       persistent_workers=workers > 0)


def _forever(loader) -> Iterator:
    while True:
        yield from loader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def moving_average(x: list[float], k: int = SMOOTH) -> np.ndarray:
    """Trailing mean over k values (the first k - 1 points average what exists so far)."""
    c = np.cumsum(np.insert(np.asarray(x, dtype=np.float64), 0, 0.0))
    n = np.arange(1, len(x) + 1)
    lo = np.maximum(n - k, 0)
    return (c[n] - c[lo]) / (n - lo)


def curve_agreement(a: list[float], b: list[float], k: int = SMOOTH) -> dict[str, float]:
    """How far apart two loss curves are, against their own noise: the mean |difference| of their
    k-iteration moving averages (after the first k), and each curve's noise, the std of its loss
    around its moving average, divided by sqrt(k) to give the noise of a k-iteration average."""
    ma, mb = moving_average(a, k), moving_average(b, k)
    noise = [float(np.std(np.asarray(c)[k:] - m[k:]) / np.sqrt(k)) for c, m in ((a, ma), (b, mb))]
    diff = float(np.mean(np.abs(ma[k:] - mb[k:])))
    return {"window": k, "mean_abs_diff": diff, "noise_a": noise[0], "noise_b": noise[1],
            "diff_over_noise": diff / max(float(np.hypot(*noise)), 1e-12),
            "final_a": float(ma[-1]), "final_b": float(mb[-1])}


def _loadavg() -> tuple[float, ...]:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return ()


def print_report(report: dict[str, Any]) -> None:

    c = report["config"]
    t = Table(title=f"{c['model']} training on {c['data']}, batch {c['batch_size']}, end to end "
                    f"(median of {c['rounds']} interleaved blocks)", title_justify="left")
    for col, just in (("pipeline", "left"), ("images/s", "right"), ("blocks min-max", "right"),
                      ("training GFLOP/s", "right"), ("of measured peak", "right")):
        t.add_column(col, justify=just)
    for r in report["rows"]:
        t.add_row(r["name"], f"{r['images_per_s']:.0f}", f"{min(r['blocks']):.0f}-{max(r['blocks']):.0f}",
                  f"{r['train_gflops']:.1f}", f"{100 * r['fraction_of_peak']:.1f}% of {r['peak']}")
    console().print(t)
    for r in report["rows"]:
        print(f"  {r['name']}: {r['detail']}")
    m = report["matmul_gflops"]
    a = report["curves"]["agreement"]
    per_round = report["speedup_per_round"]
    print(f"reslab / reference: {report['speedup']:.2f}x end to end (ratio of medians; per round "
          f"{min(per_round):.2f}-{max(per_round):.2f}x, median {statistics.median(per_round):.2f}x)")
    print(f"measured peak (2048x2048 matmul, median of rounds): {m['fp32']:.0f} GFLOP/s fp32, {m['bf16']:.0f} bf16; "
          f"training counted as 3 x {report['model_macs'] / 1e6:.1f} M MACs x 2 FLOPs per image")
    print(f"hardware: {report['hardware_line']}; load average {report['load_avg']}")
    if "resnet50" in report:
        r = report["resnet50"]
        ips = r["images_per_s"]
        print(f"resnet50, batch {r['batch']} of {r['image_size']}x{r['image_size']} synthetic images on the device: "
              f"reslab {ips['reslab']:.0f}, torchvision {ips['torchvision']:.0f} images/s ({r['speedup']:.2f}x; "
              f"{'bf16 autocast' if r['amp'] else 'fp32'}, channels_last, compile {r['compile']})")
    if "full_schedule" in report:
        f = report["full_schedule"]
        print(f"full schedule: {f['model']} on {f['data']}, {f['iterations']:,} iterations in {f['wall_s']:.1f} s wall "
              f"({f['loop_s']:.1f} s training), test error {100 * f['test_top1_err']:.2f}%")
    print(f"same model: {c['curve_iters']} iterations from the same weights; {a['window']}-iteration moving averages "
          f"of the loss differ by {a['mean_abs_diff']:.3f} on average, two reslab runs with different data order by "
          f"{a['seed_to_seed_mean_abs_diff']:.3f} (noise of one such average: {a['noise_a']:.3f} reference, "
          f"{a['noise_b']:.3f} reslab); final smoothed loss {a['final_a']:.3f} reference, {a['final_b']:.3f} reslab")


def report_path(path: str | Path | None, model: str) -> Path:
    return Path(path or f"bench-train-{model}.json")


def save_report(report: dict[str, Any], path: str | Path | None, *, overwrite: bool = False) -> Path:
    """The JSON report, and beside it a PNG of the two smoothed loss curves; existing files only with `overwrite`."""
    out = report_path(path, report["config"]["model"])
    with claim_file(out, overwrite=overwrite), claim_file(out.with_suffix(".png"), overwrite=overwrite):
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")
        _plot_curves(report, out.with_suffix(".png"))
    return out


def _plot_curves(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    cv = report["curves"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for key, label, color in (("reference", "reference (torchvision + PIL, fp32 NCHW)", "tab:gray"),
                              ("reslab", "reslab (on-device batches, train_step)", "tab:blue")):
        ax.plot(cv[key], lw=0.5, alpha=0.35, color=color)
        ax.plot(cv[f"{key}_smoothed"], lw=1.8, color=color, label=label)
    if "reslab_other_seed" in cv:
        ax.plot(moving_average(cv["reslab_other_seed"]), lw=1.2, ls="--", color="tab:blue",
                label="reslab, another data order (run-to-run spread)")
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"training loss ({SMOOTH}-iteration moving average)")
    ax.set_title(f"{report['config']['model']} on {report['config']['data']}: same initial weights")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)

"""`reslab bench train`: end-to-end training throughput, reslab vs the common PyTorch recipe, in one process.

The reference is the loop most tutorials write: torchvision's FashionMNIST dataset, PIL transforms
(RandomCrop(28, padding=4), RandomHorizontalFlip, ToTensor, Normalize), a shuffling DataLoader with
the best of 0..2 workers, and the same network in eager NCHW fp32. reslab's side is `train()`'s own
step: in-memory uint8 batches augmented on the device (`InMemoryBatches` + `BatchAugment`),
channels_last, bf16 autocast where the hardware has native bf16 (`native_bf16`), `train_step`.
Both count everything a training iteration costs: loading, augmentation, forward, backward, update.

Timing: warm-up, then rounds that run a block of each side in turn (the side that goes first
alternates) and a matrix-multiply probe (fp32 and bf16), so background load hits all alike;
medians over blocks. Both also train `curve_iters` iterations from the same initial weights, and
reslab once more with another data order (the run-to-run spread): the smoothed loss curves show
that the two sides train the same model, not just run fast.
Evidence and numbers: docs/benchmarks.md ("Training throughput").
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ReslabError
from reslab.hardware import matmul_gflops, native_bf16, pick_device
from reslab.plotting import save_figure

SMOOTH = 20  # iterations in the moving average of the loss curves
_TV_CLASS = {"fashion-mnist": ("FashionMNIST", "FashionMNIST"), "mnist": ("MNIST", "MNIST")}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


@dataclass
class TrainBenchConfig:
    model: str = "resnet20"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    batch_size: int = 128
    iterations: int = 100  # timed iterations per side, split into `rounds` blocks
    rounds: int = 5
    warmup: int = 10
    curve_iters: int = 200
    workers: tuple[int, ...] = (0, 1, 2)  # the reference's DataLoader workers to try; the fastest is used
    device: str = "auto"
    threads: int | None = None  # torch's intra-op threads, both sides; None: torch's default (the cores)
    compile: bool = False
    lr: float = 0.1
    seed: int = 0


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


def _reference_loader(cfg: TrainBenchConfig, root: Path, workers: int, device: torch.device):
    import torchvision
    from torchvision import transforms

    from reslab.data.datasets import dataset_spec

    spec = dataset_spec(cfg.data)
    tf = [transforms.RandomCrop(spec.image_size, padding=4)]
    if spec.hflip:
        tf.append(transforms.RandomHorizontalFlip())
    tf += [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    ds = getattr(torchvision.datasets, _TV_CLASS[cfg.data][0])(str(root), train=True,
                                                                transform=transforms.Compose(tf))
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


def bench_train(cfg: TrainBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark; returns the report (also what `save_report` writes)."""
    from reslab.analysis import count_macs
    from reslab.data.datasets import find_data_dir
    from reslab.hardware import describe, describe_line
    from reslab.models.registry import create_model
    from reslab.train.batches import InMemoryBatches
    from reslab.train.config import resolve_config
    from reslab.train.data import prepare_data
    from reslab.train.distributed import Dist
    from reslab.train.step import train_step

    if cfg.data not in _TV_CLASS:
        raise ReslabError(f"bench train compares against torchvision's IDX datasets; use fashion-mnist or mnist. "
                          f"Received: --data {cfg.data}")
    if cfg.rounds < 1 or cfg.iterations < cfg.rounds or cfg.curve_iters < 2 * SMOOTH or not cfg.workers:
        raise ReslabError(f"need rounds >= 1, iterations >= rounds, curve_iters >= {2 * SMOOTH} and some workers. "
                          f"Received: rounds={cfg.rounds}, iterations={cfg.iterations}, "
                          f"curve_iters={cfg.curve_iters}, workers={cfg.workers}")
    device = pick_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    amp = native_bf16(device)
    tcfg = resolve_config("cifar-paper", model=cfg.model, data=cfg.data, data_dir=cfg.data_dir,
                          batch_size=cfg.batch_size, device=str(device), seed=cfg.seed, lr=cfg.lr)
    data = prepare_data(tcfg, device, Dist(), amp)
    batches = data.batches
    torch.manual_seed(cfg.seed)
    init = create_model(cfg.model, num_classes=len(data.classes), in_chans=data.in_chans)
    size = data.preprocess["image_size"]
    macs = count_macs(init, (data.in_chans, size, size))
    log(f"{describe_line(device)}")
    log(f"{cfg.model}: {macs / 1e6:.1f} M multiply-adds per {size}x{size} image; reslab side: channels_last, "
        f"{'bf16 autocast' if amp else 'fp32'}{', torch.compile' if cfg.compile else ''}")

    def sgd(model: nn.Module, fused: bool | None = None) -> torch.optim.SGD:
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=1e-4, fused=fused)

    def fresh_models() -> tuple[nn.Module, torch.optim.SGD, nn.Module, nn.Module, torch.optim.SGD]:
        """Both sides from `init`'s weights: (ref, its SGD, reslab model, its step model, its SGD)."""
        ref = copy.deepcopy(init).to(device).train()
        res = copy.deepcopy(init).to(device).to(memory_format=torch.channels_last).train()
        step_model = torch.compile(res) if cfg.compile else res
        return ref, sgd(ref), res, step_model, sgd(res, fused=device.type == "cuda" or None)

    ref, ref_opt, _, res_step, res_opt = fresh_models()

    def ref_steps(it: Iterator, n: int) -> list[float]:
        out = []
        for x, y in (next(it) for _ in range(n)):  # written the common way
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            ref_opt.zero_grad()
            loss = F.cross_entropy(ref(x), y)
            loss.backward()
            ref_opt.step()
            out.append(loss.item())
        return out

    res_it, res_batches = 0, batches

    def res_steps(n: int) -> list[float]:
        nonlocal res_it
        losses = []
        for _ in range(n):
            x, y = res_batches.batch(res_it)
            loss, _ = train_step(res_step, res_opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True),
                                 amp=amp, channels_last=True)
            losses.append(loss)
            res_it += 1
        return [v.item() for v in losses]  # one device sync at the end, as train() logs

    def timed(fn: Callable[[], Any], n: int) -> float:
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        return n * cfg.batch_size / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory(prefix="reslab-bench-train-") as tmp:
        root = torchvision_root(cfg.data, find_data_dir(cfg.data, cfg.data_dir), Path(tmp))
        # The reference's best DataLoader worker count (the warm-up of both sides happens here too).
        probe: dict[int, float] = {}
        loaders = {}
        for w in cfg.workers:
            loaders[w] = _reference_loader(cfg, root, w, device)
            it = _forever(loaders[w])
            ref_steps(it, max(2, cfg.warmup // 2))
            probe[w] = timed(lambda it=it: ref_steps(it, cfg.warmup), cfg.warmup)
            del it
            log(f"reference DataLoader with num_workers={w}: {probe[w]:.0f} images/s")
        workers = max(probe, key=probe.__getitem__)
        for w in list(loaders):
            if w != workers:
                del loaders[w]  # shuts down its worker processes
        res_steps(cfg.warmup)

        # Same initial weights, same lr: the two loss curves.
        ref, ref_opt, _, res_step, res_opt = fresh_models()
        res_it = 0
        ref_iter = _forever(loaders[workers])
        log(f"loss curves: {cfg.curve_iters} iterations each from the same initial weights")
        t = time.perf_counter()
        ref_curve = ref_steps(ref_iter, cfg.curve_iters)
        ref_curve_s = time.perf_counter() - t
        t = time.perf_counter()
        res_curve = res_steps(cfg.curve_iters)
        res_curve_s = time.perf_counter() - t
        # The run-to-run baseline: reslab again from the same weights, with another data order and augmentation.
        _, _, _, res_step, res_opt = fresh_models()
        res_it, res_batches = 0, InMemoryBatches(batches.data, batches.aug, batch_size=cfg.batch_size,
                                                 seed=cfg.seed + 1)
        res_curve2 = res_steps(cfg.curve_iters)
        agree = curve_agreement(ref_curve, res_curve)
        agree["seed_to_seed_mean_abs_diff"] = curve_agreement(res_curve, res_curve2)["mean_abs_diff"]

        # Interleaved timed blocks, each side continuing its own training.
        block = cfg.iterations // cfg.rounds
        ref_rates, res_rates, peak32, peak16 = [], [], [], []
        for r in range(cfg.rounds):
            sides = [("ref", lambda: ref_steps(ref_iter, block)), ("res", lambda: res_steps(block))]
            for name, fn in sides if r % 2 == 0 else sides[::-1]:
                (ref_rates if name == "ref" else res_rates).append(timed(fn, block))
            peak32.append(matmul_gflops(torch.float32, device))
            peak16.append(matmul_gflops(torch.bfloat16, device))
            log(f"round {r + 1}/{cfg.rounds}: reference {ref_rates[-1]:.0f}, reslab {res_rates[-1]:.0f} images/s; "
                f"matmul {peak32[-1]:.0f} GFLOP/s fp32, {peak16[-1]:.0f} bf16")
        ref_iter.close()
        loaders.clear()  # stops the worker processes

    flops_per_image = 3 * macs * 2  # forward + backward (2x forward), 2 FLOPs per multiply-add
    ref_ips, res_ips = statistics.median(ref_rates), statistics.median(res_rates)
    p32, p16 = statistics.median(peak32), statistics.median(peak16)
    res_peak = p16 if amp else p32
    rows = [
        {"name": "reference", "detail": f"torchvision FashionMNIST + PIL transforms + DataLoader({workers} workers), "
                                        "eager NCHW fp32",
         "images_per_s": ref_ips, "blocks": ref_rates, "train_gflops": ref_ips * flops_per_image / 1e9,
         "peak": "fp32", "fraction_of_peak": ref_ips * flops_per_image / 1e9 / p32},
        {"name": "reslab", "detail": f"in-memory batches + on-device augmentation, channels_last, "
                                     f"{'bf16 autocast' if amp else 'fp32'}{', compiled' if cfg.compile else ''}",
         "images_per_s": res_ips, "blocks": res_rates, "train_gflops": res_ips * flops_per_image / 1e9,
         "peak": "bf16" if amp else "fp32", "fraction_of_peak": res_ips * flops_per_image / 1e9 / res_peak},
    ]
    return {
        "benchmark": "train", "config": {**asdict(cfg), "workers": list(cfg.workers)},
        "hardware": describe(device), "hardware_line": describe_line(device), "device": str(device),
        "load_avg": list(_loadavg()), "model_macs": macs, "train_flops_per_image": flops_per_image,
        "reference_workers": workers, "reference_workers_probe": {str(k): v for k, v in probe.items()},
        "matmul_gflops": {"fp32": p32, "bf16": p16, "fp32_rounds": peak32, "bf16_rounds": peak16, "n": 2048},
        "rows": rows, "speedup": res_ips / ref_ips,
        "speedup_per_round": [b / a for a, b in zip(ref_rates, res_rates, strict=True)],
        "curves": {"reference": ref_curve, "reslab": res_curve, "reslab_other_seed": res_curve2, "agreement": agree,
                   "reference_smoothed": moving_average(ref_curve).tolist(),
                   "reslab_smoothed": moving_average(res_curve).tolist(),
                   "reference_s": ref_curve_s, "reslab_s": res_curve_s},
    }


def _loadavg() -> tuple[float, ...]:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return ()


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = report["config"]
    t = Table(title=f"{c['model']} training on {c['data']}, batch {c['batch_size']}, end to end "
                    f"(median of {c['rounds']} interleaved blocks)", title_justify="left")
    for col, just in (("pipeline", "left"), ("images/s", "right"), ("blocks min-max", "right"),
                      ("training GFLOP/s", "right"), ("of measured peak", "right")):
        t.add_column(col, justify=just)
    for r in report["rows"]:
        t.add_row(r["name"], f"{r['images_per_s']:.0f}", f"{min(r['blocks']):.0f}-{max(r['blocks']):.0f}",
                  f"{r['train_gflops']:.1f}", f"{100 * r['fraction_of_peak']:.1f}% of {r['peak']}")
    Console(width=100).print(t)
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
    print(f"same model: {c['curve_iters']} iterations from the same weights; {a['window']}-iteration moving averages "
          f"of the loss differ by {a['mean_abs_diff']:.3f} on average, two reslab runs with different data order by "
          f"{a['seed_to_seed_mean_abs_diff']:.3f} (noise of one such average: {a['noise_a']:.3f} reference, "
          f"{a['noise_b']:.3f} reslab); final smoothed loss {a['final_a']:.3f} reference, {a['final_b']:.3f} reslab")


def save_report(report: dict[str, Any], path: str | Path | None) -> Path:
    """The JSON report, and beside it a PNG of the two smoothed loss curves."""
    out = Path(path or f"bench-train-{report['config']['model']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    save_figure(fig, out.with_suffix(".png"))
    return out


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}")
    return v


def _workers(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"expected worker counts like 0,1,2. Received: {text!r}")
    return vals


def add_bench_parser(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("train", help="end-to-end training images/s vs the common torchvision recipe",
                             description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data", default="fashion-mnist", choices=tuple(_TV_CLASS))
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=_positive, default=128)
    p.add_argument("--iterations", type=_positive, default=100, help="timed iterations per side")
    p.add_argument("--rounds", type=_positive, default=5, help="interleaved blocks per side")
    p.add_argument("--warmup", type=_positive, default=10)
    p.add_argument("--curve-iters", type=_positive, default=200, help="iterations of the loss-curve check")
    p.add_argument("--workers", type=_workers, default=(0, 1, 2), help="reference DataLoader workers to try")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=_positive, help="torch threads for both sides (default: torch's, the cores)")
    p.add_argument("--compile", action="store_true", help="torch.compile reslab's model")
    p.add_argument("--json", help="where to save the report (default: bench-train-MODEL.json; PNG beside it)")
    p.set_defaults(func=_cmd_bench_train)


def _cmd_bench_train(args: argparse.Namespace) -> int:
    cfg = TrainBenchConfig(model=args.model, data=args.data, data_dir=args.data_dir, batch_size=args.batch_size,
                           iterations=args.iterations, rounds=args.rounds, warmup=args.warmup,
                           curve_iters=args.curve_iters, workers=args.workers, device=args.device, threads=args.threads,
                           compile=args.compile)
    report = bench_train(cfg, log=lambda s: print(f"reslab bench train: {s}", file=sys.stderr))
    report["command"] = " ".join(["reslab", *sys.argv[1:]])
    print_report(report)
    out = save_report(report, args.json)
    print(f"reslab bench train: saved {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0

"""Issue 30, item 2: where reslab's fp32 training step spends its time, and what each lever gives.

ResNet-20 on Fashion-MNIST (28x28x1, the `bench train` default on a CPU), batch 128, reslab's own
batches (`InMemoryBatches` + `BatchAugment`) and `train_step`. Every variant trains from the same
initial weights in ONE process; rounds time one block of each variant in turn (the order rotates
each round) plus the fp32 matmul probe of `bench train`, so background load hits all alike; medians.

To act as an avx2-only CPU on a machine with AVX-512 / AMX (what the issue's Zen 3 has), run it as

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 RESLAB_CPU_FLAGS="avx2 fma" \
        PYTHONPATH=src .venv/bin/python scripts/fp32_levers.py --out fp32-levers.json

(the script prints the ISA each library reports, so a run shows whether the simulation took effect).
`--profile` prints torch.profiler's table of the baseline step first.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from reslab.hardware import cpu_flags, describe_line, matmul_gflops, native_bf16
from reslab.models.analysis import count_macs
from reslab.models.registry import create_model
from reslab.train.config import resolve_config
from reslab.train.data import prepare_data
from reslab.train.distributed import Dist
from reslab.train.step import compile_model, make_optimizer, train_step


def isa_report() -> dict[str, str]:
    return {"aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "(unset)"),
            "MKL_ENABLE_INSTRUCTIONS": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "(unset)"),
            "reslab_cpu_flags": " ".join(cpu_flags()), "native_bf16": str(native_bf16(torch.device("cpu")))}


class Variant:
    """One way to train: a model copy, its optimiser, and a step function over reslab's batches."""

    def __init__(self, name: str, init: nn.Module, batches, *, channels_last: bool = True, compile: str = "off",
                 foreach: bool = False, mkldnn: bool = True, threads: int | None = None) -> None:
        self.name, self.batches, self.it, self.threads = name, batches, 0, threads
        self.channels_last, self.mkldnn = channels_last, mkldnn
        model = copy.deepcopy(init).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        cfg = resolve_config("cifar-paper", lr=0.1)
        self.opt = make_optimizer(model, cfg, torch.device("cpu"))
        if foreach:
            for g in self.opt.param_groups:
                g["foreach"] = True
        self.model = compile_model(model, compile)

    def steps(self, n: int) -> None:
        saved = torch.get_num_threads()
        torch.set_num_threads(self.threads or saved)
        try:
            self._steps(n)
        finally:
            torch.set_num_threads(saved)

    def _steps(self, n: int) -> None:
        with torch.backends.mkldnn.flags(enabled=self.mkldnn):
            losses = []
            for _ in range(n):
                x, y = self.batches.batch(self.it)
                loss, _ = train_step(self.model, self.opt, x, y, amp=False, channels_last=self.channels_last)
                losses.append(loss)
                self.it += 1
            [v.item() for v in losses]


def timed(fn: Callable[[], None], n: int, batch: int) -> float:
    t = time.perf_counter()
    fn()
    return n * batch / (time.perf_counter() - t)


def profile(v: Variant, n: int = 6) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    v.steps(2)
    with prof(activities=[ProfilerActivity.CPU]) as p:
        v.steps(n)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--levers", default="base,nchw,foreach,compile,native_conv,compile_nchw")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(describe_line("cpu"))
    print(isa_report())
    print("load average", os.getloadavg())
    dev = torch.device("cpu")
    tcfg = resolve_config("cifar-paper", model="resnet20", data="fashion-mnist", batch_size=a.batch_size,
                          device="cpu", seed=0, lr=0.1)
    batches = prepare_data(tcfg, dev, Dist(), False).batches
    torch.manual_seed(0)
    init = create_model("resnet20", num_classes=10, in_chans=1)
    flops = 3 * 2 * count_macs(init, (1, 28, 28))
    kinds = {
        "base": {},  # what `train` / `bench train` run on a CPU without bf16 today
        "nchw": {"channels_last": False},
        "foreach": {"foreach": True},
        "compile": {"compile": "default"},
        "compile_nchw": {"compile": "default", "channels_last": False},
        "native_conv": {"mkldnn": False, "channels_last": False},
        "native_conv_cl": {"mkldnn": False},
        "threads1": {"threads": 1},
    }
    variants = [Variant(k, init, batches, **kinds[k]) for k in a.levers.split(",")]
    for v in variants:
        t = time.perf_counter()
        v.steps(3)
        print(f"warm-up {v.name}: {time.perf_counter() - t:.1f} s")
    if a.profile:
        profile(variants[0])
    rates: dict[str, list[float]] = {v.name: [] for v in variants} | {"probe_fp32": []}
    for r in range(a.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            rates[v.name].append(timed(lambda v=v: v.steps(a.block), a.block, a.batch_size))
        rates["probe_fp32"].append(matmul_gflops(torch.float32, dev))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()), flush=True)
    probe = statistics.median(rates["probe_fp32"])
    base = statistics.median(rates[variants[0].name])
    print(f"\nbatch {a.batch_size}, {flops / 1e6:.0f} MFLOP per image; fp32 probe median {probe:.0f} GFLOP/s; "
          f"load average {os.getloadavg()}")
    rows = []
    for v in variants:
        med = statistics.median(rates[v.name])
        per_round = [x / y for x, y in zip(rates[v.name], rates[variants[0].name], strict=True)]
        rows.append({"lever": v.name, "images_per_s": med, "of_probe": med * flops / 1e9 / probe,
                     "vs_base": med / base, "vs_base_per_round_median": statistics.median(per_round),
                     "blocks": rates[v.name]})
        print(f"{v.name:16s} {med:7.0f} img/s  {100 * med * flops / 1e9 / probe:5.1f}% of probe  "
              f"x{med / base:.2f} (per-round median x{statistics.median(per_round):.2f})")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"hardware": describe_line("cpu"), "isa": isa_report(), "load_avg": os.getloadavg(),
                       "batch_size": a.batch_size, "flops_per_image": flops, "probe_fp32": rates["probe_fp32"],
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

"""`reslab bench infer`: every CPU inference path side by side in one process.

Rows: torchvision's own model in eager NCHW fp32 and onnxruntime on torchvision's ONNX
export (the baselines), then reslab's paths (eager, folded, channels-last, compiled,
onnxruntime, int8; see fast.py), and OpenVINO on reslab's ONNX export at its default
precision and at f32 (deploy/openvino_engine.py; optional: without OpenVINO the report says
how to get it). The reslab model is loaded with the torchvision model's weights, so every
row computes the same function and its logits are compared with torchvision eager. Timing:
one shared input, the same thread count everywhere, inference mode; rounds that run every
path in turn (so background load hits all rows alike), each timed call right after an
untimed one of the same path; medians. Raw times (wall and
process CPU), hardware and load averages go to JSON.

Roofline: each round also times a 2048x2048 matrix product in fp32 (and bf16 where the CPU
has bf16 instructions), the machine's measured dense-math rate. Each row's GFLOP/s (2 x the
model's multiply-adds x images/s) divided by the rate of the precision it computes in says
how much room the path has left: an fp32 path near 100% cannot get much faster in fp32.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchvision
from rich.table import Table
from torch import Tensor, nn

from reslab.console import console as make_console
from reslab.deploy.fast import (
    agreement,
    build_engine,
    onnx_bytes,
    ort_runner,
    ort_session,
)
from reslab.deploy.openvino_engine import PRECISIONS as OPENVINO_PRECISIONS
from reslab.deploy.openvino_engine import OpenVINOEngine, build_openvino_engine, openvino_version
from reslab.deploy.paths import FIXED_SHAPE_PATHS, INT8_PATHS, PATHS
from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text
from reslab.hardware import (
    check_allocation,
    cpu_flags,
    cpu_model,
    matmul_gflops,
    native_bf16_cpu,
    physical_cores,
    tune_malloc,
)
from reslab.models import create_model, model_entry
from reslab.models.analysis import count_macs
from reslab.outputs import save_file_output
from reslab.weights import load_into

TV_EAGER, TV_ORT = "torchvision eager", "torchvision onnxruntime"
# Every path as its own row; "int8" is not a row of its own: it serves the faster of the two int8 rows, and
# "openvino" is the "openvino default" row (OpenVINO at its default precision), timed with the f32 row.
BENCH_PATHS: tuple[str, ...] = tuple(p for p in PATHS if p not in ("int8", "openvino"))


@dataclass
class Row:
    name: str
    build_s: float
    max_abs_diff: float
    top1_agreement: float
    batch_s: list[float] = field(default_factory=list)
    batch_cpu_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)

    def images_per_s(self, batch_size: int) -> float:
        return batch_size / statistics.median(self.batch_s)

    def latency_ms(self) -> float:
        return 1000 * statistics.median(self.latency_s)


ACTIVATION_FACTOR = 32



def hardware_info(threads: int) -> dict:
    """CPU model, cores, SIMD flags, library versions and load average."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ModuleNotFoundError:
        ort_version = None
    return {"cpu": cpu_model() or "unknown", "logical_cpus": os.cpu_count(),
            "physical_cores": physical_cores(), "threads": threads,
            "flags": list(cpu_flags()), "torch": torch.__version__, "onnxruntime": ort_version,
            "openvino": openvino_version(),
            "python": platform.python_version(), "loadavg": list(os.getloadavg())}


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    t, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return t, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _torch_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def bench_infer(
    model: str = "resnet50",
    *,
    batch_size: int = 16,
    repeats: int = 10,
    image_size: int | None = None,
    threads: int | None = None,
    paths: Sequence[str] = BENCH_PATHS,
    malloc: bool = True,
    openvino: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Measure images/s at `batch_size` and batch-1 latency for every path, and with `openvino` for OpenVINO
    at its default precision and at f32; returns the report dict. A row that cannot be built here (a
    library not installed, a CPU without the instructions) is left out and named, with the reason, in
    the report's "skipped"."""
    for p in paths:
        if p not in PATHS:
            raise ReslabError(f"unknown path {p!r}; choose from {', '.join(PATHS)}")
    if batch_size < 1 or repeats < 1:
        raise ReslabError(f"batch size and repeats must be >= 1. Received: {batch_size}, {repeats}")
    threads = threads or physical_cores()
    entry = model_entry(model)
    size = image_size or entry.input_size
    # The input batch, and about 32 times it in live activations and the paths' copies (ResNet-50's stem
    # output alone is 5x its input), checked before a byte is allocated.
    check_allocation(ACTIVATION_FACTOR * 4 * max(batch_size, 32) * 3 * size * size,
                     f"bench infer at batch {batch_size} and {size}x{size} images",
                     "pass a smaller --batch-size or --image-size")
    torch.set_num_threads(threads)
    tuned = tune_malloc() if malloc else False
    hw = hardware_info(threads)
    torch.manual_seed(0)
    net = create_model(model).eval()
    tv_builder = getattr(torchvision.models, model, None) if entry.family != "cifar" else None
    tv = tv_builder(weights=None).eval() if callable(tv_builder) else None
    if tv is not None:
        load_into(net, tv.state_dict())  # same weights: every row computes the same function
    chans = getattr(net, "in_chans", 3)
    x = torch.randn(batch_size, chans, size, size, generator=torch.Generator().manual_seed(1))
    calib = torch.randn(32, chans, size, size, generator=torch.Generator().manual_seed(2))
    runners, rows, skipped = _build_rows(net, tv, paths, x, calib, threads, openvino, log)
    peaks = _time_rows(runners, rows, x, repeats, log)
    hw["loadavg_end"] = list(os.getloadavg())
    macs = count_macs(net, (chans, size, size))
    report = _report_rows(rows, peaks, macs, batch_size)
    return {"benchmark": "infer", "model": model, "batch_size": batch_size, "image_size": size,
            "repeats": repeats, "malloc_tuned": tuned, "reference": TV_EAGER if tv is not None else "reslab eager",
            **report, "skipped": skipped, "macs_per_image": macs, "hardware": hw}


_Runners = dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]


def _build_rows(net: nn.Module, tv: nn.Module | None, paths: Sequence[str], x: Tensor, calib: Tensor,
                threads: int, openvino: bool, log: Callable[[str], None]
                ) -> tuple[_Runners, dict[str, Row], dict[str, str]]:
    """Build every path's batch and batch-1 runners; a path that cannot be built here is skipped, and
    named in the third dict with the reason (how to get what it lacks)."""
    x1 = x[:1].clone()
    ref = _torch_fn(tv if tv is not None else net)(x)
    runners: _Runners = {}
    rows: dict[str, Row] = {}
    skipped: dict[str, str] = {}

    def add(name: str, build: Callable[[], tuple[Callable, Callable]]) -> None:
        log(f"building {name} ...")
        t = time.perf_counter()
        try:
            fb, f1 = build()
        except (ReslabError, RuntimeError, ImportError) as e:
            skipped[name] = str(e).splitlines()[0][:200]
            log(f"  skipped {name}: {skipped[name]}")
            return
        build_s = time.perf_counter() - t
        if isinstance(fb, OpenVINOEngine):  # named by the precision OpenVINO chose: "openvino default-bf16"
            name = fb.name
        diff, top1 = agreement(ref, fb(x))
        runners[name], rows[name] = (fb, f1), Row(name, build_s, diff, top1)

    if tv is not None:
        add(TV_EAGER, lambda: (_torch_fn(tv),) * 2)
        add(TV_ORT, lambda: (ort_runner(ort_session(onnx_bytes(tv, x), threads=threads)),) * 2)
    for p in paths:
        if p == "openvino" and openvino:
            continue  # the "openvino default" row below is this path
        if p in FIXED_SHAPE_PATHS:  # one graph per batch size
            add(f"reslab {p}", lambda p=p: (build_engine(net, p, x, calib), build_engine(net, p, x1, calib)))
        else:
            add(f"reslab {p}", lambda p=p: (build_engine(net, p, x, calib, threads=threads),) * 2)
    if openvino:
        for precision in OPENVINO_PRECISIONS:
            _add_openvino(add, net, x, x1, threads, precision)
    return runners, rows, skipped


def _add_openvino(add: Callable[[str, Callable[[], tuple[Callable, Callable]]], None], net: nn.Module, x: Tensor,
                  x1: Tensor, threads: int, precision: str) -> None:
    """OpenVINO at `precision` on reslab's ONNX export: one engine, compiled for both batch shapes."""
    def build() -> tuple[Callable, Callable]:
        engine = build_openvino_engine(net, x, threads=threads, precision=precision)
        engine(x1)  # compiles the batch-1 shape now, not in the first timed call
        return engine, engine

    add(f"openvino {precision}", build)


def _time_rows(runners: _Runners, rows: dict[str, Row], x: Tensor, repeats: int,
               log: Callable[[str], None]) -> dict[str, list[float]]:
    """Time every row in interleaved rounds, with the matmul probes between them; returns the probes."""
    # Each timed call follows an untimed one of the same path, so that the previous path's
    # thread pool (onnxruntime's spinning workers, OpenMP's) has gone quiet and caches hold this one.
    x1 = x[:1].clone()
    probe_dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if native_bf16_cpu() else {}),
                    **({"int8": torch.int8} if any(row_precision(n) == "int8" for n in runners) else {})}
    peaks: dict[str, list[float]] = {k: [] for k in probe_dtypes}
    for r in range(repeats):
        log(f"round {r + 1}/{repeats}")
        for name, (fb, _) in runners.items():
            fb(x)
            t, cpu = _timed(lambda fb=fb: fb(x))
            rows[name].batch_s.append(t)
            rows[name].batch_cpu_s.append(cpu)
        for name, dtype in probe_dtypes.items():
            peaks[name].append(matmul_gflops(dtype))
    for _ in range(3 * repeats):
        for name, (_, f1) in runners.items():
            f1(x1)
            rows[name].latency_s.append(_timed(lambda f1=f1: f1(x1))[0])
    return peaks


def _report_rows(rows: dict[str, Row], peaks: dict[str, list[float]], macs: int, batch_size: int) -> dict:
    """Rows with images/s, ratios to the baselines and the share of the matmul rate of their precision."""
    # Ratios are against torchvision's rows; a model torchvision lacks (the CIFAR nets) uses reslab's.
    ort_base = next((n for n in (TV_ORT, "reslab onnxruntime") if n in rows), None)
    eager_base = next((n for n in (TV_EAGER, "reslab eager") if n in rows), None)

    def ratio(ips: float, base: str | None) -> float | None:
        return ips / rows[base].images_per_s(batch_size) if base else None

    peak = {k: statistics.median(v) for k, v in peaks.items()}
    out_rows = []
    for row in rows.values():
        ips = row.images_per_s(batch_size)
        gflops = 2 * macs * ips / 1e9
        precision = row_precision(row.name)
        out_rows.append({**asdict(row), "images_per_s": ips, "latency_ms": row.latency_ms(),
                         "vs_onnxruntime": ratio(ips, ort_base), "vs_torchvision_eager": ratio(ips, eager_base),
                         "gflops": gflops, "precision": precision,
                         "of_peak": gflops / peak[precision] if precision in peak else None})
    int8 = [r for r in out_rows if r["name"] in {f"reslab {p}" for p in INT8_PATHS}]
    return {"onnxruntime_baseline": ort_base, "eager_baseline": eager_base,
            "int8_choice": max(int8, key=lambda r: r["images_per_s"])["name"].split()[-1] if int8 else None,
            "matmul_gflops": {**peak, **{f"{k}_rounds": v for k, v in peaks.items()}, "n": 2048}, "rows": out_rows}


def row_precision(name: str) -> str:
    """The arithmetic a bench row computes in: "int8", "bf16" or "fp32"."""
    return next((p for p in ("int8", "bf16") if p in name.split()[-1]), "fp32")


def print_report(report: dict) -> None:
    """The report as a rich table, hardware first."""


    hw = report["hardware"]
    console = make_console()
    console.print(f"[bold]{report['model']}[/] {report['image_size']}x{report['image_size']}, batch "
                  f"{report['batch_size']}, {report['repeats']} rounds; {hw['cpu']}, {hw['physical_cores']} cores, "
                  f"{hw['threads']} threads, flags {' '.join(hw['flags'])}; torch {hw['torch']}, onnxruntime "
                  f"{hw['onnxruntime']}, openvino {hw.get('openvino')}; "
                  f"load {hw['loadavg'][0]:.1f} -> {hw['loadavg_end'][0]:.1f}")
    table = Table(title=f"Inference ({report['reference']} is the parity reference; medians)")
    ort_col = "x ORT" if report["onnxruntime_baseline"] in (TV_ORT, None) else "x reslab ORT"
    eager_col = "x tv eager" if report["eager_baseline"] in (TV_EAGER, None) else "x reslab eager"
    for col in ("path", "images/s", "batch-1 ms", ort_col, eager_col, "GFLOP/s", "of peak", "build s", "max |diff|",
                "top-1"):
        table.add_column(col, justify="left" if col == "path" else "right", no_wrap=col == "path")
    def ratio(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for r in report["rows"]:
        of_peak = "-" if r["of_peak"] is None else f"{r['of_peak']:.0%} {r['precision']}"
        table.add_row(r["name"], f"{r['images_per_s']:.1f}", f"{r['latency_ms']:.1f}", ratio(r["vs_onnxruntime"]),
                      ratio(r["vs_torchvision_eager"]), f"{r['gflops']:.0f}", of_peak, f"{r['build_s']:.1f}",
                      f"{r['max_abs_diff']:.1e}", f"{r['top1_agreement']:.0%}")
    console.print(table)
    for name, why in report.get("skipped", {}).items():
        console.print(f"{name}: not run here: {why}", markup=False, highlight=False)
    m = report["matmul_gflops"]
    rates = ", ".join(f"{m[k]:.0f} {'GOP' if k == 'int8' else 'GFLOP'}/s {k}" for k in ("fp32", "bf16", "int8")
                      if k in m)
    if report.get("int8_choice"):
        console.print(f"--path int8 serves {report['int8_choice']}, the faster int8 row here")
    console.print(f"measured peak (2048x2048 matmul, median of rounds): {rates}; "
                  f"{report['macs_per_image'] / 1e9:.3g} G multiply-adds per image")


def report_path(path: str | Path | None, model: str) -> Path:
    """Where the report of `model` goes (default bench-infer-MODEL.json); a directory is an error."""
    out = Path(path or f"bench-infer-{model}.json")
    if out.is_dir():
        raise ReslabError(f"--out {out} is a directory; give the path of the report file, e.g. "
                          f"{out / f'bench-infer-{model}.json'}")
    return out


def save_report(report: dict, path: str | Path | None, *, overwrite: bool = False) -> Path:
    """The JSON report at `path` (default bench-infer-MODEL.json); an existing file only with `overwrite`."""
    return save_file_output(report_path(path, report["model"]), overwrite=overwrite,
                            write=lambda p: atomic_write_text(p, json.dumps(report, indent=2) + "\n"))

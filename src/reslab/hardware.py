"""What machine a result came from: printed by benchmarks and written into reports."""

from __future__ import annotations

import ctypes
import os
import platform
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

from reslab.errors import ReslabError


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
# `reslab --cpu-flags "avx2 fma avx512f"` (or this variable) makes every automatic choice act as on a CPU with
# only these flags: how the tests check the choices of a machine without bf16 on one that has it.
SIMULATED_FLAGS_ENV = "RESLAB_CPU_FLAGS"


def cpu_flags() -> list[str]:
    """The instruction-set flags of CPU_FLAGS this CPU has (/proc/cpuinfo), or the simulated ones of
    $RESLAB_CPU_FLAGS (space- or comma-separated; "none": no flag) when it is set."""
    simulated = os.environ.get(SIMULATED_FLAGS_ENV)
    if simulated is None:
        return _detected_flags()
    given = set(simulated.replace(",", " ").split()) - {"none"}
    unknown = sorted(given - set(CPU_FLAGS))
    if unknown:
        raise ReslabError(f"unknown CPU flag(s) {', '.join(unknown)} in {SIMULATED_FLAGS_ENV}={simulated!r}; "
                          f"choose from {' '.join(CPU_FLAGS)} (or none)")
    return [w for w in CPU_FLAGS if w in given]


def simulated_flags() -> bool:
    """Whether the flags come from $RESLAB_CPU_FLAGS instead of the CPU."""
    return SIMULATED_FLAGS_ENV in os.environ


@cache
def _detected_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in CPU_FLAGS if w in have]
    except OSError:
        pass
    return []


def describe(device: torch.device | str | None = None) -> dict[str, str]:
    info = {
        "cpu": cpu_model(),
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "cpu_flags": " ".join(cpu_flags()) + (f" (simulated: {SIMULATED_FLAGS_ENV})" if simulated_flags() else ""),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def describe_line(device: torch.device | str | None = None) -> str:
    d = describe(device)
    gpu = f", GPU {d['gpu']}" if "gpu" in d else ""
    return (f"{d['cpu']} ({d['cores']} cores, {d['torch_threads']} torch threads; {d['cpu_flags'] or 'no flags'})"
            f"{gpu}; torch {d['torch']}, Python {d['python']}")


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), so bf16 math is a speed-up
    rather than an emulation."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def matmul_gflops(dtype: torch.dtype, device: torch.device | str = "cpu", n: int = 2048, reps: int = 3) -> float:
    """Best of `reps` timed n x n matrix products, in GFLOP/s (2 n^3 per product): the machine's
    measured peak for dense math in `dtype` (a measurement, not the data sheet's figure). int8:
    `torch._int_mm` (int8 x int8 -> int32, oneDNN's VNNI / AMX-int8 kernels), in GOP/s. The products'
    side is `probe_size`'s (smaller for emulated bf16)."""
    device = torch.device(device)
    n = probe_size(dtype, device, n)
    if dtype == torch.int8:
        a8, b8 = (torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device) for _ in range(2))
        return _best_rate(lambda: torch._int_mm(a8, b8), n, reps, device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return _best_rate(lambda: a @ b, n, reps, device)


def probe_size(dtype: torch.dtype, device: torch.device | str = "cpu", n: int = 2048) -> int:
    """The side of the products `matmul_gflops(dtype, device, n)` times, which a benchmark's JSON records
    beside the rate: n, or at most 512 for bf16 on a CPU without bf16 instructions, where it is emulated
    at about 1 GFLOP/s (AMD Zen 2: 14 s per 2048 product): the same rate, 64x less work."""
    emulated = dtype == torch.bfloat16 and torch.device(device).type == "cpu" and not native_bf16_cpu()
    return min(n, 512) if emulated else n


def _best_rate(product: Callable[[], object], n: int, reps: int, device: torch.device) -> float:
    """GFLOP/s of the fastest of `reps` timed calls of an n x n `product`, after one untimed call."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    product()
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        product()
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """The device `name` asks for (auto | cpu | cuda | cuda:N), checked to exist here. Under torchrun
    (`local_rank` given) CUDA means this process's own GPU, cuda:<local_rank>."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReslabError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
        return torch.device("cuda", local_rank) if local_rank is not None else torch.device(name)
    if name != "cpu":
        raise ReslabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is a speed-up on `device`: CUDA, or a CPU with bf16 instructions (AVX512-BF16
    or AMX); measured figures in docs/benchmarks.md. Weights, optimiser and loss stay fp32 either way."""
    return device.type == "cuda" or (device.type == "cpu" and native_bf16_cpu())


def check_device(name: str) -> torch.device:
    """The device a `--device` flag names (auto | cpu | cuda | cuda:N), as `pick_device`, with the
    name's form checked first and a cuda:N this machine lacks refused: each a one-line ReslabError."""
    kind, _, index = name.partition(":")
    if name != "auto" and (kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index)):
        raise ReslabError(f"unknown device. Received: --device {name}; expected auto, cpu, cuda or cuda:N")
    device = pick_device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ReslabError(f"device {name} is not available: this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s). Received: --device {name}; use --device cpu or auto")
    return device


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads do not help dense convs)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return logical
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    smt = max(1, (os.cpu_count() or 1) // len(cores)) if cores else 1
    return max(1, logical // smt)


def tune_malloc() -> bool:
    """Ask glibc to keep freed memory instead of unmapping it (what jemalloc/tcmalloc give
    PyTorch CPU deployments); eager PyTorch otherwise page-faults its large activation
    buffers in again on every call. Process-wide; returns False where it is unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False
def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can have without swapping (MemAvailable), or None off Linux."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_allocation(nbytes: int, what: str, fix: str) -> None:
    """A one-line ReslabError, before allocating, when `nbytes` for `what` exceed the memory available."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise ReslabError(f"{what} would need about {nbytes / 2**30:,.1f} GiB, more than the "
                          f"{free / 2**30:,.1f} GiB of memory available; {fix}")

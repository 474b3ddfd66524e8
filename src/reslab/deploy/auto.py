"""`--path auto` where a faster path can repay its build: the fastest accurate path, measured.

Candidates: the fp32 path (onnxruntime where installed, else channels-last) and the reduced-precision
ones the CPU has instructions for: bf16 (`bf16-compiled` for a server or a large job, plain `bf16` for a
middling one; avx512_bf16 or amx_bf16 only: elsewhere bf16 is emulated, 100x slower) and, for a server
or a large job with calibration images, int8 (`int8-torchao`, `int8-ort`; VNNI or AMX-int8, else AVX2's
u8s8 multiply-add). Each is built and timed on the example batch (images/s of its fastest of 5
calls after a warm-up one). A reduced-precision path is accepted only when its top-1 agrees with the
fp32 model's (eager) on at least AGREE_MIN of the check images, a held-out sample: a few dozen of the images being
predicted, or for a server the calibration images int8 did not calibrate on. Without check images no
reduced-precision path is considered. The fastest accepted path serves; one line per candidate says
its speed and agreement, and one what was picked and why.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reslab import hardware
from reslab.deploy.fast import InferenceEngine, build_engine, time_call
from reslab.deploy.paths import INT8_PATHS
from reslab.errors import ReslabError

AGREE_MIN = 0.99  # top-1 agreement with fp32 a reduced-precision path needs to be served
CHECK_MAX = 48  # check images used at most ("a few dozen")
REDUCED_LONG = ("bf16-compiled", *INT8_PATHS)  # a server's or a large job's reduced-precision candidates
REDUCED_SHORT = ("bf16",)  # a middling job's: nothing with a compile or a calibration to repay


@dataclass
class Candidate:
    engine: InferenceEngine
    images_per_s: float
    agreement: float | None  # top-1 agreement with fp32 on the check images; None: fp32 itself
    accepted: bool

    def line(self, n_check: int) -> str:
        agree = ("fp32, the reference" if self.agreement is None else
                 f"top-1 agreement {100 * self.agreement:.1f}% on {n_check} held-out images "
                 f"({'accepted' if self.accepted else f'rejected: below {100 * AGREE_MIN:.0f}%'})")
        return f"{self.engine.name}: {self.images_per_s:,.1f} images/s, {agree}, built in {self.engine.build_s:.1f} s"


def say(line: str) -> None:
    print(f"reslab: path auto: {line}", file=sys.stderr, flush=True)


def images_per_s(engine: InferenceEngine, example: Tensor, repeats: int) -> float:
    """Images per second of `engine` on `example`: its fastest of `repeats` calls after a warm-up one. The
    fastest, not the median: on a shared machine the other calls measure the neighbours (docs/benchmarks.md,
    "--path auto measured": one path's median moved 37x between two processes)."""
    return len(example) / min(time_call(lambda: engine(example), repeats=repeats))


def fp32_path() -> str:
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "channels-last"


def reduced_paths(candidates: Sequence[str], *, calib: Tensor | None, check: Tensor | None,
                  log: Callable[[str], None] = say) -> list[str]:
    """The reduced-precision paths of `candidates` this CPU and these images allow; a line for each left out."""
    flags, kept = set(hardware.cpu_flags()), []
    for path in candidates:
        if check is None or len(check) == 0:
            why = "no images to check its agreement with fp32 (pass --calib DIR with a few dozen typical images)"
        elif path.startswith("bf16") and not hardware.native_bf16_cpu():
            why = "the CPU has no bf16 instructions (avx512_bf16, amx_bf16)"
        elif path.startswith("int8") and not flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx2"}:
            why = "the CPU has no int8 multiply-add instructions (VNNI, AMX-int8, AVX2)"
        elif path.startswith("int8") and calib is None:
            why = "no calibration images (--calib DIR)"
        elif importlib.util.find_spec({"int8-ort": "onnxruntime", "int8-torchao": "torchao"}.get(path, "torch")) \
                is None:
            why = f"{'onnxruntime' if path == 'int8-ort' else 'torchao'} is not installed"
        else:
            kept.append(path)
            continue
        log(f"{path}: not considered: {why}")
    return kept


def choose_auto(net: nn.Module, example: Tensor, *, candidates: Sequence[str], check: Tensor | None,
                calib: Tensor | None = None, repeats: int = 5, threads: int | None = None,
                log: Callable[[str], None] = say) -> InferenceEngine:
    """The fastest of the fp32 path and the reduced-precision `candidates` whose top-1 agrees with `net`'s
    (fp32, eager) on >= AGREE_MIN of `check` (N, C, H, W); int8 paths calibrate on `calib`."""
    fp32 = build_engine(net, fp32_path(), example, threads=threads)
    rows = [Candidate(fp32, images_per_s(fp32, example, repeats), None, True)]
    paths = reduced_paths(candidates, calib=calib, check=check, log=log)
    if paths:
        assert check is not None
        with torch.inference_mode():
            ref = net.eval()(check).argmax(1)
    for path in paths:
        assert check is not None
        try:
            engine = build_engine(net, path, example, calib, threads=threads)
        except (ReslabError, RuntimeError, ImportError) as e:
            log(f"{path}: not considered: it did not build here ({str(e).splitlines()[0][:160]})")
            continue
        agree = float((engine(check).argmax(1) == ref).float().mean())
        rows.append(Candidate(engine, images_per_s(engine, example, repeats), agree, agree >= AGREE_MIN))
    n_check = 0 if check is None else len(check)
    for row in rows:
        log(row.line(n_check))
    best = max((r for r in rows if r.accepted), key=lambda r: r.images_per_s)
    why = "the fastest of the paths that agree" if len(rows) > 1 else "the only candidate"
    rejected = [r.engine.name for r in rows if not r.accepted and r.images_per_s > best.images_per_s]
    speedup = best.images_per_s / rows[0].images_per_s
    log(f"picked {best.engine.name} ({best.images_per_s:,.1f} images/s, {speedup:.2f}x {fp32.name}): {why}"
        + (f"; faster but rejected on agreement: {', '.join(rejected)}" if rejected else ""))
    return best.engine

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

OpenVINO (`openvino`, optional) is a candidate wherever it is installed, for every job auto measures:
its precision is its own choice, read from the compiled model once built. bf16 or fp16 (its default
on CPUs with AMX or avx512_bf16) is a reduced-precision path under the rule above; fp32 is a peer of
the fp32 path, accepted without a check. It is in the middling job's set too because its build is
cheap there: it runs the ONNX export onnxruntime's fp32 path makes anyway, so its own cost is OpenVINO's
compile (0.2 s for ResNet-20 and 0.8 s for ResNet-50 on a 2-core Xeon with AMX, under load) and
about as much again for each other batch size it meets; against onnxruntime fp32 (31 vs 123 images/s
for ResNet-50 in bf16, docs/benchmarks.md) a second is repaid within 50 images (for ResNet-20, 494 vs
2,021 images/s, half a second within about 300). Without onnxruntime its export is its own, the cost
the middling job already accepts for onnxruntime.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reslab import hardware
from reslab.deploy.fast import InferenceEngine, build_engine, onnx_bytes, time_call
from reslab.deploy.paths import INT8_PATHS
from reslab.errors import ReslabError

AGREE_MIN = 0.99  # top-1 agreement with fp32 a reduced-precision path needs to be served
CHECK_MAX = 48  # check images used at most ("a few dozen")
# OpenVINO at its default precision: bf16 on CPUs with bf16 instructions, else fp32; it says which once built
OPENVINO = "openvino"
REDUCED_LONG = ("bf16-compiled", *INT8_PATHS, OPENVINO)  # a server's or a large job's candidates beside fp32
REDUCED_SHORT = ("bf16", OPENVINO)  # a middling job's: nothing with a compile of seconds or a calibration to repay


@dataclass
class Candidate:
    engine: InferenceEngine
    images_per_s: float
    agreement: float | None  # top-1 agreement with fp32 on the check images; None: an fp32 path, not checked
    accepted: bool
    reference: bool = False  # the fp32 path the others are compared with

    def line(self, n_check: int) -> str:
        if self.agreement is not None:
            agree = (f"top-1 agreement {100 * self.agreement:.1f}% on {n_check} held-out images "
                     f"({'accepted' if self.accepted else f'rejected: below {100 * AGREE_MIN:.0f}%'})")
        else:
            agree = "fp32, the reference" if self.reference else "fp32, a peer of the reference (no check needed)"
        return f"{self.engine.name}: {self.images_per_s:,.1f} images/s, {agree}, built in {self.engine.build_s:.1f} s"


def say(line: str) -> None:
    print(f"reslab: path auto: {line}", file=sys.stderr, flush=True)


def images_per_s(engine: InferenceEngine, example: Tensor, repeats: int) -> float:
    """Images per second of `engine` on `example`: its fastest of `repeats` calls after a warm-up one. The
    fastest, not the median: on a shared machine the other calls measure the neighbours (docs/benchmarks.md,
    "--path auto measured": one path's median moved 37x between two processes)."""
    return len(example) / min(time_call(lambda: engine(example), repeats=repeats))


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def fp32_path() -> str:
    return "onnxruntime" if installed("onnxruntime") else "channels-last"


NO_CHECK = "no images to check its agreement with fp32 (pass --calib DIR with a few dozen typical images)"


def reduced_paths(candidates: Sequence[str], *, calib: Tensor | None, check: Tensor | None,
                  log: Callable[[str], None] = say) -> list[str]:
    """The paths of `candidates` this CPU, these images and the installed packages allow; a line for each
    left out. OpenVINO stays in without check images: it may compute in fp32, which is known once built."""
    flags, kept = set(hardware.cpu_flags()), []
    for path in candidates:
        if path == OPENVINO:
            why = "" if installed("openvino") else "OpenVINO is not installed (pip install reslab[openvino])"
        elif check is None or len(check) == 0:
            why = NO_CHECK
        elif path.startswith("bf16") and not hardware.native_bf16_cpu():
            why = "the CPU has no bf16 instructions (avx512_bf16, amx_bf16)"
        elif path.startswith("int8") and not flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx2"}:
            why = "the CPU has no int8 multiply-add instructions (VNNI, AMX-int8, AVX2)"
        elif path.startswith("int8") and calib is None:
            why = "no calibration images (--calib DIR)"
        elif not installed({"int8-ort": "onnxruntime", "int8-torchao": "torchao"}.get(path, "torch")):
            why = f"{'onnxruntime' if path == 'int8-ort' else 'torchao'} is not installed"
        else:
            why = ""
        if why:
            log(f"{path}: not considered: {why}")
        else:
            kept.append(path)
    return kept


def _agreement(engine: InferenceEngine, check: Tensor | None, ref: Tensor | None) -> float:
    """Fraction of `check`'s rows whose top-1 under `engine` is `ref`'s (fp32's arg-max, (N,))."""
    assert check is not None and ref is not None
    return float((engine(check).argmax(1) == ref).float().mean())


def choose_auto(net: nn.Module, example: Tensor, *, candidates: Sequence[str], check: Tensor | None,
                calib: Tensor | None = None, repeats: int = 5, threads: int | None = None,
                log: Callable[[str], None] = say) -> InferenceEngine:
    """The fastest of the fp32 path and the `candidates` whose top-1 agrees with `net`'s (fp32, eager) on
    >= AGREE_MIN of `check` (N, C, H, W); int8 paths calibrate on `calib`. An OpenVINO candidate is judged
    by the precision its compiled model reports: bf16 / fp16 as a reduced-precision path, fp32 as a peer
    of the fp32 path (accepted unchecked, as the fp32 path itself); it runs the fp32 path's ONNX export
    when that is onnxruntime, so its build adds only OpenVINO's compile."""
    paths = reduced_paths(candidates, calib=calib, check=check, log=log)
    has_check = check is not None and len(check) > 0
    ref_path, onnx, export_s = fp32_path(), None, 0.0
    if ref_path == "onnxruntime" and OPENVINO in paths:
        start = time.perf_counter()
        onnx = onnx_bytes(net, example)  # one export for both (most of either build)
        export_s = time.perf_counter() - start
    fp32 = build_engine(net, ref_path, example, threads=threads, onnx=onnx)
    fp32.build_s += export_s
    rows = [Candidate(fp32, images_per_s(fp32, example, repeats), None, True, reference=True)]
    ref = None
    if has_check and paths:
        assert check is not None
        with torch.inference_mode():
            ref = net.eval()(check).argmax(1)
    errors: tuple[type[BaseException], ...] = (ReslabError, RuntimeError, ImportError)
    if OPENVINO in paths:
        from reslab.deploy.openvino_engine import openvino_errors

        errors += openvino_errors()  # OpenVINO's own exceptions are not RuntimeErrors
    for path in paths:
        try:
            engine = build_engine(net, path, example, calib, threads=threads, onnx=onnx)
            # OpenVINO computing in fp32 is a peer of the reference: accepted without a check, as it is
            peer = path == OPENVINO and getattr(engine, "precision", None) == "fp32"
            if not peer and ref is None:
                log(f"{engine.name}: not considered: {NO_CHECK}")
                continue
            agree = None if peer else _agreement(engine, check, ref)
            speed = images_per_s(engine, example, repeats)
        except errors as e:
            log(f"{path}: not considered: it did not build here ({str(e).splitlines()[0][:160]})")
            continue
        rows.append(Candidate(engine, speed, agree, agree is None or agree >= AGREE_MIN))
    n_check = len(check) if has_check and check is not None else 0
    for row in rows:
        log(row.line(n_check))
    best = max((r for r in rows if r.accepted), key=lambda r: r.images_per_s)
    why = "the fastest of the paths that agree" if len(rows) > 1 else "the only candidate"
    rejected = [r.engine.name for r in rows if not r.accepted and r.images_per_s > best.images_per_s]
    speedup = best.images_per_s / rows[0].images_per_s
    log(f"picked {best.engine.name} ({best.images_per_s:,.1f} images/s, {speedup:.2f}x {fp32.name}): {why}"
        + (f"; faster but rejected on agreement: {', '.join(rejected)}" if rejected else ""))
    return best.engine

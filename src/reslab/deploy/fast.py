"""Fast CPU inference paths, each an `InferenceEngine`: (N, C, H, W) float32 -> (N, K) logits.

Paths, cheapest to build first:
  eager          the model as trained, NCHW fp32.
  folded         every BatchNorm after a conv folded into that conv's weights and bias.
  channels-last  folded, with weights and activations in NHWC (oneDNN's preferred layout).
  bf16           folded + channels-last with bf16 weights and activations (logits returned
                 as fp32). Reduced precision, so never chosen as an fp32 path: opt in. Only
                 on CPUs with bf16 instructions (avx512_bf16, amx_bf16), where oneDNN runs it
                 at about 4x the fp32 matrix rate; elsewhere it is an error, not an emulation.
  compiled       folded + channels-last through `torch.compile` with inductor freezing
                 (weights become constants, convs are pre-packed); 10 s to build for ResNet-50.
  bf16-compiled  bf16 through `torch.compile` with freezing: the convs' bf16 weights pre-packed
                 once into oneDNN's blocked layout instead of reordered on every eager call;
                 for ResNet-50 at batch 16 on the EPYC 1.17x the bf16 path's images/s and
                 0.64x its batch-1 latency (docs/benchmarks.md). The same CPUs as bf16.
  onnxruntime    ONNX export (dynamic batch) run by onnxruntime, all graph optimisations on.
  openvino       the same ONNX export run by OpenVINO's CPU plugin at its default precision:
                 bf16 on CPUs with bf16 instructions (AMX, avx512_bf16), fp32 elsewhere; the
                 engine's `precision` and name ("openvino (bf16)") say which. One graph per
                 batch size (powers of two up to the example's, about a second each for
                 ResNet-50). On a Xeon with AMX, under load, 4.1x reslab's best path for
                 ResNet-20 and 0.74x bf16-compiled for ResNet-50 (docs/benchmarks.md).
                 Optional: `pip install reslab[openvino]` (deploy/openvino_engine.py).
  int8-ort       onnxruntime static quantisation: QDQ, per-channel int8 weights, uint8
                 activations calibrated on sample images (U8S8, the VNNI-friendly pair).
  int8-torchao   PyTorch's own int8: torchao's pt2e flow with X86InductorQuantizer (per-channel
                 int8 weights, uint8 activations, calibrated on the same images), lowered by
                 inductor with freezing to oneDNN's VNNI / AMX-int8 kernels; a minute to build.
  int8           both int8 paths built and timed on the example batch; the faster one serves
                 (one of them alone where the other cannot be built here).

torchao needs `torch.export(strict=True)`: torch 2.14's default non-strict export leaves out the
per-call source names, so the quantiser sees the three uses of a block's one ReLU module as a
single node with three outputs and stops ("Input partition has more than one output node").
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from reslab import hardware
from reslab.deploy.paths import FP32_CANDIDATES, INT8_PATHS, PATHS
from reslab.errors import ReslabError
from reslab.models.blocks import BasicBlock, Bottleneck
from reslab.models.resnet import ResNet


class InferenceEngine:
    """A ready inference path: `engine(x)` maps float32 (N, C, H, W) to float32 logits (N, K).

    `name` says which path it is; `build_s` is the seconds spent building it (export,
    compile, calibration), so a benchmark can report that cost too.
    """

    def __init__(self, name: str, run: Callable[[Tensor], Tensor], *, build_s: float = 0.0) -> None:
        self.name, self._run, self.build_s = name, run, build_s

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a batch (N, C, H, W). Received shape {tuple(x.shape)}")
        return self._run(x.float())

    def __repr__(self) -> str:
        return f"InferenceEngine({self.name!r}, build_s={self.build_s:.1f})"



# ---------------------------------------------------------------------------- BN folding
def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv then BN (eval statistics) as one conv: w' = w * g/s, b' = (b - mu) * g/s + beta, s = sqrt(var + eps)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight.detach() * scale.view(-1, 1, 1, 1), requires_grad=False)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach(), requires_grad=False)
    return fused


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
            and bn.affine and conv.out_channels == bn.num_features)


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` with each BatchNorm2d that directly follows a Conv2d folded into it.

    Pairs: `convK`/`bnK` in the ResNet stem and blocks (whose forward applies bnK to convK's
    output), and consecutive children of an nn.Sequential (the projection shortcuts,
    `downsample` = conv, BN). The BN becomes nn.Identity. Eval mode only: training BN uses
    batch statistics, which cannot be folded.
    """

    if model.training:
        raise ValueError("fold_bn needs an eval-mode model (BN running statistics); call model.eval() first")
    folded = copy.deepcopy(model)
    for parent in folded.modules():
        if isinstance(parent, (ResNet, BasicBlock, Bottleneck)):
            for i in (1, 2, 3):
                conv, bn = getattr(parent, f"conv{i}", None), getattr(parent, f"bn{i}", None)
                if conv is not None and bn is not None and _foldable(conv, bn):
                    setattr(parent, f"conv{i}", _fold_conv_bn(conv, bn))
                    setattr(parent, f"bn{i}", nn.Identity())
        elif isinstance(parent, nn.Sequential):
            for i in range(len(parent) - 1):
                if _foldable(parent[i], parent[i + 1]):
                    parent[i] = _fold_conv_bn(parent[i], parent[i + 1])
                    parent[i + 1] = nn.Identity()
    return folded.eval()


# ---------------------------------------------------------------------------- ONNX
def onnx_bytes(model: nn.Module, example_input: Tensor, *, opset: int | None = None) -> bytes:
    """Export `model` to ONNX with a dynamic batch dimension: input "input", output "logits"."""
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    # A batch of 1 would be specialised away; trace with at least 2.
    x = example_input[:1].expand(max(2, example_input.shape[0]), *example_input.shape[1:]).contiguous()
    kwargs = {"opset_version": opset} if opset else {}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(model, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                        dynamic_shapes=({0: batch},), optimize=True, verbose=False, **kwargs)
            return program.model_proto.SerializeToString()
        except Exception as e:  # the TorchScript exporter still handles what torch.export cannot
            first_error = e
        buf = io.BytesIO()
        try:
            torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kwargs)
        except Exception as e:
            raise ReslabError(f"ONNX export failed: {first_error}; legacy exporter: {e}") from e
        return buf.getvalue()


def ort_session(model: bytes | str | Path, *, threads: int | None = None):
    """An onnxruntime CPU session: all graph optimisations, `threads` intra-op threads (default: physical cores)."""
    ort = _import_ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or hardware.physical_cores()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _import_ort():
    try:
        import onnxruntime
    except ModuleNotFoundError as e:
        raise ReslabError("this path needs onnxruntime; install it with `pip install reslab[deploy]`") from e
    return onnxruntime


def ort_runner(session) -> Callable[[Tensor], Tensor]:
    """Run an onnxruntime session as a function: (N, C, H, W) float32 -> (N, K) logits."""
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: x.contiguous().numpy()})[0])

    return run


def quantize_onnx(model: bytes, calib: Tensor, *, batch_size: int = 8) -> bytes:
    """Static int8 quantisation of an fp32 ONNX model, calibrated on `calib` (N, C, H, W).

    QDQ format, per-channel symmetric int8 weights, uint8 activations (MinMax calibration).
    """
    _import_ort()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calib is None or len(calib) == 0:
        raise ReslabError("int8 needs calibration images; pass a few dozen representative images (--calib DIR)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calib[i:i + batch_size].contiguous().numpy()}
                                 for i in range(0, len(calib), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="reslab-int8-") as tmp:
        fp32, pre, q8 = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        fp32.write_bytes(model)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # shape inference + graph cleanup, as onnxruntime advises before quantising
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            except Exception:
                pre = fp32
            quantize_static(str(pre), str(q8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return q8.read_bytes()


def quantize_torchao(model: nn.Module, example_input: Tensor, calib: Tensor) -> nn.Module:
    """`model` (eval) quantised by torchao's pt2e flow for x86: exported at `example_input`'s shape,
    annotated by X86InductorQuantizer (its default static config: per-channel int8 weights, uint8
    activations with MinMax observers), calibrated on `calib` (N, C, H, W) in chunks of the example's
    batch, converted to quantize/dequantize pairs that inductor lowers to int8 oneDNN kernels."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ModuleNotFoundError as e:
        raise ReslabError("the int8-torchao path needs torchao; install it with `pip install reslab[deploy]`") from e
    if calib is None or len(calib) == 0:
        raise ReslabError("int8 needs calibration images; pass a few dozen representative images (--calib DIR)")
    batch = example_input.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model.eval(), (example_input,), strict=True).module()
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for chunk in calib.split(batch):
                prepared(_pad_to(chunk, batch))
        return convert_pt2e(prepared)


def _pad_to(x: Tensor, batch: int) -> Tensor:
    """`x` with its last row repeated up to `batch` rows (a fixed-shape graph's input)."""
    n = x.shape[0]
    return x if n == batch else torch.cat([x, x[-1:].expand(batch - n, *x.shape[1:])])


# ---------------------------------------------------------------------------- engines
def _torch_runner(module: nn.Module, *, channels_last: bool, dtype: torch.dtype = torch.float32
                  ) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            x = x.to(dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return module(x).float()

    return run


def _bf16_module(model: nn.Module) -> nn.Module:

    if not hardware.native_bf16_cpu():
        raise ReslabError("the bf16 path needs a CPU with bf16 instructions (avx512_bf16 or amx_bf16), which this "
                          "one lacks; use channels-last, compiled or onnxruntime (fp32) or int8 instead")
    return fold_bn(model).to(memory_format=torch.channels_last, dtype=torch.bfloat16)


def _compiled_runner(module: nn.Module, example_input: Tensor, *, channels_last: bool = True,
                     dtype: torch.dtype = torch.float32) -> Callable[[Tensor], Tensor]:
    """torch.compile with inductor freezing for the example's batch size; inputs cast to `dtype` (the
    module's), logits returned as float32.

    Other batch sizes are padded up to it or split into chunks of it, so one compile
    serves every call (each new shape would otherwise cost a fresh compile).
    """
    import torch._inductor.config as inductor_config

    batch = example_input.shape[0]
    compiled = torch.compile(module, dynamic=False)

    def call(x: Tensor) -> Tensor:
        x = x.to(dtype)
        with torch.no_grad(), inductor_config.patch(freezing=True):
            out = compiled(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
            return out.float() if out.dtype != torch.float32 else out.clone()

    call(example_input)  # compile now, so that failures surface here and timing excludes it

    def run(x: Tensor) -> Tensor:
        outs = []
        for chunk in x.split(batch):
            outs.append(call(_pad_to(chunk, batch))[:chunk.shape[0]])
        return torch.cat(outs)

    return run


def build_engine(
    model: nn.Module, path: str, example_input: Tensor, calib: Tensor | None = None, *, threads: int | None = None,
    onnx: bytes | None = None,
) -> InferenceEngine:
    """Build inference path `path` (one of PATHS) for `model` and inputs shaped like `example_input`.

    `calib` (N, C, H, W) are preprocessed sample images for the int8 paths; `threads` sets
    onnxruntime's and OpenVINO's threads (torch uses `torch.get_num_threads()`). "compiled" falls
    back to channels-last eager with a warning if torch.compile fails. `onnx`: `onnx_bytes(model,
    example_input)` made already, which the onnxruntime and openvino paths then run instead of
    exporting again (the export is most of their build). "openvino" without OpenVINO installed is a
    ReslabError that says how to install it.
    """
    if path not in PATHS:
        raise ReslabError(f"unknown inference path {path!r}; choose one of auto, fastest, {', '.join(PATHS)}")
    model = model.eval()
    start = time.perf_counter()
    if path == "eager":
        run = _torch_runner(model, channels_last=False)
    elif path == "folded":
        run = _torch_runner(fold_bn(model), channels_last=False)
    elif path == "channels-last":
        run = _torch_runner(fold_bn(model).to(memory_format=torch.channels_last), channels_last=True)
    elif path == "bf16":
        run = _torch_runner(_bf16_module(model), channels_last=True, dtype=torch.bfloat16)
    elif path in ("compiled", "bf16-compiled"):
        bf16 = path == "bf16-compiled"
        dtype, eager_name = (torch.bfloat16, "bf16") if bf16 else (torch.float32, "channels-last")
        prepared = _bf16_module(model) if bf16 else fold_bn(model).to(memory_format=torch.channels_last)
        try:
            run = _compiled_runner(prepared, example_input, dtype=dtype)
        except Exception as e:
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                          f"using {eager_name} eager instead", RuntimeWarning, stacklevel=2)
            return InferenceEngine(f"{eager_name} (compile failed)",
                                   _torch_runner(prepared, channels_last=True, dtype=dtype),
                                   build_s=time.perf_counter() - start)
    elif path == "onnxruntime":
        run = ort_runner(ort_session(onnx or onnx_bytes(model, example_input), threads=threads))
    elif path == "openvino":
        from reslab.deploy.openvino_engine import build_openvino_path  # imports openvino only when asked

        engine = build_openvino_path(model, example_input, threads=threads, onnx=onnx)
        engine.build_s = time.perf_counter() - start  # the export too, not only OpenVINO's compile
        return engine
    elif path == "int8":
        return fastest_int8(model, example_input, calib, threads=threads)
    else:  # int8-ort, int8-torchao
        if calib is None:
            raise ReslabError("the int8 paths need calibration images (calib=...)")
        if path == "int8-ort":
            run = ort_runner(ort_session(quantize_onnx(onnx_bytes(model, example_input), calib), threads=threads))
        else:
            run = _compiled_runner(quantize_torchao(model, example_input, calib), example_input, channels_last=False)
    return InferenceEngine(path, run, build_s=time.perf_counter() - start)


def agreement(ref: Tensor, out: Tensor) -> tuple[float, float]:
    """(max |ref - out|, fraction of rows with the same arg-max)."""
    return float((ref - out).abs().max()), float((ref.argmax(1) == out.argmax(1)).float().mean())


def fastest_int8(model: nn.Module, example_input: Tensor, calib: Tensor | None, *, threads: int | None = None,
                 repeats: int = 5) -> InferenceEngine:
    """`int8`: both int8 paths built, each timed on `example_input` (median of `repeats` after a warm-up
    call), the faster returned under its own name; one that cannot be built here is left out, with a
    warning. Its `build_s` is both builds and the timing."""
    if calib is None:
        raise ReslabError("the int8 paths need calibration images (calib=...)")
    start, built = time.perf_counter(), []
    for path in INT8_PATHS:
        try:
            built.append(build_engine(model, path, example_input, calib, threads=threads))
        except (ReslabError, RuntimeError, ImportError) as e:
            warnings.warn(f"int8: skipping {path}: {str(e).splitlines()[0][:200]}", RuntimeWarning, stacklevel=2)
    if not built:
        raise ReslabError(f"no int8 path could be built here ({', '.join(INT8_PATHS)}); install onnxruntime or "
                          "torchao (`pip install reslab[deploy]`)")
    best = faster_of(built, example_input, repeats=repeats)
    best.build_s = time.perf_counter() - start
    return best


def faster_of(engines: Sequence[InferenceEngine], example_input: Tensor, *, repeats: int = 3) -> InferenceEngine:
    """The engine of `engines` with the lowest median time on `example_input` (after a warm-up call)."""
    return min(engines, key=lambda e: statistics.median(time_call(lambda: e(example_input), repeats=repeats)))


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call, `warmup` untimed calls first."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def select_fastest(
    model: nn.Module,
    example_input: Tensor,
    *,
    paths: Sequence[str] = FP32_CANDIDATES,
    calib: Tensor | None = None,
    repeats: int = 3,
    threads: int | None = None,
    rtol: float = 1e-3,
) -> InferenceEngine:
    """Time each path on `example_input` and return the fastest that agrees with eager.

    Agreeing means the same top-1 on every row and max |logit difference| <= rtol * max
    |eager logit| (fp32 paths differ by rounding only). A path that fails to build is skipped.
    """
    eager = build_engine(model, "eager", example_input)
    ref = eager(example_input)
    agreeing = [eager]
    tol = rtol * max(1.0, float(ref.abs().max()))
    for path in paths:
        if path == "eager":
            continue
        try:
            engine = build_engine(model, path, example_input, calib, threads=threads)
        except (ReslabError, RuntimeError, ImportError) as e:
            warnings.warn(f"skipping {path}: {e}", RuntimeWarning, stacklevel=2)
            continue
        diff, top1 = agreement(ref, engine(example_input))
        if diff <= tol and top1 == 1.0:
            agreeing.append(engine)
    return faster_of(agreeing, example_input, repeats=repeats)

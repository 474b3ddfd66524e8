"""OpenVINO on reslab's ONNX export: the `openvino` inference path, and a peer row of `bench infer`.

OpenVINO (Intel's inference runtime) reads the ONNX file `onnx_bytes` writes, the same export onnxruntime
runs. Its CPU plugin picks its own precision: on CPUs with bf16 instructions (AVX512-BF16, AMX) its
default INFERENCE_PRECISION_HINT is bf16, elsewhere f32. `precision="default"` keeps that choice (what
an OpenVINO user gets, and what `--path openvino` runs), "f32" asks for fp32 arithmetic. The precision
the compiled model reports is the engine's `precision`, so a benchmark divides its rate by the matching
matmul probe and `--path auto` (deploy/auto.py) knows whether to check its agreement with fp32.

The graph is compiled for static shapes (the CPU plugin picks its kernels once per shape): for the
example's batch and, on first use, for the powers of two below it. A batch is padded up to the next
of these sizes and a larger one split into chunks of the example's, so a server whose batches take
every size from 1 to its maximum compiles at most log2(max) + 1 graphs (each well under a second
for ResNet-50 on a 2-core Xeon), none of them twice.

Optional: `pip install reslab[openvino]`. Without it, building the engine is a one-line ReslabError
that says so; so is a model OpenVINO cannot compile (its own exceptions are not RuntimeErrors).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from reslab import hardware
from reslab.deploy.fast import InferenceEngine, onnx_bytes
from reslab.errors import ReslabError

PRECISIONS = ("default", "f32")
INSTALL_HINT = "install it with `pip install reslab[openvino]` (OpenVINO 2026.4 or later)"
# OpenVINO's own exceptions (openvino._pyopenvino), subclasses of Exception, not of RuntimeError
_OV_ERRORS = ("GeneralFailure", "InitializationFailure", "NotImplementedFailure", "OpConversionFailure",
              "OpValidationFailure")


def openvino_version() -> str | None:
    """The installed OpenVINO's version, or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.get_version())


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise ReslabError(f"the openvino path needs OpenVINO, which is not installed here; {INSTALL_HINT}") from e
    return openvino


def openvino_errors() -> tuple[type[BaseException], ...]:
    """What OpenVINO raises: RuntimeError and its own exception classes (Exception's subclasses, not
    RuntimeError's, in OpenVINO 2026.4). OpenVINO must be installed."""
    try:
        import openvino._pyopenvino as native
    except ImportError:
        return (RuntimeError,)
    found = (getattr(native, name, None) for name in _OV_ERRORS)
    return (RuntimeError, *(e for e in found if isinstance(e, type) and issubclass(e, BaseException)))


def bucket(n: int, batch: int) -> int:
    """The compiled batch size a chunk of `n` <= `batch` rows runs at: the next power of two, at most `batch`."""
    return min(batch, 1 << (n - 1).bit_length())


class OpenVINOEngine(InferenceEngine):
    """An ONNX model run by OpenVINO's CPU plugin: (N, C, H, W) float32 -> (N, K) float32 logits; an
    InferenceEngine, so `faster_of` / `select_fastest` / `--path auto` can time it beside the others.

    `precision`: the arithmetic the compiled model reports ("bf16" or "fp32"; "fp16" where the plugin
    chose it); `build_s`: seconds to read the model and compile it for the first shape; `name`: "openvino
    f32" or "openvino default-bf16" (the bench rows: the precision asked for, and the one chosen)."""

    def __init__(self, onnx: bytes, example_input: Tensor, *, threads: int | None = None,
                 precision: str = "default") -> None:
        if precision not in PRECISIONS:
            raise ReslabError(f"unknown OpenVINO precision. Received: {precision!r}; "
                              f"choose from {', '.join(PRECISIONS)}")
        ov = _import_openvino()
        self._errors = openvino_errors()
        start = time.perf_counter()
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(onnx)
        except self._errors as e:
            raise ReslabError(f"OpenVINO could not read reslab's ONNX export ({_first_line(e)}); "
                              "use another --path (onnxruntime reads the same export)") from e
        self.config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads or hardware.physical_cores(),
                                       "PERFORMANCE_HINT": "LATENCY"}  # one request at a time, as every bench row
        if precision == "f32":
            self.config["INFERENCE_PRECISION_HINT"] = "f32"
        self._batch = int(example_input.shape[0])
        # every bucket of an image shape stays compiled (log2(batch) + 1 of them), for two image shapes
        self._kept = 2 * (self._batch.bit_length() + 1)
        self._requests: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        first = self._request(tuple(example_input.shape))
        hint = str(first.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")).lower()  # <Type: 'bfloat16'>
        self.precision = "bf16" if "bf" in hint else "fp16" if "16" in hint else "fp32"
        name = f"openvino {precision}" + (f"-{self.precision}" if precision == "default" else "")
        super().__init__(name, self._infer, build_s=time.perf_counter() - start)

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape in self._requests:
            self._requests.move_to_end(shape)
            return self._requests[shape]
        model = self._model.clone()
        try:
            model.reshape(list(shape))
            request = self._core.compile_model(model, "CPU", self.config).create_infer_request()
        except self._errors as e:
            raise ReslabError(f"OpenVINO could not compile the model for inputs of shape {list(shape)} "
                              f"({_first_line(e)}); use another --path") from e
        self._requests[shape] = request
        if len(self._requests) > self._kept:
            self._requests.popitem(last=False)
        return request

    def _infer(self, x: Tensor) -> Tensor:
        outs = [self._infer_chunk(chunk) for chunk in x.split(self._batch)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _infer_chunk(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        size = bucket(n, self._batch)
        if size > n:  # padded with copies of the last row; their logits are dropped
            x = torch.cat([x, x[-1:].expand(size - n, *x.shape[1:])])
        request = self._request(tuple(x.shape))
        request.infer({0: x.contiguous().numpy()}, share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data[:n].copy())


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:160] if lines else ''}"


def build_openvino_engine(model: nn.Module, example_input: Tensor, *, threads: int | None = None,
                          precision: str = "default", onnx: bytes | None = None) -> OpenVINOEngine:
    """`model` (eval mode) exported to ONNX as the onnxruntime path exports it (or `onnx`, that export made
    already), run by OpenVINO, compiled for `example_input`'s shape (N, C, H, W); smaller batches compile
    on their first call (see the module docstring)."""
    _import_openvino()  # the one-line error before an export of seconds
    if onnx is None:
        onnx = onnx_bytes(model.eval(), example_input)
    return OpenVINOEngine(onnx, example_input, threads=threads, precision=precision)


def build_openvino_path(model: nn.Module, example_input: Tensor, *, threads: int | None = None,
                        onnx: bytes | None = None) -> OpenVINOEngine:
    """The `openvino` path: OpenVINO at its default precision (the bench row "openvino default"), named
    "openvino (bf16)" / "openvino (fp32)" by the precision the compiled model reports."""
    engine = build_openvino_engine(model, example_input, threads=threads, onnx=onnx)
    engine.name = f"openvino ({engine.precision})"
    return engine

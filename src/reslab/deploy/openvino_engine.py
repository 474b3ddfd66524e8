"""OpenVINO on reslab's ONNX export: a peer of the onnxruntime path, timed beside it by `bench infer`.

OpenVINO (Intel's inference runtime) reads the ONNX file `onnx_bytes` writes, the same export onnxruntime
runs. Its CPU plugin picks its own precision: on CPUs with bf16 instructions (AVX512-BF16, AMX) its
default INFERENCE_PRECISION_HINT is bf16, elsewhere f32. `precision="default"` keeps that choice (what
an OpenVINO user gets), "f32" asks for fp32 arithmetic. The precision the compiled model reports is the
engine's `precision`, so a benchmark divides its rate by the matching matmul probe.

The graph is compiled for each input shape it meets (a static shape lets the CPU plugin pick its
kernels once), kept for the next call of that shape; a few shapes are kept, the oldest dropped.

Optional: `pip install reslab[openvino]`. Without it, building the engine is a one-line ReslabError
that says so.
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
_KEPT_SHAPES = 8


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


class OpenVINOEngine(InferenceEngine):
    """An ONNX model run by OpenVINO's CPU plugin: (N, C, H, W) float32 -> (N, K) float32 logits; an
    InferenceEngine, so `faster_of` / `select_fastest`'s callers can time it beside the others.

    `precision`: the arithmetic the compiled model reports ("bf16" or "fp32"; "fp16" where the plugin
    chose it); `build_s`: seconds to read the model and compile it for the first shape."""

    def __init__(self, onnx: bytes, example_input: Tensor, *, threads: int | None = None,
                 precision: str = "default") -> None:
        if precision not in PRECISIONS:
            raise ReslabError(f"unknown OpenVINO precision. Received: {precision!r}; "
                              f"choose from {', '.join(PRECISIONS)}")
        ov = _import_openvino()
        start = time.perf_counter()
        self._core = ov.Core()
        self._model = self._core.read_model(onnx)
        self.config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads or hardware.physical_cores(),
                                       "PERFORMANCE_HINT": "LATENCY"}  # one request at a time, as every bench row
        if precision == "f32":
            self.config["INFERENCE_PRECISION_HINT"] = "f32"
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
        model.reshape(list(shape))
        request = self._core.compile_model(model, "CPU", self.config).create_infer_request()
        self._requests[shape] = request
        if len(self._requests) > _KEPT_SHAPES:
            self._requests.popitem(last=False)
        return request

    def _infer(self, x: Tensor) -> Tensor:
        request = self._request(tuple(x.shape))
        request.infer({0: x.contiguous().numpy()}, share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


def build_openvino_engine(model: nn.Module, example_input: Tensor, *, threads: int | None = None,
                          precision: str = "default") -> OpenVINOEngine:
    """`model` (eval mode) exported to ONNX as the onnxruntime path exports it, run by OpenVINO, compiled
    for `example_input`'s shape (N, C, H, W); other shapes compile on their first call."""
    _import_openvino()  # the one-line error before an export of seconds
    return OpenVINOEngine(onnx_bytes(model.eval(), example_input), example_input, threads=threads,
                          precision=precision)

"""The inference paths and export formats by name: one torch-free table that `predict`, `export`, `serve` and
their flags share.

What each path does is deploy/fast.py's docstring (its table lists them in this order).
"""

from __future__ import annotations

PATHS: tuple[str, ...] = ("eager", "folded", "channels-last", "bf16", "compiled", "bf16-compiled", "onnxruntime",
                          "openvino", "int8-ort", "int8-torchao", "int8")
FIXED_SHAPE_PATHS: tuple[str, ...] = ("compiled", "bf16-compiled", "int8-torchao")  # one graph per batch size
INT8_PATHS: tuple[str, ...] = ("int8-ort", "int8-torchao")  # what "int8" chooses between
# select_fastest's default field: the fp32 paths that must agree with eager.
FP32_CANDIDATES: tuple[str, ...] = ("folded", "channels-last", "onnxruntime", "compiled")
# What --path accepts: a path, or a rule that picks one (auto: by batch size and CPU; fastest: timed).
CHOICES: tuple[str, ...] = ("auto", "fastest", *PATHS)
FORMATS: tuple[str, ...] = ("onnx", "torchscript", "exported-program")  # what `reslab export --format` writes

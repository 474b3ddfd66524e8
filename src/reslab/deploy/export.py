"""Export reslab weights for deployment and check the exported file against eager PyTorch.

Every format gets the BN-folded network (`fast.fold_bn`: same function, fewer ops) with a
dynamic batch dimension, and takes preprocessed input (N, C, H, W) float32 as described
by the weights' `model.json` (ONNX files carry that JSON in their metadata, key "reslab").
  onnx              torch.onnx (dynamo exporter); checked in onnxruntime at batch 1 and 3.
                    `int8=True`: static QDQ quantisation calibrated on `calib_images`.
  torchscript       torch.jit.trace, saved with torch.jit.save (deprecated upstream in
                    favour of torch.export; kept for C++ / older runtimes).
  exported-program  torch.export.export + torch.export.save (`.pt2`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from reslab.deploy.fast import agreement, fold_bn, onnx_bytes, ort_runner, ort_session, quantize_onnx
from reslab.deploy.images import image_mode, load_image, preprocess_image
from reslab.deploy.predict import expand_inputs
from reslab.errors import ReslabError
from reslab.weights import load_weights, resolve_weights

FORMATS: tuple[str, ...] = ("onnx", "torchscript", "exported-program")
_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}
CALIB_MAX = 256


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how closely it matches eager PyTorch on `batch` inputs."""

    path: Path
    format: str
    int8: bool
    batch: int
    max_abs_diff: float
    top1_agreement: float
    inputs: str  # what the parity batch was: "calibration images" or "random inputs"

    def summary(self) -> str:
        kind = f"{self.format}{' int8' if self.int8 else ''}"
        return (f"wrote {self.path} ({kind}); vs eager on {self.batch} {self.inputs}: "
                f"max |logit diff| {self.max_abs_diff:.3g}, top-1 agreement {self.top1_agreement:.1%}")


def load_calibration(images: str | Path | Sequence[str | Path], preprocess: dict, *, limit: int = CALIB_MAX
                     ) -> Tensor:
    """Preprocessed (N, C, H, W) batch of up to `limit` images from files or directories; bad files skipped."""
    files = expand_inputs([images] if isinstance(images, (str, Path)) else list(images))[:limit]
    mode = image_mode(preprocess)
    tensors = []
    for f in files:
        try:
            tensors.append(preprocess_image(load_image(f, mode=mode), preprocess))
        except ReslabError:
            continue
    if not tensors:
        raise ReslabError(f"{images}: no readable calibration images")
    return torch.stack(tensors)


def export(
    weights: str | Path,
    *,
    format: str,
    int8: bool = False,
    out: str | Path | None = None,
    calib_images: str | Path | Sequence[str | Path] | None = None,
) -> ExportResult:
    """Write `weights` as `format` to `out` (default: beside the weights, `model<suffix>`).

    Parity is measured on the calibration images when given (up to 16 of them), else on a
    fixed random batch of 4.
    """
    if format not in FORMATS:
        raise ReslabError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if int8 and format != "onnx":
        raise ReslabError(f"int8 export is available for --format onnx only. Received: --format {format}")
    if int8 and calib_images is None:
        raise ReslabError("--int8 needs --calib DIR: a few dozen representative images to calibrate the ranges")
    model, meta = load_weights(weights)
    pre = meta["preprocess"]
    if out is None:
        st, _ = resolve_weights(weights)
        out = st.with_name(f"model{'.int8' if int8 else ''}{_SUFFIX[format]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    calib = load_calibration(calib_images, pre) if calib_images is not None else None
    if calib is not None:
        x, source = calib[:16], "calibration images"
    else:
        crop = int(pre.get("crop") or pre.get("image_size") or 224)
        chans = 1 if image_mode(pre) == "L" else 3
        x, source = torch.randn(4, chans, crop, crop, generator=torch.Generator().manual_seed(0)), "random inputs"
    with torch.inference_mode():
        ref = model(x)
    net = fold_bn(model)
    if format == "onnx":
        got = _export_onnx(net, x, out, meta, calib if int8 else None)
    elif format == "torchscript":
        got = _export_torchscript(net, x, out)
    else:
        got = _export_program(net, x, out)
    diff, top1 = agreement(ref, got)
    return ExportResult(out, format, int8, x.shape[0], diff, top1, source)


def _export_onnx(net: nn.Module, x: Tensor, out: Path, meta: dict, calib: Tensor | None) -> Tensor:
    import onnx

    data = onnx_bytes(net, x)
    if calib is not None:
        data = quantize_onnx(data, calib)
    proto = onnx.load_from_string(data)
    public = {**meta, "preprocess": {k: v for k, v in meta["preprocess"].items() if k != "mean_image"}}
    entry = proto.metadata_props.add()
    entry.key, entry.value = "reslab", json.dumps(public)
    out.write_bytes(proto.SerializeToString())
    run = ort_runner(ort_session(out))
    for n in (1, 3):  # the batch dimension is dynamic
        got = run(x[:1].expand(n, *x.shape[1:]))
        if got.shape[0] != n:
            raise ReslabError(f"{out}: onnxruntime returned batch {got.shape[0]} for an input of batch {n}")
    return run(x)


def _export_torchscript(net: nn.Module, x: Tensor, out: Path) -> Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        traced = torch.jit.trace(net, x)
        torch.jit.save(traced, str(out))
        loaded = torch.jit.load(str(out))
    with torch.inference_mode():
        return loaded(x)


def _export_program(net: nn.Module, x: Tensor, out: Path) -> Tensor:
    batch = torch.export.Dim("batch", min=1, max=65536)
    xs = x if x.shape[0] > 1 else x.expand(2, *x.shape[1:]).contiguous()  # batch 1 would be specialised
    program = torch.export.export(net, (xs,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(out))
    loaded = torch.export.load(str(out)).module()
    with torch.inference_mode():
        return loaded(x)

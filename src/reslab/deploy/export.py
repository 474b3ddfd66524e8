"""Export reslab weights for deployment and check the exported file against eager PyTorch.

Exported files are self-contained: they take the raw image, not the preprocessed tensor,
and apply the weights' own normalisation (per-channel mean, or the per-pixel mean image
the paper subtracts, then the std) inside the graph. The input contract (`input_contract`,
stored in ONNX files under the metadata key "reslab.input", and in docs/deployment.md):
  name "input", uint8, shape (N, C, S, S) in NCHW layout, values 0..255,
  C = 3 (RGB, as Pillow's convert("RGB")) or 1 (grey, convert("L")), S = the view's side,
  the image already brought to S x S by the geometry in the metadata (`resize` the shorter
  side then centre-crop `crop`; or, without `resize`, resize to `image_size` squared).
Output "logits": float32 (N, classes), class names in the "reslab" metadata entry.

Every format gets the BN-folded network (`fast.fold_bn`: same function, fewer ops) with a
dynamic batch dimension:
  onnx              torch.onnx (dynamo exporter); checked in onnxruntime at batch 1 and 3.
                    `int8=True`: static QDQ quantisation calibrated on `calib_images`
                    (the normalisation stays fp32; onnxruntime quantises the network).
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

from reslab.console import notice
from reslab.deploy.fast import agreement, fold_bn, onnx_bytes, ort_runner, ort_session, quantize_onnx
from reslab.deploy.images import image_mode, mean_image_at, normalize_view, view_size
from reslab.deploy.paths import FORMATS
from reslab.deploy.predict import calibration_batch, expand_inputs
from reslab.errors import ReslabError
from reslab.fileio import atomic_write_bytes, atomic_write_serialized
from reslab.metadata import Preprocess, WeightsMeta
from reslab.outputs import claim_file
from reslab.weights import load_weights, resolve_weights

_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}
CALIB_MAX = 256
HOLD_OUT_EVERY = 4  # int8: every 4th calibration image checks the agreement and is left out of the calibration
INT8_AGREEMENT_MIN = 0.98  # int8 top-1 agreement with fp32 below this is a warning, with the figure


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how closely it matches eager PyTorch on `batch` inputs."""

    path: Path
    format: str
    int8: bool
    batch: int
    max_abs_diff: float
    top1_agreement: float
    inputs: str  # what the parity batch was: "calibration images", "held-out calibration images", "random images"
    warning: str | None = None  # int8 agreeing with fp32 on fewer than INT8_AGREEMENT_MIN of the held-out images

    def summary(self) -> str:
        kind = f"{self.format}{' int8' if self.int8 else ''}"
        return (f"wrote {self.path} ({kind}, input uint8 NCHW 0..255); vs eager on {self.batch} {self.inputs}: "
                f"max |logit diff| {self.max_abs_diff:.3g}, top-1 agreement {self.top1_agreement:.1%}")


class RawImageModel(nn.Module):
    """uint8 (N, C, S, S) raw pixels -> logits (N, classes): the weights' normalisation, then `net`.

    The same operations in the same order as `reslab.data.augment.normalize`: x / 255, minus the
    mean (per channel (1, C, 1, 1) or the per-pixel mean image (1, C, S, S)), divided by the std.
    """

    offset: Tensor
    std: Tensor

    def __init__(self, net: nn.Module, preprocess: Preprocess) -> None:
        super().__init__()
        self.net = net
        chans = 1 if image_mode(preprocess) == "L" else 3
        mean_image = mean_image_at(preprocess)
        offset = mean_image[None] if mean_image is not None else torch.tensor(
            preprocess["mean"], dtype=torch.float32).view(1, chans, 1, 1)
        std = torch.tensor(preprocess.get("std") or [1.0] * chans, dtype=torch.float32).view(1, chans, 1, 1)
        self.register_buffer("offset", offset.contiguous())
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x.float() / 255 - self.offset) / self.std)


def input_contract(preprocess: Preprocess) -> dict:
    """What an exported model takes, as plain data (written into ONNX metadata as "reslab.input")."""
    side = view_size(preprocess)
    grey = image_mode(preprocess) == "L"
    return {"name": "input", "dtype": "uint8", "range": [0, 255], "layout": "NCHW",
            "shape": ["N", 1 if grey else 3, side, side], "channels": "L" if grey else "RGB",
            "geometry": {k: preprocess.get(k) for k in ("resize", "crop", "image_size")},
            "normalisation": "inside the graph (mean and std of model.json, per-pixel mean image included)"}


def load_calibration(images: str | Path | Sequence[str | Path], preprocess: Preprocess, *, limit: int = CALIB_MAX
                     ) -> Tensor:
    """Raw uint8 (N, C, S, S) views of up to `limit` images from files or directories; unreadable ones are
    skipped and counted, and too few readable ones raise ReslabError (`predict.calibration_batch`)."""
    files = expand_inputs([images] if isinstance(images, (str, Path)) else list(images))[:limit]
    return calibration_batch(files, preprocess, raw=True)


def _out_path(weights: str | Path, out: str | Path | None, format: str, int8: bool) -> Path:
    if out is None:
        st, _ = resolve_weights(weights)
        out = st.with_name(f"model{'.int8' if int8 else ''}{_SUFFIX[format]}")
    out = Path(out)
    if out.is_dir():
        raise ReslabError(f"--out {out} is a directory; give the path of the file to write, e.g. "
                          f"{out / ('model' + _SUFFIX[format])}")
    return out


def export(
    weights: str | Path,
    *,
    format: str,
    int8: bool = False,
    out: str | Path | None = None,
    calib_images: str | Path | Sequence[str | Path] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write `weights` as `format` to `out` (default: beside the weights, `model<suffix>`); an existing
    file is replaced only with `overwrite`.

    Parity is measured on the calibration images when given (up to 16 of them), else on a
    fixed batch of 4 random images; the reference is eager PyTorch on the preprocessed images.
    With `int8`, every HOLD_OUT_EVERY-th calibration image is held out of the calibration and checks
    the agreement (all of them when there are fewer than HOLD_OUT_EVERY); below INT8_AGREEMENT_MIN
    top-1 agreement the result carries a warning, also printed.
    """
    if format not in FORMATS:
        raise ReslabError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if int8 and format != "onnx":
        raise ReslabError(f"int8 export is available for --format onnx only. Received: --format {format}")
    if int8 and calib_images is None:
        raise ReslabError("--int8 needs --calib DIR: a few dozen representative images to calibrate the ranges")
    model, meta = load_weights(weights)
    out = _out_path(weights, out, format, int8)
    with claim_file(out, overwrite=overwrite):  # a second export to the same path at once is refused
        return _export(model, meta, out, format=format, int8=int8, calib_images=calib_images)


def _export(model: nn.Module, meta: WeightsMeta, out: Path, *, format: str, int8: bool,
            calib_images: str | Path | Sequence[str | Path] | None) -> ExportResult:
    pre = meta["preprocess"]
    calib = load_calibration(calib_images, pre) if calib_images is not None else None
    if calib is not None and int8 and len(calib) >= HOLD_OUT_EVERY:
        held = torch.zeros(len(calib), dtype=torch.bool)
        held[::HOLD_OUT_EVERY] = True
        x, calib, source = calib[held], calib[~held], "held-out calibration images"
    elif calib is not None:
        x, source = calib[:16], "calibration images"
    else:
        side, chans = view_size(pre), 1 if image_mode(pre) == "L" else 3
        x = torch.randint(0, 256, (4, chans, side, side), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
        source = "random images"
    with torch.inference_mode():
        ref = model(normalize_view(x, pre))
    net = RawImageModel(fold_bn(model), pre).eval()
    if format == "onnx":
        got = _export_onnx(net, x, out, meta, calib if int8 else None)
    elif format == "torchscript":
        got = _export_torchscript(net, x, out)
    else:
        got = _export_program(net, x, out)
    diff, top1 = agreement(ref, got)
    warning = None
    if int8 and top1 < INT8_AGREEMENT_MIN:
        warning = (f"int8 agrees with fp32 on the top-1 class of {top1:.1%} of {x.shape[0]} {source} (max |logit "
                   f"diff| {diff:.3g}), below {INT8_AGREEMENT_MIN:.0%}: calibrate on more images like the ones it "
                   f"will see, or export without int8")
        notice(f"warning: {warning}")
    return ExportResult(out, format, int8, x.shape[0], diff, top1, source, warning)


def _export_onnx(net: nn.Module, x: Tensor, out: Path, meta: WeightsMeta, calib: Tensor | None) -> Tensor:
    import onnx

    data = onnx_bytes(net, x)
    if calib is not None:
        data = quantize_onnx(data, calib)
    proto = onnx.load_from_string(data)
    public = {**meta, "preprocess": {k: v for k, v in meta["preprocess"].items() if k != "mean_image"}}
    for key, value in (("reslab", public), ("reslab.input", input_contract(meta["preprocess"]))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    atomic_write_bytes(out, proto.SerializeToString())
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
        atomic_write_serialized(out, lambda f: torch.jit.save(traced, f))
        loaded = torch.jit.load(str(out))
    with torch.inference_mode():
        return loaded(x)


def _export_program(net: nn.Module, x: Tensor, out: Path) -> Tensor:
    batch = torch.export.Dim("batch", min=1, max=65536)
    xs = x if x.shape[0] > 1 else x.expand(2, *x.shape[1:]).contiguous()  # batch 1 would be specialised
    program = torch.export.export(net, (xs,), dynamic_shapes=({0: batch},))
    atomic_write_serialized(out, lambda f: torch.export.save(program, f))
    with out.open("rb") as f:  # by name, torch.export.load warns about any file not named *.pt2
        loaded = torch.export.load(f).module()
    with torch.inference_mode():
        return loaded(x)

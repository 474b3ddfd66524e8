"""Classify image files with reslab weights: `predict(weights, ["cat.jpg", "photos/"])`.

Inference path rule for `path="auto"`, by the job's work counted in ResNet-50 images (224x224,
4.09 G multiply-adds each: a job of 10,000 ResNet-20 images at 0.041 G is about 100 of them), as
the cost of measuring is about the same for every model (an ONNX export of 5-10 s, a few timed
batches per candidate): folded BatchNorm + channels-last eager, which costs nothing to build
(about a second for ResNet-50), below AUTO_ORT_MIN; from AUTO_ORT_MIN on, onnxruntime when it is
installed (else channels-last), whose export is repaid by its faster batches, timed beside plain bf16 on a CPU with bf16
instructions and beside OpenVINO where it is installed (on the same export: its compile adds a
second); from AUTO_BUILD_MIN on, and always for a server, beside bf16-compiled and int8 too
(deploy/auto.py): builds of 10 s to a minute for ResNet-50 that pay for themselves within a few
thousand images (bf16-compiled 202 vs onnxruntime's 41 images/s at batch 16 on a Xeon with AMX,
docs/benchmarks.md). Every reduced-precision candidate must agree with fp32 on the top-1 of
at least 99% of a held-out sample (a few dozen of the images being predicted; for a server, the
--calib images int8 did not calibrate on), and the fastest accepted path serves, said on stderr
with one line per candidate. `path="fastest"` times the fp32 paths and keeps the fastest that
agrees with eager.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from reslab.console import plural
from reslab.data.folder import hidden
from reslab.deploy.fast import PATHS, InferenceEngine, build_engine, select_fastest
from reslab.deploy.images import IMAGE_EXTENSIONS, image_mode, load_view, view_size
from reslab.errors import ReslabError
from reslab.metadata import Preprocess, WeightsMeta
from reslab.models.analysis import count_macs
from reslab.weights import load_weights

# The unit of AUTO_ORT_MIN and AUTO_BUILD_MIN: one 224x224 ResNet-50 image (count_macs; the sizes were set on it).
RESNET50_MACS = 4_089_184_256
# Measuring costs about 20 s for ResNet-50 on 2 cores (export, timed batches, agreement; 2026-12-05, docs/
# benchmarks.md): 64 images took 38-66 s under --path auto against 18-22 s in channels-last, so the measured
# choice starts where the fastest paths (5-7x channels-last) save more than that.
AUTO_ORT_MIN = 1000
# From here on, and for a server, `auto` also builds bf16-compiled and int8: bf16-compiled saves about 20 ms an
# image over onnxruntime fp32 on ResNet-50 (AMX, above) and builds in about 10 s (500 images); int8-torchao's build
# takes about a minute.
AUTO_BUILD_MIN = 2000
INT8_CALIB_MAX = 64  # int8 calibrates on (up to) this many of the calibration images
CALIB_MIN = 8  # fewer images than this do not show the activations' ranges


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given (any name), directories searched recursively for image extensions, sorted."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                           and not hidden(f, p))  # .ipynb_checkpoints/ holds copies, ._x.jpg is macOS metadata
            if not found:
                exts = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise ReslabError(f"{p}: no images in this directory (looked for {exts})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise ReslabError(f"{p}: no such file or directory")
    return files


def resnet50_images(n_images: int, macs: int) -> float:
    """`n_images` images of a model of `macs` multiply-adds each, as ResNet-50 images of the same work: the unit
    of AUTO_ORT_MIN and AUTO_BUILD_MIN."""
    return n_images * macs / RESNET50_MACS


def auto_path(work: float) -> str:
    """What `path="auto"` does for a job of `work` ResNet-50 images (`resnet50_images`): "measured"
    (deploy/auto.py's choice) from AUTO_ORT_MIN on, else the cheap "channels-last" (see the module docstring).
    Without onnxruntime the measured choice's fp32 path is channels-last, beside bf16 where the CPU has it."""
    return "measured" if work >= AUTO_ORT_MIN else "channels-last"


def auto_engine(net: nn.Module, example: Tensor, *, work: float, check: Tensor | None,
                calib: Tensor | None) -> InferenceEngine:
    """`path="auto"` from AUTO_ORT_MIN on: deploy/auto.py's measured choice, whose reduced-precision
    candidates depend on how much work (in ResNet-50 images) the build is to be repaid by."""
    from reslab.deploy.auto import REDUCED_LONG, REDUCED_SHORT, choose_auto

    return choose_auto(net, example, candidates=REDUCED_LONG if work >= AUTO_BUILD_MIN else REDUCED_SHORT,
                       check=check, calib=calib)


def _check_images(files: list[Path], preprocess: Preprocess) -> Tensor | None:
    """Up to CHECK_MAX of the readable ones of `files` as one batch (None when none is readable)."""
    from reslab.deploy.auto import CHECK_MAX

    views: list[Tensor] = []
    for f in files:
        if len(views) == CHECK_MAX:
            break
        try:
            views.append(load_view(f, preprocess))
        except ReslabError:
            continue
    return torch.stack(views) if views else None


class _Features(nn.Module):
    """Pooled features: (N, C, H, W) -> (N, num_features), forward_head(pre_logits=True)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _load_batches(files: list[Path], preprocess: Preprocess, batch_size: int, skip_bad: bool
                  ) -> Iterator[tuple[list[Path], Tensor | None, list[tuple[Path, str]]]]:
    for i in range(0, len(files), batch_size):
        good, tensors, bad = [], [], []
        for f in files[i:i + batch_size]:
            try:
                tensors.append(load_view(f, preprocess))
                good.append(f)
            except ReslabError as e:
                if not skip_bad:
                    raise
                bad.append((f, str(e)))
        yield good, (torch.stack(tensors) if tensors else None), bad


def calibration_batch(files: list[Path], preprocess: Preprocess, *, raw: bool = False,
                      least: int = CALIB_MIN) -> Tensor:
    """The readable ones of `files` as one (N, C, H, W) batch for int8 calibration (uint8 views with `raw`).

    Unreadable files are skipped and counted on stderr; fewer than `least` readable images (all of
    them when fewer are given) cannot calibrate the activation ranges, and raise ReslabError.
    """
    tensors, bad = [], []
    for f in files:
        try:
            tensors.append(load_view(f, preprocess, raw=raw))
        except ReslabError as e:
            bad.append(str(e))
    need = max(1, min(least, len(files)))
    if len(tensors) < need:
        first = f" (first: {bad[0]})" if bad else ""
        raise ReslabError(f"only {len(tensors)} of {len(files)} calibration images are readable, int8 needs at "
                          f"least {need}{first}; add readable, representative images")
    if bad:
        print(f"reslab: int8 calibration on {len(tensors)} of {plural(len(files), 'image')}; {len(bad)} unreadable "
              f"skipped (first: {bad[0]})", file=sys.stderr)
    return torch.stack(tensors)


def build_predict_engine(model: nn.Module, meta: WeightsMeta, files: list[Path], path: str, *, batch_size: int,
                         features: bool = False, n_images: int | None = None,
                         calib: list[Path] | None = None, server: bool = False) -> InferenceEngine:
    """The engine `predict` would use for `files`; example input is one preprocessed batch.

    `n_images` is how many images the engine will see (default `len(files)`), which with the
    model's multiply-adds decides `path="auto"` (a `server` always gets the measured choice with
    every candidate), and the example's batch size. int8 paths
    calibrate on `calib` (typical images, never the ones being predicted: ranges fitted to them,
    or to one image, would be a silent wrong answer) and refuse without it.
    """
    pre = meta["preprocess"]
    crop = view_size(pre)
    chans = 1 if image_mode(pre) == "L" else 3
    n_images = len(files) if n_images is None else n_images
    n = min(batch_size, max(1, n_images))
    example = torch.zeros(n, chans, crop, crop)
    net: nn.Module = _Features(model).eval() if features else model
    if path == "auto":
        work = math.inf if server else resnet50_images(n_images, count_macs(net, (chans, crop, crop)))
        path = auto_path(work)
        if path == "measured":
            # held out: the images being predicted; a server has none, so half of its calibration images
            check_files, calib_files = (files, calib) if files else ((calib or [])[1::2], (calib or [])[0::2])
            int8_calib = None
            if calib_files and work >= AUTO_BUILD_MIN:
                try:
                    int8_calib = calibration_batch(calib_files[:INT8_CALIB_MAX], pre)
                except ReslabError as e:
                    print(f"reslab: path auto: int8 not considered: {e}", file=sys.stderr)
            return auto_engine(net, example, work=work, check=_check_images(check_files, pre),
                               calib=int8_calib)
    if path == "fastest":
        return select_fastest(net, example)
    if path not in PATHS:
        raise ReslabError(f"unknown inference path {path!r}; choose one of auto, fastest, {', '.join(PATHS)}")
    batch = None
    if path.startswith("int8"):
        if not calib:
            raise ReslabError(f"--path {path} needs calibration images: pass --calib DIR with a few dozen typical "
                              f"images (the images being predicted would fit the int8 ranges to themselves)")
        batch = calibration_batch(calib[:INT8_CALIB_MAX], pre)
        print(f"reslab: int8 calibrated on {plural(len(batch), 'image')} from --calib", file=sys.stderr)
    return build_engine(net, path, example, batch)


def predict(
    weights: str | Path | tuple[nn.Module, WeightsMeta],
    inputs: Sequence[str | Path],
    *,
    topk: int = 5,
    skip_bad: bool = False,
    batch_size: int = 32,
    path: str = "auto",
    features: bool = False,
    engine: InferenceEngine | None = None,
    calib: Sequence[str | Path] | None = None,
) -> list[dict]:
    """Top-k classes of every image in `inputs` (files, or directories searched recursively).

    Returns one dict per file in input order: {"file", "topk": [{"class", "prob"}, ...]},
    or {"file", "features": [floats]} with `features=True` (pooled, num_features long),
    or {"file", "error"} for a bad file when `skip_bad` (otherwise the first bad file raises
    ReslabError naming it). `weights` is a weights directory / file or `load_weights`' pair;
    `engine` overrides `path` with one built already (`build_predict_engine`); `calib`: images
    or folders to calibrate the int8 paths on (required there). A non-finite output (weights that
    overflow on this image) raises ReslabError naming the file: NaN is never a probability.
    """
    if topk < 1:
        raise ReslabError(f"topk must be >= 1. Received: topk={topk}")
    if batch_size < 1:
        raise ReslabError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    model, meta = load_weights(weights) if isinstance(weights, (str, Path)) else weights
    files = expand_inputs(inputs)
    classes = meta["classes"]
    results: dict[Path, dict] = {}
    for good, batch, bad in _load_batches(files, meta["preprocess"], batch_size, skip_bad):
        for f, msg in bad:
            results[f] = {"file": str(f), "error": msg}
        if batch is None:
            continue
        if engine is None:
            engine = build_predict_engine(model, meta, files, path, batch_size=batch_size, features=features,
                                          calib=expand_inputs(calib) if calib else None)
        out = engine(batch)
        finite = torch.isfinite(out).all(dim=1)
        if not bool(finite.all()):
            first = good[int((~finite).nonzero()[0, 0])]
            raise ReslabError(f"{first}: the network's output holds NaN or infinite values ({int((~finite).sum())} of "
                              f"{plural(len(good), 'image')} in this batch); the weights overflow on these inputs")
        if features:
            for f, row in zip(good, out, strict=True):
                results[f] = {"file": str(f), "features": row.tolist()}
            continue
        probs = out.softmax(dim=1)
        p, idx = probs.topk(min(topk, probs.shape[1]), dim=1)
        for f, pr, ix in zip(good, p.tolist(), idx.tolist(), strict=True):
            results[f] = {"file": str(f), "topk": [{"class": classes[i], "prob": v}
                                                  for v, i in zip(pr, ix, strict=True)]}
    if files and all("error" in r for r in results.values()):
        raise ReslabError(f"{'the image' if len(files) == 1 else f'none of the {len(files):,} images'} could "
                          f"{'not ' if len(files) == 1 else ''}be read (first: {results[files[0]]['error']}); "
                          f"check the files")
    return [results[f] for f in files]

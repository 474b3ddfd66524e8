"""Turning an image file into the tensor a model was trained on, as its `model.json` describes.

Decoding (limits, colour rule, EXIF orientation) lives in `reslab.data.images` and is
re-exported here: `load_image(path)` and `decode_image(bytes)` are the one safe way in.
The preprocessing is two steps: `raw_view` (geometry: uint8 (C, crop, crop), what an
exported model takes) and `normalize_view` (values: what the network takes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from reslab.data.augment import normalize
from reslab.data.images import decode_image, load_image, max_pixels, to_mode
from reslab.errors import ReslabError
from reslab.metadata import Preprocess

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "image_mode", "load_image", "load_view", "mean_image_at",
           "normalize_view", "preprocess_image", "raw_view", "to_mode", "view_size"]

# The file names predict looks for in folders: the extensions of reslab.data.images.ACCEPTED_FORMATS.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".mpo", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm", ".pnm"})


def image_mode(preprocess: Preprocess) -> Literal["RGB", "L"]:
    return "L" if int(preprocess.get("in_chans", 3)) == 1 else "RGB"


def view_size(preprocess: Preprocess) -> int:
    """The side of the square view the network sees (`crop`, else `image_size`)."""
    return int(preprocess.get("crop") or preprocess.get("image_size") or 224)


def raw_view(img: Image.Image, preprocess: Preprocess) -> Tensor:
    """PIL image -> uint8 (C, crop, crop), the geometry of the weights' metadata.

    With `resize`, the shorter side goes to `resize` and the centre `crop` x `crop` is kept
    (the ImageNet evaluation view, Section 3.4's single 224 crop); without it the image is
    resized to `image_size` x `image_size` (the small nets see the whole image) and
    centre-cropped to `crop` when that is smaller.
    """
    img = to_mode(img, image_mode(preprocess))
    size = int(preprocess.get("image_size") or preprocess.get("crop") or 224)
    crop = view_size(preprocess)
    resize = preprocess.get("resize")
    if resize:
        w, h = img.size
        long = round(int(resize) * max(w, h) / min(w, h))
        if int(resize) * long > max_pixels():
            raise ReslabError(f"a {w}x{h} image resized to shorter side {resize} would have {int(resize) * long:,} "
                              f"pixels, more than the limit {max_pixels():,}; crop the image closer to square")
        img = TF.resize(img, [int(resize)], interpolation=InterpolationMode.BILINEAR, antialias=True)
    elif img.size != (size, size):
        img = TF.resize(img, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if img.size != (crop, crop):
        img = TF.center_crop(img, [crop])
    return TF.pil_to_tensor(img)


def mean_image_at(preprocess: Preprocess) -> Tensor | None:
    """The per-pixel mean image (C, crop, crop) for "pixel-mean" weights, else None: centre-cropped
    (or resized, when smaller) from the training resolution to the view's size."""
    mean_image = preprocess.get("mean_image")
    if preprocess.get("mode", "channel") != "pixel-mean" or mean_image is None:
        return None
    crop = view_size(preprocess)
    mean_image = torch.as_tensor(mean_image, dtype=torch.float32)
    if tuple(mean_image.shape[-2:]) != (crop, crop):
        mean_image = TF.center_crop(mean_image, [crop]) if min(mean_image.shape[-2:]) >= crop else \
            TF.resize(mean_image, [crop, crop], antialias=True)
    return mean_image


def normalize_view(x: Tensor, preprocess: Preprocess) -> Tensor:
    """uint8 (N, C, crop, crop) -> float32: 0..1, then "channel" (x - mean) / std, or "pixel-mean"
    (x - mean_image) / std, as in `reslab.data`."""
    std = preprocess.get("std") or [1.0] * x.shape[1]
    try:
        return normalize(x, mode=preprocess.get("mode", "channel"), std=std, mean=preprocess.get("mean"),
                         pixel_mean=mean_image_at(preprocess))
    except ReslabError as e:
        raise ReslabError(f"preprocess in model.json: {e}") from e


def preprocess_image(img: Image.Image, preprocess: Preprocess) -> Tensor:
    """PIL image -> float32 (C, H, W) as the weights' metadata describes (`raw_view`, then `normalize_view`)."""
    return normalize_view(raw_view(img, preprocess)[None], preprocess)[0]


def load_view(path: str | Path, preprocess: Preprocess, *, raw: bool = False) -> Tensor:
    """One file -> its `preprocess_image` tensor (or its `raw_view` with `raw`); errors name the file."""
    img = load_image(path, mode=image_mode(preprocess))
    try:
        view = raw_view(img, preprocess)
    except ReslabError as e:
        raise ReslabError(f"{path}: {e}") from None
    finally:
        img.close()  # the decoded pixels go now, not when the collector gets to them
    return view if raw else normalize_view(view[None], preprocess)[0]

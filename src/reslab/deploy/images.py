"""Reading any image Pillow can decode, and turning it into the tensor a model was trained on.

Colour rule: an image becomes RGB exactly as Pillow's `img.convert("RGB")` makes it. Alpha
is dropped, not composited (a transparent pixel keeps the colour stored under it), so a
prediction on a PNG with alpha equals the prediction on the same PNG converted to RGB.
High bit depths are scaled, not clipped: 16-bit ("I;16", "I") by 255/65535, float ("F")
is read as 0..255 like Pillow's `convert("L")`. EXIF orientation is applied first.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from reslab.errors import ReslabError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                              ".pbm", ".pnm", ".jfif", ".tga", ".ico"})


def load_image(path: str | Path | BinaryIO, *, mode: Literal["RGB", "L"] = "RGB", name: str | None = None
               ) -> Image.Image:
    """Decode `path` (a file, or an open binary stream such as an upload) fully and return it
    upright in `mode` ("RGB" or "L").

    Raises ReslabError naming the file (or `name`) for anything unreadable: not an image,
    truncated, or larger than Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`).
    """
    source = path if hasattr(path, "read") else Path(path)
    p = name or source
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.load()
                img = ImageOps.exif_transpose(im)
                img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ReslabError(f"{p}: refused, too many pixels for a safe decode ({e}); raise "
                          f"PIL.Image.MAX_IMAGE_PIXELS if you trust this file") from e
    except FileNotFoundError as e:
        raise ReslabError(f"{p}: no such file") from e
    except UnidentifiedImageError as e:
        raise ReslabError(f"{p}: not an image Pillow can read") from e
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise ReslabError(f"{p}: broken or truncated image ({e})") from e
    try:
        return to_mode(img, mode)
    except (ValueError, OSError) as e:
        raise ReslabError(f"{p}: cannot convert a {img.mode} image to {mode} ({e})") from e


def to_mode(img: Image.Image, mode: Literal["RGB", "L"]) -> Image.Image:
    """`img` in "RGB" or "L" by the colour rule of this module."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L'. Received: mode={mode!r}")
    img = _to_8bit(img)
    if img.mode == mode:
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # same colours as convert("RGB"), without Pillow's warning
    if mode == "L" and img.mode in ("L", "LA", "1"):
        return img.convert("L")
    rgb = img.convert("RGB")
    return rgb if mode == "RGB" else rgb.convert("L")


def _to_8bit(img: Image.Image) -> Image.Image:
    # Pillow's own I;16 -> L conversion clips at 255; scale the full range instead.
    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(a * (255 / 65535)), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    return img


def image_mode(preprocess: dict) -> Literal["RGB", "L"]:
    return "L" if int(preprocess.get("in_chans", 3)) == 1 else "RGB"


def preprocess_image(img: Image.Image, preprocess: dict) -> Tensor:
    """PIL image -> float32 (C, H, W) as the weights' metadata describes.

    Geometry: with `resize`, the shorter side goes to `resize` and the centre `crop` x `crop`
    is kept (the ImageNet evaluation view, Section 3.4's single 224 crop); without it the
    image is resized to `image_size` x `image_size` (the small nets see the whole image)
    and centre-cropped to `crop` when that is smaller. Values: 0..1, then "channel"
    (x - mean) / std, or "pixel-mean" (x - mean_image) / std, as in `reslab.data`.
    """
    from reslab.data.augment import normalize

    img = to_mode(img, image_mode(preprocess))
    size = int(preprocess.get("image_size") or preprocess.get("crop") or 224)
    crop = int(preprocess.get("crop") or size)
    resize = preprocess.get("resize")
    if resize:
        img = TF.resize(img, [int(resize)], interpolation=InterpolationMode.BILINEAR, antialias=True)
    elif img.size != (size, size):
        img = TF.resize(img, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if img.size != (crop, crop):
        img = TF.center_crop(img, [crop])
    x = TF.pil_to_tensor(img)[None]  # (1, C, H, W) uint8
    mode = preprocess.get("mode", "channel")
    c = x.shape[1]
    std = preprocess.get("std") or [1.0] * c
    mean_image = preprocess.get("mean_image")
    if mode == "pixel-mean" and mean_image is not None:
        mean_image = torch.as_tensor(mean_image, dtype=torch.float32)
        if tuple(mean_image.shape[-2:]) != (crop, crop):
            mean_image = TF.center_crop(mean_image, [crop]) if min(mean_image.shape[-2:]) >= crop else \
                TF.resize(mean_image, [crop, crop], antialias=True)
    try:
        return normalize(x, mode=mode, std=std, mean=preprocess.get("mean"), pixel_mean=mean_image)[0]
    except ReslabError as e:
        raise ReslabError(f"preprocess in model.json: {e}") from e

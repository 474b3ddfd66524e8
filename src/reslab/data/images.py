"""Decoding image files safely: size checked before decode, every failure one line naming the file.

Every path that decodes an image (training and evaluation folders, predict, export
calibration, the server) goes through `load_image` or `decode_image`. Before any pixel is
decoded, the file's bytes and the header's width x height are checked against limits
(`MAX_IMAGE_BYTES`, `max_pixels()`), so a decompression bomb is refused after reading its
header. Colour rule: an image becomes RGB exactly as Pillow's `img.convert("RGB")` makes
it. Alpha is dropped, not composited (a transparent pixel keeps the colour stored under
it). High bit depths are scaled, not clipped: 16-bit ("I;16", "I") by 255/65535, float
("F") is read as 0..255 like Pillow's `convert("L")`. EXIF orientation is applied first.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from reslab.errors import ReslabError

MAX_IMAGE_BYTES = 256 * 2**20  # no photograph is this large; a bigger file is refused unread
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default bomb limit (about 0.25 GB of RGB)
ImageMode = Literal["RGB", "L"]
# The formats reslab decodes (Pillow's names; JPEG includes the MPO files of many cameras, PPM also reads
# PGM and PBM). Pillow knows some 40 more, many rarely used and less hardened (BLP, DDS, SPIDER, ...): refused.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
ACCEPTED_NAMES = "JPEG, PNG, WebP, BMP, GIF, TIFF, PPM/PGM/PBM"


def max_pixels() -> int:
    """The pixel limit: Pillow's `Image.MAX_IMAGE_PIXELS` (raise it to trust larger files), or the
    default where it was switched off with None."""
    return int(Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS)


def load_image(path: str | Path | BinaryIO, *, mode: ImageMode = "RGB", draft: int | None = None,
               name: str | None = None) -> Image.Image:
    """Decode `path` (a file, or an open binary stream such as an upload) fully and return it upright
    in `mode` ("RGB" or "L").

    Raises ReslabError naming the file (or `name`) for anything unreadable: missing, not an image,
    truncated, larger than MAX_IMAGE_BYTES or with more than `max_pixels()` pixels. `draft`
    lets JPEGs decode at reduced scale (shorter side >= draft): enough to check a file.
    """
    if hasattr(path, "read"):
        data = path.read(MAX_IMAGE_BYTES + 1)  # a larger stream is refused without reading the rest
        return decode_image(data, mode=mode, name=name or "image")
    p = Path(path)
    label = name or str(p)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ReslabError(f"{label}: no such file") from None
    except OSError as e:
        raise ReslabError(f"{label}: cannot read ({e.strerror})") from None
    if size > MAX_IMAGE_BYTES:
        raise ReslabError(f"{label}: refused, {size:,} bytes is more than the {MAX_IMAGE_BYTES:,} an image may have")
    return _decode(lambda: open(p, "rb"), label, mode, draft)


def decode_image(data: bytes, *, mode: ImageMode = "RGB", name: str = "image") -> Image.Image:
    """`load_image` for bytes already in memory (an upload); errors name the image as `name`."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ReslabError(f"{name}: refused, {len(data):,} bytes is more than the {MAX_IMAGE_BYTES:,} an image may "
                          f"have")
    return _decode(lambda: io.BytesIO(data), name, mode, None)


def _decode(opener: Callable[[], BinaryIO], name: str, mode: ImageMode, draft: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": the pixels still decode
            with opener() as f, Image.open(f, formats=ACCEPTED_FORMATS) as im:
                _check_header(im, name)
                if draft is not None and im.format == "JPEG":
                    im.draft(mode, (draft, draft))
                im.load()
                img = ImageOps.exif_transpose(im)
                img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own message quotes twice the limit (its error threshold); say the one limit there is.
        raise ReslabError(f"{name}: refused, too many pixels for a safe decode (the limit is {max_pixels():,}); "
                          f"raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file") from None
    except ReslabError:
        raise
    except FileNotFoundError:
        raise ReslabError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise ReslabError(f"{name}: not an image in a format reslab reads ({ACCEPTED_NAMES})") from None
    except Exception as e:  # a hostile file fails inside Pillow's plugins in any way at all
        raise ReslabError(f"{name}: broken or truncated image ({_detail(e)})") from None
    try:
        return to_mode(img, mode)
    except Exception as e:  # as above: the pixels come from the file
        raise ReslabError(f"{name}: cannot convert a {img.mode} image to {mode} ({_detail(e)})") from None


def _detail(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line if len(line) <= 200 else line[:197] + "..."


def _check_header(im: Image.Image, name: str) -> None:
    """Refuse by the header's size, before a pixel is decoded."""
    w, h = im.size
    if w < 1 or h < 1:
        raise ReslabError(f"{name}: broken image (header says {w}x{h} pixels)")
    if w * h > max_pixels():
        raise ReslabError(f"{name}: refused, too many pixels for a safe decode ({w}x{h} = {w * h:,}, the limit is "
                          f"{max_pixels():,}); raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file")


def to_mode(img: Image.Image, mode: ImageMode) -> Image.Image:
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

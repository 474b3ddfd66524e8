"""Shared pieces of the robustness tests: tiny weights, hostile files, one-line-error checks."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reslab.cli import main
from reslab.models import create_model
from reslab.weights import save_weights

TINY_KWARGS = {"num_classes": 10, "widths": [4, 8, 16], "stem_width": 4}
PRE = {"image_size": 16, "in_chans": 3, "mode": "channel", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25],
       "resize": None, "crop": 16}


def tiny_weights(folder: Path, *, preprocess: dict | None = None, seed: int = 0) -> Path:
    """A 10-class resnet20 of widths 4/8/16 saved as reslab weights in `folder`."""
    torch.manual_seed(seed)
    model = create_model("resnet20", **TINY_KWARGS).eval()
    return save_weights(model, folder, model_name="resnet20", model_kwargs=TINY_KWARGS,
                        classes=[f"c{i}" for i in range(10)], preprocess=preprocess or PRE)


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI, which must exit 2 with one error line (the last on stderr, after any progress notes)
    holding every needle, and no traceback; returns that line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err and sum("error" in line for line in err.splitlines()) == 1, err
    line = err.splitlines()[-1]
    for needle in needles:
        assert needle in line, (needle, err)
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, with its bytes: to prove nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def png_bytes(w: int = 16, h: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR (CRC fixed up) claims `width` x `height`: a decompression bomb's header."""
    data = bytearray(png_bytes(8, 8))
    ihdr = bytearray(data[12:29])  # type (4) + data (13)
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def jpeg_bytes(w: int = 32, h: int = 32, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_bad_images(folder: Path) -> dict[str, Path]:
    """A corrupt, a truncated and a bomb image in `folder`; {kind: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"corrupt": folder / "corrupt.png", "truncated": folder / "truncated.jpg", "bomb": folder / "bomb.png"}
    files["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(300))
    files["truncated"].write_bytes(jpeg_bytes()[:400])
    files["bomb"].write_bytes(png_claiming(60_000, 60_000))
    return files


def image_folder(root: Path, classes=("cat", "dog"), n: int = 4, splits=("train", "val"), size: int = 24) -> Path:
    """root/<split>/<class>/<i>.png of random RGB images."""
    for split in splits:
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (root / split / c / f"{i}.png").write_bytes(png_bytes(size, size, seed=100 * k + i))
    return root

"""Readers for the official dataset files: IDX (MNIST, Fashion-MNIST) and the CIFAR python pickles.

Every reader returns images as uint8 (N, C, H, W) and labels as int64 (N,); a damaged
or unexpected file raises `ReslabError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from reslab.console import plural
from reslab.errors import ReslabError

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim (N,)
_REFETCH = "re-download the official files (or run with --download)"


# Largest IDX file reslab reads: 10^6 items of 28x28 (EMNIST's largest split has 697,932). The header
# declares the size, so a file claiming more, or a gzip inflating past its own header, is refused
# before its body is allocated.
MAX_IDX_BYTES = 10**6 * 28 * 28
_CHUNK = 2**22


def _read_body(f: BinaryIO, path: Path) -> bytes:
    """The IDX file `f` as bytes, never reading more than its header says it holds (plus one byte, to
    know there is more)."""
    head = f.read(4)
    if len(head) < 4:
        raise ReslabError(f"{path}: truncated IDX header ({len(head)} bytes); {_REFETCH}")
    ndim = head[3]
    if head[:2] != b"\0\0" or head[2] != 0x08 or not 1 <= ndim <= 4:
        return head  # read_idx names the wrong magic number
    dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise ReslabError(f"{path}: truncated IDX header ({4 + len(dims_bytes)} bytes); {_REFETCH}")
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    size = math.prod(dims)
    if size > MAX_IDX_BYTES:
        raise ReslabError(f"{path}: IDX header claims dims {dims} ({size:,} bytes), more than the "
                          f"{MAX_IDX_BYTES:,} reslab reads; {_REFETCH}")
    parts, got = [], 0
    while got <= size:
        part = f.read(min(_CHUNK, size + 1 - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    if got > size:
        raise ReslabError(f"{path}: IDX body holds more than the {size:,} bytes its header's dims {dims} need "
                          f"(corrupt, or not this dataset's file); {_REFETCH}")
    return head + dims_bytes + b"".join(parts)


def _open_bytes(path: Path) -> bytes:
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
            return _read_body(f, path)  # type: ignore[arg-type]
    except (OSError, EOFError, zlib.error) as e:
        raise ReslabError(f"{path}: cannot read ({e}); {_REFETCH}") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array; `magic` fixes the expected rank."""
    path = Path(path)
    data = _open_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise ReslabError(f"{path}: truncated IDX header ({len(data)} bytes); {_REFETCH}")
    got = int(np.frombuffer(data, ">u4", count=1)[0])
    if got != magic:
        raise ReslabError(f"{path}: wrong IDX magic number 0x{got:08x}, expected 0x{magic:08x}; "
                          f"is this the right file? {_REFETCH}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(data) != header + size:
        raise ReslabError(f"{path}: IDX body has {len(data) - header} bytes, dims {dims} need {size} "
                          f"(truncated or corrupt); {_REFETCH}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def check_labels(labels: np.ndarray, num_classes: int, path: str | Path) -> None:
    """Every label is a class index in 0..num_classes-1; else one line naming the first bad one."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise ReslabError(f"{path}: label {int(labels[i])} at index {i} is not a class of this dataset "
                          f"({num_classes} classes, labels 0..{num_classes - 1}; {len(bad):,} bad labels in all); "
                          f"{_REFETCH}")


def read_idx_pair(images_path: str | Path, labels_path: str | Path, *, num_classes: int = 10,
                  side: int | None = None) -> tuple[Tensor, Tensor]:
    """IDX images and labels -> uint8 (N, 1, H, W) and int64 (N,); labels must lie in 0..num_classes-1
    and, with `side`, images must be side x side."""
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    check_labels(labels, num_classes, labels_path)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    if side is not None and images.shape[1:] != (side, side):
        raise ReslabError(f"{images_path}: images of {images.shape[1]}x{images.shape[2]} pixels, this dataset's are "
                          f"{side}x{side}; {_REFETCH}")
    if len(images) != len(labels):
        raise ReslabError(f"{images_path} has {plural(len(images), 'image')} but {labels_path} has "
                          f"{plural(len(labels), 'label')}; {_REFETCH}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _idx_file(folder: Path, name: str) -> Path:
    # Uncompressed first: torchvision's downloader leaves both, and raw bytes read faster.
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise ReslabError(f"missing {name}(.gz) in {folder}; {_REFETCH}")


def read_mnist(folder: str | Path, train: bool) -> tuple[Tensor, Tensor]:
    """MNIST-layout folder (train-* / t10k-* IDX files, gzipped or not) -> (N, 1, 28, 28) uint8, (N,) int64
    with labels 0..9."""
    folder, prefix = Path(folder), "train" if train else "t10k"
    return read_idx_pair(_idx_file(folder, f"{prefix}-images-idx3-ubyte"),
                         _idx_file(folder, f"{prefix}-labels-idx1-ubyte"), num_classes=10, side=28)


try:  # numpy >= 2 moved the module; importing numpy.core there warns
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as Python 3 uses it in protocol-2 pickles of bytes (`encode(text, "latin1")`);
    any other codec is refused, so the global cannot reach a codec that does more than copy bytes."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r}")
    return text.encode("latin-1", errors)


# Every global the official CIFAR pickles name (numpy 1 and 2 spellings), and the bytes constructor of
# pickles re-saved by Python 3 at protocol 2; nothing else may load.
_CIFAR_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


MAX_CIFAR_BYTES = 200 * 2**20  # CIFAR-100's train file, the largest, has 155 MB


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: the official CIFAR files need nothing else,
    and refusing every other global keeps a tampered file from running code."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")  # the files were pickled by Python 2
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise ReslabError(f"{self.path}: refusing to unpickle {module}.{name} (official CIFAR files hold "
                              f"only numpy arrays and lists); {_REFETCH}")
        return _CIFAR_GLOBALS[module, name]


def load_cifar_pickle(path: str | Path) -> dict[bytes, Any]:
    """One CIFAR python file as the dict it holds (keys are bytes, as in the official files)."""
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"missing CIFAR file {path}; {_REFETCH}")
    if (size := path.stat().st_size) > MAX_CIFAR_BYTES:
        raise ReslabError(f"{path}: {size:,} bytes, more than the {MAX_CIFAR_BYTES:,} of any official CIFAR file; "
                          f"{_REFETCH}")
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, path).load()
    except ReslabError:
        raise
    except Exception as e:  # truncated or corrupt pickles fail in many ways
        raise ReslabError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e}); {_REFETCH}") from None
    if not isinstance(obj, dict):
        raise ReslabError(f"{path}: expected a dict, found {type(obj).__name__}; {_REFETCH}")
    return obj


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = load_cifar_pickle(path)
    if b"data" not in d or label_key not in d:
        raise ReslabError(f"{path}: keys {_few_keys(d)} lack b'data' or {label_key!r}; {_REFETCH}")
    data = np.asarray(d[b"data"])
    try:
        raw = np.asarray(d[label_key])
        ok = raw.ndim == 1 and (raw.dtype.kind in "iu" or len(raw) == 0)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ReslabError(f"{path}: {label_key.decode()} must be a list of integer class indices; {_REFETCH}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(raw):
        raise ReslabError(f"{path}: data {data.dtype} {data.shape} with {len(raw)} labels, expected "
                          f"uint8 (N, 3072) and N labels; {_REFETCH}")
    return data, raw.astype(np.int64)


def _few_keys(d: dict) -> str:
    keys = [repr(k)[:40] for k in list(d)[:8]]
    return "[" + ", ".join(keys) + (", ..." if len(d) > 8 else "") + "]"


def _cifar_names(path: Path, key: bytes, expected: int) -> list[str]:
    """The class names in the meta file: exactly `expected` distinct, non-empty strings."""
    d = load_cifar_pickle(path)
    if key not in d:
        raise ReslabError(f"{path}: no {key!r} entry; {_REFETCH}")
    names = d[key]
    if not isinstance(names, list) or len(names) != expected:
        count = len(names) if isinstance(names, list) else f"{type(names).__name__}, not"
        raise ReslabError(f"{path}: {key.decode()} holds {count} names, this dataset has {expected} classes; "
                          f"{_REFETCH}")
    try:
        out = [n.decode() if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError:
        out = []
    if len(out) != expected or not all(isinstance(n, str) and 0 < len(n) <= 256 for n in out):
        raise ReslabError(f"{path}: {key.decode()} must hold {expected} non-empty UTF-8 names; {_REFETCH}")
    if len(set(out)) != expected:
        dup = next(n for n in out if out.count(n) > 1)
        raise ReslabError(f"{path}: class name {dup[:40]!r} appears twice in {key.decode()}; {_REFETCH}")
    return out


def _cifar(folder: Path, files: list[str], label_key: bytes, meta: str, names_key: bytes, num_classes: int,
           ) -> tuple[Tensor, Tensor, list[str]]:
    names = _cifar_names(folder / meta, names_key, num_classes)
    parts = []
    for f in files:
        data, labels = _cifar_batch(folder / f, label_key)
        check_labels(labels, num_classes, folder / f)
        parts.append((data, labels))
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    # Each row is 1024 red, 1024 green, 1024 blue values, each plane row-major.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels), names


def read_cifar10(folder: str | Path, train: bool) -> tuple[Tensor, Tensor, list[str]]:
    """`cifar-10-batches-py` -> uint8 (N, 3, 32, 32), int64 labels 0..9 (N,), the 10 class names."""
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return _cifar(Path(folder), files, b"labels", "batches.meta", b"label_names", 10)


def read_cifar100(folder: str | Path, train: bool) -> tuple[Tensor, Tensor, list[str]]:
    """`cifar-100-python` -> uint8 (N, 3, 32, 32), int64 fine labels 0..99 (N,), the 100 fine class names."""
    return _cifar(Path(folder), ["train" if train else "test"], b"fine_labels", "meta", b"fine_label_names", 100)

"""Writers of the official dataset formats (IDX, CIFAR python pickles), tiny, for tests.

Nothing is downloaded in tests: each test writes the files it reads, byte for byte in
the layout the real distributions use.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import torch

from reslab.data import datasets as ds_mod


def write_idx(path: Path, arr: np.ndarray) -> Path:
    """IDX: big-endian magic 0x0000 08 <ndim>, ndim big-endian uint32 dims, then the uint8 bytes."""
    raw = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_mnist(folder: Path, n_train: int = 50, n_test: int = 6, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        out[prefix] = (images, labels)
    return out


class _Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 strings (BINSTRING), as cPickle did for the official CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        head = pickle.SHORT_BINSTRING + bytes([len(data)]) if len(data) < 256 else pickle.BINSTRING + struct.pack(
            "<i", len(data))
        self.write(head + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def py2_pickle(obj: object, path: Path) -> None:
    import io

    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1 (which wrote the official files) names the module numpy.core.multiarray
    raw = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


def _cifar_batch(rng: np.random.Generator, n: int, label_key: str, num_classes: int, name: str) -> dict:
    return {b"batch_label": name, b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key.encode(): [int(v) for v in rng.integers(0, num_classes, n)],
            b"filenames": [f"img_{i}.png" for i in range(n)]}


def write_cifar10(folder: Path, n_per_batch: int = 4, n_test: int = 6) -> dict:
    rng = np.random.default_rng(1)
    out = {}
    for i in range(1, 6):
        out[f"data_batch_{i}"] = _cifar_batch(rng, n_per_batch, "labels", 10, f"training batch {i} of 5")
    out["test_batch"] = _cifar_batch(rng, n_test, "labels", 10, "testing batch 1 of 1")
    for name, d in out.items():
        py2_pickle(d, folder / name)
    py2_pickle({b"label_names": ds_mod.CIFAR10_CLASSES, b"num_cases_per_batch": n_per_batch, b"num_vis": 3072},
               folder / "batches.meta")
    return out


def write_cifar100(folder: Path, n_train: int = 20, n_test: int = 5) -> dict:
    rng = np.random.default_rng(2)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        d = _cifar_batch(rng, n, "fine_labels", 100, name)
        d[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, n)]
        out[name] = d
        py2_pickle(d, folder / name)
    py2_pickle({b"fine_label_names": ds_mod.CIFAR100_CLASSES, b"coarse_label_names": [f"c{i}" for i in range(20)]},
               folder / "meta")
    return out


def write_learnable_mnist(folder: Path, n_train: int = 240, n_test: int = 60, size: int = 28, seed: int = 0) -> Path:
    """Fashion-MNIST-format IDX files whose classes a small net learns in a few dozen steps:
    class k is a central square of brightness 40 + 21k on a noisy background, a cue that
    survives the crop and flip augmentation."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 30, (n, size, size), dtype=np.uint8)
        lo, hi = size // 4, size - size // 4
        for i, k in enumerate(labels):
            images[i, lo:hi, lo:hi] = 40 + 21 * int(k)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def randomise_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms (seeded), so a load that silently kept the
    defaults shows in the logits; returns the model in eval mode."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model.eval()


def tiny_weights(folder: Path, preprocess: dict) -> Path:
    """A ResNet-20 (10 classes, random BN statistics) saved as a reslab weights folder."""
    from reslab.models import create_model
    from reslab.weights import save_weights

    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20"))
    return save_weights(model, folder, model_name="resnet20", model_kwargs={"num_classes": 10},
                        classes=[f"class{i}" for i in range(10)], preprocess=preprocess)


def verdicts(summary: Path) -> list[str]:
    """The verdict column of an experiment summary.md's claims table, in order: held, NOT held or within noise."""
    return re.findall(r"\| \*\*(held|NOT held|within noise)(?: \(short-budget\))?\*\* \|", summary.read_text())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

"""Contracts of reslab.data: readers of the official formats, lookup, splits, augmentation, folders.

All files are written here, tiny, in exactly the official layouts; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms.v2 import functional as TF

from reslab.data import (
    BatchAugment,
    InMemoryDataset,
    center_crop,
    crop_flip,
    dataset_spec,
    find_data_dir,
    folder_loader,
    load_dataset,
    multiscale_views,
    normalize,
    pca_lighting,
    per_pixel_mean,
    ten_crop,
)
from reslab.data import datasets as ds_mod
from reslab.data.augment import CropFlip
from reslab.data.formats import read_cifar10, read_cifar100, read_idx, read_mnist
from reslab.errors import ReslabError

from fakedata import py2_pickle, write_cifar10, write_cifar100, write_idx, write_mnist


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path, monkeypatch):
    """No test may find real data: the default and cache roots point into tmp."""
    monkeypatch.setattr(ds_mod, "DEFAULT_ROOT", tmp_path / "default-root")
    monkeypatch.setattr(ds_mod, "CACHE_ROOT", tmp_path / "cache-root")
    monkeypatch.delenv("RESLAB_DATA", raising=False)


# ---------------------------------------------------------------- readers


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader(tmp_path, gz):
    ref = write_mnist(tmp_path, n_train=7, n_test=3, gz=gz)
    for prefix, train in (("train", True), ("t10k", False)):
        images, labels = read_mnist(tmp_path, train)
        assert images.shape == (len(ref[prefix][0]), 1, 28, 28) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert torch.equal(images[:, 0], torch.from_numpy(ref[prefix][0]))
        assert torch.equal(labels, torch.from_numpy(ref[prefix][1]).long())


def _wrong_magic(d: Path) -> Path:
    return write_idx(d / "train-images-idx3-ubyte", np.zeros(5, np.uint8))  # a labels file under the images name


def _truncated(d: Path) -> Path:
    p = write_idx(d / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-10])
    return p


def _bad_gzip(d: Path) -> Path:
    p = d / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(b"x" * 1000)[:30])
    return p


def _count_mismatch(d: Path) -> Path:
    write_idx(d / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    return write_idx(d / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))


@pytest.mark.parametrize("damage", [_wrong_magic, _truncated, _bad_gzip, _count_mismatch])
def test_idx_damaged_files_name_the_file(tmp_path, damage):
    bad = damage(tmp_path)
    if not (tmp_path / "train-labels-idx1-ubyte").exists():
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ReslabError) as e:
        read_mnist(tmp_path, train=True)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_idx_missing_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ReslabError, match="train-labels-idx1-ubyte"):
        read_mnist(tmp_path, train=True)
    with pytest.raises(ReslabError, match="0x00000801"):
        read_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x00000801)


def test_cifar10_reader(tmp_path):
    ref = write_cifar10(tmp_path)
    images, labels, classes = read_cifar10(tmp_path, train=True)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert classes == ds_mod.CIFAR10_CLASSES
    first = ref["data_batch_1"][b"data"][0]
    # row layout: 1024 red (row-major), then green, then blue
    assert torch.equal(images[0, 0], torch.from_numpy(first[:1024].reshape(32, 32)))
    assert torch.equal(images[0, 2], torch.from_numpy(first[2048:].reshape(32, 32)))
    assert labels.tolist() == [v for i in range(1, 6) for v in ref[f"data_batch_{i}"][b"labels"]]
    t_images, t_labels, _ = read_cifar10(tmp_path, train=False)
    assert t_images.shape == (6, 3, 32, 32) and t_labels.tolist() == ref["test_batch"][b"labels"]


def test_cifar100_reader_uses_fine_labels(tmp_path):
    ref = write_cifar100(tmp_path)
    images, labels, classes = read_cifar100(tmp_path, train=True)
    assert images.shape == (20, 3, 32, 32) and len(classes) == 100 and classes[0] == "apple"
    assert labels.tolist() == ref["train"][b"fine_labels"]
    assert torch.equal(images[3].flatten(), torch.from_numpy(ref["train"][b"data"][3]))
    assert read_cifar100(tmp_path, train=False)[0].shape == (5, 3, 32, 32)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar_unpickler_refuses_code(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    with (tmp_path / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": _RunsCode(marker), b"labels": []}, f, protocol=2)
    with pytest.raises(ReslabError, match="refusing to unpickle") as e:
        read_cifar10(tmp_path, train=True)
    assert "data_batch_3" in str(e.value)
    assert not marker.exists()


def test_cifar_damaged_pickles(tmp_path):
    write_cifar10(tmp_path)
    p = tmp_path / "test_batch"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ReslabError, match="test_batch"):
        read_cifar10(tmp_path, train=False)
    py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, p)
    with pytest.raises(ReslabError, match=r"uint8 \(N, 3072\)"):
        read_cifar10(tmp_path, train=False)
    (tmp_path / "batches.meta").unlink()
    with pytest.raises(ReslabError, match=r"batches\.meta"):
        read_cifar10(tmp_path, train=True)


# ---------------------------------------------------------------- lookup and splits


def test_lookup_order(tmp_path, monkeypatch):
    arg, env, default = tmp_path / "arg", tmp_path / "env", ds_mod.DEFAULT_ROOT / "fashion-mnist"
    write_mnist(default)
    assert find_data_dir("fashion-mnist") == default
    write_mnist(env / "fashion-mnist")  # a parent holding <name>/
    monkeypatch.setenv("RESLAB_DATA", str(env))
    assert find_data_dir("fashion-mnist") == env / "fashion-mnist"
    write_mnist(arg / "FashionMNIST" / "raw", gz=False)  # torchvision's download layout
    assert find_data_dir("fashion-mnist", arg) == arg / "FashionMNIST" / "raw"
    # a data_dir that was named is the only place looked at: no silent fall-back to other data
    with pytest.raises(ReslabError, match="nothing-here does not exist"):
        find_data_dir("fashion-mnist", tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReslabError, match=f"no fashion-mnist files found in {tmp_path / 'empty'};"):
        find_data_dir("fashion-mnist", tmp_path / "empty")


def test_lookup_cifar_extracted_or_parent(tmp_path, monkeypatch):
    extracted = tmp_path / "c10" / "cifar-10-batches-py"
    write_cifar10(extracted)
    assert find_data_dir("cifar10", tmp_path / "c10") == extracted
    assert find_data_dir("cifar10", extracted) == extracted
    write_cifar100(tmp_path / "cifar100" / "cifar-100-python")
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path))
    assert find_data_dir("cifar100") == tmp_path / "cifar100" / "cifar-100-python"


def test_not_found_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(ReslabError) as e:
        find_data_dir("fashion-mnist")
    msg = str(e.value)
    for place in (tmp_path / "env", ds_mod.DEFAULT_ROOT / "fashion-mnist"):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "\n" not in msg
    with pytest.raises(ReslabError, match="--download"):
        find_data_dir("cifar10")
    with pytest.raises(ReslabError, match="unknown dataset 'imagenet'"):
        find_data_dir("imagenet")


def test_splits_deterministic_and_disjoint(tmp_path):
    ref = write_mnist(tmp_path, n_train=50, n_test=6)
    train = load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    val = load_dataset("fashion-mnist", "val", data_dir=tmp_path)
    full = load_dataset("fashion-mnist", "trainval", data_dir=tmp_path)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert isinstance(train, InMemoryDataset) and train.classes[0] == "T-shirt/top"
    assert (len(train), len(val), len(full), len(test)) == (45, 5, 50, 6)  # 10% held out when tiny
    rows = {bytes(x.numpy()) for x in torch.cat([train.images, val.images])}
    assert len(rows) == 50 and rows == {bytes(x) for x in ref["train"][0][:, None]}
    again = load_dataset("fashion-mnist", "val", data_dir=tmp_path)
    assert torch.equal(again.images, val.images)
    other = load_dataset("fashion-mnist", "val", data_dir=tmp_path, seed=1)
    assert not torch.equal(other.images, val.images)
    assert len(load_dataset("fashion-mnist", "val", data_dir=tmp_path, val_size=12)) == 12
    with pytest.raises(ReslabError, match="val_size"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path, val_size=50)
    with pytest.raises(ReslabError, match="split 'dev'"):
        load_dataset("fashion-mnist", "dev", data_dir=tmp_path)


def test_paper_split_sizes():
    # Section 4.2: 45k/5k on CIFAR-10; 55k/5k on the 60k (Fashion-)MNIST training sets
    for name, n in (("cifar10", 50_000), ("fashion-mnist", 60_000)):
        v = min(dataset_spec(name).val_size, n // 10)
        train_idx, val_idx = ds_mod.split_indices(n, v, seed=0)
        assert (len(train_idx), len(val_idx)) == (n - 5000, 5000)
        assert len(set(train_idx.tolist()) | set(val_idx.tolist())) == n


def test_specs_and_cifar_load(tmp_path):
    for name in ds_mod.DATASET_NAMES:
        s = dataset_spec(name)
        assert len(s.mean) == len(s.std) == s.in_chans and s.num_classes == len(s.classes)
    write_cifar10(tmp_path / "cifar-10-batches-py")
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert test.images.shape == (6, 3, 32, 32) and test.classes == dataset_spec("cifar10").classes
    assert len(load_dataset("cifar10", "val", data_dir=tmp_path)) == 2


def test_download_uses_torchvision_layout(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeFashionMNIST:  # writes what torchvision's downloader leaves behind
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            if not (Path(root) / "FashionMNIST" / "raw").exists():
                write_mnist(Path(root) / "FashionMNIST" / "raw", n_train=20)

    monkeypatch.setattr(tvd, "FashionMNIST", FakeFashionMNIST)
    data = load_dataset("fashion-mnist", "trainval", download=True)
    assert len(data) == 20 and calls[0][0] == str(ds_mod.CACHE_ROOT / "fashion-mnist") and calls[0][2]
    calls.clear()
    load_dataset("fashion-mnist", "test", download=True)  # already there: no download
    assert calls == []


def test_in_memory_dataset_and_pixel_mean():
    x = torch.randint(0, 256, (10, 3, 4, 5), dtype=torch.uint8)
    d = InMemoryDataset(x, torch.arange(10), ["a"])
    sub = d.subset([1, 3]).to("cpu")
    assert len(sub) == 2 and torch.equal(sub.images, x[[1, 3]]) and sub.labels.tolist() == [1, 3]
    m = per_pixel_mean(x, chunk=3)
    assert m.shape == (3, 4, 5) and m.dtype == torch.float32
    torch.testing.assert_close(m, x.double().mean(0).float() / 255)


# ---------------------------------------------------------------- augmentation


def _reference_crop_flip(x, pad, params):
    padded = F.pad(x, (pad,) * 4)
    h, w = x.shape[-2:]
    out = []
    for i in range(len(x)):
        t, left = int(params.top[i]), int(params.left[i])
        crop = padded[i, :, t:t + h, left:left + w]
        out.append(crop.flip(-1) if params.flip[i] else crop)
    return torch.stack(out)


def test_crop_flip_matches_slow_reference():
    x = torch.randint(0, 256, (16, 3, 7, 9), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    params = CropFlip(torch.randint(0, 7, (16,), generator=g), torch.randint(0, 7, (16,), generator=g),
                      torch.rand(16, generator=g) < 0.5)
    assert torch.equal(crop_flip(x, 3, params), _reference_crop_flip(x, 3, params))
    no_crop = CropFlip(torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.long), torch.ones(16, dtype=bool))
    assert torch.equal(crop_flip(x, 0, no_crop), x.flip(-1))


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("device", DEVICES)
def test_batch_augment(device):
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    mean_img = per_pixel_mean(x)
    aug = BatchAugment(std=(0.25, 0.25, 0.25), pixel_mean=mean_img, pad=4)
    out = aug(x.to(device), torch.Generator().manual_seed(5))
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device.type == device
    params = aug.sample(64, torch.Generator().manual_seed(5))
    assert params.top.min() >= 0 and params.top.max() <= 8 and 0 < params.flip.sum() < 64
    ref = _reference_crop_flip((x.float() / 255 - mean_img) / 0.25, 4, params)
    torch.testing.assert_close(out.cpu(), ref)
    assert torch.equal(out, aug(x.to(device), torch.Generator().manual_seed(5)))
    assert not torch.equal(out, aug(x.to(device), torch.Generator().manual_seed(6)))
    # the paper's per-pixel mean: the normalised training set has zero mean at every pixel
    assert aug.normalize(x).mean(0).abs().max() < 1e-5


def test_normalize_modes_and_no_flip():
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    y = normalize(x, mode="channel", mean=(0.5,), std=(0.25,))
    torch.testing.assert_close(y, (x.float() / 255 - 0.5) / 0.25)
    spec = dataset_spec("mnist")
    aug = BatchAugment(std=spec.std, mode="channel", mean=spec.mean, pad=0, hflip=spec.hflip)
    torch.testing.assert_close(aug(x, torch.Generator().manual_seed(0)), aug.normalize(x))  # digits never flip
    with pytest.raises(ReslabError, match="pixel_mean"):
        BatchAugment(std=(1.0,), mode="pixel-mean")
    with pytest.raises(ReslabError, match="'per-image'"):
        normalize(x, mode="per-image", std=(1.0,))


def test_ten_crop_and_center_crop_match_torchvision():
    x = torch.randint(0, 256, (3, 3, 13, 11), dtype=torch.uint8)
    views = ten_crop(x, 8)
    assert views.shape == (30, 3, 8, 8)
    for i in range(3):
        assert torch.equal(views[10 * i:10 * i + 10], torch.stack(TF.ten_crop(x[i], [8])))
    assert torch.equal(views[1], x[0, :, :8, -8:])  # top-right corner
    assert torch.equal(views[5], x[0].flip(-1)[:, :8, :8])  # top-left of the flipped image
    assert torch.equal(center_crop(x, 8), TF.center_crop(x, [8]))


def test_pca_lighting():
    x = torch.rand(4, 3, 5, 5)
    y = pca_lighting(x, 0.1, torch.Generator().manual_seed(0))
    shift = y - x
    assert torch.allclose(shift, shift[..., :1, :1].expand_as(shift), atol=1e-6)  # one RGB offset per image
    assert torch.equal(y, pca_lighting(x, 0.1, torch.Generator().manual_seed(0)))
    assert torch.equal(pca_lighting(x, 0.0), x)
    assert pca_lighting(x[0], 0.1).shape == (3, 5, 5)


# ---------------------------------------------------------------- image folders


def _make_folder(root: Path, classes=("cat", "dog"), n=3) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(20, 40, 2)
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                img = Image.fromarray(arr).convert("L") if i == 2 else Image.fromarray(arr)  # grey -> RGB
                img.save(root / split / c / f"{i}.{'jpg' if i % 2 else 'png'}")


def test_folder_loader(tmp_path):
    _make_folder(tmp_path)
    loader, classes = folder_loader(tmp_path, "train", batch_size=4, workers=0, train=True, image_size=16,
                                    scale_range=(18, 24), seed=0)
    x, y = next(iter(loader))
    assert classes == ["cat", "dog"] and x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and torch.isfinite(x).all()
    loader, _ = folder_loader(tmp_path, "val", batch_size=6, workers=0, train=False, image_size=16,
                              scale_range=(18, 24), seed=0)
    assert next(iter(loader))[0].shape == (6, 3, 16, 16)
    loader, _ = folder_loader(tmp_path, "val", batch_size=2, workers=0, train=False, image_size=16,
                              scale_range=(18, 24), seed=0, ten_crop=True)
    assert next(iter(loader))[0].shape == (2, 10, 3, 16, 16)
    assert isinstance(load_dataset("folder", "val", data_dir=tmp_path), ImageFolder)


def test_folder_loader_seeded_workers(tmp_path):
    _make_folder(tmp_path)

    def batches(seed):
        loader, _ = folder_loader(tmp_path, "train", batch_size=2, workers=2, train=True, image_size=16,
                                  scale_range=(18, 24), seed=seed)
        return torch.cat([x for x, _ in loader])

    assert torch.equal(batches(3), batches(3)) and not torch.equal(batches(3), batches(4))


def test_folder_errors(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "train" / "bird").mkdir()
    with pytest.raises(ReslabError, match="bird"):
        folder_loader(tmp_path, "train", batch_size=2, workers=0, train=True, seed=0)
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(ReslabError, match="holds no images"):
        folder_loader(tmp_path, "train", batch_size=2, workers=0, train=True, seed=0)
    (tmp_path / "train" / "bird").rmdir()
    (tmp_path / "val" / "bird").rmdir()
    (tmp_path / "val" / "cow").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "val" / "cow" / "0.png")
    with pytest.raises(ReslabError, match=r"different classes.*cow"):
        folder_loader(tmp_path, "train", batch_size=2, workers=0, train=True, seed=0)
    other = tmp_path / "no-val"
    (other / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(other / "train" / "cat" / "0.png")
    with pytest.raises(ReslabError, match=re.escape(str(other / "val"))):
        folder_loader(other, "train", batch_size=2, workers=0, train=True, seed=0)


def test_multiscale_views():
    views = multiscale_views(torch.rand(2, 3, 30, 40), scales=(16, 24))
    assert [tuple(v.shape) for v in views] == [(2, 3, 16, 21), (2, 3, 24, 32)]

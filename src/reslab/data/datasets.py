"""Dataset names, where their files live, and `load_dataset` with the paper's train/val protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import torch
import torchvision.datasets as tvd
from torch import Tensor
from torchvision.datasets import ImageFolder

from reslab.data.folder import IMAGENET_MEAN, IMAGENET_STD, folder_dataset
from reslab.data.formats import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    read_cifar10,
    read_cifar100,
    read_mnist,
)
from reslab.errors import ReslabError, option

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee",
    "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant",
    "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower",
    "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate",
    "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark",
    "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
    "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"
]

DEFAULT_ROOT = Path("/usr/share/datasets")  # Debian's dataset-* packages install here
CACHE_ROOT = Path.home() / ".cache" / "reslab"  # where download=True puts files without a data_dir
ENV_VAR = "RESLAB_DATA"
Split = Literal["train", "val", "test", "trainval"]


@dataclass(frozen=True)
class DatasetSpec:
    """What a model and its input pipeline need to know; mean/std per channel in 0..1 units."""

    name: str
    num_classes: int  # 0 for "folder": the class sub-folders decide
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    hflip: bool = True  # horizontal flip preserves the label (not for digits)
    val_size: int = 0  # the paper's held-out part of the official training set


# Pixel statistics of the official training sets (std over all pixels of a channel).
SPECS = {s.name: s for s in (
    DatasetSpec("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), FASHION_MNIST_CLASSES, val_size=5000),
    DatasetSpec("mnist", 10, 1, 28, (0.1307,), (0.3081,), MNIST_CLASSES, hflip=False, val_size=5000),
    DatasetSpec("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES,
                val_size=5000),  # Section 4.2: 45k/5k
    DatasetSpec("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), CIFAR100_CLASSES,
                val_size=5000),
    DatasetSpec("folder", 0, 3, 224, IMAGENET_MEAN, IMAGENET_STD, []),
)}
DATASET_NAMES = tuple(SPECS)

# Folders below a root where each dataset's files may sit (the extracted archive, torchvision's layout).
_SUBDIRS = {"fashion-mnist": ["FashionMNIST/raw"], "mnist": ["MNIST/raw"],
            "cifar10": ["cifar-10-batches-py"], "cifar100": ["cifar-100-python"], "folder": []}
_GET_FILES = {"fashion-mnist": "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
                               "or run with --download",
              "folder": "pass the folder holding train/ and val/ as data_dir"}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ReslabError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return SPECS[name]


@dataclass
class InMemoryDataset:
    """A whole split in memory: images uint8 (N, C, H, W), labels int64 (N,)."""

    images: Tensor
    labels: Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.labels[i]

    def to(self, device: torch.device | str) -> InMemoryDataset:
        return InMemoryDataset(self.images.to(device), self.labels.to(device), self.classes)

    def subset(self, indices: Tensor | list[int]) -> InMemoryDataset:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.labels.device)
        return InMemoryDataset(self.images[idx], self.labels[idx], self.classes)


def _has_files(name: str, d: Path) -> bool:
    if name in ("fashion-mnist", "mnist"):
        return any((d / f"{split}-{kind}{gz}").is_file() for split in ("train", "t10k")
                   for kind in ("images-idx3-ubyte", "labels-idx1-ubyte") for gz in ("", ".gz"))
    if name == "cifar10":
        return (d / "batches.meta").is_file()
    if name == "cifar100":
        return (d / "meta").is_file() and ((d / "train").is_file() or (d / "test").is_file())
    return (d / "train").is_dir() or (d / "val").is_dir()


def _search(name: str, root: Path) -> Path | None:
    for base in (root, root / name):
        for d in (base, *(base / s for s in _SUBDIRS[name])):
            if _has_files(name, d):
                return d
    return None


def find_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder holding `name`'s official files: in `data_dir` when given (and only there: naming a
    folder and training on other data would be a silent wrong result), else searched in order in
    $RESLAB_DATA, /usr/share/datasets/<name>, ~/.cache/reslab/<name>. Each may be the folder itself,
    a parent holding <name>/, or a torchvision download root."""
    dataset_spec(name)
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise ReslabError(f"{option('data_dir', data_dir)} does not exist (or is not a folder); pass the folder "
                              f"that holds the {name} files")
        places = [Path(data_dir)]
    else:
        places = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
        places += [DEFAULT_ROOT / name, CACHE_ROOT / name]
    for place in places:
        if (found := _search(name, place)) is not None:
            return found
    if name == "folder" and data_dir is not None and any(d.is_dir() for d in Path(data_dir).iterdir()):
        return Path(data_dir)  # one folder of class folders, which --val-fraction splits
    how = _GET_FILES.get(name, "run with --download (or point data_dir at the extracted official files)")
    unset = "" if data_dir is not None or os.environ.get(ENV_VAR) else f" (${ENV_VAR} is unset)"
    raise ReslabError(f"no {name} files found in {', '.join(map(str, places))}{unset}; {how}")


def download_dataset(name: str, data_dir: str | Path | None = None) -> Path:
    """Fetch the official files with torchvision's downloader into data_dir or ~/.cache/reslab/<name>."""
    kinds = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}
    if name not in kinds:
        raise ReslabError(f"download is not available for dataset {name!r}; "
                          f"it works for {', '.join(kinds)}")
    root = Path(data_dir) if data_dir is not None else CACHE_ROOT / name
    for train in (True, False):
        kinds[name](str(root), train=train, download=True)
    return find_data_dir(name, root)


def _read(name: str, folder: Path, train: bool) -> tuple[Tensor, Tensor, list[str]]:
    if name == "cifar10":
        return read_cifar10(folder, train)
    if name == "cifar100":
        return read_cifar100(folder, train)
    return (*read_mnist(folder, train), list(SPECS[name].classes))


def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random partition of range(n) into (train, val) index tensors, each sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


@overload
def load_dataset(name: Literal["folder"], split: Split, *, data_dir: str | Path | None = ...,
                 download: bool = ..., val_size: int | None = ..., seed: int = ...) -> ImageFolder: ...
@overload
def load_dataset(name: Literal["fashion-mnist", "mnist", "cifar10", "cifar100"], split: Split, *,
                 data_dir: str | Path | None = ..., download: bool = ..., val_size: int | None = ...,
                 seed: int = ...) -> InMemoryDataset: ...
@overload
def load_dataset(name: str, split: Split, *, data_dir: str | Path | None = ..., download: bool = ...,
                 val_size: int | None = ..., seed: int = ...) -> InMemoryDataset | ImageFolder: ...
def load_dataset(name: str, split: Split, *, data_dir: str | Path | None = None, download: bool = False,
                 val_size: int | None = None, seed: int = 0) -> InMemoryDataset | ImageFolder:
    """One split of a dataset.

    "train"/"val" are a seeded split of the official training set (the paper's 45k/5k on CIFAR,
    55k/5k on (Fashion-)MNIST; `val_size=None` holds out min(5000, 10%)), "trainval" is the whole
    official training set, "test" the official test set. "folder" returns a torchvision
    ImageFolder with the Section 3.4 transforms (see `folder.folder_loader` for batches).
    """
    spec = dataset_spec(name)
    if split not in ("train", "val", "test", "trainval"):
        raise ReslabError(f"unknown split {split!r}; choose train, val, test or trainval")
    try:
        folder = find_data_dir(name, data_dir)
    except ReslabError:
        if not download:
            raise
        folder = download_dataset(name, data_dir)
    if name == "folder":
        return folder_dataset(folder, split, train=split == "train")
    images, labels, classes = _read(name, folder, train=split != "test")
    data = InMemoryDataset(images, labels, classes)
    if split in ("test", "trainval"):
        return data
    n = len(data)
    v = min(spec.val_size, n // 10) if val_size is None else val_size
    if not 0 <= v < n:
        raise ReslabError(f"val_size must be in [0, {n}) for {name} ({n} training images); received {val_size}")
    train_idx, val_idx = split_indices(n, v, seed)
    return data.subset(train_idx if split == "train" else val_idx)


def per_pixel_mean(images: Tensor, chunk: int = 4096) -> Tensor:
    """uint8 (N, C, H, W) -> the mean image (C, H, W), float32 in 0..1 (Sections 3.4, 4.2);
    compute it on the training split. Summed in float64 chunks so 50k images need no float copy."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64, device=images.device)
    for start in range(0, len(images), chunk):
        total += images[start:start + chunk].sum(0, dtype=torch.float64)
    return (total / (255.0 * max(len(images), 1))).float()

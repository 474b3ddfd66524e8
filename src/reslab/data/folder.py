"""ImageNet-style folders: `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg`.

Decoding and per-image transforms run in DataLoader workers (torchvision ImageFolder and
transforms v2); any format Pillow reads, converted to RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from reslab.data.augment import pca_lighting
from reslab.errors import ReslabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_TEST_SCALES = (224, 256, 384, 480, 640)  # Section 3.4, fully-convolutional multi-scale testing


class PCALighting:
    """Transform wrapper of `pca_lighting` for one float RGB image (3, H, W); draws from the global
    RNG, which the DataLoader seeds per worker."""

    def __init__(self, alphastd: float = 0.1) -> None:
        self.alphastd = alphastd

    def __call__(self, img: Tensor) -> Tensor:
        return pca_lighting(img, self.alphastd)


def _stack_crops(crops: Sequence[Tensor]) -> Tensor:
    return torch.stack(list(crops))


def train_transform(*, image_size: int = 224, scale_range: tuple[int, int] = (256, 480),
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Section 3.4: shorter side random in `scale_range`, random crop, flip, PCA lighting.

    Departure: per-channel mean/std instead of the per-pixel mean, because images of random
    scale have no fixed pixel grid to hold a mean image (torchvision's convention).
    """
    lo, hi = scale_range
    if not 0 < image_size <= lo <= hi:
        raise ReslabError(f"need 0 < image_size <= scale_range[0] <= scale_range[1], received "
                          f"image_size={image_size}, scale_range={scale_range}")
    return v2.Compose([
        v2.ToImage(),
        v2.RandomShortestSize(list(range(lo, hi + 1))),
        v2.RandomCrop(image_size),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        PCALighting(0.1),
        v2.Normalize(list(mean), list(std)),
    ])


def eval_transform(*, image_size: int = 224, resize: int = 256, ten_crop: bool = False,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Shorter side to `resize`, then the centre crop (3, S, S) or the ten crops (10, 3, S, S)."""
    crop = [v2.TenCrop(image_size), _stack_crops] if ten_crop else [v2.CenterCrop(image_size)]
    return v2.Compose([v2.ToImage(), v2.Resize(resize), *crop,
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def multiscale_views(img: Tensor, scales: Sequence[int] = PAPER_TEST_SCALES) -> list[Tensor]:
    """(..., C, H, W) -> one view per scale with the shorter side resized to it; the net's global
    average pool makes it fully convolutional, so average its scores over the views."""
    return [v2.functional.resize(img, [s], antialias=True) for s in scales]


def _classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise ReslabError(f"missing folder {split_dir}; an image folder needs train/ and val/ "
                          f"with one sub-folder per class")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise ReslabError(f"{split_dir} has no class sub-folders; put each class's images in {split_dir}/<class>/")
    for c in classes:
        if not any(p.is_file() and p.suffix.lower() in IMG_EXTENSIONS for p in (split_dir / c).rglob("*")):
            raise ReslabError(f"class folder {split_dir / c} holds no images ({', '.join(IMG_EXTENSIONS)}); "
                              f"add images or remove the folder")
    return classes


def folder_classes(root: str | Path) -> list[str]:
    """Validate `root/train` and `root/val` and return their (identical) sorted class names."""
    root = Path(root)
    train, val = _classes(root / "train"), _classes(root / "val")
    if train != val:
        diff = sorted(set(train) ^ set(val))
        raise ReslabError(f"{root}: train/ and val/ have different classes ({len(train)} vs {len(val)}; "
                          f"differing: {', '.join(diff[:5])}); both need the same class sub-folders")
    return train


def folder_dataset(root: str | Path, split: str, *, train: bool, image_size: int = 224,
                   scale_range: tuple[int, int] = (256, 480), ten_crop: bool = False,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> ImageFolder:
    """ImageFolder over `root/train` (split "train") or `root/val` ("val" or "test": ImageNet's test
    labels are not public, so the paper reports on val). Items are (float (3, S, S), int); with
    `ten_crop` evaluation items are (10, 3, S, S). The eval resize is `scale_range[0]` (256)."""
    if split not in ("train", "val", "test"):
        raise ReslabError(f"image folders have splits 'train', 'val', 'test' (= val/); received split={split!r}")
    folder_classes(root)
    if train:
        tf = train_transform(image_size=image_size, scale_range=scale_range, mean=mean, std=std)
    else:
        tf = eval_transform(image_size=image_size, resize=scale_range[0], ten_crop=ten_crop, mean=mean, std=std)
    return ImageFolder(str(Path(root) / ("train" if split == "train" else "val")), transform=tf)


def folder_loader(root: str | Path, split: str, *, batch_size: int, workers: int, train: bool,
                  image_size: int = 224, scale_range: tuple[int, int] = (256, 480), seed: int = 0,
                  ten_crop: bool = False) -> tuple[DataLoader, list[str]]:
    """A DataLoader of (float (B, 3, S, S), int64 (B,)) batches and the class names.

    `seed` fixes the shuffling order and the workers' random streams (with workers > 0).
    """
    ds = folder_dataset(root, split, train=train, image_size=image_size, scale_range=scale_range,
                        ten_crop=ten_crop)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
                        pin_memory=torch.cuda.is_available())
    return loader, list(ds.classes)

"""ImageNet-style folders: `root/train/<class>/*.jpg`, `root/val/<class>/*.jpg` and optionally
`root/test/<class>/*.jpg`.

Every image is decoded once before use (`check_folder`), so a corrupt one is found before
training starts. Decoding and per-image transforms run in DataLoader workers (torchvision
ImageFolder and transforms v2); the formats of `reslab.data.images.ACCEPTED_FORMATS`,
converted to RGB, through its size-checked decoder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from reslab.console import plural
from reslab.data.augment import pca_lighting
from reslab.data.images import load_image
from reslab.errors import ReslabError, option

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


SPLITS = ("train", "val", "test")


def hidden(path: str | Path, root: str | Path) -> bool:
    """Whether `path` lies in (or is) a hidden file or folder below `root`: a name starting with '.', such as
    Jupyter's .ipynb_checkpoints/ or macOS's ._photo.jpg. Those are never classes, and never images of one."""
    return any(part.startswith(".") for part in Path(path).relative_to(root).parts)


class VisibleImageFolder(ImageFolder):
    """torchvision's ImageFolder without hidden folders and files: a `.ipynb_checkpoints/` beside the class
    folders would otherwise become a class (shifting every label after it) and its copies extra images."""

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        root = os.path.expanduser(root)  # as DatasetFolder walks it

        def valid(path: str) -> bool:
            return path.lower().endswith(IMG_EXTENSIONS) and not hidden(path, root)
        super().__init__(root, is_valid_file=valid, **kwargs)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = _visible_dirs(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}


def _visible_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise ReslabError(f"missing folder {split_dir}; an image folder needs train/ and val/ (test/ optional) "
                          f"with one sub-folder per class, or pass {option('val_fraction', 0.2)} to hold out part "
                          f"of one folder of class folders")
    classes = _visible_dirs(split_dir)
    if not classes:
        raise ReslabError(f"{split_dir} has no class sub-folders; put each class's images in {split_dir}/<class>/")
    for c in classes:
        if not any(p.is_file() and p.suffix.lower() in IMG_EXTENSIONS and not hidden(p, split_dir)
                   for p in (split_dir / c).rglob("*")):
            raise ReslabError(f"class folder {split_dir / c} holds no images ({', '.join(IMG_EXTENSIONS)}); "
                              f"add images or remove the folder")
    return classes


def has_test_split(root: str | Path) -> bool:
    """Whether `root` has its own test/ split; without one, val/ both selects the checkpoint and is
    reported (as ImageNet's val set is in the paper), so reports must call it validation."""
    return (Path(root) / "test").is_dir()


def folder_classes(root: str | Path) -> list[str]:
    """Validate `root/train`, `root/val` and, when present, `root/test`; return their (identical)
    sorted class names, at least two."""
    root = Path(root)
    train = _classes(root / "train")
    for other in ("val", "test") if has_test_split(root) else ("val",):
        names = _classes(root / other)
        if names != train:
            diff = sorted(set(train) ^ set(names))
            raise ReslabError(f"{root}: train/ and {other}/ have different classes ({len(train)} vs {len(names)}; "
                              f"differing: {', '.join(diff[:5])}); every split needs the same class sub-folders")
    if len(train) < 2:
        raise ReslabError(f"{root}/train has one class ({train[0]}); a classifier needs at least 2 class "
                          f"sub-folders, or every prediction is trivially right")
    return train


def split_dir(root: str | Path, split: str) -> Path:
    """The folder of `split`: "test" is test/ when it exists, else val/ (ImageNet's test labels are not
    public, so the paper reports on val)."""
    if split not in SPLITS:
        raise ReslabError(f"image folders have splits 'train', 'val', 'test'; received split={split!r}")
    root = Path(root)
    return root / ("val" if split == "test" and not has_test_split(root) else split)


def load_rgb(path: str) -> Image.Image:
    """ImageFolder's loader: the safe decode of `reslab.data.images` (a module function, so workers can pickle it)."""
    return load_image(path, mode="RGB")


def bad_images(files: Sequence[str]) -> list[tuple[str, str]]:
    """(file, reason) for every one of `files` that does not decode, checked in threads (Pillow
    releases the GIL); JPEGs decode at reduced scale, which reads (and checks) all their data."""
    def check(f: str) -> tuple[str, str] | None:
        try:
            load_image(f, mode="RGB", draft=64)
        except ReslabError as e:
            return f, str(e)
        return None

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        return [r for r in pool.map(check, files) if r is not None]


def _scan(folder: Path, files: list[str], skip_bad: bool) -> set[str]:
    """The bad files of one split folder: an error naming the first, or (`skip_bad`) counted on stderr."""
    bad = bad_images(files)
    if bad and not skip_bad:
        one = len(bad) == 1
        raise ReslabError(f"{bad[0][1]}; {len(bad)} of {plural(len(files), 'image')} in {folder} "
                          f"{'is' if one else 'are'} unreadable: fix or remove {'it' if one else 'them'}, or pass "
                          f"--skip-bad to leave {'it' if one else 'them'} out")
    if bad:
        print(f"reslab: skipping {len(bad)} unreadable of {plural(len(files), 'image')} in {folder} "
              f"(first: {bad[0][1]})",
              file=sys.stderr, flush=True)
    return {f for f, _ in bad}


# (root, skip_bad, has test/) -> each split's checked samples: a folder is decoded once per process, not at every
# evaluation (ImageNet's 1.3M files take minutes to decode).
_CHECKED: dict[tuple[str, bool, bool], dict[str, list[tuple[str, int]]]] = {}  # also held_out_samples' splits


def check_folder(root: str | Path, *, skip_bad: bool = False) -> dict[str, list[tuple[str, int]]]:
    """Every split's (file, class index) samples after decoding each image once: an unreadable,
    truncated or oversized image is a one-line ReslabError naming it, or with `skip_bad` left
    out and counted on stderr. All splits are checked at once, so a bad image in val/ stops a
    run before training starts rather than at its first evaluation."""
    root = Path(root)
    classes = folder_classes(root)
    key = (str(root.resolve()), skip_bad, has_test_split(root))
    if key in _CHECKED:
        return _CHECKED[key]
    out = {}
    for split in ("train", "val", "test") if has_test_split(root) else ("train", "val"):
        folder = root / split
        samples = VisibleImageFolder(folder).samples
        bad = _scan(folder, [f for f, _ in samples], skip_bad)
        kept = [s for s in samples if s[0] not in bad]
        missing = sorted(set(range(len(classes))) - {c for _, c in kept})
        if missing:
            raise ReslabError(f"{folder / classes[missing[0]]}: no readable images left after skipping bad files; "
                              f"add readable images or remove the class from every split")
        out[split] = kept
    _CHECKED[key] = out
    return out


def scale_range_for(image_size: int) -> tuple[int, int]:
    """Section 3.4's scale augmentation, [256, 480] for 224 crops, at the same ratios for another crop size."""
    return round(image_size * 256 / 224), round(image_size * 480 / 224)


def _single_base(root: Path) -> Path:
    """The folder of class folders that --val-fraction splits: root/train when there is one, else root."""
    return root / "train" if (root / "train").is_dir() else root


def _own_test(root: Path) -> bool:
    """A test/ split beside train/ (in a bare folder of class folders, test/ would be a class)."""
    return (root / "train").is_dir() and has_test_split(root)


def held_out_samples(root: str | Path, fraction: float, seed: int, *,
                     skip_bad: bool = False) -> dict[str, list[tuple[str, int]]]:
    """fastai's `valid_pct` for one folder of class folders (`root/<class>/`, or `root/train/<class>/` when
    there is no val/): of each class, round(fraction x its images), at least one, held out for validation,
    chosen by a permutation seeded by `seed` (the same images for the same seed). "test" is `root/test`
    beside `root/train` when it exists, else the held-out images (reported as validation)."""
    root = Path(root)
    base = _single_base(root)
    classes = _classes(base)
    if len(classes) < 2:
        raise ReslabError(f"{base} has one class folder ({classes[0]}); a classifier needs at least 2")
    own_test = _own_test(root)
    key = (f"{base.resolve()}|{fraction}|{seed}", skip_bad, own_test)
    if key in _CHECKED:
        return _CHECKED[key]
    samples = ImageFolder(str(base)).samples
    bad = _scan(base, [f for f, _ in samples], skip_bad)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    for c, name in enumerate(classes):
        mine = [s for s in samples if s[1] == c and s[0] not in bad]
        if len(mine) < 2:
            raise ReslabError(f"{base / name} has {len(mine)} readable image(s); holding out a validation share "
                              f"needs at least 2 per class")
        n_val = min(len(mine) - 1, max(1, round(fraction * len(mine))))
        order = torch.randperm(len(mine), generator=g).tolist()
        out["val"] += sorted(mine[i] for i in order[:n_val])
        out["train"] += sorted(mine[i] for i in order[n_val:])
    if own_test:
        if _classes(root / "test") != classes:
            raise ReslabError(f"{root}: {base.name}/ and test/ have different class sub-folders; every split needs "
                              f"the same classes")
        test = ImageFolder(str(root / "test")).samples
        tbad = _scan(root / "test", [f for f, _ in test], skip_bad)
        out["test"] = [s for s in test if s[0] not in tbad]
    _CHECKED[key] = out
    return out


def _bare(root: Path) -> bool:
    """One folder of class folders, with no train/, val/ or test/ split in it."""
    return root.is_dir() and not any((root / s).is_dir() for s in SPLITS)


def _whole_folder(root: Path, skip_bad: bool) -> list[tuple[str, int]]:
    """Every checked (file, class) sample of a bare folder of class folders: what `reslab evaluate` tests
    on when it is given one (a folder of labelled photos is a test set)."""
    classes = _classes(root)
    if len(classes) < 2:
        raise ReslabError(f"{root} has one class folder ({classes[0]}); a classifier needs at least 2")
    samples = VisibleImageFolder(root).samples
    bad = _scan(root, [f for f, _ in samples], skip_bad)
    return [s for s in samples if s[0] not in bad]


def split_samples(root: str | Path, split: str, *, val_fraction: float | None = None, seed: int = 0,
                  skip_bad: bool = False) -> tuple[Path, list[tuple[str, int]]]:
    """(the folder ImageFolder reads, the checked (file, class) samples) of one split: train/, val/, test/ (val/
    without one), or with `val_fraction` the seeded share of one folder of class folders (`held_out_samples`).
    Without `val_fraction`, "test" of one folder of class folders (no train/, val/, test/) is all of it."""
    if not val_fraction and split == "test" and _bare(Path(root)):
        return Path(root), _whole_folder(Path(root), skip_bad)
    if not val_fraction and split == "val" and _bare(Path(root)):
        raise ReslabError(f"{root} is one folder of class folders, with no val/ split; evaluate every image of it "
                          f"with --split test")
    if not val_fraction:
        folder = split_dir(root, split)
        return folder, check_folder(root, skip_bad=skip_bad)[folder.name]
    root = Path(root)
    split_of = {"train": "train", "val": "val", "test": "test" if _own_test(root) else "val"}
    if split not in split_of:
        raise ReslabError(f"image folders have splits 'train', 'val', 'test'; received split={split!r}")
    samples = held_out_samples(root, val_fraction, seed, skip_bad=skip_bad)[split_of[split]]
    return (root / "test" if split_of[split] == "test" else _single_base(root)), samples


def folder_dataset(root: str | Path, split: str, *, train: bool, image_size: int = 224,
                   scale_range: tuple[int, int] = (256, 480), ten_crop: bool = False,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                   skip_bad: bool = False, resize: int | None = None, val_fraction: float | None = None,
                   seed: int = 0) -> ImageFolder:
    """ImageFolder over `root/train` (split "train"), `root/val` ("val") or `root/test` ("test"; val/
    when there is no test/). Items are (float (3, S, S), int); with `ten_crop` evaluation items are
    (10, 3, S, S). The eval resize is `resize`, default `scale_range[0]` (256). Every image of every
    split is checked first (`check_folder`): bad ones are an error, or left out with `skip_bad`. With
    `val_fraction`, one folder of class folders is split by `seed` (`held_out_samples`)."""
    folder, samples = split_samples(root, split, val_fraction=val_fraction, seed=seed, skip_bad=skip_bad)
    if train:
        tf = train_transform(image_size=image_size, scale_range=scale_range, mean=mean, std=std)
    else:
        tf = eval_transform(image_size=image_size, resize=resize or scale_range[0], ten_crop=ten_crop, mean=mean,
                            std=std)
    ds = VisibleImageFolder(folder, transform=tf, loader=load_rgb)
    ds.samples = ds.imgs = samples
    ds.targets = [c for _, c in samples]
    return ds


def folder_loader(root: str | Path, split: str, *, batch_size: int, workers: int, train: bool,
                  image_size: int = 224, scale_range: tuple[int, int] = (256, 480), seed: int = 0,
                  ten_crop: bool = False, skip_bad: bool = False) -> tuple[DataLoader, list[str]]:
    """A DataLoader of (float (B, 3, S, S), int64 (B,)) batches and the class names.

    `seed` fixes the shuffling order and the workers' random streams (with workers > 0).
    """
    ds = folder_dataset(root, split, train=train, image_size=image_size, scale_range=scale_range,
                        ten_crop=ten_crop, skip_bad=skip_bad)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
                        pin_memory=torch.cuda.is_available())
    return loader, list(ds.classes)

"""A run's data: this rank's training batches and the validation / test evaluators of `cfg.data`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.datasets import ImageFolder

from reslab import pretrained
from reslab.cli_types import cores  # worker processes past the CPUs only fork (a config may ask for 100,000)
from reslab.console import notice, plural
from reslab.data.augment import BatchAugment, NormMode
from reslab.data.classnames import check_class_count
from reslab.data.datasets import InMemoryDataset, Split, dataset_spec, find_data_dir, load_dataset, per_pixel_mean
from reslab.data.folder import IMAGENET_MEAN, IMAGENET_STD, folder_dataset, scale_range_for
from reslab.data.subset import Subset, subset_folder, subset_tensor
from reslab.errors import ReslabError, option
from reslab.evaluate import EvalResult, metrics_from_probs, predict_probs, tensor_batches
from reslab.train.balance import BalancedSampler, class_weight, epoch_order
from reslab.train.batches import InMemoryBatches, LoaderBatches
from reslab.train.config import TrainConfig
from reslab.train.distributed import Dist
from reslab.train.mixing import MixedBatches, mixed
from reslab.train.toplosses import file_pictures, tensor_pictures

Evaluator = Callable[[nn.Module], EvalResult]


@dataclass
class TrainData:
    batches: InMemoryBatches | LoaderBatches | MixedBatches
    evaluate_val: Evaluator
    evaluate_test: Evaluator
    classes: list[str]
    in_chans: int
    preprocess: dict[str, Any]  # what model.json records so that predict prepares images the same way
    loss_weight: torch.Tensor | None = None  # (K,) cross-entropy class weights (--balance loss)
    test_pictures: Callable[[list[int]], list[Any]] | None = None  # test indices -> images to show (toplosses.py)
    # images one validation pass and the final test (views counted: 10 per image with ten_crop) run through the
    # model, for --time-budget's estimate (train/budget.py); a function, since folder data must scan its splits
    eval_images: Callable[[], tuple[int, int]] = lambda: (0, 0)


def name_classes(data: TrainData, names: list[str] | None, imagenet: list[str] | None) -> None:
    """The run's class names, which model.json records: `names` (--classes, one per class of the data),
    else `imagenet` (ImageNet's, where --init kept a 1000-class ImageNet classifier), else the data's."""
    if names is not None:
        data.classes = check_class_count(list(names), len(data.classes), f"data of {len(data.classes)} classes")
    elif imagenet is not None:
        data.classes = list(imagenet)


def prepare_data(cfg: TrainConfig, device: torch.device, dist: Dist, amp: bool) -> TrainData:
    """The training batches (this rank's share) and the validation / test evaluators of `cfg.data`."""
    if cfg.data == "folder":
        return _prepare_folder(cfg, device, dist, amp)
    spec = dataset_spec(cfg.data)
    subset = data_subset(cfg)

    def split(name: Split) -> InMemoryDataset:
        data = load_dataset(cfg.data, name, data_dir=cfg.data_dir, download=cfg.download and dist.main, seed=cfg.seed,
                            val_size=None if name == "test" else cfg.val_size)
        assert isinstance(data, InMemoryDataset)  # every dataset but "folder" (above) is held in memory
        return subset_tensor(data, subset, train=name == "train")

    train, val, test = split("train"), split("val"), split("test")
    mean_image = per_pixel_mean(train.images)  # the paper subtracts the training set's per-pixel mean
    aug = BatchAugment(std=spec.std, mode=cast(NormMode, cfg.normalize), pixel_mean=mean_image.to(device),
                       mean=spec.mean, pad=4, hflip=spec.hflip)
    train, val, test = train.to(device), val.to(device), test.to(device)
    batches = InMemoryBatches(train, aug, batch_size=cfg.batch_size, seed=cfg.seed, augment=cfg.augment,
                              rank=dist.rank, world=dist.world, order=epoch_order(cfg.balance, train.labels))
    preprocess = {"image_size": spec.image_size, "in_chans": spec.in_chans, "mode": cfg.normalize,
                  "mean": list(spec.mean), "std": list(spec.std), "resize": None, "crop": spec.image_size,
                  "dataset": cfg.data, "mean_image": mean_image.cpu(), **_subset_record(cfg)}
    return TrainData(mixed(batches, cfg, len(train.classes), device), _tensor_evaluator(val, aug, device, amp, False),
                     _tensor_evaluator(test, aug, device, amp, cfg.ten_crop), train.classes, spec.in_chans, preprocess,
                     class_weight(cfg.balance, train.labels, len(train.classes), device), tensor_pictures(test.images),
                     lambda: (len(val), len(test) * (10 if cfg.ten_crop else 1)))


def data_subset(cfg: TrainConfig) -> Subset:
    """The images `cfg` keeps (data/subset.py): its classes, per-class count and class fractions."""
    return Subset(tuple(cfg.subset_classes), cfg.per_class, tuple((c, f) for c, f in cfg.class_fraction))


def _subset_record(cfg: TrainConfig) -> dict[str, Any]:
    """What model.json records of a class subset, so that `reslab evaluate` tests on the same classes."""
    return {"subset_classes": list(cfg.subset_classes)} if cfg.subset_classes else {}


def _tensor_evaluator(split: InMemoryDataset, aug: BatchAugment, device: torch.device, amp: bool,
                      ten_crop: bool) -> Evaluator:
    def run(model: nn.Module) -> EvalResult:
        if len(split) == 0:
            return EvalResult(math.nan, math.nan, math.nan, 0, [], torch.zeros(0))
        views = tensor_batches(split.images, split.labels, aug.normalize, ten_crop_pad=4 if ten_crop else None)
        probs, labels = predict_probs(model, views, device=device, amp=amp)
        return metrics_from_probs(probs, labels, len(split.classes))
    return run


@dataclass(frozen=True)
class FolderGeometry:
    """How a run sees folder images: the crop side, the training scale range, the eval resize, mean and std."""

    image_size: int
    scale_range: tuple[int, int]
    resize: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def record(self) -> dict[str, Any]:
        """model.json's preprocess record of these images."""
        return {"image_size": self.image_size, "in_chans": 3, "mode": "channel", "mean": list(self.mean),
                "std": list(self.std), "resize": self.resize, "crop": self.image_size}


def folder_geometry(cfg: TrainConfig) -> FolderGeometry:
    """`--image-size`, else the size of the weights `--init` names (torchvision:..., timm:...), else the
    paper's 224; the scale augmentation keeps Section 3.4's ratios ([256, 480] for 224). Named weights
    bring their mean and std, and their eval resize at their own size."""
    pre = pretrained.resolve(cfg.init).preprocess if cfg.init and pretrained.is_named(cfg.init) else None
    size = cfg.image_size or (pre["crop"] if pre else 224)
    lo, hi = scale_range_for(size)
    resize = pre["resize"] if pre and size == pre["crop"] else lo
    mean, std = (pre["mean"], pre["std"]) if pre else (IMAGENET_MEAN, IMAGENET_STD)
    return FolderGeometry(size, (lo, hi), resize, tuple(mean), tuple(std))


def _prepare_folder(cfg: TrainConfig, device: torch.device, dist: Dist, amp: bool) -> TrainData:
    root = find_data_dir("folder", cfg.data_dir)
    geo = folder_geometry(cfg)
    train = folder_dataset(root, "train", train=True, skip_bad=cfg.skip_bad, image_size=geo.image_size,
                           scale_range=geo.scale_range, mean=geo.mean, std=geo.std, val_fraction=cfg.val_fraction,
                           seed=cfg.seed)  # checks every split's images
    train = subset_folder(train, data_subset(cfg), train=True)
    per_rank = cfg.batch_size // dist.world

    def make_loader(epoch: int) -> DataLoader:
        sampler: BalancedSampler | DistributedSampler = (
            BalancedSampler(train.targets, seed=cfg.seed, rank=dist.rank, world=dist.world)
            if cfg.balance == "sampler" else
            DistributedSampler(train, dist.world, dist.rank, shuffle=True, seed=cfg.seed, drop_last=True))
        sampler.set_epoch(epoch)
        g = torch.Generator().manual_seed(cfg.seed + epoch)
        return DataLoader(train, per_rank, sampler=sampler, num_workers=min(cfg.workers, cores()), drop_last=True,
                          pin_memory=device.type == "cuda", generator=g, persistent_workers=False)

    steps = len(train) // cfg.batch_size
    if steps < 1:
        raise ReslabError(f"{root} has {plural(len(train), 'training image')}, fewer than one batch; lower "
                          f"{option('batch_size')}. Received: {option('batch_size', cfg.batch_size)}")
    if (dropped := len(train) - steps * cfg.batch_size) and dist.main:
        notice(f"{dropped} of the {len(train):,} training images {'is' if dropped == 1 else 'are'} left out of each "
               f"epoch ({plural(steps, 'full batch', 'full batches')} of {cfg.batch_size}; the last partial batch is "
               f"dropped, other images each epoch); a batch size "
               f"that divides {len(train)} uses them all")
    classes = list(train.classes)
    preprocess = {**geo.record(), "dataset": "folder", **_subset_record(cfg),
                  **({"val_fraction": cfg.val_fraction, "split_seed": cfg.seed} if cfg.val_fraction else {})}
    # Without a test/ folder, "test" is val/, as for ImageNet (the report then says validation).
    val = _folder_evaluator(root, cfg, geo, device, amp, False, classes, "val")
    test = _folder_evaluator(root, cfg, geo, device, amp, cfg.ten_crop, classes, "test")
    weight = class_weight(cfg.balance, torch.tensor(train.targets), len(classes), device)
    batches = mixed(LoaderBatches(make_loader, steps), cfg, len(classes), device)
    return TrainData(batches, val, test, classes, 3, preprocess, weight,
                     lambda indices: file_pictures([f for f, _ in _folder_split(root, cfg, geo, "test").samples])(
                         indices),
                     lambda: (len(_folder_split(root, cfg, geo, "val")),
                              len(_folder_split(root, cfg, geo, "test")) * (10 if cfg.ten_crop else 1)))


def _folder_evaluator(root: Path, cfg: TrainConfig, geo: FolderGeometry, device: torch.device, amp: bool,
                      ten_crop: bool, classes: list[str], split: str) -> Evaluator:
    def run(model: nn.Module) -> EvalResult:
        ds = _folder_split(root, cfg, geo, split, ten_crop)
        loader = DataLoader(ds, 64, num_workers=min(cfg.workers, cores()))
        probs, labels = predict_probs(model, loader, device=device, amp=amp)
        return metrics_from_probs(probs, labels, len(classes))
    return run


def _folder_split(root: Path, cfg: TrainConfig, geo: FolderGeometry, split: str, ten_crop: bool = False) -> ImageFolder:
    """An evaluation split of an image folder, with the run's class subset."""
    ds = folder_dataset(root, split, train=False, ten_crop=ten_crop, skip_bad=cfg.skip_bad, image_size=geo.image_size,
                        scale_range=geo.scale_range, resize=geo.resize, mean=geo.mean, std=geo.std,
                        val_fraction=cfg.val_fraction, seed=cfg.seed)
    return subset_folder(ds, data_subset(cfg), train=False)

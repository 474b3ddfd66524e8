"""Top-1 / top-5 error, loss, the confusion matrix and what it gives on imbalanced data: per-class
precision, recall and F1, macro-F1 and balanced accuracy; the most confidently wrong images.

Test views (Section 3.4 / 4.2): the single view, or the standard 10-crop (4 corners and
the centre, and their flips) with softmax scores averaged.
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from reslab._callable import make_callable
from reslab.console import plural
from reslab.data.augment import normalize, ten_crop
from reslab.data.datasets import find_data_dir, load_dataset
from reslab.data.folder import VisibleImageFolder, folder_dataset, load_rgb, multiscale_views, split_samples
from reslab.data.subset import Subset, subset_folder, subset_tensor
from reslab.deploy.images import image_mode, normalize_view, preprocess_image, raw_view, to_mode, view_size
from reslab.errors import ReslabError, option
from reslab.hardware import check_device
from reslab.metadata import EVAL_SPLITS, Preprocess
from reslab.modes import eval_mode
from reslab.outputs import check_file_out, save_file_output
from reslab.plotting import pyplot, save_figure
from reslab.weights import load_weights, resolve_weights, run_config

Split = Literal["test", "val"]
SPLITS = EVAL_SPLITS  # the same names as Split, torch-free for the CLI (metadata.py)


@dataclass
class EvalResult:
    top1_err: float
    top5_err: float
    loss: float
    n: int
    per_class_acc: list[float]
    confusion: Tensor  # (K, K): rows true class, columns predicted
    # The most confidently wrong images, most confident first: (index in the split, true, predicted, probability).
    top_losses: list[tuple[int, int, int, float]] = field(default_factory=list)

    @property
    def scores(self) -> ClassScores:
        return class_scores(self.confusion)

    @property
    def has_top5(self) -> bool:
        """Whether top-5 error says anything: with 5 classes or fewer it is 0 by definition."""
        return self.confusion.shape[0] > 5

    def as_dict(self, classes: list[str] | None = None) -> dict:
        """The metrics as JSON writes them (`evaluate --json`, a run's test-metrics.json): `top5_err` only with
        more than 5 classes, where it says something (`has_top5`)."""
        names = classes or [str(i) for i in range(len(self.per_class_acc))]
        s = self.scores

        def per_class(values: Sequence[float]) -> dict[str, float]:
            return dict(zip(names, values, strict=True))

        top5 = {"top5_err": self.top5_err} if self.has_top5 else {}
        return {"top1_err": self.top1_err, **top5, "loss": self.loss, "n": self.n,
                "macro_f1": s.macro_f1, "balanced_acc": s.balanced_acc,
                "per_class_acc": per_class(self.per_class_acc), "precision": per_class(s.precision),
                "recall": per_class(s.recall), "f1": per_class(s.f1), "support": per_class(s.support)}


@dataclass
class ClassScores:
    """Per class (K lists) and their macro means over the classes that occur (as true or predicted)."""

    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]  # true images of each class
    macro_f1: float
    balanced_acc: float  # the mean recall over the classes with true images


def class_scores(confusion: Tensor) -> ClassScores:
    """confusion (K, K), rows true, columns predicted -> precision TP/(TP+FP), recall TP/(TP+FN) and
    F1 = 2PR/(P+R) per class, 0 where undefined (scikit-learn's zero_division=0); macro-F1 over the
    classes that occur; balanced accuracy, the mean recall over the classes present (as scikit-learn)."""
    c = confusion.double().reshape(-1, confusion.shape[-1]) if confusion.numel() else torch.zeros(0, 0)
    tp, true, pred = c.diag(), c.sum(1), c.sum(0)
    precision = torch.where(pred > 0, tp / pred.clamp_min(1), 0.0)
    recall = torch.where(true > 0, tp / true.clamp_min(1), 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-300), 0.0)
    seen, present = (true + pred) > 0, true > 0
    macro = f1[seen].mean().item() if seen.any() else math.nan
    balanced = recall[present].mean().item() if present.any() else math.nan
    return ClassScores(precision.tolist(), recall.tolist(), f1.tolist(), true.long().tolist(), macro, balanced)


def metrics_from_probs(probs: Tensor, labels: Tensor, num_classes: int, top_losses: int = 16) -> EvalResult:
    """probs (N, K) class probabilities, labels (N,) -> errors, NLL loss, per-class accuracy, and the
    `top_losses` wrong images whose predicted class had the highest probability."""
    probs, labels = probs.float().cpu(), labels.cpu()
    k = min(5, num_classes)
    topk = probs.topk(k, dim=1).indices
    pred = topk[:, 0]
    top1 = (pred != labels).float().mean().item()
    top5 = (~(topk == labels[:, None]).any(1)).float().mean().item()
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels).item()
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)
    per_class = (confusion.diag() / confusion.sum(1).clamp_min(1)).tolist()
    return EvalResult(top1, top5, loss, len(labels), per_class, confusion,
                      confident_mistakes(probs, labels, top_losses))


def confident_mistakes(probs: Tensor, labels: Tensor, n: int) -> list[tuple[int, int, int, float]]:
    """probs (N, K), labels (N,) -> up to n (index, true, predicted, probability) of the wrongly
    predicted images, highest predicted probability first (ties: the lower index first)."""
    conf, pred = probs.max(1)
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[conf[wrong].argsort(descending=True, stable=True)][:n]
    return [(i, int(labels[i]), int(pred[i]), float(conf[i])) for i in order.tolist()]


# Views per forward pass on the CPU. A batch of 500 images in 10 crops is 5,000 views, whose activations
# (250 MB a layer for ResNet-20) miss every cache: 1,400 views/s against 3,300-4,400 at 128-1,000 views
# (AMD EPYC Zen 4, 2 threads, bf16), so `make run`'s 10-crop test took 48 s instead of about 25 s.
# A GPU takes the whole batch at once (it wants large ones).
CPU_EVAL_CHUNK = 256


def predict_probs(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *, device: torch.device,
                  amp: bool = False) -> tuple[Tensor, Tensor]:
    """Softmax scores over `batches` of normalised images (N, C, H, W), or 10-crop views
    (N, 10, C, H, W) averaged per image. Returns (probs (N, K), labels (N,)) on the CPU."""
    all_probs, all_labels = [], []
    with eval_mode(model):
        for x, y in batches:
            x = x.to(device, non_blocking=True)
            views = x.shape[1] if x.dim() == 5 else 1
            if x.dim() == 5:
                x = x.flatten(0, 1)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                chunks = x.split(CPU_EVAL_CHUNK) if device.type == "cpu" else (x,)
                logits = torch.cat([model(chunk) for chunk in chunks])
            p = logits.float().softmax(1)
            all_probs.append(p.view(-1, views, p.shape[1]).mean(1).cpu())
            all_labels.append(y.cpu())
    return torch.cat(all_probs), torch.cat(all_labels)


def multiscale_probs(model: nn.Module, images: Iterable[tuple[Tensor, int]], scales: tuple[int, ...], *,
                     device: torch.device) -> tuple[Tensor, Tensor]:
    """Section 3.4's fully-convolutional test: each normalised image (C, H, W) resized so its shorter
    side is each of `scales`, softmax scores averaged over the scales (global pooling takes any size)."""
    probs, labels = [], []
    with eval_mode(model):
        for img, y in images:
            views = multiscale_views(img, scales)
            probs.append(torch.stack([model(v[None].to(device)).float().softmax(1)[0].cpu() for v in views]).mean(0))
            labels.append(int(y))
    return torch.stack(probs), torch.tensor(labels)


def tensor_batches(images: Tensor, labels: Tensor, normalize: Callable[[Tensor], Tensor], *,
                   batch_size: int = 500, ten_crop_pad: int | None = None) -> Iterable[tuple[Tensor, Tensor]]:
    """Batches of an in-memory uint8 dataset, normalised; with `ten_crop_pad`, 10 views per image
    taken from the image padded by that many pixels (the training crops' geometry)."""
    for i in range(0, len(labels), batch_size):
        x = normalize(images[i:i + batch_size])
        if ten_crop_pad is not None:
            h = x.shape[-1]
            x = ten_crop(F.pad(x, (ten_crop_pad,) * 4), h).view(x.shape[0], 10, *x.shape[1:])
        yield x, labels[i:i + batch_size]


def save_confusion_png(confusion: Tensor, classes: list[str], path: str | Path, *, title: str = "") -> Path:
    """A row-normalised confusion matrix as a PNG."""
    plt = pyplot()
    k = len(classes)
    norm = confusion.float() / confusion.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=[0, 0.25, 0.5, 0.75, 1])
    bar.set_label("fraction of the true class (row-normalised); numbers: images")
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    # wrapped to the figure's width (about 9 characters an inch at this size): a 3-class matrix is 4 inches wide
    ax.set_title(textwrap.fill(title or "confusion matrix", width=int(9 * size)))
    return save_figure(fig, path)


def evaluate_weights(weights: str | Path, *, data: str | None = None, data_dir: str | None = None,
                     split: Split = "test", ten_crop: bool = False, device: str = "auto", batch_size: int = 500,
                     out: str | Path | None = None, overwrite: bool = False,
                     multiscale: tuple[int, ...] | None = None,
                     subset_classes: tuple[int, ...] | None = None) -> tuple[EvalResult, list[str], Path]:
    """Evaluate saved reslab weights on a dataset split (test or val); writes confusion-<split>.png.

    Refuses when the dataset's classes differ from the model's. `multiscale` (folder datasets): the
    fully-convolutional test averaged over these shorter-side scales (the paper's 224..640).
    `subset_classes`: only these of the dataset's classes, relabelled 0..k-1 (default: the subset the
    model was trained on, from model.json). `out`: the folder for the PNG, where an existing one is
    replaced only with `overwrite` (checked before the evaluation; docs/files.md); without `out` it goes
    beside the weights, replacing the previous evaluation's. Returns (result, classes, png path).
    """
    if split not in SPLITS:
        raise ReslabError(f"unknown split. Received: split={split!r}; expected test or val")
    if out is not None and (png := _out_png(out, split)).parent.is_dir():
        check_file_out(png, overwrite=overwrite)  # refused now, not after the evaluation
    dev = check_device(device)
    model, meta = load_weights(weights, device=dev)
    pre = meta["preprocess"]
    name = data or pre.get("dataset")
    if not name:
        raise ReslabError(f"{weights} does not say which dataset it was trained on; pass --data")
    if multiscale and name != "folder":
        raise ReslabError(f"the multi-scale test is for image-folder datasets (full-size images); received "
                          f"data={name!r}: use --ten-crop for small images")
    subset = Subset(tuple(pre.get("subset_classes", ())) if subset_classes is None else tuple(subset_classes))
    if data_dir is None and data is None:  # a run's own data folder, as it trained (stored absolute)
        data_dir = run_config(resolve_weights(weights)[0].parent).get("data_dir")
    if name == "folder":
        classes, batches = _folder_split(find_data_dir("folder", data_dir), split, pre, subset, ten_crop=ten_crop,
                                         whole_images=bool(multiscale))
    else:
        classes, batches = _tensor_split(name, split, data_dir, pre, subset, batch_size=batch_size,
                                         ten_crop=ten_crop, held_out=_held_out(weights) if split == "val" else {})
    if list(classes) != list(meta["classes"]):
        raise ReslabError(f"{data_dir or name} has {_short(classes)} but {weights} was trained on "
                          f"{_short(meta['classes'])}; evaluate on data with the model's classes (for a folder: "
                          f"one sub-folder per class, named as in its model.json), or classify any images with "
                          f"`reslab predict`")
    if multiscale:
        probs, labels = multiscale_probs(model, batches, multiscale, device=dev)
    else:
        probs, labels = predict_probs(model, batches, device=dev)
    if not bool(torch.isfinite(probs).all()):  # NaN would pass silently as an error rate, and is not JSON
        bad = int((~torch.isfinite(probs).all(dim=1)).sum())
        raise ReslabError(f"{weights}: the network's output holds NaN or infinite values on {bad} of "
                          f"{plural(len(probs), f'{name} {split} image')}; the weights overflow on these inputs")
    res = metrics_from_probs(probs, labels, len(classes))
    title = f"{meta['model']} on {name} {split}: {100 * (1 - res.top1_err):.2f}% top-1"

    def draw(path: Path) -> Path:
        return save_confusion_png(res.confusion, list(classes), path, title=title)

    if out is None:
        png = draw(resolve_weights(weights)[0].parent / f"confusion-{split}.png")
    else:
        png = save_file_output(_out_png(out, split), overwrite=overwrite, write=draw)
    return res, list(classes), png


def _out_png(out: str | Path, split: str) -> Path:
    """confusion-<split>.png in the folder `out` (made when it does not exist)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ReslabError(f"{option('out', out)} is a file; give a folder for confusion-{split}.png")
    return Path(out) / f"confusion-{split}.png"


class ModelView:
    """An image folder's transform that is the model's own preprocessing (its model.json, as `predict`
    applies it): PIL image -> float (C, S, S), or with `ten_crop` the 10 crops (10, C, S, S): from the
    image resized to `resize` when the weights name one (Section 3.4), else from the view padded by 4
    pixels (the small nets' training crops, as for in-memory datasets)."""

    def __init__(self, pre: Preprocess, ten_crop: bool = False) -> None:
        self.pre, self.ten_crop = pre, ten_crop

    def __call__(self, img: Any) -> Tensor:
        if not self.ten_crop:
            return preprocess_image(img, self.pre)
        crop = view_size(self.pre)
        if self.pre.get("resize"):
            img = to_mode(img, image_mode(self.pre))
            big = v2.functional.pil_to_tensor(v2.functional.resize(img, [int(self.pre["resize"] or crop)],
                                                                   antialias=True))
            return normalize_view(torch.stack(v2.functional.ten_crop(big, [crop])), self.pre)
        x = normalize_view(raw_view(img, self.pre)[None], self.pre)
        return ten_crop(F.pad(x, (4,) * 4), crop)


def _folder_split(root: Path, split: str, pre: Preprocess, subset: Subset, *, ten_crop: bool,
                  whole_images: bool) -> tuple[list[str], Iterable[Any]]:
    """An image folder's val (or test) images, preprocessed as the model's model.json says: batches of its
    view (or 10 crops), or (whole_images) each image (C, H, W) normalised but neither resized nor cropped,
    for the multi-scale test. A run that held out part of one folder (--val-fraction) is split the same way."""
    fraction, seed = pre.get("val_fraction"), pre.get("split_seed", 0)
    if whole_images:
        tf = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre["mean"], pre["std"])])
        folder, samples = split_samples(root, split, val_fraction=fraction, seed=seed)
        images = VisibleImageFolder(folder, transform=tf, loader=load_rgb)
        images.samples = images.imgs = samples
        images.targets = [c for _, c in samples]
        images = subset_folder(images, subset, train=False)
        return list(images.classes), images
    ds = subset_folder(folder_dataset(root, split, train=False, val_fraction=fraction, seed=seed), subset, train=False)
    ds.transform = ModelView(pre, ten_crop)
    return list(ds.classes), DataLoader(ds, 64, num_workers=min(2, len(os.sched_getaffinity(0))))


def _held_out(weights: str | Path) -> dict[str, Any]:
    """The seed and size of the validation split the run held out, from the config of the run the weights
    belong to; {} (the default split, with a note) when there is none."""
    saved = run_config(resolve_weights(weights)[0].parent)
    if isinstance(saved.get("seed"), int):
        return {"seed": saved["seed"], "val_size": saved.get("val_size")}
    print(f"reslab evaluate: no run config.json beside {weights}: the validation split is the default one "
          "(seed 0), which may not be the images this model held out", file=sys.stderr)
    return {}


def _tensor_split(name: str, split: Split, data_dir: str | None, pre: Preprocess, subset: Subset, *,
                  batch_size: int, ten_crop: bool, held_out: dict[str, Any],
                  ) -> tuple[list[str], Iterable[tuple[Tensor, Tensor]]]:
    """An in-memory dataset's split, normalised as the model was trained (10-crop views: padding 4);
    `held_out`: the seed and val_size the run split its validation images with."""
    ds = subset_tensor(load_dataset(name, split, data_dir=data_dir, **held_out), subset, train=False)

    def norm(x: Tensor) -> Tensor:
        return normalize(x, mode=pre["mode"], std=pre["std"], mean=pre.get("mean"), pixel_mean=pre.get("mean_image"))

    return list(ds.classes), tensor_batches(ds.images, ds.labels, norm, batch_size=batch_size,
                                            ten_crop_pad=4 if ten_crop else None)


def _short(classes: list[str]) -> str:
    return f"{len(classes)} classes [{', '.join(map(str, classes[:3]))}{', ...' if len(classes) > 3 else ''}]"


make_callable(__name__, evaluate_weights)  # reslab.evaluate(weights, ...) is evaluate_weights

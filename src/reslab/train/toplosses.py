"""The "top losses" grid: the test images a model got wrong with the most confidence (fastai's
`plot_top_losses`), each with its true class, the predicted class and that prediction's probability."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from reslab.data.images import load_image
from reslab.plotting import pyplot, save_figure

TOP_LOSSES_PNG = "top-losses.png"
THUMBNAIL = 128  # folder images are shown at most this many pixels on a side


def tensor_pictures(images: Tensor):
    """For an in-memory split, uint8 images (N, C, H, W): indices -> pictures (H, W) or (H, W, 3) uint8."""
    def pictures(indices: Sequence[int]) -> list[np.ndarray]:
        chosen = images[list(indices)].cpu().permute(0, 2, 3, 1).numpy()
        return [p[..., 0] if p.shape[-1] == 1 else p for p in chosen]
    return pictures


def file_pictures(files: Sequence[str]):
    """For an image folder's samples, in the order evaluated: indices -> RGB thumbnails (h, w, 3) uint8."""
    def pictures(indices: Sequence[int]) -> list[np.ndarray]:
        out = []
        for i in indices:
            img = load_image(files[i], mode="RGB")
            img.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
            out.append(np.asarray(img))
        return out
    return pictures


def save_top_losses_png(pictures: Sequence[np.ndarray], mistakes: Sequence[tuple[int, int, int, float]],
                        classes: Sequence[str], path: str | Path, *, title: str = "", columns: int = 4) -> Path:
    """A grid of `pictures` (H, W) grey or (H, W, 3) uint8, one per (index, true, predicted, probability)."""
    plt = pyplot()
    rows = -(-len(mistakes) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, pic, (_, true, pred, prob) in zip(axes.flat, pictures, mistakes, strict=False):
        ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(f"true {classes[true]}\npredicted {classes[pred]} ({prob:.2f})", fontsize=8)
    fig.suptitle(title or "most confidently wrong")
    return save_figure(fig, path)

"""Pictures of heat maps: the model's view of an image, a jet heat map blended over it (as in the CAM
and Grad-CAM papers' figures), and one grid for many images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reslab.deploy.images import preprocess_image
from reslab.metadata import Preprocess
from reslab.plotting import pyplot

DISPLAY_SIDE = 224  # small inputs (28 px Fashion-MNIST) are enlarged to this shorter side to be legible
ALPHA = 0.5  # share of the heat map's colour in an overlay


def model_view(img: Image.Image, preprocess: Preprocess) -> Image.Image:
    """The RGB picture the model sees: `predict`'s geometry and colour mode, without the normalisation,
    enlarged (bicubic) to a shorter side of DISPLAY_SIDE when smaller."""
    chans = 1 if int(preprocess.get("in_chans", 3)) == 1 else 3
    identity: Preprocess = {**preprocess, "mode": "channel", "mean": [0.0] * chans, "std": [1.0] * chans}
    x = preprocess_image(img, identity)  # (C, H, W) in 0..1
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    view = Image.fromarray(arr[:, :, 0] if chans == 1 else arr).convert("RGB")
    scale = DISPLAY_SIDE / min(view.size)
    if scale > 1:
        view = view.resize((round(view.width * scale), round(view.height * scale)), Image.Resampling.BICUBIC)
    return view


def heat_overlay(view: Image.Image, heat: np.ndarray, *, alpha: float = ALPHA) -> Image.Image:
    """`heat` (h, w) in [0, 1] resized (bilinear) to `view`, coloured with jet and blended over it."""
    from matplotlib import colormaps

    h = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F").resize(view.size, Image.Resampling.BILINEAR)
    colour = colormaps["jet"](np.clip(np.asarray(h), 0, 1))[:, :, :3]  # (H, W, 3) in 0..1
    base = np.asarray(view.convert("RGB"), dtype=np.float32) / 255
    return Image.fromarray(np.uint8(np.rint(255 * ((1 - alpha) * base + alpha * colour))))


@dataclass
class GridRow:
    """One image of a grid: its name, the model's view, and (overlay, caption) per explained class."""

    name: str
    view: Image.Image
    panels: list[tuple[Image.Image, str]]


def write_grid(rows: Sequence[GridRow], path: str | Path, *, title: str) -> Path:
    """One figure: a row per image, the input then one overlay per class, each captioned."""
    plt = pyplot()
    cols = 1 + max(len(r.panels) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.4 * len(rows) + 0.4), squeeze=False)
    for ax_row, row in zip(axes, rows, strict=True):
        cells = [(row.view, row.name), *row.panels]
        for ax, cell in zip(ax_row, [*cells, *[None] * (cols - len(cells))], strict=True):
            ax.axis("off")
            if cell is not None:
                ax.imshow(cell[0])
                ax.set_title(cell[1], fontsize=8)
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))  # room for the title above the first row's captions
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)

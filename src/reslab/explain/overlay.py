"""Pictures of heat maps: the model's view of an image, a jet heat map blended over it (as in the CAM
and Grad-CAM papers' figures), one titled figure per map with its colour bar, and one grid for many
images with one colour bar for all."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from reslab.deploy.images import preprocess_image
from reslab.metadata import Preprocess
from reslab.plotting import pyplot, save_figure

DISPLAY_SIDE = 224  # small inputs (28 px Fashion-MNIST) are enlarged to this shorter side to be legible
ALPHA = 0.5  # share of the heat map's colour in an overlay
CMAP = "jet"
CAPTION_CHARS = 26  # a grid caption wider than this is wrapped (file names: shortened in the middle)
# What 0..1 means under each scale of reslab.explain.cam.SCALES: the colour bar's label.
SCALE_LABELS = {"prob": "map x class probability", "shared": "map / largest of this image's maps",
                "per-map": "map / its own largest value"}


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
    colour = colormaps[CMAP](np.clip(np.asarray(h), 0, 1))[:, :, :3]  # (H, W, 3) in 0..1
    base = np.asarray(view.convert("RGB"), dtype=np.float32) / 255
    return Image.fromarray(np.uint8(np.rint(255 * ((1 - alpha) * base + alpha * colour))))


def _colorbar(fig: Any, axes: Any, label: str, **kw: Any) -> Any:
    """The overlays' colour scale: jet from 0 to 1, ticks at 0, 0.25, ..., 1."""
    from matplotlib import cm, colors

    bar = fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=CMAP), ax=axes, ticks=np.linspace(0, 1, 5),
                       **kw)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


def overlay_title(class_name: str, prob: float, method: str, model: str) -> str:
    return f"{class_name}: p = {prob:.2f}\n{method} of {model}"


def overlay_figure(view: Image.Image, heat: np.ndarray, *, title: str, scale: str) -> Any:
    """One overlay as a figure: the blended image, `title` above it, the colour bar of `scale` beside it."""
    fig, ax = pyplot().subplots(figsize=(3.6, 3.1), layout="constrained")
    ax.imshow(heat_overlay(view, heat))
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    _colorbar(fig, ax, SCALE_LABELS[scale], shrink=0.9)
    return fig


def write_overlay(view: Image.Image, heat: np.ndarray, path: str | Path, *, title: str, scale: str) -> Path:
    fig = overlay_figure(view, heat, title=title, scale=scale)
    return save_figure(fig, path, dpi=100, tight=False)  # constrained layout already


def short_name(name: str, chars: int = CAPTION_CHARS) -> str:
    """A file name shortened in the middle to `chars` characters, its start and extension kept."""
    if len(name) <= chars:
        return name
    tail = max(6, chars // 3)
    return name[: chars - tail - 1] + "\u2026" + name[-tail:]


def _caption(text: str) -> str:
    return "\n".join(textwrap.wrap(text, CAPTION_CHARS, break_long_words=True)[:2])


@dataclass
class GridRow:
    """One image of a grid: its name, the model's view, and (overlay, caption) per explained class."""

    name: str
    view: Image.Image
    panels: list[tuple[Image.Image, str]]


def grid_figure(rows: Sequence[GridRow], *, title: str, scale: str) -> Any:
    """One figure: a row per image, the input then one overlay per class, each captioned (file names
    shortened, class captions wrapped to two lines), and one colour bar for every overlay."""
    plt = pyplot()
    cols = 1 + max(len(r.panels) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols + 0.9, 2.45 * len(rows) + 0.5), squeeze=False,
                             layout="constrained")
    for ax_row, row in zip(axes, rows, strict=True):
        cells = [(row.view, short_name(row.name)), *((img, _caption(text)) for img, text in row.panels)]
        for ax, cell in zip(ax_row, [*cells, *[None] * (cols - len(cells))], strict=True):
            ax.set_axis_off()
            if cell is not None:
                ax.imshow(cell[0])
                ax.set_title(cell[1], fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(title, 24 * cols)), fontsize=10)
    _colorbar(fig, axes[:, 1:].ravel().tolist(), SCALE_LABELS[scale], shrink=min(0.9, 3 / len(rows)),
              location="right")
    return fig


def write_grid(rows: Sequence[GridRow], path: str | Path, *, title: str, scale: str = "prob") -> Path:
    fig = grid_figure(rows, title=title, scale=scale)
    return save_figure(fig, path, tight=False)  # constrained layout already

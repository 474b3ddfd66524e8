"""`reslab explain`: top-k classes of image files and a heat-map overlay per class, as PNGs and one grid.

Images are read and preprocessed exactly as `reslab predict` does (any Pillow mode, `--skip-bad`).
The folder holds `<n>-<stem>-top<r>-<class>.png` per image and class, `grid.png` (the first
GRID_MAX_ROWS images) and `explain.json` (classes, probabilities, file names).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from reslab.deploy.images import image_mode, load_image, preprocess_image
from reslab.deploy.predict import expand_inputs
from reslab.errors import ReslabError
from reslab.explain.cam import METHODS, SCALES, cam, default_layer
from reslab.explain.overlay import GridRow, heat_overlay, model_view, overlay_title, write_grid, write_overlay
from reslab.fileio import atomic_write_text
from reslab.hardware import check_device
from reslab.metadata import Preprocess, WeightsMeta
from reslab.modes import eval_mode
from reslab.outputs import output_folder
from reslab.weights import load_weights

GRID_MAX_ROWS = 24  # a taller grid is unreadable; every image still gets its own PNGs


@dataclass
class ExplainConfig:
    weights: str
    inputs: tuple[str, ...]
    method: str = "cam"
    layer: str | None = None  # None: the last stage (`default_layer`)
    topk: int = 3
    out: str | None = None  # None: explain/<method>-<time>
    skip_bad: bool = False
    batch_size: int = 16
    device: str = "auto"
    label: str = ""  # said in the grid's title, e.g. which data the weights were trained on
    scale: str = "prob"  # reslab.explain.cam.SCALES: how a map's values become colours
    overwrite: bool = False  # replace reslab's earlier explain output in `out` (docs/files.md)


@dataclass
class ExplainResult:
    folder: Path
    results: list[dict] = field(default_factory=list)  # per file: {"file", "topk": [...]} or {"file", "error"}
    grid: Path | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "class"


def _images(files: list[Path], preprocess: Preprocess, cfg: ExplainConfig
            ) -> Iterator[tuple[list[tuple[int, Path, Image.Image]], list[dict]]]:
    """Chunks of (index, file, decoded image) and the chunk's unreadable files (when skipping them)."""
    mode = image_mode(preprocess)
    for start in range(0, len(files), cfg.batch_size):
        good, bad = [], []
        for i, f in enumerate(files[start:start + cfg.batch_size], start):
            try:
                good.append((i, f, load_image(f, mode=mode)))
            except ReslabError as e:
                if not cfg.skip_bad:
                    raise
                bad.append({"file": str(f), "error": str(e)})
        yield good, bad


def _explain_chunk(model: torch.nn.Module, meta: WeightsMeta, chunk: list[tuple[int, Path, Image.Image]],
                   cfg: ExplainConfig, folder: Path) -> tuple[list[dict], list[GridRow]]:
    pre, classes = meta["preprocess"], meta["classes"]
    device = next(model.parameters()).device
    x = torch.stack([preprocess_image(img, pre) for _, _, img in chunk]).to(device)
    with eval_mode(model):
        probs = model(x).float().softmax(1)
    p, idx = probs.topk(min(cfg.topk, probs.shape[1]), dim=1)  # (B, K)
    maps: Tensor = cam(model, x, idx, method=cfg.method, layer=cfg.layer, scale=cfg.scale,
                       probs=probs).cpu()  # (B, K, H, W)
    results, rows = [], []
    for b, (i, f, img) in enumerate(chunk):
        view, top, panels = model_view(img, pre), [], []
        for r, (prob, c) in enumerate(zip(p[b].tolist(), idx[b].tolist(), strict=True), 1):
            name = classes[c] if c < len(classes) else str(c)
            heat = maps[b, r - 1].numpy()
            overlay = heat_overlay(view, heat)
            png = folder / f"{i:03d}-{_slug(f.stem)}-top{r}-{_slug(name)}.png"
            write_overlay(view, heat, png, title=f"{f.name}\n" + overlay_title(name, prob, cfg.method, meta["model"]),
                          scale=cfg.scale)
            top.append({"class": name, "index": c, "prob": prob, "overlay": png.name})
            panels.append((overlay, f"{r}. {name} {prob:.2f}"))
        results.append({"file": str(f), "topk": top})
        rows.append(GridRow(f.name, view, panels))
    return results, rows


def explain_images(cfg: ExplainConfig) -> ExplainResult:
    """Explain every image of `cfg.inputs` (files, or folders searched recursively) with `cfg.weights`."""
    if cfg.method not in METHODS:
        raise ReslabError(f"unknown method. Received: method={cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.scale not in SCALES:
        raise ReslabError(f"unknown scale. Received: scale={cfg.scale!r}; choose one of {', '.join(SCALES)}")
    if cfg.topk < 1 or cfg.batch_size < 1:
        raise ReslabError(f"topk and batch_size must be >= 1. Received: topk={cfg.topk}, "
                          f"batch_size={cfg.batch_size}")
    model, meta = load_weights(cfg.weights, device=check_device(cfg.device))
    files = expand_inputs(cfg.inputs)
    folder = Path(cfg.out) if cfg.out else Path("explain") / f"{_slug(cfg.method)}-{time.strftime('%Y%m%d-%H%M%S')}"
    with output_folder(folder, "explain", overwrite=cfg.overwrite):
        return _explain_into(model, meta, files, folder, cfg)


def _explain_into(model: nn.Module, meta: WeightsMeta, files: list[Path], folder: Path,
                  cfg: ExplainConfig) -> ExplainResult:
    by_file: dict[Path, dict] = {}
    rows: list[GridRow] = []
    for chunk, bad in _images(files, meta["preprocess"], cfg):
        by_file.update({Path(b["file"]): b for b in bad})
        if chunk:
            results, chunk_rows = _explain_chunk(model, meta, chunk, cfg, folder)
            by_file.update({Path(r["file"]): r for r in results})
            rows += chunk_rows[:max(0, GRID_MAX_ROWS - len(rows))]
    layer = cfg.layer or default_layer(model)
    result = ExplainResult(folder, [by_file[f] for f in files])
    if rows:
        title = f"{cfg.method} at {layer} of {meta['model']}" + (f" ({cfg.label})" if cfg.label else "")
        result.grid = write_grid(rows, folder / "grid.png", title=title, scale=cfg.scale)
    doc = {"weights": str(cfg.weights), "model": meta["model"], "method": cfg.method, "layer": layer,
           "scale": cfg.scale,
           "results": result.results}
    atomic_write_text(folder / "explain.json", json.dumps(doc, indent=2) + "\n")
    return result

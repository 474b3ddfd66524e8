"""`reslab compare`: depth, parameters, multiply-adds and (for trained runs) accuracy, side by side.

The survey's question: what does each design buy per parameter and per multiply-add? One
row per registered net or trained run; a PNG plots parameters against MACs (both log),
bubble area growing with depth.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from torch import nn

from reslab.errors import ReslabError
from reslab.experiments.tables import markdown_table
from reslab.fileio import atomic_write_text
from reslab.models.analysis import count_params, layer_stats
from reslab.models.registry import create_model, model_entry
from reslab.outputs import output_folder
from reslab.plotting import pyplot, save_figure
from reslab.train.rundir import RunDir, test_error
from reslab.weights import read_metadata

COUNTED_LAYERS = ("Conv2d", "Linear")


@dataclass
class CompareRow:
    label: str
    model: str
    family: str
    depth: int  # weighted layers on the longest path, as the nets' papers count them (registry)
    weighted_layers: int  # conv and fc layers executed, parallel branches and projections included
    params: int
    macs: int  # conv + fc multiply-adds per image (the paper's FLOPs)
    input_size: tuple[int, int, int]  # (C, H, W)
    test_err: float | None = None
    run_dir: str | None = None

    @property
    def accuracy(self) -> float | None:
        return None if self.test_err is None else 1 - self.test_err


def measure(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[int, int, int]:
    """(parameters, MACs, weighted layers executed) of `model` on one (C, H, W) image."""
    stats = layer_stats(model, input_size)
    return count_params(model), sum(s.macs for s in stats), sum(s.kind in COUNTED_LAYERS for s in stats)


def model_row(name: str, *, input_size: int | None = None, model_kwargs: dict[str, Any] | None = None,
              label: str | None = None) -> CompareRow:
    """A registered net at `input_size` (default: the resolution it was designed for)."""
    entry = model_entry(name)
    model = create_model(name, **(model_kwargs or {}))
    side = input_size or entry.input_size
    size = (getattr(model, "in_chans", 3), side, side)
    params, macs, layers = measure(model, size)
    return CompareRow(label or name, name, entry.family, entry.depth, layers, params, macs, size)


def run_row(run_dir: str | Path, *, input_size: int | None = None) -> CompareRow:
    """A trained run (or weights) directory: the net as trained, and its test error when metrics.csv has one."""
    path = Path(run_dir)
    meta = read_metadata(path)
    kwargs = dict(meta["model_kwargs"])
    row = model_row(meta["model"], input_size=input_size or meta["preprocess"].get("image_size"),
                    model_kwargs=kwargs, label=f"{meta['model']} ({path.name})")
    row.test_err = test_error(RunDir(path).read_metrics())
    row.run_dir = str(path)
    return row


def compare_models(models: Sequence[str] = (), runs: Sequence[str | Path] = (), *,
                   input_size: int | None = None) -> list[CompareRow]:
    """One row per model name, then one per run directory (a run of a listed model replaces its row)."""
    if not models and not runs:
        raise ReslabError("compare needs model names or --runs. Received: none; e.g. `reslab compare resnet20 "
                          "vgg11_small googlenet_small`")
    rows = [model_row(m, input_size=input_size) for m in models]
    for run in runs:
        r = run_row(run, input_size=input_size)
        same = next((i for i, x in enumerate(rows) if x.run_dir is None and x.model == r.model), None)
        if same is None:
            rows.append(r)
        else:
            rows[same] = r
    return rows


def _headers() -> tuple[str, ...]:
    return ("net", "family", "depth", "weighted layers", "params", "MACs", "input", "test accuracy")


def _cells(r: CompareRow) -> tuple[str, ...]:
    acc = "-" if r.accuracy is None else f"{100 * r.accuracy:.2f}%"
    return (r.label, r.family, str(r.depth), str(r.weighted_layers), f"{r.params:,}", _si(r.macs),
            "x".join(map(str, r.input_size)), acc)


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:g}"


def compare_table(rows: Sequence[CompareRow]) -> Table:
    """A rich Table of the rows."""
    t = Table(title="reslab compare: depth, parameters, multiply-adds", title_justify="left")
    for h in _headers():
        t.add_column(h, justify="left" if h in ("net", "family", "input") else "right")
    for r in rows:
        t.add_row(*_cells(r))
    return t


def write_compare(rows: Sequence[CompareRow], out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """compare.md, compare.csv (raw numbers) and compare.png in `out` (default experiments/compare-<time>): a new
    or empty folder, or reslab's earlier compare output with `overwrite` (reslab.outputs)."""
    folder = Path(out) if out else Path("experiments") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    with output_folder(folder, "compare", overwrite=overwrite):
        _write_compare(rows, folder)
    return folder


def _write_compare(rows: Sequence[CompareRow], folder: Path) -> None:
    atomic_write_text(folder / "compare.md", markdown_table(_headers(), [_cells(r) for r in rows]) + "\n")
    buf = io.StringIO()
    fieldnames = [*CompareRow.__dataclass_fields__]
    w = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = asdict(r)
        d["input_size"] = "x".join(map(str, r.input_size))
        w.writerow(d)
    atomic_write_text(folder / "compare.csv", buf.getvalue())
    plot_compare(rows, folder / "compare.png")


def plot_compare(rows: Sequence[CompareRow], path: Path) -> Path:
    """Parameters (y, log) against MACs (x, log); bubble area grows with depth; one colour per family."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    colors = dict(zip(("cifar", "imagenet", "classic"), ("tab:blue", "tab:green", "tab:orange"), strict=True))
    for fam in dict.fromkeys(r.family for r in rows):
        rs = [r for r in rows if r.family == fam]
        ax.scatter([r.macs for r in rs], [r.params for r in rs], s=[30 + 8 * r.depth for r in rs], alpha=0.55,
                   color=colors.get(fam, "tab:gray"), edgecolors="black", linewidths=0.6, label=fam)
    # Runs of one net share a point (same parameters and MACs): their labels stack downwards instead of
    # printing over each other.
    seen: dict[tuple[int, int], int] = {}
    for r in rows:
        text = r.label + (f"\naccuracy {100 * r.accuracy:.2f}%" if r.accuracy is not None else "")
        k = seen[(r.macs, r.params)] = seen.get((r.macs, r.params), -1) + 1
        ax.annotate(text, (r.macs, r.params), textcoords="offset points", xytext=(6, 6 - 22 * k), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("multiply-adds per image")
    ax.set_ylabel("parameters")
    ax.set_title("Parameters vs multiply-adds (bubble area ~ depth)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="family", fontsize=8)
    ax.margins(0.25)
    save_figure(fig, path)
    return path

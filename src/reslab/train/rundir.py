"""The run directory: resolved config, metrics.csv, curves.png, report.md."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text, note_files
from reslab.outputs import Output, claim_output, read_marker
from reslab.plotting import pyplot, save_figure

# One row per log window ("iter"), validation pass ("eval", "eval_ema") and the final test ("test"). Runs
# written before test_loss/test_err existed kept the test's numbers in val_loss/val_err: `test_error`
# reads both.
METRIC_FIELDS = ("kind", "iteration", "epoch", "lr", "train_loss", "train_err", "val_loss", "val_err",
                 "test_loss", "test_err", "images_per_s", "elapsed_s")


def test_error(rows: list[dict[str, str]]) -> float | None:
    """The run's test error (its last "test" row), None before the test ran."""
    errs = [r.get("test_err") or r.get("val_err") for r in rows if r["kind"] == "test"]
    errs = [e for e in errs if e]
    return float(errs[-1]) if errs else None


@dataclass
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def last_ckpt(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best_ckpt(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the TensorBoard writer, if one was opened (a later row opens a new one)."""
        writer = getattr(self, "_tb", None)
        if writer is not None and writer is not False:
            writer.close()
        self._tb = False

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, json.dumps(config, indent=2, default=list) + "\n")

    def read_config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._tensorboard(row)
        # The whole file rewritten atomically (it is small): a full disk never leaves half a row.
        old = self.metrics_path.read_text(encoding="utf-8") if self.metrics_path.exists() else ""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
        if not old:
            w.writeheader()
        w.writerow({k: _fmt(row.get(k)) for k in METRIC_FIELDS})
        atomic_write_text(self.metrics_path, old + buf.getvalue())

    def _tensorboard(self, row: dict[str, Any]) -> None:
        """Mirror a metrics row into TensorBoard events in the run directory, when tensorboard is installed."""
        writer = getattr(self, "_tb", False)
        if writer is False:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                writer = None
            else:
                writer = SummaryWriter(str(self.path / "tensorboard"))
                # its event file is this run's: listed in the marker, so --overwrite removes it
                note_files((self.path / "tensorboard").glob(f"events.out.tfevents.*.{os.getpid()}.*"))
            self._tb = writer
        if writer is None:
            return
        for key in ("lr", "train_loss", "train_err", "val_loss", "val_err", "test_loss", "test_err", "images_per_s"):
            if row.get(key) is not None:
                writer.add_scalar(f"{row['kind']}/{key}", float(row[key]), int(row["iteration"]))
        writer.flush()

    def read_metrics(self) -> list[dict[str, str]]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_metrics(self, after_iteration: int) -> None:
        """Drop rows logged after a checkpoint, so a resumed run does not log them twice."""
        rows = [r for r in self.read_metrics() if int(r["iteration"]) <= after_iteration]
        lines = [",".join(METRIC_FIELDS)] + [",".join(r.get(k) or "" for k in METRIC_FIELDS) for r in rows]
        atomic_write_text(self.metrics_path, "\n".join(lines) + "\n")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_curves(rows: list[dict[str, str]], path: Path, *, title: str, split: str = "test") -> Path:
    """Fig. 6 style: training error thin, validation error bold, against iterations; the final evaluation a
    dot named by `split` ("validation" where a folder has no test/ split: train/report.py, reported_split)."""
    plt = pyplot()

    def series(kind: str, key: str) -> tuple[list[int], list[float]]:
        pts = [(int(r["iteration"]), 100 * float(r[key])) for r in rows if r["kind"] == kind and r.get(key)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    # Markers too: a run with one validation pass has a one-point line, which a line alone does not draw.
    x, y = series("iter", "train_err")
    ax.plot(x, y, lw=0.8, ls="--", color="tab:blue", marker="." if len(x) < 50 else None, label="training error")
    x, y = series("eval", "val_err")
    ax.plot(x, y, lw=2.2, color="tab:blue", marker="o" if len(x) < 50 else None, ms=5, label="validation error")
    x, y = series("eval_ema", "val_err")
    if x:
        ax.plot(x, y, lw=1.6, color="tab:green", marker="o" if len(x) < 50 else None, ms=4,
                label="validation error, EMA of the weights")
    x, y = series("test", "test_err") if any(r.get("test_err") for r in rows) else series("test", "val_err")
    if x:
        kept = " (the weights kept)" if split == "validation" else ""  # set apart from the curve it was chosen on
        ax.scatter(x, y, s=40, color="tab:red", zorder=3, label=f"{split} error {y[-1]:.2f}%{kept}")
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return path


# ---------------------------------------------------------------------------- ownership
# A run is reslab's output of kind "train" (reslab.outputs: the marker lists every file the run wrote,
# `--overwrite` removes those and nothing else). Runs written before the marker existed are recognised by
# LEGACY_FILES below (docs/files.md).
RUN_KIND = "train"
# What a run wrote before the marker existed: these names, in the run folder and in its own subfolders.
LEGACY_FILES = ("config.json", "metrics.csv", "report.md", "curves.png", "confusion.png", "model.safetensors",
                "model.json", "test-metrics.json", "top-losses.png", "lr-find.csv", "lr-find.png", "lr-find.json",
                "checkpoints/last.pt", "checkpoints/best.pt", "raw/model.safetensors", "raw/model.json",
                "ema/model.safetensors", "ema/model.json")


def legacy_run_files(path: Path) -> list[str] | None:
    """The files of a run written before the marker existed, None when `path` is not one: its config.json
    is a JSON object naming a model and a data set, beside a checkpoint, weights or reslab's metrics.csv
    (a user's own config.json alone is not a run)."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not (isinstance(cfg, dict) and isinstance(cfg.get("model"), str) and isinstance(cfg.get("data"), str)
            and "recipe" in cfg):
        return None
    try:
        with open(path / "metrics.csv", encoding="utf-8") as f:
            metrics = f.readline().strip().startswith("kind,iteration,")
    except (OSError, ValueError):
        metrics = False
    if not (metrics or (path / "checkpoints" / "last.pt").is_file() or (path / "model.json").is_file()):
        return None
    files = [n for n in LEGACY_FILES if (path / n).is_file()]
    files += [f"tensorboard/{p.name}" for p in sorted((path / "tensorboard").glob("events.out.tfevents.*"))]
    return files


def is_run(path: Path) -> bool:
    """Whether `path` holds a reslab run: its marker says so, or it is a run from before the marker."""
    try:
        marker = read_marker(path)
    except ReslabError:
        return False
    if marker is not None:
        return marker["kind"] == RUN_KIND and "config.json" in marker["files"] and (path / "config.json").is_file()
    return legacy_run_files(path) is not None


def claim_run_dir(path: Path, *, resume: bool, overwrite: bool, restarted: bool = False) -> Output:
    """Make `path` this run's, before anything is written, or raise a one-line ReslabError.

    A file, a non-empty folder that is not reslab's (reslab.outputs), a finished or started run (unless
    `resume`, `overwrite`, or a torchrun restart of this very run), a folder we cannot write, and a run
    another live process holds (its lock) are refused. With `overwrite`, the files the old run wrote (its
    marker's list) are removed once the lock is ours; other files stay. `Output.close` gives the folder
    up again (and removes it if it was made here and nothing was written).
    """
    if resume and not is_run(path):
        raise ReslabError(f"{path} is not a run directory (no config.json); pass the folder `reslab train` created")
    return claim_output(path, RUN_KIND, overwrite=overwrite and not resume, resume=resume or restarted,
                        legacy=legacy_run_files,
                        existing=f"--out {path} is a run already; pass --resume {path} to continue it, --overwrite "
                                 f"to replace it, or choose a new folder")

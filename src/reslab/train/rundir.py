"""The run directory: resolved config, metrics.csv, curves.png, report.md."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.fileio import atomic_write_text
from reslab.plotting import pyplot, save_figure

METRIC_FIELDS = ("kind", "iteration", "epoch", "lr", "train_loss", "train_err", "val_loss", "val_err",
                 "images_per_s", "elapsed_s")


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
        new = not self.metrics_path.exists()
        with open(self.metrics_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: _fmt(row.get(k)) for k in METRIC_FIELDS})

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
            self._tb = writer
        if writer is None:
            return
        for key in ("lr", "train_loss", "train_err", "val_loss", "val_err", "images_per_s"):
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
        lines = [",".join(METRIC_FIELDS)] + [",".join(r[k] for k in METRIC_FIELDS) for r in rows]
        atomic_write_text(self.metrics_path, "\n".join(lines) + "\n")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_curves(rows: list[dict[str, str]], path: Path, *, title: str) -> Path:
    """Fig. 6 style: training error thin, validation error bold, against iterations."""
    plt = pyplot()

    def series(kind: str, key: str) -> tuple[list[int], list[float]]:
        pts = [(int(r["iteration"]), 100 * float(r[key])) for r in rows if r["kind"] == kind and r[key]]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x, y = series("iter", "train_err")
    ax.plot(x, y, lw=0.8, ls="--", color="tab:blue", label="training error")
    x, y = series("eval", "val_err")
    ax.plot(x, y, lw=2.2, color="tab:blue", label="validation error")
    x, y = series("test", "val_err")
    if x:
        ax.scatter(x, y, s=40, color="tab:red", zorder=3, label=f"test error {y[-1]:.2f}%")
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return path

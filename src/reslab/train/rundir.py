"""The run directory: resolved config, metrics.csv, curves.png, report.md."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text
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
LOCK_FILE = ".reslab.lock"
# What a run writes; `--overwrite` removes these and nothing else.
RUN_FILES = ("config.json", "metrics.csv", "report.md", "curves.png", "confusion.png", "model.safetensors",
             "model.json", "test-metrics.json", "top-losses.png", LOCK_FILE)
RUN_FOLDERS = ("checkpoints", "tensorboard", "raw", "ema")  # raw/ and ema/: the weights of an --ema run


def is_run(path: Path) -> bool:
    """Whether `path` holds a reslab run (its config.json)."""
    return (path / "config.json").is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another account
        return True
    return True


def acquire_lock(path: Path) -> Path:
    """Create `path/LOCK_FILE` holding this process's pid and host; a lock of a live process is a
    ReslabError, one of a dead process (a killed run) is taken over. Returns the lock file."""
    lock = path / LOCK_FILE
    me = f"{os.getpid()} {socket.gethostname()}\n"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and owner != (os.getpid(), socket.gethostname()) and (
                    owner[1] != socket.gethostname() or _pid_alive(owner[0])):
                raise ReslabError(f"{path} is in use by process {owner[0]} on {owner[1]} (lock {lock}); wait for "
                                  f"that run to end, or remove the lock if that process is gone") from None
            lock.unlink(missing_ok=True)  # a dead owner's: take it over
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return lock
    raise ReslabError(f"{lock}: another process took the lock while this one was taking it over; try again")


def _lock_owner(lock: Path) -> tuple[int, str] | None:
    try:
        pid, host = lock.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None  # unreadable or half-written: nobody's


def release_lock(path: Path) -> None:
    """Remove `path/LOCK_FILE` if this process holds it."""
    lock = path / LOCK_FILE
    if _lock_owner(lock) == (os.getpid(), socket.gethostname()):
        lock.unlink(missing_ok=True)


def claim_run_dir(path: Path, *, resume: bool, overwrite: bool, restarted: bool = False) -> bool:
    """Make `path` this run's, before anything is written, or raise a one-line ReslabError.

    A file, a non-empty folder that is not a run, a finished or started run (unless `resume`,
    `overwrite`, or a torchrun restart of this very run), a folder we cannot write, and a run
    another live process holds (its lock) are refused. With `overwrite`, the old run's files
    (RUN_FILES, RUN_FOLDERS) are removed once the lock is ours; other files stay. Returns whether
    the folder was made here (`release_run_dir` removes it again if the run wrote nothing).
    """
    created = not path.exists()
    if path.exists() and not path.is_dir():
        raise ReslabError(f"--out {path} is a file; give a folder for the run (a new or an empty one)")
    if path.is_dir() and not is_run(path) and any(path.iterdir()) and not resume:
        raise ReslabError(f"--out {path} holds other files and is not a reslab run; choose a new or empty folder")
    if resume and not is_run(path):
        raise ReslabError(f"{path} is not a run directory (no config.json); pass the folder `reslab train` created")
    try:
        path.mkdir(parents=True, exist_ok=True)
        acquire_lock(path)
    except PermissionError as e:
        raise ReslabError(f"cannot write to --out {path} ({e.strerror}); choose a folder you can write") from None
    except OSError as e:
        raise ReslabError(f"cannot write to --out {path} ({e.strerror}); choose a writable folder") from None
    if is_run(path) and not (resume or overwrite or restarted):
        release_lock(path)
        raise ReslabError(f"--out {path} is a run already; pass --resume {path} to continue it, --overwrite to "
                          f"replace it, or choose a new folder")
    if overwrite and not resume:
        for name in RUN_FILES:
            if name != LOCK_FILE:
                (path / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(path / name, ignore_errors=True)
    return created


def release_run_dir(path: Path, *, created: bool) -> None:
    """Give up the lock; a folder this run made and left empty (it failed before writing) is removed."""
    release_lock(path)
    if created and path.is_dir() and not any(path.iterdir()):
        path.rmdir()

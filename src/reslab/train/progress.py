"""Training progress: a live bar per epoch in a terminal, complete log lines everywhere else.

Outside a terminal (a log file, a pipe, CI) a live bar would be redrawn into the file or cut
at 80 columns; there each update is a plain line, at most one every LOG_SECONDS and at each
epoch's end. `--quiet` keeps only the evaluation lines.
"""

from __future__ import annotations

import math
import time

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from reslab.console import console

LOG_SECONDS = 10.0


class Progress:
    def __init__(self, *, total: int, start: int, steps_per_epoch: int, quiet: bool, title: str) -> None:
        self.total, self.steps, self.quiet = total, steps_per_epoch, quiet
        self.console = console(stderr=True)
        self.live = self.console.is_terminal
        self.t0, self.start = time.perf_counter(), start
        self._bar: RichProgress | None = None
        self._task = None
        self._epoch = -1
        self._logged = -math.inf
        if not quiet:
            self.console.print(f"[bold]{title}[/]: {total:,} iterations, {steps_per_epoch:,} per epoch"
                               + (f", resuming at {start:,}" if start else ""))

    def _eta(self, done: int) -> str:
        rate = (done - self.start) / max(time.perf_counter() - self.t0, 1e-9)
        left = (self.total - done) / rate if rate > 0 else math.inf
        return "?" if not math.isfinite(left) else time.strftime("%H:%M:%S", time.gmtime(left))

    def update(self, done: int, *, loss: float, err: float, ips: float, lr: float) -> None:
        if self.quiet:
            return
        epoch = (done - 1) // self.steps
        n_epochs = math.ceil(self.total / self.steps)
        stats = f"loss {loss:.3f} err {100 * err:5.2f}% {ips:,.0f} img/s lr {lr:.3g} run ETA {self._eta(done)}"
        if not self.live:
            now = time.perf_counter()
            if now - self._logged >= LOG_SECONDS or done % self.steps == 0 or done == self.total:
                self._logged = now
                in_epoch = done - epoch * self.steps
                print(f"epoch {epoch + 1}/{n_epochs} {in_epoch:,}/{min(self.steps, self.total - epoch * self.steps):,}"
                      f" (iter {done:,}/{self.total:,}) {stats}", file=self.console.file, flush=True)
            return
        if epoch != self._epoch:
            self.close()
            self._epoch = epoch
            self._bar = RichProgress(TextColumn(f"epoch {epoch + 1}/{n_epochs}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                     console=self.console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task("", total=min(self.steps, self.total - epoch * self.steps),
                                            stats="")
        assert self._bar is not None and self._task is not None
        self._bar.update(self._task, completed=done - epoch * self.steps, stats=stats)

    def evaluated(self, done: int, val_err: float, best: float, ema_err: float | None = None) -> None:
        shown = "n/a (no validation images)" if math.isnan(val_err) else f"{100 * val_err:.2f}%"
        if ema_err is not None and not math.isnan(ema_err):
            shown, best = f"{shown}, EMA {100 * ema_err:.2f}%", min(best, ema_err)
        best_shown = "" if math.isnan(val_err) else f" (best {100 * min(val_err, best):.2f}%)"
        msg = (f"iter {done:,} ({done / self.steps:.2f} ep): val error {shown}{best_shown}, "
               f"{time.perf_counter() - self.t0:.0f}s, ETA {self._eta(done)}")
        self.note(msg)

    def note(self, msg: str) -> None:
        """A one-off event line (printed with --quiet too, as evaluations are)."""
        if self._bar is not None:
            self._bar.console.print(msg, markup=False, highlight=False)
        else:
            print(msg, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

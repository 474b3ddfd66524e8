"""Up to N calls at once, each in its own spawned process with its output in a log file.

Small CIFAR-style nets leave a large GPU mostly idle at batch 128; several trainings at once
fill it. Each call runs in a fresh `spawn` process (no state shared with the parent, CUDA
safe), writes stdout and stderr to its log, and uses `threads` CPU threads so that N
processes do not oversubscribe the cores. A call that fails (an exception, a crash, a kill)
is reported with its name and log; the others run on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, cast

import torch


@dataclass(frozen=True)
class Call:
    """fn(*args) in a child process; `fn` must be importable by name (a module-level function)."""

    name: str  # shown in the progress lines, e.g. "resnet20-s0"
    log: Path
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


def say(text: str) -> None:
    print(text, flush=True)


def run_calls(calls: Sequence[Call], *, at_once: int, threads: int,
              on_done: Callable[[Call], str] | None = None) -> list[Call]:
    """Run `calls`, at most `at_once` at a time; returns the calls that failed.

    `on_done(call)`, run in this process after each success, returns a note for its progress line.
    """
    ctx = mp.get_context("spawn")
    waiting, failed = list(calls), []
    running: dict[int, tuple[Any, Call, float]] = {}  # sentinel -> (process, call, start time)
    try:
        while waiting or running:
            while waiting and len(running) < at_once:
                call = waiting.pop(0)
                call.log.parent.mkdir(parents=True, exist_ok=True)
                proc = ctx.Process(target=_child, args=(call.fn, call.args, str(call.log), threads), name=call.name)
                proc.start()
                running[proc.sentinel] = (proc, call, time.monotonic())
                say(f"start {call.name} (log: {call.log})")
            for ready in wait(list(running)):
                proc, call, start = running.pop(cast(int, ready))  # wait() hands back the sentinels it was given: ints
                proc.join()
                minutes = (time.monotonic() - start) / 60
                if proc.exitcode == 0:
                    note = on_done(call) if on_done else ""
                    say(f"done {call.name} in {minutes:.1f} min{f': {note}' if note else ''}")
                else:
                    failed.append(call)
                    say(f"FAILED {call.name} (exit code {proc.exitcode}): {last_line(call.log)}; log: {call.log}")
    finally:
        for proc, _, _ in running.values():  # interrupted: stop the children (their runs resume later)
            proc.terminate()
            proc.join()
    return failed


def _child(fn: Callable[..., Any], args: tuple[Any, ...], log: str, threads: int) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)  # the child's stdout and stderr (tracebacks included) go to its log
    os.dup2(fd, 2)
    os.close(fd)
    torch.set_num_threads(threads)
    fn(*args)


def last_line(log: Path, limit: int = 200) -> str:
    """The last non-empty line of a log (an exception's message), cut to `limit` characters."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return (lines[-1][:limit] if lines else "no output")

"""The one place rich consoles are made: full-width in a terminal, never cut outside one."""

from __future__ import annotations

import contextvars
import json
import math
import os
import sys
from typing import Any

from rich.console import Console

# Who speaks in a notice: "reslab train", "reslab lr-find" (set by the CLI and by a command that runs
# another's steps); from Python, "reslab".
COMMAND: contextvars.ContextVar[str] = contextvars.ContextVar("reslab_command", default="reslab")

PLAIN_WIDTH = 400  # columns for logs, pipes and CI: wide enough that no reslab table is cut


def console(*, stderr: bool = False) -> Console:
    """A rich Console on stdout (or stderr). In a terminal it takes the terminal's width; elsewhere
    (a log file, a pipe, CI) rich would assume 80 columns and cut table cells to "26…", so it gets
    PLAIN_WIDTH unless $COLUMNS says otherwise."""
    c = Console(stderr=stderr)
    if c.is_terminal or "COLUMNS" in os.environ:
        return c
    return Console(stderr=stderr, width=PLAIN_WIDTH)


def notice(message: str) -> None:
    """One line on stderr, prefixed by the command that says it (`COMMAND`)."""
    print(f"{COMMAND.get()}: {message}", file=sys.stderr, flush=True)
def plural(n: int, noun: str, many: str | None = None) -> str:
    """"1 image", "2 images", "1,000 images" (`many`: an irregular plural)."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"


def json_text(obj: Any) -> str:
    """`obj` as indented JSON that any parser reads: a non-finite float (a timing that did not happen, a
    metric of an empty set) becomes null, never a bare NaN or Infinity."""
    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(obj), indent=2, allow_nan=False)

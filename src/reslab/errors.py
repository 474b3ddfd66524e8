"""Errors meant for people: what was wrong, the value received, what to do instead."""

from __future__ import annotations

import contextvars

# The caller's spelling of an option: "cli" while a `reslab` command runs (`--data-dir`), else Python's keyword
# (`data_dir=`), so that an error names what the person actually typed.
SPELLING: contextvars.ContextVar[str] = contextvars.ContextVar("reslab_spelling", default="python")


class ReslabError(ValueError):
    """A user-facing error; the CLI prints its message on one line without a traceback."""


def option(name: str, value: object = None) -> str:
    """`name` (a config field or keyword, e.g. "data_dir"), with `value` when given, as the caller spells it:
    `--data-dir DIR` from the CLI, `data_dir=DIR` from Python."""
    if SPELLING.get() == "cli":
        return f"--{name.replace('_', '-')}" + ("" if value is None or value is True else f" {value}")
    return f"{name}=" + ("..." if value is None else repr(value) if isinstance(value, str) else str(value))

"""Reading small text files a user hands reslab (`--config`, `--classes`, a run's config.json) with limits.

Such a file may come from anywhere, so before anything uses its values: its size is bounded before it
is read, its bytes must be UTF-8, its nesting depth and its number of values are bounded while it is
parsed (never by a recursion that a 10,000-deep file would overflow), and YAML aliases are refused
(an alias bomb expands a kilobyte into gigabytes). Every problem is one `ReslabError` line that names
the file and quotes at most `SHOWN` characters of what it received. Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError
from reslab.metadata import MAX_CLASSES, MAX_TEXT

MAX_CONFIG_BYTES = 1 * 2**20  # a config is a page of options; a run's config.json is about 3 KB
MAX_CLASS_FILE_BYTES = 32 * 2**20  # 100,000 names (metadata.MAX_CLASSES) of up to 256 characters
MAX_DEPTH = 16  # a config is four levels deep (class_fraction's pairs); anything deeper is not a config
MAX_VALUES = 200_000  # values in one file: every class name of the largest class list, twice over
SHOWN = 60  # characters of an offending value an error line quotes


def shown(value: Any, limit: int = SHOWN) -> str:
    """`value` as an error message quotes it: its repr, cut to `limit` characters (a value may be megabytes)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else \
        f"{len(value):,} items" if isinstance(value, list | tuple | dict) else f"{len(text):,} characters"
    return f"{text[:limit - 3]}... ({size})"


def _cut(message: str, limit: int = 200) -> str:
    """A parser's message on one line, at most `limit` characters (PyYAML's quote the offending line)."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit - 3] + "..."


def read_text(path: str | Path, what: str, *, limit: int, hint: str) -> str:
    """The text of `path` (UTF-8; a leading BOM dropped), refusing a folder, a file larger than `limit` bytes
    (checked before reading it) or bytes that are not UTF-8; `what` names the option ("--config FILE"),
    `hint` says what to give instead."""
    p = Path(path)
    if p.is_dir():
        raise ReslabError(f"{what} {p} is a folder; {hint}")
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ReslabError(f"{what} {p}: cannot read it ({e.strerror or type(e).__name__}); {hint}") from None
    if len(data) > limit:
        raise ReslabError(f"{what} {p}: larger than the {limit:,} bytes such a file may hold; {hint}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ReslabError(f"{what} {p}: not UTF-8 text (byte {e.start:,} is {data[e.start:e.start + 1]!r}); save "
                          f"it as UTF-8") from None


def check_shape(value: Any, label: str) -> None:
    """Refuse a parsed value nested deeper than MAX_DEPTH or holding more than MAX_VALUES values (no recursion)."""
    count, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ReslabError(f"{label}: nested more than {MAX_DEPTH} levels deep; a config or class list is "
                              f"at most a few levels deep")
        if count > MAX_VALUES:
            raise ReslabError(f"{label}: more than {MAX_VALUES:,} values; a config or class list holds far fewer")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for kv in node.items() for v in kv)
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1) for v in node)


def load_json(text: str, label: str) -> Any:
    """The JSON value of `text`, within MAX_DEPTH and MAX_VALUES; `label` names the file in errors."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ReslabError(f"{label}: {_DEEP}") from None
    except json.JSONDecodeError as e:
        raise ReslabError(f"{label}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # an integer of more than 4,300 digits
        raise ReslabError(f"{label}: not valid JSON ({_cut(str(e))})") from None
    check_shape(value, label)
    return value


_DEEP = f"nested more than {MAX_DEPTH} levels deep; a config or class list is at most a few levels deep"
_MANY = f"more than {MAX_VALUES:,} values; a config or class list holds far fewer"


def _check_events(events: Any) -> None:
    """Walk a YAML document's parse events (before any value is built): refuse an alias, nesting deeper than
    MAX_DEPTH and more than MAX_VALUES values."""
    import yaml

    depth = nodes = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            raise ReslabError(f"YAML aliases (*name) are not accepted, line {event.start_mark.line + 1}; write "
                              f"the value out in full")
        if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            nodes += 1
            if nodes > MAX_VALUES:
                raise ReslabError(_MANY)
            if depth + 1 > MAX_DEPTH:
                raise ReslabError(_DEEP)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml(text: str, label: str) -> Any:
    """The YAML value of `text` (safe types only; no aliases; within MAX_DEPTH and MAX_VALUES): the events
    are checked first, so that nothing is built from a document that breaks a limit."""
    import yaml  # here, not at the top: `reslab --help` imports no parser it does not use

    # libyaml's parser when PyYAML has it (40 times faster: a 1 MiB config is refused or read in a second),
    # else PyYAML's own; the safe loader either way (plain data, no Python objects).
    loader: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    try:
        _check_events(yaml.parse(text, Loader=loader))
        return yaml.load(text, Loader=loader)  # a safe loader: CSafeLoader or SafeLoader
    except ReslabError as e:
        raise ReslabError(f"{label}: {e}") from None
    except RecursionError:
        raise ReslabError(f"{label}: {_DEEP}") from None
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an integer of more than 4,300 digits
        raise ReslabError(f"{label}: not valid YAML ({_cut(str(e))})") from None


def check_class_names(names: Any, label: str) -> list[str]:
    """`names` as a list of 1..MAX_CLASSES non-empty strings of at most MAX_TEXT characters, each once;
    else one line naming `label` and the first offending name."""
    if not isinstance(names, list | tuple) or not 1 <= len(names) <= MAX_CLASSES:
        raise ReslabError(f"{label}: expected a list of 1..{MAX_CLASSES:,} class names. Received: {shown(names)}")
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TEXT:
            raise ReslabError(f"{label}: class name {i + 1} must be text of 1..{MAX_TEXT} characters. "
                              f"Received: {shown(name)}")
        if name in seen:
            raise ReslabError(f"{label}: names {shown(name)} twice; each output needs its own name")
        seen.add(name)
    return list(names)

"""The rows of `reslab models`, answered without importing torch when they are cached.

Importing torch and building the registry costs seconds on a small machine, more than the
whole answer should. The rows (name, family, depth, input size, parameters, MACs, description)
are written to the cache folder of `reslab.costs` under a key made from the model code's bytes
and torch's installed version, both read without importing either; any change to the model
code measures them again. A row list that cannot be read is measured again, never trusted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.table import Table

from reslab.fileio import atomic_write_text

CACHE_ENV = "RESLAB_CACHE"  # folder for cached tables (these rows, reslab.costs's); default ~/.cache/reslab
COLUMNS = ("name", "family", "depth", "input", "params", "macs", "description")
_PACKAGE = Path(__file__).parent


def model_rows(pattern: str = "*", *, family: str | None = None) -> list[dict[str, Any]]:
    """Every registered net's row matching a shell-style `pattern` (and `family`), in registry order."""
    rows = _cached_rows()
    registry = sys.modules.get("reslab.models.registry")
    if rows is not None and registry is not None and [r["name"] for r in rows] != registry.list_models():
        rows = None  # a net registered at run time (the Python API): not in the cached rows
    if rows is None:
        rows = _measure_rows()
        with contextlib.suppress(OSError):  # a read-only home: measured again next time
            atomic_write_text(index_path(), json.dumps(rows, indent=1) + "\n")
    return [r for r in rows if fnmatch.fnmatch(r["name"], pattern) and (family is None or r["family"] == family)]


def models_table(pattern: str = "*", *, family: str | None = None) -> Table:
    """The `reslab models` table (rich)."""
    table = Table(title="reslab models", title_justify="left")
    for col, just in (("name", "left"), ("family", "left"), ("depth", "right"), ("input", "right"),
                      ("params", "right"), ("GMACs", "right"), ("description", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in model_rows(pattern, family=family):
        table.add_row(r["name"], r["family"], str(r["depth"]), str(r["input"]), f"{r['params']:,}",
                      f"{r['macs'] / 1e9:.3f}", r["description"])
    return table


def cache_dir() -> Path:
    """Where reslab caches the tables it measures: $RESLAB_CACHE, else ~/.cache/reslab."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "reslab")


def index_path() -> Path:
    return cache_dir() / f"model-rows-{_source_key()}.json"


def _source_key() -> str:
    """A digest of torch's version and every file that defines a net, its row or its costs."""
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "none"
    digest = hashlib.sha256(torch_version.encode())
    for file in [*sorted((_PACKAGE / "models").glob("*.py")), _PACKAGE / "costs.py", _PACKAGE / "analysis.py",
                 Path(__file__)]:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _cached_rows() -> list[dict[str, Any]] | None:
    try:
        rows = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(rows, list) and rows and all(isinstance(r, dict) and set(r) == set(COLUMNS) for r in rows)
    return rows if ok else None


def _measure_rows() -> list[dict[str, Any]]:
    from reslab.costs import model_costs  # imports torch: only when the rows are not cached
    from reslab.models import list_models, model_entry

    rows = []
    for name in list_models():
        e = model_entry(name)
        params, macs = model_costs(name)
        rows.append({"name": name, "family": e.family, "depth": e.depth, "input": e.input_size,
                     "params": params, "macs": macs, "description": e.description})
    return rows

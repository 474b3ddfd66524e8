"""Parameters and multiply-adds of every registered net, and the rows of `reslab models`, from one cache.

Building every net on the CPU and running an image through it takes most of a minute, and importing
torch alone takes seconds, more than the whole answer should. So the rows (name, family, depth, input
size, parameters, MACs, description) are measured once and written to one file in the cache folder,
under a key made from torch's installed version and the bytes of this package's files, both read
without importing either; any change to the model code measures them again, and a row list that
cannot be read is measured again, never trusted. Measuring builds nets on the meta device (shapes
only), a ResNet with at most two blocks per stage, since the blocks after a stage's second one
repeat it exactly: the numbers are those of `count_params` and `count_macs` on the full net (a test
keeps them equal).
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

CACHE_ENV = "RESLAB_CACHE"  # folder for the cached rows; default ~/.cache/reslab
COLUMNS = ("name", "family", "depth", "input", "params", "macs", "description")
_MODELS = Path(__file__).parent


def model_costs(name: str) -> tuple[int, int]:
    """(parameters, MACs per image at the net's design resolution) of a registered net."""
    row = next((r for r in model_rows(name) if r["name"] == name), None)
    return (row["params"], row["macs"]) if row else measure_costs(name)


def model_rows(pattern: str = "*", *, family: str | None = None) -> list[dict[str, Any]]:
    """Every registered net's row matching a shell-style `pattern` (and `family`), in registry order."""
    rows = _cached_rows()
    registry = sys.modules.get("reslab.models.registry")
    if rows is not None and registry is not None and [r["name"] for r in rows] != registry.list_models():
        rows = None  # a net registered at run time (the Python API): not in the cached rows
    if rows is None:
        rows = _measure_rows()
        with contextlib.suppress(OSError):  # a read-only home: measured again next time
            atomic_write_text(cache_path(), json.dumps(rows, indent=1) + "\n")
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


def measure_costs(name: str) -> tuple[int, int]:
    """What the rows cache, measured on the meta device (uncached; imports torch)."""
    import torch

    from reslab.models.analysis import count_params, layer_stats
    from reslab.models.registry import create_model, model_entry
    from reslab.models.resnet import ResNet

    entry = model_entry(name)
    layers = tuple(entry.defaults.get("layers", ())) if entry.builder is ResNet else ()
    clipped = {"layers": tuple(min(n, 2) for n in layers)} if layers else {}
    with torch.device("meta"):
        model = create_model(name, **clipped)
    stats = layer_stats(model, (getattr(model, "in_chans", 3), entry.input_size, entry.input_size))
    params, macs = count_params(model), sum(s.macs for s in stats)
    for i, n in enumerate(layers):  # blocks 3..n of a stage: copies of block 2
        stage = f"layer{i + 1}"
        if n > 2:
            block = getattr(model, stage)[1]
            params += (n - 2) * count_params(block)
            macs += (n - 2) * sum(s.macs for s in stats if s.name.startswith(f"{stage}.1."))
    return params, macs


def cache_dir() -> Path:
    """Where reslab caches what it measures: $RESLAB_CACHE, else ~/.cache/reslab."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "reslab")


def cache_path() -> Path:
    return cache_dir() / f"model-rows-{_source_key()}.json"


def _source_key() -> str:
    """A digest of torch's version and every file of this package (the nets, their rows, their costs)."""
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "none"
    digest = hashlib.sha256(torch_version.encode())
    for file in sorted(_MODELS.glob("*.py")):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _cached_rows() -> list[dict[str, Any]] | None:
    try:
        rows = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(rows, list) and rows and all(isinstance(r, dict) and set(r) == set(COLUMNS) for r in rows)
    return rows if ok else None


def _measure_rows() -> list[dict[str, Any]]:
    from reslab.models.registry import list_models, model_entry

    rows = []
    for name in list_models():
        e = model_entry(name)
        params, macs = measure_costs(name)
        rows.append({"name": name, "family": e.family, "depth": e.depth, "input": e.input_size,
                     "params": params, "macs": macs, "description": e.description})
    return rows

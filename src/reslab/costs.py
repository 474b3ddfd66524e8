"""Parameters and multiply-adds of each registered net at its design resolution, quickly.

`reslab models` shows both for every row; building every net on the CPU and running an image
through it takes most of a minute. Here nothing is initialised or computed: nets are built on
the meta device (shapes only), and a ResNet is built with at most two blocks per stage, since the
blocks after a stage's second one repeat it exactly. The numbers are those of `count_params` and
`count_macs` on the full net (a test keeps them equal), and are cached on disk under a key that
changes with any change to the model code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from functools import cache
from pathlib import Path

import torch

from reslab import models as models_pkg
from reslab.analysis import count_params, layer_stats
from reslab.fileio import atomic_write_text
from reslab.model_index import CACHE_ENV as CACHE_ENV  # re-exported: the folder setting, shared
from reslab.model_index import cache_dir
from reslab.models.registry import create_model, list_models, model_entry
from reslab.models.resnet import ResNet


def model_costs(name: str) -> tuple[int, int]:
    """(parameters, MACs per image at the net's design resolution) of a registered net."""
    return _table()[name] if name in _table() else measure_costs(name)


def measure_costs(name: str) -> tuple[int, int]:
    """What `model_costs` caches, measured on the meta device (uncached)."""
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


def cache_path() -> Path:
    return cache_dir() / f"model-costs-{_code_key()}.json"


@cache
def _table() -> dict[str, tuple[int, int]]:
    """Every registered net's costs: read from the cache, else measured and written there."""
    path = cache_path()
    try:
        table = {k: (int(p), int(m)) for k, (p, m) in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError):
        table = {}
    missing = [n for n in list_models() if n not in table]
    if missing:
        table |= {n: measure_costs(n) for n in missing}
        with contextlib.suppress(OSError):  # a read-only home: the table is measured again next time
            atomic_write_text(path, json.dumps(table, indent=1) + "\n")
    return table


def _code_key() -> str:
    """A digest of the model code and the registry's rows: any change measures again."""
    digest = hashlib.sha256(torch.__version__.encode())
    for file in sorted(Path(models_pkg.__file__).parent.glob("*.py")):
        digest.update(file.read_bytes())
    for name in list_models():
        e = model_entry(name)
        digest.update(repr((name, e.builder.__qualname__, sorted(e.defaults.items()), e.input_size)).encode())
    return digest.hexdigest()[:16]

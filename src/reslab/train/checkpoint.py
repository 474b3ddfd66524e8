"""Atomic training checkpoints: a crash or a kill never leaves a half-written file.

Written to a temporary file in the same folder, flushed and fsync'ed, then moved into
place with os.replace (atomic on POSIX) and the folder fsync'ed. Read back with
torch.load(weights_only=True): a checkpoint never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reslab.errors import ReslabError
from reslab.fileio import atomic_write


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"no checkpoint at {path}; resume needs a run directory with checkpoints/last.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReslabError(f"{path} is not a readable reslab checkpoint ({type(e).__name__}); "
                          "it may be truncated or not from reslab") from e

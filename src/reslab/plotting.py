"""One pyplot set-up (the headless Agg backend) and one way to write a figure: tight layout, 120 dpi
PNG, and the figure closed (no leak across runs). matplotlib is imported only when a plot is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120, tight: bool = True) -> Path:
    """Write `fig` to `path` atomically (fileio.atomic_write: a full disk is one line, no half PNG) and close it;
    the format is the path's suffix (PNG by default)."""
    from reslab.fileio import atomic_write

    plt = pyplot()
    path = Path(path)
    try:
        if tight:
            fig.tight_layout()
        atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:].lower() or "png", dpi=dpi))
    finally:
        plt.close(fig)
    return path

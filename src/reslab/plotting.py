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


def save_figure(fig: Any, path: str | Path) -> Path:
    plt = pyplot()
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

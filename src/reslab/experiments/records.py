"""One trained net of an experiment, as the runs, the tables and summary.md read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunRecord:
    """One trained net of an experiment. Errors are fractions (0.05 = 5%)."""

    label: str  # e.g. "plain56", "resnet20-B"
    model: str
    seed: int
    run_dir: Path
    model_kwargs: dict[str, Any]
    params: int
    train_err: float
    test_err: float
    best_val_err: float
    seconds: float
    metrics: list[dict[str, str]] = field(default_factory=list, repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the run's config.json ({} if none)
    test_n: int = 0  # test images the test error was measured on (test-metrics.json; 0: not recorded)

    def manifest(self, root: Path) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("label", "model", "seed", "model_kwargs", "params", "train_err",
                                            "test_err", "best_val_err", "seconds", "test_n")}
        try:
            d["run_dir"] = str(self.run_dir.resolve().relative_to(root.resolve()))
        except ValueError:
            d["run_dir"] = str(self.run_dir.resolve())
        return d

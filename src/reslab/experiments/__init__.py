"""The paper's claims, re-measured: degradation (Fig. 6), shortcuts (Table 3), responses (Fig. 7), depth (Table 6).

Each experiment trains the nets it needs (or reuses a folder's), then writes a table, figures
and `summary.md` whose verdicts are computed from the measurements.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from reslab._callable import lazy_names
from reslab.errors import ReslabError

if TYPE_CHECKING:
    from reslab.experiments.claims import Claim
    from reslab.experiments.config import ExperimentConfig
    from reslab.experiments.runs import ExperimentResult

EXPERIMENTS = ("degradation", "shortcuts", "responses", "depth")

__all__ = ["EXPERIMENTS", "Claim", "ExperimentConfig", "ExperimentResult", "run_experiment"]
# Loaded on first use (PEP 562): `reslab experiment --help` imports this package, and runs.py imports torch.
_HOMES = {"Claim": "claims", "ExperimentConfig": "config", "ExperimentResult": "runs"}


__getattr__, __dir__ = lazy_names(__name__, _HOMES)


def run_experiment(cfg: ExperimentConfig) -> ExperimentResult:
    """Run the experiment `cfg.name` (imported on demand: the CLI stays cheap to start)."""
    if cfg.name not in EXPERIMENTS:
        raise ReslabError(f"unknown experiment. Received: {cfg.name!r}; choose one of {', '.join(EXPERIMENTS)}")
    module = importlib.import_module(f"reslab.experiments.{cfg.name}")
    return getattr(module, f"run_{cfg.name}")(cfg)

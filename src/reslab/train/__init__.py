"""Training with the paper's recipes: typed configs, the loop, checkpoints, run directories.

The loop (and torch) is imported on first use, so the configuration (train/config.py) and the CLI's
flags can be read without torch. `reslab.train(cfg)` runs `reslab.train.loop.train(cfg)`.
"""

from typing import Any

from reslab._callable import make_callable
from reslab.train.config import RECIPES, TrainConfig, resolve_config

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "TrainingDiverged", "resolve_config", "train"]
_LAZY = {"train": "reslab.train.loop", "TrainResult": "reslab.train.loop",
         "TrainingDiverged": "reslab.train.checkpoint"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'reslab.train' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def _train(*args: Any, **kwargs: Any) -> Any:
    from reslab.train.loop import train

    return train(*args, **kwargs)


make_callable(__name__, _train)  # reslab.train(config) is reslab.train.loop.train(config)

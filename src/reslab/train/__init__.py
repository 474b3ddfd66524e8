"""Training with the paper's recipes: typed configs, the loop, checkpoints, run directories."""

from reslab.train.checkpoint import TrainingDiverged
from reslab.train.config import RECIPES, TrainConfig, resolve_config
from reslab.train.loop import TrainResult, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "TrainingDiverged", "resolve_config", "train"]

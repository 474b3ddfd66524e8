"""Training with the paper's recipes: typed configs, the loop, checkpoints, run directories."""

from reslab.train.config import RECIPES, TrainConfig, resolve_config
from reslab.train.loop import TrainingDiverged, TrainResult, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "TrainingDiverged", "resolve_config", "train"]

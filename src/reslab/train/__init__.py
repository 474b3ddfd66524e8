"""Training with the paper's recipes: typed configs, the loop, checkpoints, run directories."""

from reslab.api import make_callable
from reslab.train.checkpoint import TrainingDiverged
from reslab.train.config import RECIPES, TrainConfig, resolve_config
from reslab.train.loop import TrainResult, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "TrainingDiverged", "resolve_config", "train"]

make_callable(__name__, train)  # reslab.train(config) is reslab.train.loop.train(config)

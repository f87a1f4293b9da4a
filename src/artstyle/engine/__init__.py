"""The PyTorch side of artstyle: training, evaluation, comparison (needs ``artstyle[train]``)."""

from .evaluate import evaluate
from .trainer import TrainResult, train

__all__ = ["TrainResult", "evaluate", "train"]

"""stepwise: prediction with language models through multi-step optimization."""

from stepwise.api import Run, evaluate, rl, train
from stepwise.config import TrainConfig
from stepwise.data.readers import Example
from stepwise.errors import StepwiseError
from stepwise.predictor import Predictor, load

__version__ = "0.1.0"
__all__ = ["Example", "Predictor", "Run", "StepwiseError", "TrainConfig", "evaluate", "load", "rl", "train",
           "__version__"]

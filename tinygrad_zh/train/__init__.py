"""The training loop: Trainer and TrainingArguments; plots of a run (plots.py)."""
from .arguments import TrainingArguments  # noqa: F401
from .trainer import EvalPrediction, PredictionOutput, Trainer, TrainOutput  # noqa: F401

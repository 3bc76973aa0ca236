"""TrainingArguments: every knob of a training run in one dataclass.

The field names and defaults are those of Hugging Face ``transformers.TrainingArguments``,
so a recipe written for one reads the same in the other. Only the fields a
single-process CPU/GPU run needs are here; where we differ, the field's
comment says why.

    >>> args = TrainingArguments("out", num_train_epochs=2, eval_strategy="epoch",
    ...                          save_strategy="epoch", load_best_model_at_end=True,
    ...                          metric_for_best_model="accuracy")
    >>> args.greater_is_better
    True
"""
import math
from dataclasses import dataclass, fields

STRATEGIES = ("no", "steps", "epoch")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass
class TrainingArguments:
    output_dir: str = "trainer_output"
    num_train_epochs: float = 3.0
    max_steps: int = -1                     # > 0: train this many optimizer steps instead
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    learning_rate: float = 5e-5
    weight_decay: float = 0.0               # AdamW's decoupled decay, on weight matrices only
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    warmup_steps: int = 0
    warmup_ratio: float = 0.0               # used when warmup_steps is 0
    lr_scheduler_type: str = "linear"       # one of SCHEDULERS
    max_grad_norm: float = 1.0              # 0 or None: no clipping
    gradient_accumulation_steps: int = 1
    eval_strategy: str = "no"               # one of STRATEGIES
    eval_steps: int = None                  # None: logging_steps
    logging_steps: int = 500
    save_strategy: str = "steps"
    save_steps: int = 500
    save_total_limit: int = None            # keep only the newest N checkpoints (and the best)
    load_best_model_at_end: bool = False
    metric_for_best_model: str = None       # None: "loss" ("eval_" is added when missing)
    greater_is_better: bool = None          # None: True unless the metric is a loss
    # transformers puts patience in an EarlyStoppingCallback; a field keeps it in one place.
    early_stopping_patience: int = None     # stop after this many evaluations without progress
    early_stopping_threshold: float = 0.0
    seed: int = 42
    dataloader_drop_last: bool = False
    disable_tqdm: bool = False

    def __post_init__(self):
        for name, allowed in (("eval_strategy", STRATEGIES), ("save_strategy", STRATEGIES),
                              ("lr_scheduler_type", SCHEDULERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainingArguments: {name}={getattr(self, name)!r}; "
                                 f"expected one of {allowed}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "logging_steps", "save_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TrainingArguments: {name} must be a positive integer, "
                                 f"got {getattr(self, name)!r}")
        if self.eval_steps is None:
            self.eval_steps = self.logging_steps
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"TrainingArguments: warmup_ratio must be in [0, 1], "
                             f"got {self.warmup_ratio}")
        if self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        needs_eval = self.load_best_model_at_end or self.early_stopping_patience is not None
        if needs_eval and self.eval_strategy == "no":
            raise ValueError("TrainingArguments: load_best_model_at_end and "
                             "early_stopping_patience need evaluations: set eval_strategy to "
                             "'steps' or 'epoch'")
        if self.load_best_model_at_end and (
                self.save_strategy != self.eval_strategy
                or (self.eval_strategy == "steps" and self.save_steps % self.eval_steps)):
            # The best model is reloaded from its checkpoint, so one must exist at every evaluation.
            raise ValueError(f"TrainingArguments: load_best_model_at_end needs a checkpoint at "
                             f"every evaluation: save_strategy ({self.save_strategy!r}) must "
                             f"equal eval_strategy ({self.eval_strategy!r}), and save_steps "
                             f"({self.save_steps}) be a multiple of eval_steps ({self.eval_steps})")

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def get_warmup_steps(self, num_training_steps):
        """``warmup_steps`` if set, else ``ceil(warmup_ratio * num_training_steps)``."""
        return self.warmup_steps or math.ceil(self.warmup_ratio * num_training_steps)

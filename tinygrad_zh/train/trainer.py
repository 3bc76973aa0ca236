"""Trainer: the training loop, written once, with evaluation, logging and checkpoints.

The loop is the one you would write by hand (and lesson 07 does)::

    for epoch in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step(); scheduler.step(); optimizer.zero_grad()

plus the chores around it: gradient accumulation, logging, evaluation with
``compute_metrics``, early stopping, checkpoints, resuming, a progress bar. The
Trainer only uses public pieces (DataLoader, AdamW, lr_scheduler, ``tg.save``),
so the hand-written loop stays just as possible.

    >>> import tempfile, tinygrad_zh as tg
    >>> from tinygrad_zh import nn
    >>> from tinygrad_zh.utils.data import TensorDataset
    >>> _ = tg.manual_seed(0)
    >>> x = tg.randn(64, 2); y = (x[:, 0] > 0).long()       # learn the sign of x[:, 0]
    >>> args = TrainingArguments(tempfile.mkdtemp(), num_train_epochs=20, learning_rate=0.05,
    ...                          per_device_train_batch_size=16, logging_steps=20,
    ...                          save_strategy="no", disable_tqdm=True)
    >>> trainer = Trainer(nn.Linear(2, 2), args, train_dataset=TensorDataset(x, y))
    >>> out = trainer.train()
    >>> out.global_step, trainer.evaluate(TensorDataset(x, y))["eval_loss"] < 0.3
    (80, True)

Exact resume. A checkpoint holds the model, the optimizer and scheduler
states, the trainer's counters, the arguments, and the state of every random
generator: tinygrad_zh's global one (dropout, augmentation) and the data
loader's shuffling generator, both as they are now and as they were when the
current epoch began. Resuming replays the epoch's shuffle from the latter,
skips the batches already done without loading them, then restores the
former, so the run goes on as if it had never stopped: same batches, same
dropout masks, same losses, bit for bit on the CPU. (CuPy's generator on the
GPU is not saved.)
"""
import contextlib
import json
import math
import re
from collections import namedtuple
from pathlib import Path

import numpy as np

from .. import creation, distributed, nn, optim
from ..autograd import no_grad
from ..serialization import load, save
from ..tensor import Tensor
from ..utils.data import DataLoader
from .arguments import TrainingArguments
from .plots import plot_training_curves

__all__ = ["Trainer", "TrainingArguments", "EvalPrediction", "PredictionOutput", "TrainOutput"]

EvalPrediction = namedtuple("EvalPrediction", "predictions label_ids")
PredictionOutput = namedtuple("PredictionOutput", "predictions label_ids metrics")
TrainOutput = namedtuple("TrainOutput", "global_step training_loss metrics")

CHECKPOINT = "checkpoint-{}.npz"
HISTORY = "history.jsonl"
LOSS_CURVE = "loss_curve.png"


class Trainer:
    """Train ``model`` on ``train_dataset`` as ``args`` says.

    Batches are ``(inputs..., labels)``, moved to the device of the model's
    parameters (``model.to('cuda')`` before the Trainer is all a GPU run
    needs): the model gets the inputs, and
    ``loss_fn(outputs, labels)`` (default ``F.cross_entropy``) the outputs.
    ``compute_metrics(EvalPrediction(predictions, label_ids))`` returns a dict
    of extra numbers for ``evaluate`` (NumPy arrays in, floats out).
    ``optimizers=(optimizer, scheduler)`` replaces the default AdamW (weight
    decay on tensors with 2 or more dims only: matrices, not biases) and the
    schedule named by ``args.lr_scheduler_type``.
    """

    def __init__(self, model, args=None, train_dataset=None, eval_dataset=None,
                 compute_metrics=None, optimizers=(None, None), loss_fn=None):
        self.model, self.args = model, args or TrainingArguments()
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.compute_metrics = compute_metrics
        self.optimizer, self.lr_scheduler = optimizers
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.output_dir = Path(self.args.output_dir)
        self.state = _fresh_state()
        self._world, self._main, self._train_model = 1, True, model

    # ---------------------------------------------------------------- training
    def train(self, resume_from_checkpoint=None):
        """Run the training; ``resume_from_checkpoint``: a checkpoint path, or True for
        the newest one in ``output_dir``."""
        args = self.args
        if self.train_dataset is None:
            raise ValueError("Trainer.train: no train_dataset was given")
        creation.manual_seed(args.seed)
        self._data_rng = np.random.default_rng(args.seed)
        self._start_data_parallel()
        loader = self.get_train_dataloader()
        steps_per_epoch = max(1, math.ceil(len(loader) / args.gradient_accumulation_steps))
        max_steps = args.max_steps if args.max_steps > 0 else \
            math.ceil(args.num_train_epochs * steps_per_epoch)
        num_epochs = math.ceil(max_steps / steps_per_epoch)
        self.create_optimizer_and_scheduler(max_steps)
        self.state = _fresh_state()
        resume_rng = None
        if resume_from_checkpoint:
            resume_rng = self._load_checkpoint(self._checkpoint_path(resume_from_checkpoint))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._rewrite_history()

        self.model.train()
        self._bar = _progress_bar(max_steps, self.state["global_step"],
                                  args.disable_tqdm or not self._main)
        self._window, self._losses = [], []   # losses since the last log line; all of them
        stop = self.state["global_step"] >= max_steps
        for epoch in range(self.state["epoch"], num_epochs):
            if stop:
                break
            self._bar.set_description(f"epoch {epoch + 1}/{num_epochs}")
            if self._world > 1:
                loader.sampler.set_epoch(epoch)  # a new shuffle, the same on every rank
            batches = self._epoch_batches(loader, resume_rng)
            resume_rng = None
            stop = self._train_epoch(loader, batches, epoch, max_steps)
            if self.state["batches_in_epoch"] == len(loader):  # the epoch ran to its end
                self.state["epoch"], self.state["batches_in_epoch"] = epoch + 1, 0
                if args.eval_strategy == "epoch":
                    stop |= self._evaluate_during_training(epoch + 1)
                if args.save_strategy == "epoch":
                    self.save_checkpoint()
        self._bar.close()
        return self._finish()

    def _epoch_batches(self, loader, resume_rng):
        """This epoch's batches. When resuming, replay the epoch's shuffle from the
        generators' states at its start, skip the batches already done, then restore
        the generators as they were when the checkpoint was written."""
        if resume_rng is not None:
            self._set_rng(resume_rng["epoch_start"])
        self._epoch_start_rng = self._rng_states()
        batches = iter(loader).skip(self.state["batches_in_epoch"])
        if resume_rng is not None:
            self._set_rng(resume_rng["now"])
        return batches

    def _train_epoch(self, loader, batches, epoch, max_steps):
        """Train on ``batches``; True when training must stop (max_steps or early stopping)."""
        args, accumulate = self.args, self.args.gradient_accumulation_steps
        for batch in batches:
            done = self.state["batches_in_epoch"]
            # A step's gradient is the mean over its batches (an epoch's last group may be shorter).
            group_start = done - done % accumulate
            # Several ranks average their gradients once per step, on its last batch.
            steps_now = (done + 1) % accumulate == 0 or done + 1 == len(loader)
            with contextlib.nullcontext() if steps_now or self._world == 1 else \
                    self._train_model.no_sync():
                loss = self.compute_loss(batch)
                (loss / min(accumulate, len(loader) - group_start)).backward()
            self._window.append(loss.item())
            self.state["batches_in_epoch"] = done + 1
            if (done + 1) % accumulate and done + 1 < len(loader):
                continue
            lr = self._optimizer_step()
            self.state["global_step"] += 1
            step = self.state["global_step"]
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{np.mean(self._window):.4f}", lr=f"{lr:.2e}")
            stop = False
            if step % args.logging_steps == 0:
                self._log({"loss": self._mean_over_ranks(np.mean(self._window)),
                           "learning_rate": lr},
                          epoch + self.state["batches_in_epoch"] / len(loader))
                self._losses += self._window
                self._window = []
            if args.eval_strategy == "steps" and step % args.eval_steps == 0:
                stop = self._evaluate_during_training(epoch + 1)
            if args.save_strategy == "steps" and step % args.save_steps == 0:
                self.save_checkpoint()
            if stop or step >= max_steps:
                return True
        return False

    def _finish(self):
        """Reload the best model if asked, draw the loss curve, sum up the run."""
        if self.args.load_best_model_at_end and self.state["best_model_checkpoint"]:
            self.model.load_state_dict(load(self.state["best_model_checkpoint"])["model"])
        if self.state["log_history"] and self._main:
            plot_training_curves(self.state["log_history"], self.output_dir / LOSS_CURVE)
        losses = self._losses + self._window
        training_loss = float(np.mean(losses)) if losses else float("nan")
        return TrainOutput(self.state["global_step"], training_loss,
                           {"train_loss": training_loss, "epoch": self.state["epoch"]})

    def compute_loss(self, batch):
        """The loss of one batch ``(inputs..., labels)``, moved to the model's device."""
        *inputs, labels = _to_device(batch, model_device(self.model))
        return self.loss_fn(self._train_model(*inputs), labels)

    def _optimizer_step(self):
        """Clip, step, schedule, clear the gradients; returns the lr this step used."""
        if self.args.max_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad()
        return lr

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, eval_dataset=None, metric_key_prefix="eval"):
        """Mean loss over ``eval_dataset`` (default: the one given) plus ``compute_metrics``."""
        return self.predict(eval_dataset if eval_dataset is not None else self.eval_dataset,
                            metric_key_prefix).metrics

    def predict(self, test_dataset, metric_key_prefix="test"):
        """The model's outputs on every sample, the labels, and the metrics."""
        if test_dataset is None:
            raise ValueError("Trainer: no data set to evaluate on (give eval_dataset)")
        was_training = self.model.training
        self.model.eval()
        outputs, labels, total_loss = [], [], 0.0
        device = model_device(self.model)
        with no_grad():
            for batch in DataLoader(test_dataset, self.args.per_device_eval_batch_size):
                *inputs, y = _to_device(batch, device)
                out = self.model(*inputs)
                total_loss += self.loss_fn(out, y).item() * len(y)
                outputs.append(out.cpu().numpy())   # compute_metrics gets NumPy arrays
                labels.append(y.cpu().numpy())
        self.model.train(was_training)
        predictions, label_ids = np.concatenate(outputs), np.concatenate(labels)
        metrics = {"loss": total_loss / len(label_ids)}
        if self.compute_metrics is not None:
            metrics.update(self.compute_metrics(EvalPrediction(predictions, label_ids)))
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in metrics.items()}
        return PredictionOutput(predictions, label_ids, metrics)

    def _evaluate_during_training(self, epoch):
        """Evaluate, log, track the best metric; True when early stopping says stop."""
        metrics = self.evaluate()
        self._log(metrics, epoch)
        name = self.args.metric_for_best_model
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise KeyError(f"Trainer: metric_for_best_model={name!r}, but evaluate() returned "
                           f"only {sorted(metrics)}")
        value, best = metrics[key], self.state["best_metric"]
        sign = 1 if self.args.greater_is_better else -1
        if best is None or sign * (value - best) > self.args.early_stopping_threshold:
            self.state["best_metric"] = value
            self.state["best_step"] = self.state["global_step"]
            self.state["evals_without_improvement"] = 0
        else:
            self.state["evals_without_improvement"] += 1
        patience = self.args.early_stopping_patience
        return patience is not None and self.state["evals_without_improvement"] >= patience

    # ---------------------------------------------------------------- pieces
    def get_train_dataloader(self):
        """Shuffled batches, drawn from the Trainer's own seeded generator; on several
        ranks, each rank's share of the data (DistributedSampler, seeded by args.seed)."""
        if self._world > 1:
            sampler = distributed.DistributedSampler(self.train_dataset, seed=self.args.seed)
            return DataLoader(self.train_dataset, self.args.per_device_train_batch_size,
                              sampler=sampler, drop_last=self.args.dataloader_drop_last)
        return DataLoader(self.train_dataset, self.args.per_device_train_batch_size,
                          shuffle=True, generator=self._data_rng,
                          drop_last=self.args.dataloader_drop_last)

    def _start_data_parallel(self):
        """Under ``mpiexec -n N`` (N > 1): train through DistributedDataParallel, and let
        only rank 0 draw the bar and write logs, plots and checkpoints."""
        self._world = distributed.init_from_launcher()
        self._main = distributed.is_main_process()
        if self._world == 1:
            self._train_model = self.model
            return
        if not isinstance(self._train_model, distributed.DistributedDataParallel):
            self._train_model = distributed.DistributedDataParallel(self.model)
        if self._main:
            args = self.args
            print(f"Trainer: {self._world} ranks; effective batch size = "
                  f"{args.per_device_train_batch_size} per rank x "
                  f"{args.gradient_accumulation_steps} accumulation x {self._world} ranks = "
                  f"{args.per_device_train_batch_size * args.gradient_accumulation_steps * self._world}")

    def _mean_over_ranks(self, value):
        """A logged number as the mean over the ranks (each saw different batches)."""
        if self._world == 1:
            return float(value)
        t = creation.tensor(float(value), dtype=np.float64)
        distributed.all_reduce(t, op=distributed.ReduceOp.AVG)
        return t.item()

    def create_optimizer_and_scheduler(self, num_training_steps):
        """AdamW and the schedule of ``args.lr_scheduler_type``, unless given."""
        args = self.args
        if self.optimizer is None:
            params = list(self.model.parameters())
            groups = [{"params": [p for p in params if p.ndim >= 2],
                       "weight_decay": args.weight_decay},
                      {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
            self.optimizer = optim.AdamW([g for g in groups if g["params"]],
                                         lr=args.learning_rate, eps=args.adam_epsilon,
                                         betas=(args.adam_beta1, args.adam_beta2))
        if self.lr_scheduler is None:
            warmup = args.get_warmup_steps(num_training_steps)
            schedules = optim.lr_scheduler
            kind = args.lr_scheduler_type
            if kind == "linear":
                self.lr_scheduler = schedules.get_linear_schedule_with_warmup(
                    self.optimizer, warmup, num_training_steps)
            elif kind == "cosine":
                self.lr_scheduler = schedules.get_cosine_schedule_with_warmup(
                    self.optimizer, warmup, num_training_steps)
            else:  # constant, after an optional warmup
                self.lr_scheduler = schedules.LambdaLR(
                    self.optimizer, lambda step: min(1.0, step / warmup) if warmup else 1.0)

    def _log(self, values, epoch):
        entry = {"step": self.state["global_step"], "epoch": round(epoch, 4), **values}
        self.state["log_history"].append(entry)
        if self._main:
            with open(self.output_dir / HISTORY, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def _rewrite_history(self):
        if not self._main:
            return
        lines = [json.dumps(entry) + "\n" for entry in self.state["log_history"]]
        (self.output_dir / HISTORY).write_text("".join(lines), encoding="utf-8")

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self):
        """Write ``output_dir/checkpoint-<step>.npz`` (atomically) and prune old ones."""
        path = self.output_dir / CHECKPOINT.format(self.state["global_step"])
        if self.state["best_step"] == self.state["global_step"]:
            self.state["best_model_checkpoint"] = str(path)
        # Saved at the end of an epoch, the next epoch starts from the generators as they are now.
        epoch_start = self._rng_states() if self.state["batches_in_epoch"] == 0 \
            else self._epoch_start_rng
        if self._main:  # the ranks hold the same model: one of them writes
            save({"model": self.model.state_dict(),
                  "optimizer": self.optimizer.state_dict(),
                  "scheduler": self.lr_scheduler.state_dict(),
                  "trainer_state": self.state,
                  "rng": {"now": self._rng_states(), "epoch_start": epoch_start},
                  "args": self.args.to_dict()}, path)
            self._prune_checkpoints()
        if self._world > 1:
            distributed.barrier()  # no rank reads a checkpoint before it is complete
        return path

    def _prune_checkpoints(self):
        """Keep the newest ``save_total_limit`` checkpoints, and always the best one."""
        limit = self.args.save_total_limit
        if limit is None:
            return
        old = _checkpoints(self.output_dir)[:-limit] if limit > 0 else _checkpoints(self.output_dir)
        for path in old:
            if str(path) != self.state["best_model_checkpoint"]:
                path.unlink()

    def _checkpoint_path(self, resume_from_checkpoint):
        if resume_from_checkpoint is True:
            found = _checkpoints(self.output_dir)
            if not found:
                raise FileNotFoundError(f"Trainer: resume_from_checkpoint=True, but there is no "
                                        f"checkpoint-*.npz in {self.output_dir}")
            return found[-1]
        return Path(resume_from_checkpoint)

    def _load_checkpoint(self, path):
        """Restore everything a checkpoint holds; returns its random-generator states."""
        checkpoint = load(path)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as e:
            raise RuntimeError(f"Trainer: checkpoint {path} does not fit this model "
                               f"(was it saved from a model of another shape?): {e}") from e
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.lr_scheduler.load_state_dict(checkpoint["scheduler"])
        self.state = checkpoint["trainer_state"]
        return checkpoint["rng"]

    def _rng_states(self):
        return {"global": creation._generator("cpu").bit_generator.state,
                "data": self._data_rng.bit_generator.state}

    def _set_rng(self, states):
        creation._generator("cpu").bit_generator.state = states["global"]
        self._data_rng.bit_generator.state = states["data"]


def model_device(model):
    """The device of the model's first parameter ('cpu' for a model without any):
    where the Trainer sends every batch, as ``model.to('cuda')`` asks."""
    return next((p.device for p in model.parameters()), "cpu")


def _to_device(batch, device):
    return [t.to(device) if isinstance(t, Tensor) else t for t in batch]


def _fresh_state():
    return {"global_step": 0, "epoch": 0, "batches_in_epoch": 0, "log_history": [],
            "best_metric": None, "best_step": None, "best_model_checkpoint": None,
            "evals_without_improvement": 0}


def _checkpoints(folder):
    """The checkpoint files in ``folder``, oldest (lowest step) first."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("checkpoint-*.npz")
             if (m := re.fullmatch(r"checkpoint-(\d+)\.npz", p.name))]
    return [p for _, p in sorted(found)]


def _progress_bar(total, initial, disable):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=disable, unit="step", dynamic_ncols=True)

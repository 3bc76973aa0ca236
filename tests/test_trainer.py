"""Trainer: one epoch on tiny data, logging, evaluation, early stopping, checkpoint
pruning, the best model at the end, gradient accumulation, and exact resume."""
import json

import numpy as np
import pytest

import tinygrad_zh as tg
from tinygrad_zh import nn
from tinygrad_zh.metrics import accuracy
from tinygrad_zh.models import MLP
from tinygrad_zh.train import Trainer, TrainingArguments
from tinygrad_zh.utils.data import Dataset, TensorDataset


def blobs(n=96, seed=0):
    """Two Gaussian blobs in 4-D, labels 0 and 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.standard_normal((n, 4)) + 1.5 * (2 * y[:, None] - 1)).astype(np.float32)
    return TensorDataset(tg.tensor(x), tg.tensor(y))


class Jittered(Dataset):
    """Adds noise from the global generator to every sample: augmentation's randomness."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x + 0.1 * tg.randn(*x.shape), y


def metrics(p):
    return {"accuracy": accuracy(p.predictions, p.label_ids)}


def make_trainer(tmp_path, name="run", model_seed=0, loss_fn=None, **kwargs):
    tg.manual_seed(model_seed)
    model = MLP(4, [16], 2, dropout=0.2)
    defaults = dict(output_dir=str(tmp_path / name), num_train_epochs=1, learning_rate=0.01,
                    per_device_train_batch_size=8, per_device_eval_batch_size=32,
                    logging_steps=1, save_strategy="no", disable_tqdm=True)
    args = TrainingArguments(**{**defaults, **kwargs})
    return Trainer(model, args, train_dataset=blobs(), eval_dataset=blobs(64, seed=1),
                   compute_metrics=metrics, loss_fn=loss_fn)


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_one_epoch_learns_logs_and_plots(tmp_path):
    trainer = make_trainer(tmp_path, eval_strategy="epoch", num_train_epochs=2)
    before = trainer.evaluate()
    out = trainer.train()
    after = trainer.evaluate()
    assert out.global_step == 2 * 12  # 96 samples / batch 8, two epochs
    assert after["eval_loss"] < before["eval_loss"] and after["eval_accuracy"] > 0.9
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").open()]
    assert [h["step"] for h in history if "loss" in h] == list(range(1, 25))
    assert [h["epoch"] for h in history if "eval_loss" in h] == [1, 2]
    lrs = [h["learning_rate"] for h in history if "loss" in h]
    assert lrs == pytest.approx([0.01 * (24 - i) / 24 for i in range(24)])  # linear decay
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 0


def test_predict_returns_outputs_labels_and_metrics(tmp_path):
    trainer = make_trainer(tmp_path)
    out = trainer.predict(blobs(10, seed=3))
    assert out.predictions.shape == (10, 2) and out.label_ids.shape == (10,)
    assert set(out.metrics) == {"test_loss", "test_accuracy"}


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    # lr 0: the eval loss never moves, so every evaluation after the first is "no progress"
    trainer = make_trainer(tmp_path, learning_rate=0.0, num_train_epochs=10,
                           eval_strategy="steps", eval_steps=2, early_stopping_patience=3)
    out = trainer.train()
    assert out.global_step == 2 * (1 + 3)  # the first evaluation sets the best, 3 more stall
    assert trainer.state["evals_without_improvement"] == 3


def test_save_total_limit_prunes_old_checkpoints(tmp_path):
    trainer = make_trainer(tmp_path, save_strategy="steps", save_steps=2, save_total_limit=2)
    trainer.train()
    names = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))
    assert names == ["checkpoint-10.npz", "checkpoint-12.npz"]


def test_load_best_model_at_end_keeps_and_reloads_the_best(tmp_path):
    trainer = make_trainer(tmp_path, num_train_epochs=3, eval_strategy="epoch",
                           save_strategy="epoch", save_total_limit=1,
                           load_best_model_at_end=True, metric_for_best_model="loss")
    trainer.train()
    evals = [h for h in trainer.state["log_history"] if "eval_loss" in h]
    best = min(evals, key=lambda h: h["eval_loss"])
    path = tmp_path / "run" / f"checkpoint-{best['step']}.npz"
    assert trainer.state["best_model_checkpoint"] == str(path) and path.exists()
    saved = tg.load(path)["model"]
    for key, value in weights(trainer.model).items():
        np.testing.assert_array_equal(value, saved[key].numpy())


def test_gradient_accumulation_matches_a_larger_batch(tmp_path):
    # Same seed, same permutation: two batches of 4 are the two halves of a batch of 8.
    common = dict(max_steps=3, lr_scheduler_type="constant", max_grad_norm=0)
    big = make_trainer(tmp_path, "big", per_device_train_batch_size=8, **common)
    small = make_trainer(tmp_path, "small", per_device_train_batch_size=4,
                         gradient_accumulation_steps=2, **common)
    for trainer in (big, small):
        for m in trainer.model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0  # dropout masks would differ between the two batchings
        trainer.train()
    for (k, a), b in zip(weights(big.model).items(), weights(small.model).values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=k)


class Interrupt(Exception):
    pass


def interrupting_loss(after):
    """Cross-entropy that raises on training batch ``after + 1`` (evaluations run under
    no_grad and are not counted)."""
    calls = []

    def loss_fn(outputs, labels):
        calls.append(tg.is_grad_enabled())
        if sum(calls) > after:
            raise Interrupt
        return nn.functional.cross_entropy(outputs, labels)
    return loss_fn


# 12 batches an epoch, a checkpoint every 2: resume at batch 8 of epoch 1, at batch 6 of epoch 3
@pytest.mark.parametrize("interrupt_after_batches", [9, 31])
def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, interrupt_after_batches):
    dataset = Jittered(blobs())  # augmentation and dropout both draw random numbers
    common = dict(num_train_epochs=3, gradient_accumulation_steps=2, save_strategy="steps",
                  save_steps=1, eval_strategy="epoch", per_device_train_batch_size=8)
    full = make_trainer(tmp_path, "full", **common)
    full.train_dataset = dataset
    full.train()

    cut = make_trainer(tmp_path, "cut", loss_fn=interrupting_loss(interrupt_after_batches),
                       **common)
    cut.train_dataset = dataset
    with pytest.raises(Interrupt):
        cut.train()
    resumed = make_trainer(tmp_path, "cut", model_seed=99, **common)  # other initial weights
    resumed.train_dataset = dataset
    resumed.train(resume_from_checkpoint=True)

    assert resumed.state["log_history"] == full.state["log_history"]  # every loss, every eval
    for (k, a), b in zip(weights(full.model).items(), weights(resumed.model).values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    history = (tmp_path / "cut" / "history.jsonl").read_text()
    assert history == (tmp_path / "full" / "history.jsonl").read_text()


def test_a_checkpoint_of_another_shape_names_the_keys(tmp_path):
    trainer = make_trainer(tmp_path, save_strategy="steps", save_steps=12)
    trainer.train()
    tg.manual_seed(0)
    other = Trainer(MLP(4, [32], 2, dropout=0.2), trainer.args, train_dataset=blobs())
    with pytest.raises(RuntimeError, match=r"(?s)checkpoint-12.npz does not fit this model.*"
                                           r"layers\.1\.weight \(model \(32, 4\), checkpoint "
                                           r"\(16, 4\)\)"):
        other.train(resume_from_checkpoint=tmp_path / "run" / "checkpoint-12.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_trainer(tmp_path, "empty").train(resume_from_checkpoint=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(eval_strategy="sometimes"), "eval_strategy='sometimes'"),
    (dict(load_best_model_at_end=True), "need evaluations"),
    (dict(early_stopping_patience=2), "need evaluations"),
    (dict(load_best_model_at_end=True, eval_strategy="epoch", save_strategy="steps"),
     "must equal eval_strategy"),
    (dict(per_device_train_batch_size=0), "per_device_train_batch_size must be a positive"),
    (dict(warmup_ratio=2.0), "warmup_ratio must be in"),
])
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingArguments("out", **kwargs)


def test_arguments_defaults_follow_transformers():
    args = TrainingArguments("out")
    assert (args.learning_rate, args.num_train_epochs, args.lr_scheduler_type,
            args.per_device_train_batch_size, args.max_grad_norm, args.seed) == \
        (5e-5, 3.0, "linear", 8, 1.0, 42)
    assert args.greater_is_better is False and args.eval_steps == args.logging_steps
    assert TrainingArguments("out", warmup_ratio=0.1).get_warmup_steps(95) == 10


def test_plots_write_png_files(tmp_path):
    from tinygrad_zh.train.plots import (plot_confusion_matrix, plot_misclassified,
                                         plot_training_curves)
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "eval_loss": 1.5,
                                          "eval_accuracy": 0.6}]
    images = np.zeros((4, 1, 5, 5))
    paths = [plot_training_curves(history, tmp_path / "curves.png"),
             plot_confusion_matrix([[3, 1], [0, 4]], tmp_path / "cm.png", ["a", "b"]),
             plot_misclassified(images, [0, 1, 1, 0], [0, 0, 1, 1], tmp_path / "wrong.png")]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

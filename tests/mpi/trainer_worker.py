"""Run under `mpiexec -n 2` with an output folder: the Trainer, unchanged, on 2 ranks.

Rank 0 prints ``RESULTS <json>``: whether the ranks ended with identical weights,
the global step, and each rank's weights' sum.
"""
import json
import sys

import numpy as np

import tinygrad_zh as tg
import tinygrad_zh.distributed as dist
from tinygrad_zh.models.mlp import MLP
from tinygrad_zh.train import Trainer, TrainingArguments
from tinygrad_zh.utils.data import TensorDataset


def blobs(n=96, seed=0):
    """Two Gaussian blobs in 4-D, labels 0 and 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.standard_normal((n, 4)) + 1.5 * (2 * y[:, None] - 1)).astype(np.float32)
    return TensorDataset(tg.tensor(x), tg.tensor(y))


def main(output_dir):
    tg.manual_seed(0)
    model = MLP(4, [16], 2)
    args = TrainingArguments(output_dir=output_dir, num_train_epochs=2, learning_rate=0.01,
                             per_device_train_batch_size=8, gradient_accumulation_steps=2,
                             logging_steps=1, save_strategy="epoch", eval_strategy="epoch",
                             disable_tqdm=False)
    trainer = Trainer(model, args, train_dataset=blobs(), eval_dataset=blobs(32, seed=1))
    out = trainer.train()
    weights = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, weights)
    if dist.get_rank() == 0:
        print("RESULTS " + json.dumps({
            "identical": all(np.array_equal(w[k], weights[k]) for w in everyone for k in weights),
            "global_step": out.global_step, "log_entries": len(trainer.state["log_history"]),
            "eval_loss": trainer.evaluate()["eval_loss"]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

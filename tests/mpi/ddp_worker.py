"""Run under `mpiexec -n 2`: every DDP and collective scenario, results printed by rank 0.

tests/test_distributed.py launches this once and checks each scenario's
numbers. Every rank computes its own results; rank 0 gathers them and prints
one line ``RESULTS <json>``: {scenario: [rank 0's result, rank 1's result]}.
A scenario that raises is reported as {"error": ...} instead of ending the job.

``--device cuda`` runs the same scenarios with every rank's models and tensors
on its own GPU (``dist.local_device()``), so the collectives go through NCCL;
the references computed in one process stay on the CPU, so a GPU run is
compared with the CPU result.
"""
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np

import tinygrad_zh as tg
import tinygrad_zh.distributed as dist
from tinygrad_zh import nn

SCENARIOS = {}
DEVICE = "cpu"  # with --device cuda: this rank's GPU, set in main()


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


class TinyMLP(nn.Module):
    """Linear(3, hidden) -> tanh -> Linear(hidden, 2), plus one buffer, initialised from
    ``seed``; ``extra``: one more parameter, used only where ``use_extra`` is set."""

    def __init__(self, seed, hidden=5, extra=False):
        super().__init__()
        tg.manual_seed(seed)
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, 2)
        if extra:
            self.extra = nn.Parameter(tg.randn(2))
        self.register_buffer("running_mean", tg.randn(2))
        self.use_extra = False
        self.hidden_hooks = []  # register_hook functions for the hidden pre-activation

    def forward(self, x):
        h = self.fc1(x)
        for hook in self.hidden_hooks:
            h.register_hook(hook)
        out = self.fc2(h.tanh())
        return out * self.extra if self.use_extra else out


def batch(step, size=4):
    """The global batch of a step (the same on every rank): inputs, targets."""
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((2 * size, 3)).astype(np.float32)
    y = rng.standard_normal((2 * size, 2)).astype(np.float32)
    return x, y


def my_half(array, rank):
    n = len(array) // 2
    return array[rank * n:(rank + 1) * n]


def on_device(x):
    """A tensor or a model moved to this run's device (a model moves in place)."""
    return x.to(DEVICE)


def mse(model, x, y):
    device = next(iter(model.parameters())).device
    return ((model(tg.tensor(x, device=device)) - tg.tensor(y, device=device)) ** 2).mean()


def sgd_step(params, lr=0.1):
    with tg.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None


def values(model):
    return {name: p.detach().cpu().numpy().copy() for name, p in model.named_parameters()}


def max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def same_on_every_rank(arrays):
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, arrays)
    return all(all(np.array_equal(other[k], arrays[k]) for k in arrays) for other in everyone)


@scenario
def ddp_matches_single_process(rank):
    model = on_device(TinyMLP(seed=100 + rank))    # different init on every rank
    before = values(TinyMLP(seed=100 + rank))
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-4)  # ~100 bytes: 3 buckets
    rank0_init_wins = max_diff(values(model), values(TinyMLP(seed=100))) == 0
    buffer_from_rank0 = np.array_equal(model.running_mean.cpu().numpy(),
                                       TinyMLP(seed=100).running_mean.numpy())
    reference = TinyMLP(seed=100)                  # one process, the union of the batches
    for step in range(3):
        x, y = batch(step)
        mse(ddp, my_half(x, rank), my_half(y, rank)).backward()
        sgd_step(model.parameters())
        mse(reference, x, y).backward()
        sgd_step(reference.parameters())
    return {"buckets": len(ddp._buckets), "rank0_init_wins": rank0_init_wins,
            "buffer_from_rank0": buffer_from_rank0,
            "changed_own_init": rank == 0 or max_diff(before, values(TinyMLP(100))) > 0,
            "identical_across_ranks": same_on_every_rank(values(model)),
            "max_diff_to_single_process": max_diff(values(model), values(reference)),
            "moved": max_diff(values(model), values(TinyMLP(seed=100)))}


def grads(params):
    return {name: p.grad.cpu().numpy().copy() for name, p in params}


@scenario
def buckets_match_per_tensor_allreduce(rank):
    x, y = batch(0)
    x, y = my_half(x, rank), my_half(y, rank)
    results = {}
    for cap in (1e-5, 25):                         # one bucket per tensor; one bucket
        model = on_device(TinyMLP(seed=7))
        ddp = dist.DistributedDataParallel(model, bucket_cap_mb=cap)
        started_before_first_layer = []            # buckets in flight when fc1's backward starts
        model.hidden_hooks.append(lambda g: started_before_first_layer.append(ddp._next_bucket))
        mse(ddp, x, y).backward()
        results[cap] = (len(ddp._buckets), started_before_first_layer, grads(model.named_parameters()))
    plain = on_device(TinyMLP(seed=7))
    mse(plain, x, y).backward()
    for p in plain.parameters():
        dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
    per_tensor = grads(plain.named_parameters())
    return {"buckets": [results[c][0] for c in (1e-5, 25)],
            "started_before_first_layer": results[1e-5][1],
            "max_diff_small_buckets": max_diff(results[1e-5][2], per_tensor),
            "max_diff_one_bucket": max_diff(results[25][2], per_tensor),
            "grads_differ_from_local": max_diff(per_tensor, _local_grads(x, y)) > 0}


def _local_grads(x, y):
    model = TinyMLP(seed=7)
    mse(model, x, y).backward()
    return grads(model.named_parameters())


@scenario
def no_sync_accumulates(rank):
    model = on_device(TinyMLP(seed=3))
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-4)
    micro = [batch(10), batch(11)]
    with ddp.no_sync():
        mse(ddp, my_half(micro[0][0], rank), my_half(micro[0][1], rank)).backward()
    local_after_no_sync = grads(model.named_parameters())
    mse(ddp, my_half(micro[1][0], rank), my_half(micro[1][1], rank)).backward()
    # Reference: the average over ranks of each rank's summed micro-batch gradients.
    reference = TinyMLP(seed=3)
    for r in range(dist.get_world_size()):
        for x, y in micro:
            (mse(reference, my_half(x, r), my_half(y, r)) / dist.get_world_size()).backward()
    own = on_device(TinyMLP(seed=3))
    mse(own, my_half(micro[0][0], rank), my_half(micro[0][1], rank)).backward()
    return {"no_sync_left_local_grads": max_diff(local_after_no_sync,
                                                 grads(own.named_parameters())) == 0,
            "local_grads_differ_across_ranks": not same_on_every_rank(local_after_no_sync),
            "max_diff_to_accumulated_average": max_diff(grads(model.named_parameters()),
                                                        grads(reference.named_parameters()))}


@scenario
def unused_parameters(rank):
    x, y = batch(0)
    x, y = my_half(x, rank), my_half(y, rank)
    model = on_device(TinyMLP(seed=5, extra=True))
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-4, find_unused_parameters=True)
    model.use_extra = rank == 1                   # used on rank 1 only
    mse(ddp, x, y).backward()
    extra_grad = model.extra.grad.cpu().numpy().copy()
    alone = TinyMLP(seed=5, extra=True)           # rank 1's own gradient for it, computed here
    alone.use_extra = True
    xs, ys = batch(0)
    mse(alone, my_half(xs, 1), my_half(ys, 1)).backward()
    expected = alone.extra.grad.numpy() / dist.get_world_size()
    # Unused everywhere and find_unused_parameters=False: an error naming it.
    strict = dist.DistributedDataParallel(on_device(TinyMLP(seed=5, extra=True)),
                                          bucket_cap_mb=1e-4)
    mse(strict, x, y).backward()
    try:
        strict(on_device(tg.tensor(x)))
        message = None
    except RuntimeError as e:
        message = str(e)
    return {"max_diff_extra": float(np.abs(extra_grad - expected).max()),
            "strict_error": message}


@scenario
def shape_mismatch(rank):
    try:
        dist.DistributedDataParallel(on_device(TinyMLP(seed=1, hidden=5 + rank)))
        return {"error": None}
    except ValueError as e:
        return {"error": str(e)}


@scenario
def collectives(rank):
    n = dist.get_world_size()
    out = {}

    def tensor(values, dtype=None):
        return on_device(tg.tensor(values, dtype=dtype))
    t = tensor([1.0, 2.0]) * (rank + 1)
    dist.all_reduce(t)
    out["sum"] = t.tolist()
    t = tensor([1.0, 2.0]) * (rank + 1)
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    out["avg"] = t.tolist()
    t = tensor([float(rank), -float(rank)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    out["max"] = t.tolist()
    t = tensor([float(rank)] * 3)
    work = dist.all_reduce(t, op=dist.ReduceOp.MIN, async_op=True)
    work.wait()
    out["async_min"] = t.tolist()
    t = tensor([10.0 * (rank + 1)])
    dist.broadcast(t, src=n - 1)
    out["broadcast_from_last"] = t.tolist()
    gathered = [tensor([0, 0]) for _ in range(n)]
    dist.all_gather(gathered, tensor([rank, rank * 10]))
    out["all_gather"] = [g.tolist() for g in gathered]
    whole = tensor([0.0] * (2 * n))
    dist.all_gather_into_tensor(whole, tensor([rank, rank + 0.5]))
    out["all_gather_into_tensor"] = whole.tolist()
    piece = tensor([0.0, 0.0])
    dist.reduce_scatter(piece, [tensor([r, 100.0 * rank]) for r in range(n)])
    out["reduce_scatter"] = piece.tolist()
    piece = tensor([0.0])
    dist.reduce_scatter_tensor(piece, tensor(np.arange(n, dtype=np.float32) * (rank + 1)),
                               op=dist.ReduceOp.AVG)
    out["reduce_scatter_tensor_avg"] = piece.tolist()
    sampler = dist.DistributedSampler(list(range(11)), seed=3)
    sampler.set_epoch(1)
    out["sampler"] = [list(sampler), sampler.num_replicas, sampler.rank]
    dist.barrier()
    return out


@scenario
def zero_matches_unsharded(rank):
    results = {}
    for sharded in (False, True):
        model = on_device(TinyMLP(seed=11, hidden=16))
        ddp = dist.DistributedDataParallel(model)
        if sharded:
            opt = dist.ZeroRedundancyOptimizer(model.parameters(), tg.optim.Adam, lr=0.05)
            state_bytes = opt.state_bytes
        else:
            opt = tg.optim.Adam(model.parameters(), lr=0.05)
            state_bytes = lambda: sum(a.nbytes for s in opt.state.values()  # noqa: E731
                                      for a in s.values() if hasattr(a, "nbytes"))
        for step in range(3):
            x, y = batch(20 + step)
            mse(ddp, my_half(x, rank), my_half(y, rank)).backward()
            opt.step()
            for p in model.parameters():
                p.grad = None
        results[sharded] = (values(model), state_bytes())
    return {"max_diff": max_diff(results[True][0], results[False][0]),
            "identical_across_ranks": same_on_every_rank(results[True][0]),
            "state_bytes_sharded": results[True][1], "state_bytes_full": results[False][1]}


@scenario
def checkpoint_from_rank0_loads_anywhere(rank):
    """Rank 0 saves the wrapped model; every rank loads it into a fresh, differently
    initialised model. The file is left in $DDP_WORKER_TMP for the test to load alone."""
    model = on_device(TinyMLP(seed=30 + rank))
    ddp = dist.DistributedDataParallel(model)
    x, y = batch(40)
    mse(ddp, my_half(x, rank), my_half(y, rank)).backward()
    path = Path(os.environ.get("DDP_WORKER_TMP", ".")) / "ddp_checkpoint.npz"
    if rank == 0:
        tg.save(ddp.state_dict(), path)
    dist.barrier()  # the file exists before anyone reads it
    fresh = on_device(TinyMLP(seed=99 + rank))
    fresh.load_state_dict(tg.load(path))
    saved = {k: v.cpu().numpy() for k, v in model.state_dict().items()}
    return {"path": str(path), "keys": sorted(saved),
            "loaded_equals_saved": all(np.array_equal(v.cpu().numpy(), saved[k])
                                       for k, v in fresh.state_dict().items()),
            "saved": {k: v.tolist() for k, v in saved.items()}}


@scenario
def random_all_reduce(rank):
    """all_reduce of random shapes and dtypes vs NumPy over every rank's (regenerated) data."""
    n = dist.get_world_size()
    worst = 0.0
    shapes = [(), (1,), (7,), (3, 1, 4), (2, 5)]
    for i, (shape, dtype) in enumerate(zip(shapes, ["float32", "float64", "int64", "float32",
                                                    "float64"])):
        data = [np.random.default_rng([i, r]).standard_normal(shape) * 10 for r in range(n)]
        data = [d.astype(dtype) for d in data]
        for op, reference in [(dist.ReduceOp.SUM, np.sum), (dist.ReduceOp.MAX, np.max),
                              (dist.ReduceOp.MIN, np.min), (dist.ReduceOp.AVG, np.mean)]:
            if op is dist.ReduceOp.AVG and dtype == "int64":
                continue
            t = on_device(tg.tensor(data[rank]))
            dist.all_reduce(t, op=op)
            expected = reference(np.stack(data), axis=0)
            error = np.abs(t.cpu().numpy() - expected).max() / (np.abs(expected).max() + 1)
            worst = max(worst, float(error))
    return {"max_relative_error": worst}


def main():
    global DEVICE
    dist.init_process_group()
    rank = dist.get_rank()
    args = sys.argv[1:]
    if args[:2] == ["--device", "cuda"]:
        DEVICE, args = dist.local_device(), args[2:]
        assert DEVICE.startswith("cuda"), f"rank {rank}: no GPU for --device cuda"
    chosen = args or list(SCENARIOS)
    results = {}
    for name in chosen:
        try:
            mine = SCENARIOS[name](rank)
        except Exception as e:  # report it; raising would abort the whole job
            mine = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        results[name] = everyone
    if rank == 0:
        print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()

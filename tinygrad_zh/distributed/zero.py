"""ZeroRedundancyOptimizer: each rank keeps the optimizer state of its own shard only.

With plain data parallelism every rank holds the same optimizer state: Adam
keeps two arrays (the moving averages m and v) per parameter, so for a model of
P float32 parameters every rank stores 4P bytes of weights, 4P of gradients and
8P of Adam state — and n ranks store n identical copies of that state.

ZeRO stage 1 (Rajbhandari et al., 2020) removes the copies: the parameters are
split into n shards, rank r runs the optimizer on shard r only (so it holds only
that shard's state), then every rank sends its freshly updated shard to all
others. Each rank still sees the full averaged gradient (DDP's allreduce), so
the result is the same step as the unsharded optimizer, with the optimizer
state per rank divided by n.

    >>> import tinygrad_zh as tg
    >>> import tinygrad_zh.distributed as dist
    >>> if not dist.is_initialized():
    ...     dist.init_process_group()
    >>> w = tg.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = dist.ZeroRedundancyOptimizer([w], tg.optim.SGD, lr=0.5)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w
    tensor([0., 0.], requires_grad=True)

Where this differs from PyTorch: the shards are whole tensors, assigned
largest first to the rank with the fewest bytes so far (PyTorch's greedy
partition, without parameter groups); ``state_dict()`` is this rank's shard
only (there is no ``consolidate_state_dict``).
"""
from .. import autograd
from ..ops.movement import cat
from ..tensor import Tensor
from . import collectives


class ZeroRedundancyOptimizer:
    """Wrap ``optimizer_class(shard, **defaults)``, one shard of ``params`` per rank."""

    def __init__(self, params, optimizer_class, **defaults):
        params = list({id(p): p for p in params}.values())
        if not params:
            raise ValueError("ZeroRedundancyOptimizer: got an empty parameter list")
        n, rank = collectives.get_world_size(), collectives.get_rank()
        self.params = params
        self.shards = _partition(params, n)  # shards[r]: the parameters rank r updates
        self.optim = optimizer_class(self.shards[rank], **defaults) if self.shards[rank] else None

    def step(self, closure=None):
        """Update this rank's shard, then give every rank everybody's new values."""
        loss = None
        if self.optim is not None:
            loss = self.optim.step() if closure is None else self.optim.step(closure)
        with autograd.no_grad():
            for owner, shard in enumerate(self.shards):
                _broadcast_flat(shard, owner)
        return loss

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    def state_dict(self):
        """This rank's optimizer state (its shard only)."""
        return {} if self.optim is None else self.optim.state_dict()

    def state_bytes(self):
        """Bytes of optimizer state held by this rank (the arrays in ``optim.state``)."""
        if self.optim is None:
            return 0
        return sum(_nbytes(value) for state in self.optim.state.values()
                   for value in state.values())


def _partition(params, n):
    """Greedy: the largest tensor first, each to the rank holding the fewest bytes."""
    shards, sizes = [[] for _ in range(n)], [0] * n
    for p in sorted(params, key=lambda p: -p.numel()):
        r = sizes.index(min(sizes))
        shards[r].append(p)
        sizes[r] += p.numel() * p.dtype.itemsize
    order = {id(p): i for i, p in enumerate(params)}  # keep the model's order inside a shard
    return [sorted(shard, key=lambda p: order[id(p)]) for shard in shards]


def _broadcast_flat(shard, owner):
    """One message per owner and kind of parameter: the parameters of one device and
    dtype packed into a flat buffer on that device (CPU: MPI, GPU: NCCL)."""
    for device, dtype in sorted({(p.device, p.dtype) for p in shard}, key=str):
        group = [p for p in shard if p.device == device and p.dtype == dtype]
        flat = cat([p.detach().reshape(-1) for p in group])
        collectives.broadcast(flat, src=owner)
        start = 0
        for p in group:
            p.copy_(flat.data[start:start + p.numel()].reshape(p.shape))
            start += p.numel()


def _nbytes(value):
    if isinstance(value, Tensor):
        return value.data.nbytes
    return getattr(value, "nbytes", 0)

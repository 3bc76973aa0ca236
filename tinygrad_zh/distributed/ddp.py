"""DistributedDataParallel: the same model on every rank, gradients averaged in buckets.

Data parallelism in three sentences. Every rank holds a full copy of the model
and runs forward and backward on its own part of the batch. Averaging the
gradients over the ranks gives exactly the gradient of the mean loss over the
whole batch (the mean of equal-sized means is the mean of the union). So if all
copies start equal and take the same averaged step, they stay equal — and the
result is the one of a single process training on the union of the batches.

What this wrapper adds to that plain recipe, as PyTorch's DDP does:

- **Start equal**: at wrap time rank 0's parameters and buffers are broadcast
  to all ranks, after checking that every rank has the same parameter names
  and shapes (a different model on one rank is an error, not garbage).
- **Buckets**: one ``all_reduce`` per parameter would pay the per-message cost
  hundreds of times per step. Gradients are packed into a few flat buffers of
  at most ``bucket_cap_mb`` MiB each, one allreduce per bucket.
- **Overlap**: a bucket is reduced as soon as all of its gradients are final,
  while backward is still computing the gradients of earlier layers. The
  buckets are filled in reverse parameter order — roughly the order in which
  backward finishes them (last layer first). Each parameter's
  ``post_accumulate_grad_hook`` tells us when its gradient is final; a
  complete bucket starts a non-blocking ``MPI_Iallreduce``. Every rank starts
  the buckets in the same order (bucket i only after buckets 0..i-1), as MPI
  requires of collectives. When the last bucket has started — at the end of
  backward — we wait for all of them and copy the averages back into ``.grad``.
  So ``loss.backward()`` returns with averaged gradients, ready for
  ``optimizer.step()``.

    >>> import tinygrad_zh as tg
    >>> import tinygrad_zh.distributed as dist
    >>> if not dist.is_initialized():
    ...     dist.init_process_group()
    >>> from tinygrad_zh import nn
    >>> model = dist.DistributedDataParallel(nn.Linear(2, 1))
    >>> model(tg.tensor([[3.0, 4.0]])).sum().backward()
    >>> model.module.weight.grad       # the average over ranks: one rank here
    tensor([[3., 4.]])

Any object with ``named_parameters()``, ``named_buffers()`` and ``__call__``
can be wrapped; an ``nn.Module`` has all three.

A model on a GPU is wrapped the same way (each rank's copy on its own GPU,
``model.to(dist.local_device())``): the buckets are allocated on the
parameters' device and the collectives send them by NCCL instead of MPI (see
collectives.py, which also says what of the GPU path was tested where).

Parameters that got no gradient: with ``find_unused_parameters=False`` (the
default, as in PyTorch) every parameter that requires grad must get a gradient
in every backward; if some did not, their buckets never started, and the next
forward raises an error naming them. With ``find_unused_parameters=True`` each
forward walks the output's graph to find the parameters it does not reach;
those count as a zero gradient on this rank (so a parameter used on another
rank still gets that rank's gradient divided by the world size, and one used
nowhere gets zeros).

Where this differs from PyTorch: ``ddp.state_dict()`` (like every attribute the
wrapper does not define) is the wrapped module's, without a ``module.`` prefix,
so a checkpoint saved from a wrapped model loads into a plain one. The MPI
progress engine runs only inside MPI calls (MPICH has no background thread by
default), so the wrapper tests the buckets in flight every time a gradient
becomes ready, which is what lets them move during backward.
"""
import contextlib
import weakref

from .. import autograd, creation
from ..tensor import Tensor
from . import collectives


class DistributedDataParallel:
    """Wrap ``module`` for data-parallel training; see the module docstring."""

    def __init__(self, module, bucket_cap_mb=25, broadcast_buffers=True,
                 find_unused_parameters=False):
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be > 0, "
                             f"got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True  # False inside no_sync()
        named = _trainable_parameters(module)
        self._params = [p for _, p in named]
        self._names = {id(p): n for n, p in named}
        _check_same_model_on_every_rank(module)
        _broadcast_from_rank0([p for _, p in module.named_parameters()]
                              + [b for _, b in module.named_buffers()])
        self._buckets = _make_buckets([p for _, p in reversed(named)], bucket_cap_mb * 2**20)
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        hook = _weak_hook(self._gradient_ready)
        for p in self._params:
            p.register_post_accumulate_grad_hook(hook)
        self._next_bucket = 0  # the next bucket to start: every rank starts them in order
        self._unused = []      # parameters the last forward's output does not reach

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        self._check_previous_backward_finished()
        if self.broadcast_buffers:
            _broadcast_from_rank0([b for _, b in self.module.named_buffers()])
        output = self.module(*args, **kwargs)
        if self.find_unused_parameters and self.require_backward_grad_sync and \
                autograd.is_grad_enabled():
            self._unused = _unreached_parameters(output, self._params)
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Backward inside this block only accumulates local gradients in ``.grad``.

        For gradient accumulation: run k-1 micro-batches under ``no_sync()``
        and the k-th outside; its backward averages the accumulated sums, so
        the ranks talk once per k micro-batches.
        """
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def __getattr__(self, name):
        # Called only for attributes the wrapper lacks: parameters(), train(),
        # state_dict() ... are the wrapped module's.
        if name == "module":  # not set yet: __init__ failed before it
            raise AttributeError(name)
        return getattr(self.module, name)

    # ---------------------------------------------------------------- during backward
    def _gradient_ready(self, param):
        """Hook: ``param.grad`` is final for this backward; copy it into its bucket."""
        if not self.require_backward_grad_sync:
            return
        if self._unused:  # the first gradient of this backward: the unused ones are known
            unused, self._unused = self._unused, []
            for p in unused:
                self._bucket_of[id(p)].add(p)
        self._bucket_of[id(param)].add(param)
        self._start_complete_buckets()

    def _start_complete_buckets(self):
        buckets = self._buckets
        while self._next_bucket < len(buckets) and buckets[self._next_bucket].is_full():
            buckets[self._next_bucket].start()
            self._next_bucket += 1
        for bucket in buckets[:self._next_bucket]:
            bucket.work.is_completed()  # lets MPI move the data while we compute
        if self._next_bucket == len(buckets):  # the last gradient has arrived
            for bucket in buckets:
                bucket.finish()
            self._next_bucket = 0

    def _check_previous_backward_finished(self):
        if not any(b.received for b in self._buckets):
            return
        missing = [self._names[id(p)] for p in self._params
                   if id(p) not in self._bucket_of[id(p)].received]
        raise RuntimeError(
            "DistributedDataParallel: the previous backward did not give a gradient to "
            f"parameters {missing}, so their gradients were never averaged across ranks "
            "(and the ranks' models may now differ). If the model legitimately leaves "
            "parameters unused, wrap it with find_unused_parameters=True; if the loss ignores "
            "part of the output, include it (e.g. + 0 * unused.sum())")


class _Bucket:
    """Parameters whose gradients travel together in one flat buffer, on their device
    (so a GPU model's buckets are CuPy arrays, and travel by NCCL)."""

    def __init__(self, params):
        self.params = params
        self.flat = creation.zeros(sum(p.numel() for p in params), dtype=params[0].dtype,
                                   device=params[0].device)
        self.slots, start = {}, 0
        for p in params:
            self.slots[id(p)] = self.flat.data[start:start + p.numel()]
            start += p.numel()
        self.received = set()  # ids of the parameters whose gradient is in the buffer
        self.work = None

    def add(self, param):
        slot = self.slots[id(param)]
        if param.grad is None:
            slot[...] = 0
        else:
            slot[...] = param.grad.data.reshape(-1)
        self.received.add(id(param))

    def is_full(self):
        return len(self.received) == len(self.params)

    def start(self):
        self.work = collectives.all_reduce(self.flat, op=collectives.ReduceOp.AVG, async_op=True)

    def finish(self):
        """Wait for the average, then write it into every parameter's ``.grad``."""
        self.work.wait()
        for p in self.params:
            average = self.slots[id(p)].reshape(p.shape)
            if p.grad is None:  # an unused parameter: a fresh gradient
                p.grad = Tensor._make(average.copy())
            else:
                p.grad.data[...] = average
        self.received.clear()
        self.work = None


# ------------------------------------------------------------------ helpers
def _trainable_parameters(module):
    """(name, parameter) for each parameter that requires grad; a shared one once."""
    named, seen = [], set()
    for name, p in module.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            named.append((name, p))
    return named


def _weak_hook(method):
    """A hook that calls ``method`` while its object lives: the parameters keep
    their hooks, but a wrapper that was dropped (say, a model wrapped again)
    must not keep reducing gradients."""
    ref = weakref.WeakMethod(method)

    def hook(param):
        bound = ref()
        if bound is not None:
            bound(param)
    return hook


def _make_buckets(params, cap_bytes):
    """Greedy packing in the given order: a new bucket when the cap, the dtype or the
    device says so (one buffer holds one dtype, on one device)."""
    buckets, current, size = [], [], 0
    for p in params:
        nbytes = p.numel() * p.dtype.itemsize
        if current and (size + nbytes > cap_bytes or p.dtype != current[0].dtype
                        or p.device != current[0].device):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


def _check_same_model_on_every_rank(module):
    """Every rank must wrap the same architecture: compare names, shapes, dtypes and
    the kind of device (a CPU tensor on one rank and a GPU one on another would meet
    in different transports, MPI and NCCL, and wait for each other forever)."""
    mine = [(kind, name, tuple(t.shape), str(t.dtype), t.device.split(":")[0])
            for kind, items in (("parameter", module.named_parameters()),
                                ("buffer", module.named_buffers()))
            for name, t in items]
    everyone = [None] * collectives.get_world_size()
    collectives.all_gather_object(everyone, mine)
    for rank, theirs in enumerate(everyone):
        if theirs == everyone[0]:
            continue
        for i in range(max(len(theirs), len(everyone[0]))):
            a = everyone[0][i] if i < len(everyone[0]) else "nothing"
            b = theirs[i] if i < len(theirs) else "nothing"
            if a != b:
                raise ValueError(
                    "DistributedDataParallel: the ranks wrap different models: entry "
                    f"{i} is {a} on rank 0 but {b} on rank {rank} (as (kind, name, shape, "
                    "dtype, device)); every rank must build the same model, on the same "
                    "kind of device")


def _broadcast_from_rank0(tensors):
    with autograd.no_grad():  # parameters require grad: in-place writes need no_grad
        for t in tensors:
            collectives.broadcast(t, src=0)


def _unreached_parameters(output, params):
    """The ``params`` that no path of the graph leads to from ``output``."""
    stack = [t for t in _tensors_in(output) if t.requires_grad]
    reached, seen = set(), set()
    while stack:
        t = stack.pop()
        if t._ctx is None:
            reached.add(id(t))
        elif id(t._ctx) not in seen:
            seen.add(id(t._ctx))
            stack.extend(i for i in t._ctx.inputs if i.requires_grad)
    return [p for p in params if id(p) not in reached]


def _tensors_in(output):
    """The tensors in a model's output: a Tensor, or tuples, lists and dicts of them."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors_in(item)]
    return []

"""The process group and the collectives: every rank calls, every rank's tensor changes.

A *collective* is one call that all ranks (processes) make together. After
``all_reduce(t)`` every rank holds the sum of all ranks' ``t``; after
``broadcast(t, src=0)`` every rank holds rank 0's ``t``. The tensors change in
place, as in ``torch.distributed``.

The talking is done by MPI through mpi4py: a real communication library, not a
protocol of our own. mpi4py is imported only by :func:`init_process_group`, so
``import tinygrad_zh`` never needs it. Without mpi4py a plain ``python script.py``
still works: it is a job of one rank, where every collective leaves the tensor
as it is (the sum or average over one rank is the rank's own value).

    >>> import tinygrad_zh as tg
    >>> import tinygrad_zh.distributed as dist
    >>> if not dist.is_initialized():
    ...     dist.init_process_group()
    >>> t = tg.tensor([1.0, 2.0])
    >>> dist.all_reduce(t)      # the sum over all ranks; a plain `python` run is one rank
    >>> t, dist.get_world_size()
    (tensor([1., 2.]), 1)

Where this differs from PyTorch: there is one process group (all ranks) and no
``group=`` argument; a collective needs a contiguous, writable CPU tensor (a
GPU tensor raises, see ``_buffer``); ``init_process_group`` takes no address or
port, because ``mpiexec`` already told every process where the others are.
"""
import enum
import os
import sys
import time

import numpy as np

INSTALL_HINT = "install the extra that brings mpi4py and MPICH: pip install 'tinygrad_zh[dist]'"

# Environment variables that launchers set in every process they start
# (MPICH/Hydra and Intel MPI: PMI_SIZE; Open MPI: OMPI_COMM_WORLD_SIZE).
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")

_group = None  # the process group once init_process_group() ran
_ABORT_GRACE_SECONDS = 0.5


class ReduceOp(enum.Enum):
    """How ``all_reduce`` / ``reduce_scatter`` combine the ranks' values."""
    SUM = "sum"
    AVG = "avg"   # the sum divided by the world size (floating-point tensors only)
    MAX = "max"
    MIN = "min"


# ------------------------------------------------------------------ the process group
def init_process_group(backend=None):
    """Join the job: from now on this process knows its rank and the world size.

    ``backend``: ``'mpi'`` needs mpi4py; ``'single'`` is a job of one process
    with no MPI at all; ``None`` (the default) picks ``'mpi'`` when mpi4py is
    installed and ``'single'`` otherwise — unless a launcher such as
    ``mpiexec -n 2`` started this process, where running alone would silently
    train on a fraction of the data, so a missing mpi4py is an error.

    Under MPI with more than one rank, an uncaught exception on any rank prints
    its traceback and a line naming the rank, then aborts the whole job
    (``MPI.COMM_WORLD.Abort``): the other ranks would otherwise wait forever in
    their next collective. ``sys.exit(1)`` on one rank is not covered (Python
    does not pass SystemExit to ``sys.excepthook``): call :func:`abort` instead,
    or launch with ``mpiexec -n 2 python -m mpi4py script.py``, which aborts on both.
    """
    global _group
    if backend not in (None, "mpi", "single"):
        raise ValueError(f"init_process_group: unknown backend {backend!r}; "
                         "expected None, 'mpi' or 'single'")
    if _group is not None:
        raise RuntimeError("init_process_group: the process group is already initialized; "
                           "check dist.is_initialized() before calling it again")
    if backend == "single":
        _group = _SingleProcessGroup()
        return
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as e:  # RuntimeError: mpi4py found no libmpi
        if backend is None and _launcher_world_size() <= 1:
            _group = _SingleProcessGroup()
            return
        launched = f" (this process was started by a launcher for {_launcher_world_size()} " \
                   "ranks)" if backend is None else ""
        raise ImportError(f"init_process_group: MPI is not available{launched}: {e}. "
                          f"To train on several processes, {INSTALL_HINT}") from e
    _group = _MPIProcessGroup(MPI)
    if _group.size > 1:
        _abort_job_on_uncaught_exception(_group)


def is_initialized():
    return _group is not None


def init_from_launcher():
    """Join the job if a launcher (``mpiexec -n N``, N > 1) started this process;
    return the world size. A plain ``python`` run stays a process of its own and
    never imports mpi4py. This is how the Trainer and ``python -m tinygrad_zh.gpt
    train`` run unchanged under ``mpiexec``.
    """
    if _group is None and _launcher_world_size() > 1:
        init_process_group()
    return _group.size if _group is not None else 1


def is_main_process():
    """True on rank 0, and in a process that is not part of a job: the one that
    prints, draws progress bars and writes files."""
    return _group is None or _group.rank == 0


def get_rank():
    """This process's number, 0 .. world_size - 1 (rank 0 logs and saves)."""
    return _current_group("get_rank").rank


def get_world_size():
    """How many processes take part in the job."""
    return _current_group("get_world_size").size


def get_backend():
    return _current_group("get_backend").name


def barrier():
    """Wait until every rank has reached this line."""
    _current_group("barrier").barrier()


def abort(message, exit_code=1):
    """Print ``message`` naming this rank, then end every rank of the job now."""
    group = _current_group("abort")
    sys.stderr.write(f"tinygrad_zh.distributed: rank {group.rank} of {group.size}: {message}; "
                     "aborting all ranks\n")
    sys.stderr.flush()
    # The launcher forwards our output through a pipe and stops forwarding when it
    # kills the job: give it a moment to pass the message (and traceback) on first.
    time.sleep(_ABORT_GRACE_SECONDS)
    group.abort(exit_code)


# ------------------------------------------------------------------ collectives
def all_reduce(tensor, op=ReduceOp.SUM, async_op=False):
    """Combine ``tensor`` over all ranks (sum, average, max or min), in place on each.

    With ``async_op=True`` it returns a :class:`Work` at once: the reduction
    runs in the background until ``work.wait()``, and ``tensor`` must not be
    read or written before then.
    """
    buf = _buffer(tensor, "all_reduce")
    op = _reduce_op(op, tensor, "all_reduce")
    group = _current_group("all_reduce")
    request = group.allreduce(buf, op)
    return _finish(Work(request, _averager(buf, op, group)), async_op)


def broadcast(tensor, src, async_op=False):
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every other rank."""
    buf = _buffer(tensor, "broadcast")
    group = _current_group("broadcast")
    if not 0 <= src < group.size:
        raise ValueError(f"broadcast: src={src} is not a rank of this job "
                         f"(ranks 0..{group.size - 1})")
    return _finish(Work(group.broadcast(buf, src)), async_op)


def all_gather(tensor_list, tensor, async_op=False):
    """``tensor_list[r]`` receives rank r's ``tensor``, on every rank."""
    group = _current_group("all_gather")
    send = _buffer(tensor, "all_gather", write=False)
    outputs = [_buffer(t, "all_gather") for t in _rank_list(tensor_list, "all_gather", tensor,
                                                            "tensor_list", group)]
    received = np.empty((group.size,) + send.shape, send.dtype)

    def scatter_into_list():
        for out, value in zip(outputs, received):
            out[...] = value
    return _finish(Work(group.allgather(send, received), scatter_into_list), async_op)


def all_gather_into_tensor(output_tensor, input_tensor, async_op=False):
    """All ranks' ``input_tensor`` concatenated along dim 0 into ``output_tensor``."""
    group = _current_group("all_gather_into_tensor")
    send = _buffer(input_tensor, "all_gather_into_tensor", write=False)
    received = _buffer(output_tensor, "all_gather_into_tensor")
    _expect_shape(output_tensor, (group.size * send.shape[0],) + send.shape[1:] if send.ndim
                  else (group.size,), "all_gather_into_tensor", "output_tensor", input_tensor)
    return _finish(Work(group.allgather(send, received)), async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, async_op=False):
    """``output`` on rank r receives the reduction over ranks of ``input_list[r]``."""
    group = _current_group("reduce_scatter")
    received = _buffer(output, "reduce_scatter")
    op = _reduce_op(op, output, "reduce_scatter")
    inputs = _rank_list(input_list, "reduce_scatter", output, "input_list", group)
    send = np.stack([_buffer(t, "reduce_scatter", write=False) for t in inputs])
    request = group.reduce_scatter(send, received, op)
    return _finish(Work(request, _averager(received, op, group)), async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, async_op=False):  # noqa: A002
    """Rank r's ``output`` receives the reduction of block r (dim 0) of ``input``."""
    group = _current_group("reduce_scatter_tensor")
    received = _buffer(output, "reduce_scatter_tensor")
    send = _buffer(input, "reduce_scatter_tensor", write=False)
    op = _reduce_op(op, output, "reduce_scatter_tensor")
    _expect_shape(input, (group.size * received.shape[0],) + received.shape[1:]
                  if received.ndim else (group.size,), "reduce_scatter_tensor", "input", output)
    request = group.reduce_scatter(send, received, op)
    return _finish(Work(request, _averager(received, op, group)), async_op)


def all_gather_object(object_list, obj):
    """``object_list[r]`` becomes rank r's ``obj`` (any picklable Python object)."""
    group = _current_group("all_gather_object")
    if len(object_list) != group.size:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} entries; "
                         f"expected one per rank ({group.size})")
    object_list[:] = group.allgather_object(obj)


class Work:
    """A collective started with ``async_op=True``; ``wait()`` finishes it.

    MPI moves the data in the background, but MPICH makes progress on it only
    while this process is inside an MPI call: ``is_completed()`` (MPI_Test) is
    such a call, which is why DistributedDataParallel calls it on the buckets
    in flight every time another gradient becomes ready.
    """

    def __init__(self, request, after=None):
        self._request = request
        self._after = after  # work on the received data (average, copy out) once it is there

    def wait(self):
        self._request.Wait()
        if self._after is not None:
            self._after()
            self._after = None
        return True

    def is_completed(self):
        return self._request.Test()


# ------------------------------------------------------------------ helpers
def _current_group(op):
    if _group is None:
        raise RuntimeError(f"{op}: the process group is not initialized; call "
                           "tinygrad_zh.distributed.init_process_group() first")
    return _group


def _launcher_world_size():
    for name in _LAUNCHER_SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def _finish(work, async_op):
    if async_op:
        return work
    work.wait()
    return None


def _buffer(tensor, op, write=True):
    """The tensor's array, for MPI to read and (if ``write``) write in place.

    MPI reads raw memory, so the array must be one contiguous block on the CPU.
    A write also counts as an in-place change (the version counter moves, so a
    backward that saved this tensor notices) and, like every in-place op, is
    refused on a tensor that requires grad unless grad mode is off.
    """
    from ..tensor import Tensor
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expected a tinygrad_zh Tensor, got {type(tensor).__name__}")
    if tensor.device != "cpu":
        raise NotImplementedError(
            f"{op}: the tensor is on {tensor.device}; collectives run on CPU tensors only "
            "(NCCL for GPU tensors is not implemented): move it with .cpu()")
    data = tensor.data
    if not data.flags.c_contiguous:
        raise ValueError(f"{op}: the tensor of shape {tensor.shape} is not contiguous; "
                         "MPI sends one block of memory: call .contiguous() first")
    if write:
        if not data.flags.writeable:
            raise ValueError(f"{op}: the tensor of shape {tensor.shape} is a read-only view "
                             "(e.g. from expand); collectives write in place: clone it first")
        tensor._write(op, lambda: None)
    return data


def _reduce_op(op, tensor, name):
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{name}: op must be a ReduceOp (SUM, AVG, MAX, MIN), got {op!r}")
    if op is ReduceOp.AVG and tensor.dtype.kind != "f":
        raise TypeError(f"{name}: ReduceOp.AVG needs a floating-point tensor, got {tensor.dtype}")
    return op


def _averager(buf, op, group):
    """AVG is SUM followed by a division: MPI has no averaging operation."""
    if op is not ReduceOp.AVG:
        return None

    def divide():
        np.divide(buf, group.size, out=buf)
    return divide


def _rank_list(tensors, op, like, what, group):
    """Check a list with one tensor per rank, each shaped like ``like``."""
    tensors = list(tensors)
    if len(tensors) != group.size:
        raise ValueError(f"{op}: {what} has {len(tensors)} tensors; expected one per rank "
                         f"({group.size})")
    for i, t in enumerate(tensors):
        if t.shape != like.shape or t.dtype != like.dtype:
            raise ValueError(f"{op}: {what}[{i}] has shape {t.shape} and dtype {t.dtype}; "
                             f"expected shape {like.shape} and dtype {like.dtype}")
    return tensors


def _expect_shape(tensor, shape, op, what, other):
    if tensor.shape != shape:
        raise ValueError(f"{op}: {what} has shape {tensor.shape}; with {_group.size} ranks and "
                         f"a tensor of shape {other.shape} it must have shape {shape}")


def _abort_job_on_uncaught_exception(group):
    previous_hook = sys.excepthook

    def abort_on_uncaught(exc_type, exc, tb):
        previous_hook(exc_type, exc, tb)  # the usual traceback first
        abort(f"uncaught {exc_type.__name__}: {exc}")
    sys.excepthook = abort_on_uncaught


# ------------------------------------------------------------------ the two backends
class _MPIProcessGroup:
    """Collectives through mpi4py's non-blocking calls on MPI.COMM_WORLD."""
    name = "mpi"

    def __init__(self, MPI):
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._in_place = MPI.IN_PLACE
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM,
                     ReduceOp.MAX: MPI.MAX, ReduceOp.MIN: MPI.MIN}

    def allreduce(self, buf, op):
        return self.comm.Iallreduce(self._in_place, buf, op=self._ops[op])

    def broadcast(self, buf, src):
        return self.comm.Ibcast(buf, root=src)

    def allgather(self, send, received):
        return self.comm.Iallgather(send, received)

    def reduce_scatter(self, send, received, op):
        return self.comm.Ireduce_scatter_block(send, received, op=self._ops[op])

    def barrier(self):
        self.comm.Barrier()

    def allgather_object(self, obj):
        return self.comm.allgather(obj)

    def abort(self, exit_code):
        self.comm.Abort(exit_code)


class _Done:
    """A request that has already completed (what one rank's collectives return)."""

    def Wait(self):  # noqa: N802 -- mpi4py's spelling
        return None

    def Test(self):  # noqa: N802
        return True


class _SingleProcessGroup:
    """A job of one rank: reducing over one value, or broadcasting to nobody, is a no-op."""
    name = "single"
    rank, size = 0, 1

    def allreduce(self, buf, op):
        return _Done()

    def broadcast(self, buf, src):
        return _Done()

    def allgather(self, send, received):
        received.reshape(send.shape)[...] = send
        return _Done()

    def reduce_scatter(self, send, received, op):
        received[...] = send.reshape(received.shape)
        return _Done()

    def barrier(self):
        pass

    def allgather_object(self, obj):
        return [obj]

    def abort(self, exit_code):
        os._exit(exit_code)

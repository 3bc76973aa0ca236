"""The process group and the collectives: every rank calls, every rank's tensor changes.

A *collective* is one call that all ranks (processes) make together. After
``all_reduce(t)`` every rank holds the sum of all ranks' ``t``; after
``broadcast(t, src=0)`` every rank holds rank 0's ``t``. The tensors change in
place, as in ``torch.distributed``.

The ranks are started by ``mpiexec`` and know each other through MPI
(mpi4py). The data travels by one of two *transports*, chosen by the
tensors' device in one place (``_transport_for``):

- CPU tensors (NumPy arrays): MPI's non-blocking collectives
  (``MPI_Iallreduce`` ...), through the process group itself;
- GPU tensors (CuPy arrays): NCCL, NVIDIA's collective library, through
  ``cupy.cuda.nccl``. MPI only hands NCCL its unique id; the GPU data never
  passes through MPI, so MPI needs no CUDA support.

Both transports have the same four methods (``allreduce``, ``broadcast``,
``allgather``, ``reduce_scatter``), each returning a request with ``Wait()``
and ``Test()``; the public functions below are written once against them.

mpi4py is imported only by :func:`init_process_group` and CuPy only by the
first collective on a GPU tensor, so ``import tinygrad_zh`` needs neither.
Without mpi4py a plain ``python script.py`` still works: it is a job of one
rank, where every collective leaves the tensor as it is (the sum or average
over one rank is the rank's own value).

    >>> import tinygrad_zh as tg
    >>> import tinygrad_zh.distributed as dist
    >>> if not dist.is_initialized():
    ...     dist.init_process_group()
    >>> t = tg.tensor([1.0, 2.0])
    >>> dist.all_reduce(t)      # the sum over all ranks; a plain `python` run is one rank
    >>> t, dist.get_world_size()
    (tensor([1., 2.]), 1)

What was verified where: the CPU transport runs in the tests on 2 MPI ranks
(tests/test_distributed.py). The GPU transport was written without a GPU:
on a machine without CuPy only its CPU-side parts are tested (the choice of
transport by device, the NCCL dtype and op tables, the errors for a missing
CuPy/NCCL, for tensors on different devices and for two ranks sharing a GPU).
The tests that run it for real (every collective on CUDA tensors, and DDP
training a CUDA model on 2 ranks compared with the CPU result) skip with the
reason "needs CuPy, NCCL and a CUDA GPU" and had not been run when this was
written.

Where this differs from PyTorch: there is one process group (all ranks) and no
``group=`` argument; a collective needs contiguous, writable tensors, all on
one device; ``init_process_group`` takes no address or port, because
``mpiexec`` already told every process where the others are, and has an
``exit_timeout`` of its own (see there).
"""
import atexit
import contextlib
import enum
import os
import socket
import sys
import time

import numpy as np

from .. import backend as array_backend

INSTALL_HINT = "install the extra that brings mpi4py and MPICH: pip install 'tinygrad_zh[dist]'"
GPU_HINT = ("install CuPy (pip install 'tinygrad_zh[gpu]') and NCCL for your CUDA version (CuPy's "
            "installation guide, 'Additional CUDA Libraries'), or move the tensors to the CPU "
            "with .cpu()")

# Environment variables that launchers set in every process they start
# (MPICH/Hydra and Intel MPI: PMI_SIZE; Open MPI: OMPI_COMM_WORLD_SIZE).
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")

_group = None  # the process group once init_process_group() ran
_ABORT_GRACE_SECONDS = 0.5
_ENDED_TAG = 1  # the end-of-job handshake's messages (on a private communicator)


class ReduceOp(enum.Enum):
    """How ``all_reduce`` / ``reduce_scatter`` combine the ranks' values."""
    SUM = "sum"
    AVG = "avg"   # the sum divided by the world size (floating-point tensors only)
    MAX = "max"
    MIN = "min"


# NCCL's names (constants of cupy.cuda.nccl) for our dtypes and reductions. NCCL
# has no bool, int16 or uint16; AVG is SUM followed by a division, as on MPI.
NCCL_DTYPES = {"int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32",
               "uint32": "NCCL_UINT32", "int64": "NCCL_INT64", "uint64": "NCCL_UINT64",
               "float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}
NCCL_OPS = {ReduceOp.SUM: "NCCL_SUM", ReduceOp.AVG: "NCCL_SUM", ReduceOp.MAX: "NCCL_MAX",
            ReduceOp.MIN: "NCCL_MIN"}


# ------------------------------------------------------------------ the process group
def init_process_group(backend=None, exit_timeout=30.0):
    """Join the job: from now on this process knows its rank and the world size.

    ``backend``: ``'mpi'`` needs mpi4py; ``'single'`` is a job of one process
    with no MPI at all; ``None`` (the default) picks ``'mpi'`` when mpi4py is
    installed and ``'single'`` otherwise — unless a launcher such as
    ``mpiexec -n 2`` started this process, where running alone would silently
    train on a fraction of the data, so a missing mpi4py is an error. (NCCL is
    not a backend to ask for: GPU tensors use it by themselves.)

    A failing rank must not leave the others waiting forever in their next
    collective. Under MPI with more than one rank:

    - an uncaught exception on any rank prints its traceback and a line naming
      the rank, then aborts the whole job (``MPI.COMM_WORLD.Abort``);
    - a rank whose script ends — normally, by ``sys.exit(n)`` or by raising
      ``SystemExit`` — waits at most ``exit_timeout`` seconds for every other
      rank to reach its end too; if one does not, it aborts the job with a
      line naming itself and the ranks still running. So ``sys.exit(3)`` in
      the middle of training ends the job within ``exit_timeout`` seconds,
      while a job whose ranks all finish ends at once, as before. A script
      whose rank 0 keeps working alone at the end (longer than
      ``exit_timeout``) ends with ``dist.barrier()`` on every rank after that
      work, or raises ``exit_timeout``.
    """
    global _group
    if backend not in (None, "mpi", "single"):
        raise ValueError(f"init_process_group: unknown backend {backend!r}; "
                         "expected None, 'mpi' or 'single'")
    if not exit_timeout > 0:
        raise ValueError(f"init_process_group: exit_timeout must be > 0 seconds, "
                         f"got {exit_timeout}")
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
        _abort_job_on_uncaught_exception()
        _abort_job_if_the_ranks_end_apart(_group, exit_timeout)


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


def local_device():
    """The device this rank trains on: ``'cuda:N'`` with N = rank % (GPUs CuPy
    sees), or ``'cpu'`` without CuPy or a GPU.

    Two ranks on one machine must not share a GPU (NCCL refuses), so rank r
    takes GPU r % count. On a GPU this also makes it CuPy's current device —
    what ``torch.cuda.set_device(local_rank)`` does in a PyTorch script — so
    that every op on tensors there runs there. A script calls it once:
    ``model.to(dist.local_device())``.

        >>> import tinygrad_zh.distributed as dist
        >>> if not dist.is_initialized():
        ...     dist.init_process_group()
        >>> dist.local_device() in ("cpu", "cuda:0")
        True
    """
    rank = _current_group("local_device").rank
    try:
        cp = array_backend.cupy()
        count = cp.cuda.runtime.getDeviceCount()
    except RuntimeError:  # no CuPy, no CUDA driver: train on the CPU
        return "cpu"
    if count == 0:
        return "cpu"
    cp.cuda.Device(rank % count).use()
    return f"cuda:{rank % count}"


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
    transport = _transport("all_reduce", tensor=tensor)
    return _finish(Work(transport.allreduce(buf, op), _averager(buf, op)), async_op)


def broadcast(tensor, src, async_op=False):
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every other rank."""
    buf = _buffer(tensor, "broadcast")
    group = _current_group("broadcast")
    if not 0 <= src < group.size:
        raise ValueError(f"broadcast: src={src} is not a rank of this job "
                         f"(ranks 0..{group.size - 1})")
    transport = _transport("broadcast", tensor=tensor)
    return _finish(Work(transport.broadcast(buf, src)), async_op)


def all_gather(tensor_list, tensor, async_op=False):
    """``tensor_list[r]`` receives rank r's ``tensor``, on every rank."""
    group = _current_group("all_gather")
    send = _buffer(tensor, "all_gather", write=False)
    tensor_list = _rank_list(tensor_list, "all_gather", tensor, "tensor_list", group)
    outputs = [_buffer(t, "all_gather") for t in tensor_list]
    transport = _transport("all_gather", tensor=tensor, tensor_list=tensor_list)
    with _on_device(send):
        received = array_backend.array_module(send).empty((group.size,) + send.shape, send.dtype)

    def scatter_into_list():
        with _on_device(send):
            for out, value in zip(outputs, received):
                out[...] = value
    return _finish(Work(transport.allgather(send, received), scatter_into_list), async_op)


def all_gather_into_tensor(output_tensor, input_tensor, async_op=False):
    """All ranks' ``input_tensor`` concatenated along dim 0 into ``output_tensor``."""
    group = _current_group("all_gather_into_tensor")
    send = _buffer(input_tensor, "all_gather_into_tensor", write=False)
    received = _buffer(output_tensor, "all_gather_into_tensor")
    _expect_shape(output_tensor, (group.size * send.shape[0],) + send.shape[1:] if send.ndim
                  else (group.size,), "all_gather_into_tensor", "output_tensor", input_tensor)
    transport = _transport("all_gather_into_tensor", output_tensor=output_tensor,
                           input_tensor=input_tensor)
    return _finish(Work(transport.allgather(send, received)), async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, async_op=False):
    """``output`` on rank r receives the reduction over ranks of ``input_list[r]``."""
    group = _current_group("reduce_scatter")
    received = _buffer(output, "reduce_scatter")
    op = _reduce_op(op, output, "reduce_scatter")
    inputs = _rank_list(input_list, "reduce_scatter", output, "input_list", group)
    transport = _transport("reduce_scatter", output=output, input_list=inputs)
    with _on_device(received):
        send = array_backend.array_module(received).stack(
            [_buffer(t, "reduce_scatter", write=False) for t in inputs])
    request = transport.reduce_scatter(send, received, op)
    return _finish(Work(request, _averager(received, op)), async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, async_op=False):  # noqa: A002
    """Rank r's ``output`` receives the reduction of block r (dim 0) of ``input``."""
    group = _current_group("reduce_scatter_tensor")
    received = _buffer(output, "reduce_scatter_tensor")
    send = _buffer(input, "reduce_scatter_tensor", write=False)
    op = _reduce_op(op, output, "reduce_scatter_tensor")
    _expect_shape(input, (group.size * received.shape[0],) + received.shape[1:]
                  if received.ndim else (group.size,), "reduce_scatter_tensor", "input", output)
    transport = _transport("reduce_scatter_tensor", output=output, input=input)
    request = transport.reduce_scatter(send, received, op)
    return _finish(Work(request, _averager(received, op)), async_op)


def all_gather_object(object_list, obj):
    """``object_list[r]`` becomes rank r's ``obj`` (any picklable Python object)."""
    group = _current_group("all_gather_object")
    if len(object_list) != group.size:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} entries; "
                         f"expected one per rank ({group.size})")
    object_list[:] = group.allgather_object(obj)


class Work:
    """A collective started with ``async_op=True``; ``wait()`` finishes it.

    On the CPU, MPI moves the data in the background, but MPICH makes progress
    on it only while this process is inside an MPI call: ``is_completed()``
    (MPI_Test) is such a call, which is why DistributedDataParallel calls it on
    the buckets in flight every time another gradient becomes ready. On a GPU,
    ``wait()`` does not block the host: it orders the GPU work queued after it
    behind the collective (see ``_NCCLTransport``).
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


# ------------------------------------------------------------------ choosing the transport
def _transport(op, **tensors):
    """The transport that moves these tensors (keyword: what each is called in
    ``op``'s signature; a list stands for its elements), which must all be on one
    device and have one dtype."""
    named = _named_tensors(tensors)
    device = _one_device(op, [(name, t.device) for name, t in named])
    dtypes = {str(t.dtype) for _, t in named}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: the tensors have different dtypes ("
                        + ", ".join(f"{name}: {t.dtype}" for name, t in named)
                        + "); convert them to one dtype first")
    return _transport_for(op, device, named[0][1].dtype)


def _transport_for(op, device, dtype):
    """The one dispatch point. CPU arrays travel through the process group (MPI, or
    nowhere in a job of one process, whatever the device); GPU arrays through the
    NCCL communicator of their device, made on the first collective there."""
    group = _current_group(op)
    if device == "cpu" or group.name == "single":
        return group
    nccl_dtype_name(dtype, op)  # NCCL's type, or an error naming the ones it has
    if device not in group.gpu_transports:
        group.gpu_transports[device] = _NCCLTransport(group, device, op)
    return group.gpu_transports[device]


def _named_tensors(tensors):
    """{'tensor': t, 'tensor_list': [a, b]} -> [('tensor', t), ('tensor_list[0]', a), ...]."""
    named = []
    for name, value in tensors.items():
        if isinstance(value, (list, tuple)):
            named.extend((f"{name}[{i}]", t) for i, t in enumerate(value))
        else:
            named.append((name, value))
    return named


def _one_device(op, named_devices):
    """The device all the tensors of one collective are on, or an error listing them."""
    devices = {device for _, device in named_devices}
    if len(devices) > 1:
        where = ", ".join(f"{name} on {device}" for name, device in named_devices)
        raise ValueError(f"{op}: the tensors are on different devices ({where}); a collective "
                         "moves the tensors of one device: move them with .to(device) first")
    return devices.pop()


def nccl_dtype_name(dtype, op):
    """The name of NCCL's type for ``dtype`` (a constant of ``cupy.cuda.nccl``).

        >>> nccl_dtype_name(np.dtype("float32"), "all_reduce")
        'NCCL_FLOAT32'
    """
    name = NCCL_DTYPES.get(np.dtype(dtype).name)
    if name is None:
        raise TypeError(f"{op}: NCCL, which moves GPU tensors, has no type for {dtype}; it has "
                        f"{', '.join(NCCL_DTYPES)}: convert the tensor with .to(dtype) first")
    return name


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
    """The tensor's array, for the transport to read and (if ``write``) write in place.

    MPI and NCCL read raw memory, so the array must be one contiguous block. A
    write also counts as an in-place change (the version counter moves, so a
    backward that saved this tensor notices) and, like every in-place op, is
    refused on a tensor that requires grad unless grad mode is off.
    """
    from ..tensor import Tensor
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expected a tinygrad_zh Tensor, got {type(tensor).__name__}")
    data = tensor.data
    if not data.flags.c_contiguous:
        raise ValueError(f"{op}: the tensor of shape {tensor.shape} is not contiguous; "
                         "MPI and NCCL send one block of memory: call .contiguous() first")
    if write:
        if not getattr(data.flags, "writeable", True):  # CuPy arrays have no such flag
            raise ValueError(f"{op}: the tensor of shape {tensor.shape} is a read-only view "
                             "(e.g. from expand); collectives write in place: clone it first")
        tensor._write(op, lambda: None)
    return data


def _reduce_op(op, tensor, name):
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{name}: op must be a ReduceOp (SUM, AVG, MAX, MIN), got {op!r}")
    if tensor.dtype.kind == "b":
        raise TypeError(f"{name}: cannot reduce a bool tensor (MPI and NCCL have no sum, max "
                        "or min of bools): convert it with .to(tg.uint8) first")
    if op is ReduceOp.AVG and tensor.dtype.kind != "f":
        raise TypeError(f"{name}: ReduceOp.AVG needs a floating-point tensor, got {tensor.dtype}")
    return op


def _averager(buf, op):
    """AVG is SUM followed by a division (MPI has no averaging operation)."""
    if op is not ReduceOp.AVG:
        return None

    def divide():
        with _on_device(buf):
            array_backend.array_module(buf).divide(buf, _group.size, out=buf)
    return divide


def _on_device(array):
    """Make the array's GPU the current one (where CuPy allocates and launches)."""
    if array_backend.array_module(array) is np:
        return contextlib.nullcontext()
    return array.device


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


# ------------------------------------------------------------------ a failing rank ends the job
def _abort_job_on_uncaught_exception():
    previous_hook = sys.excepthook

    def abort_on_uncaught(exc_type, exc, tb):
        previous_hook(exc_type, exc, tb)  # the usual traceback first
        abort(f"uncaught {exc_type.__name__}: {exc}")
    sys.excepthook = abort_on_uncaught


def _abort_job_if_the_ranks_end_apart(group, timeout):
    """At exit, shake hands with every other rank; abort the job if one does not come.

    Why a handshake: a rank that leaves by ``sys.exit(n)`` or ``SystemExit``
    passes neither ``sys.excepthook`` (Python handles SystemExit itself) nor
    anything else that sees the exit status: an ``atexit`` handler cannot learn
    it (``sys.last_value`` is not set for SystemExit, ``threading.excepthook``
    sees only other threads, ``sys.exitfunc`` is gone since Python 3). What it
    can learn is whether the others have ended too. Without the handshake,
    mpi4py's ``MPI_Finalize`` would wait for them forever, while they wait for
    this rank in their next collective.

    So each rank, at its end, sends "ended" to every other rank and waits for
    theirs, on a private copy of the communicator. When every rank ends the
    same script, the messages cross at once and the job ends cleanly. If some
    rank has not ended within ``timeout`` seconds, it is stuck in (or still
    heading for) a collective this rank will never join — or it had long work
    of its own to finish, which is why the timeout is a parameter.
    """
    comm = group.comm.Dup()  # collective: every rank is in init_process_group now
    others = [r for r in range(group.size) if r != group.rank]

    def end_of_job_handshake():
        if group.finalized():  # the script called MPI.Finalize() itself: nobody to talk to
            return
        ended = np.ones(1, np.uint8)
        sends = [comm.Isend(ended, dest=r, tag=_ENDED_TAG) for r in others]
        inbox = {r: np.zeros(1, np.uint8) for r in others}
        receives = {r: comm.Irecv(inbox[r], source=r, tag=_ENDED_TAG) for r in others}
        deadline = time.monotonic() + timeout
        while True:
            running = [r for r in others if not receives[r].Test()]
            if not running:
                for request in sends:
                    request.Wait()
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)  # MPI_Test also drives MPICH's progress engine
        abort(f"its script has ended (normally, by sys.exit or by SystemExit: Python does "
              f"not tell an exit handler which, nor the exit status) but rank(s) "
              f"{', '.join(map(str, running))} did not end within exit_timeout={timeout:g} s; "
              "they would wait forever in a collective this rank never joins (if they only "
              "had more work to do: dist.barrier() on every rank after it, or a longer "
              "exit_timeout)")
    atexit.register(end_of_job_handshake)


# ------------------------------------------------------------------ the transports
class _MPIProcessGroup:
    """The job's ranks through mpi4py (MPI.COMM_WORLD); the CPU transport, by MPI's
    non-blocking collectives."""
    name = "mpi"

    def __init__(self, MPI):
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.gpu_transports = {}  # device -> _NCCLTransport, created on first use
        self.finalized = MPI.Is_finalized
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

    def broadcast_object(self, obj, src):
        return self.comm.bcast(obj, root=src)

    def abort(self, exit_code):
        self.comm.Abort(exit_code)


class _NCCLTransport:
    """The GPU transport: collectives on the CuPy arrays of one GPU, through NCCL.

    Made on the first collective on that device (a collective itself: rank 0
    makes NCCL's unique id and MPI broadcasts it). Every rank must use a GPU of
    its own (``local_device()``); NCCL refuses two ranks on one GPU, so that is
    checked first, with an error that says so.

    Streams: NCCL runs on a stream of its own, so that a bucket's allreduce can
    overlap the backward kernels that follow it. The order is kept by CUDA
    events, without blocking the host: a collective first makes its stream
    wait for the work already queued on the caller's current stream (the
    kernels that computed the data), and ``Work.wait()`` makes the caller's
    stream wait for the collective, so the kernels queued after ``wait()``
    (and a copy to the host) see the result. The request keeps the arrays
    alive until then, or CuPy's memory pool could hand their memory to another
    array while NCCL still reads it.
    """

    def __init__(self, group, device, op):
        self.cp, self.nccl = _import_nccl(device, op)
        self.device = self.cp.cuda.Device(int(device[5:]))
        shared = _shared_gpus(group.allgather_object((socket.gethostname(), device)))
        if shared:
            raise RuntimeError(f"{op}: NCCL needs one GPU per rank, but {shared}; "
                               "put each rank's tensors on dist.local_device()")
        unique_id = group.broadcast_object(
            self.nccl.get_unique_id() if group.rank == 0 else None, src=0)
        with self.device:
            self.comm = self.nccl.NcclCommunicator(group.size, unique_id, group.rank)
            self.stream = self.cp.cuda.Stream(non_blocking=True)
        self._ops = {op: getattr(self.nccl, name) for op, name in NCCL_OPS.items()}

    def allreduce(self, buf, op):
        return self._launch(lambda s: self.comm.allReduce(
            buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), self._ops[op], s), buf)

    def broadcast(self, buf, src):
        return self._launch(lambda s: self.comm.broadcast(
            buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), src, s), buf)

    def allgather(self, send, received):
        return self._launch(lambda s: self.comm.allGather(
            send.data.ptr, received.data.ptr, send.size, self._dtype(send), s), send, received)

    def reduce_scatter(self, send, received, op):
        return self._launch(lambda s: self.comm.reduceScatter(
            send.data.ptr, received.data.ptr, received.size, self._dtype(send), self._ops[op],
            s), send, received)

    def _dtype(self, array):
        return getattr(self.nccl, nccl_dtype_name(array.dtype, "NCCL"))

    def _launch(self, call, *arrays):
        with self.device:
            self.stream.wait_event(self.cp.cuda.get_current_stream().record())
            call(self.stream.ptr)
            return _StreamRequest(self.cp, self.device, self.stream.record(), arrays)


class _StreamRequest:
    """A collective queued on a GPU stream: ``Wait`` orders the caller's stream after
    it, ``Test`` asks whether the GPU has finished it."""

    def __init__(self, cp, device, done, arrays):
        self._cp, self._device, self._done, self._arrays = cp, device, done, arrays

    def Wait(self):  # noqa: N802 -- mpi4py's spelling, the interface of every request
        with self._device:
            self._cp.cuda.get_current_stream().wait_event(self._done)
        self._arrays = ()  # work queued from now on runs after the collective

    def Test(self):  # noqa: N802
        return self._done.done


def _import_nccl(device, op):
    """CuPy and its NCCL module, or an error saying what is missing."""
    try:
        cp = array_backend.cupy()
        from cupy.cuda import nccl
    except (ImportError, RuntimeError) as e:
        raise RuntimeError(f"{op}: tensors on {device} travel by NCCL, which needs CuPy "
                           f"({e}); {GPU_HINT}") from e
    if not getattr(nccl, "available", False):
        raise RuntimeError(f"{op}: tensors on {device} travel by NCCL, but this CuPy has no "
                           f"NCCL (cupy.cuda.nccl.available is False); {GPU_HINT}")
    return cp, nccl


def _shared_gpus(placements):
    """From every rank's (host, device): a sentence naming ranks that share a GPU, or ''."""
    first = {}
    for rank, place in enumerate(placements):
        if place in first:
            host, device = place
            return f"ranks {first[place]} and {rank} both use {device} on host {host}"
        first[place] = rank
    return ""


class _Done:
    """A request that has already completed (what one rank's collectives return)."""

    def Wait(self):  # noqa: N802 -- mpi4py's spelling
        return None

    def Test(self):  # noqa: N802
        return True


class _SingleProcessGroup:
    """A job of one rank, on any device: reducing over one value, or broadcasting to
    nobody, is a no-op."""
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

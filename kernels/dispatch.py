"""Which implementation runs: the one place that decides, for each (op, device).

By default the fastest correct kernel runs — Numba on the CPU, numba.cuda on
the GPU. One switch forces the plain NumPy reference everywhere, so learners
and tests can compare: the context manager :func:`use_reference`, or the
environment variable ``TINYGRAD_ZH_KERNELS=reference`` set before the run.

If a Numba kernel cannot be compiled (an old Numba, an unsupported platform),
the reference runs instead, after ONE warning per (op, device) — slower, never
silently wrong. Numba is imported only here, lazily, when a kernel is first
called: ``import tinygrad_zh`` stays fast.

Plain matrix multiplication is not dispatched: BLAS (NumPy) and cuBLAS (CuPy)
beat any hand-written GEMM, so the engine keeps calling ``@``; the matmul
kernels in ``numba_cpu/`` and ``cuda_gpu/`` are there to learn from.

    >>> with use_reference():
    ...     chosen("adam_step", "cpu")
    'tinygrad_zh.kernels.reference'
"""
import contextlib
import importlib
import os
import warnings

from tinygrad_zh.backend import array_module, device_of

from . import reference

# (op, device kind) -> the module holding the fast implementation of `op`.
FAST_KERNELS = {
    ("adam_step", "cpu"): "tinygrad_zh.kernels.numba_cpu.adam",
    ("adam_step", "cuda"): "tinygrad_zh.kernels.cuda_gpu.adam",
    ("attention_forward", "cpu"): "tinygrad_zh.kernels.numba_cpu.attention",
    ("attention_forward", "cuda"): "tinygrad_zh.kernels.cuda_gpu.attention",
    ("attention_backward", "cpu"): "tinygrad_zh.kernels.numba_cpu.attention",
    ("attention_backward", "cuda"): "tinygrad_zh.kernels.cuda_gpu.attention",
}
REFERENCE = "tinygrad_zh.kernels.reference"
ENV_VAR = "TINYGRAD_ZH_KERNELS"

ENV_VALUES = ("", "fast", "reference")   # unset / "fast": the fast kernels


def _from_environment():
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value not in ENV_VALUES:
        raise ValueError(f"tinygrad_zh.kernels: {ENV_VAR}={os.environ[ENV_VAR]!r} is not "
                         f"understood; use 'reference' (NumPy everywhere) or 'fast' (default)")
    return value == "reference"


_force_reference = _from_environment()
_failed = set()  # (op, device kind) whose fast kernel failed to compile: reference from then on


# ------------------------------------------------------------------ the switch
@contextlib.contextmanager
def use_reference(enabled=True):
    """Inside this block every kernel call runs the NumPy reference.

    ``use_reference(False)`` turns the fast kernels back on inside a block
    (for example when the environment variable forces the reference).
    """
    global _force_reference
    previous, _force_reference = _force_reference, bool(enabled)
    try:
        yield
    finally:
        _force_reference = previous


def reference_forced():
    """True when the NumPy reference is forced (by :func:`use_reference` or the env var)."""
    return _force_reference


def chosen(op, device):
    """The name of the module whose ``op`` runs now for arrays on ``device``."""
    key = (op, _device_kind(device))
    if _force_reference or key in _failed or key not in FAST_KERNELS:
        return REFERENCE
    return FAST_KERNELS[key]


def call(op, device, *args, **kwargs):
    """Run ``op`` with the implementation chosen for ``device``.

    A fast kernel that fails to compile is reported once and replaced by the
    reference. Compilation happens before a kernel touches any data, so the
    reference then starts from untouched inputs (callers that loop over arrays
    group them so that every array in one call has the same types).
    """
    name = chosen(op, device)
    if name == REFERENCE:
        return getattr(reference, op)(*args, **kwargs)
    key = (op, _device_kind(device))
    try:
        fast = getattr(importlib.import_module(name), op)
        return fast(*args, **kwargs)
    except _compile_errors() as error:
        _failed.add(key)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        warnings.warn(
            f"tinygrad_zh.kernels: the fast {op} kernel for {key[1]} ({name}) could not be "
            f"compiled ({type(error).__name__}: {first_line}); using the NumPy reference "
            f"instead from now on (slower, same results)", RuntimeWarning, stacklevel=3)
        return getattr(reference, op)(*args, **kwargs)


# ------------------------------------------------------------------ ops
def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, step, lr, beta1, beta2,
              eps, weight_decay, decoupled, amsgrad, maximize):
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step, in place.

    Lists of raw arrays (NumPy or CuPy, all on one device): ``params``,
    ``exp_avgs`` (m), ``exp_avg_sqs`` (v) and, with ``amsgrad``,
    ``max_exp_avg_sqs`` are updated in place; ``grads`` are only read;
    ``max_exp_avg_sqs`` is None unless ``amsgrad``. ``step`` is the step count
    already incremented (1 at the first step). The formulas are PyTorch's; see
    :func:`tinygrad_zh.kernels.reference.adam_step`.

        >>> import numpy as np
        >>> p, g = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
        >>> m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
        >>> adam_step([p], [g], [m], [v], None, step=1, lr=0.1, beta1=0.9, beta2=0.999,
        ...           eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)
        >>> p.round(5), m.round(5)
        (array([0.9, 0.9, 0.9, 0.9], dtype=float32), array([0.05, 0.05, 0.05, 0.05], dtype=float32))
    """
    lists = {"params": params, "grads": grads, "exp_avgs": exp_avgs,
             "exp_avg_sqs": exp_avg_sqs}
    if amsgrad:
        if max_exp_avg_sqs is None:
            raise ValueError("adam_step: amsgrad=True needs max_exp_avg_sqs (a list of arrays)")
        lists["max_exp_avg_sqs"] = max_exp_avg_sqs
    device = _check_adam_arrays(lists)
    if device is None:  # no parameters
        return
    # Kernels want C-contiguous arrays: copy the others once here, and copy
    # the updated state back afterwards.
    work = {name: [_contiguous(a) for a in arrays] for name, arrays in lists.items()}
    # One call per dtype, so that a compile failure (which happens at the
    # first array of a call, before anything is written) leaves no array half-updated.
    for dtype in dict.fromkeys(p.dtype for p in params):
        index = [i for i, p in enumerate(params) if p.dtype == dtype]
        group = {name: [arrays[i] for i in index] for name, arrays in work.items()}
        call("adam_step", device, group["params"], group["grads"], group["exp_avgs"],
             group["exp_avg_sqs"], group.get("max_exp_avg_sqs"), step=step, lr=lr,
             beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
             decoupled=decoupled, amsgrad=amsgrad, maximize=maximize)
    for name, arrays in lists.items():
        if name != "grads":
            for original, updated in zip(arrays, work[name]):
                if updated is not original:
                    original[...] = updated


def attention_forward(q, k, v, mask, is_causal, scale):
    """Fused attention forward: ``(out, lse)``.

    See :func:`tinygrad_zh.kernels.reference.attention_forward` for the contract:

    ``q`` (..., L, E), ``k`` (..., S, E), ``v`` (..., S, Ev), ``mask`` None or
    an additive (..., L, S) array, one batch shape (...), all C-contiguous with
    one dtype on one device (``tinygrad_zh.ops.attention`` prepares them).

        >>> import numpy as np
        >>> q = k = v = np.ones((1, 2, 3))
        >>> out, lse = attention_forward(q, k, v, None, True, 1.0)
        >>> out.shape, lse.shape
        ((1, 2, 3), (1, 2))
    """
    return call("attention_forward", device_of(q), q, k, v, mask, is_causal, scale)


def attention_backward(q, k, v, mask, is_causal, scale, out, lse, grad_out):
    """Gradients ``(dq, dk, dv)`` from the forward's ``out``, ``lse`` and ``grad_out`` = dL/d(out)."""
    return call("attention_backward", device_of(q), q, k, v, mask, is_causal, scale, out, lse,
                grad_out)


# ------------------------------------------------------------------ helpers
def _device_kind(device):
    return "cpu" if device == "cpu" else "cuda"


def _compile_errors():
    """The exceptions that mean "this kernel cannot be compiled here"."""
    try:
        from numba.core.errors import NumbaError
    except ImportError:  # Numba itself is missing
        return (ImportError,)
    return (ImportError, NumbaError)


def _contiguous(array):
    return array if array.flags.c_contiguous else array_module(array).ascontiguousarray(array)


def _check_adam_arrays(lists):
    """Check lengths, shapes, dtypes and devices; return the one device (None if empty)."""
    params = lists["params"]
    for name, arrays in lists.items():
        if len(arrays) != len(params):
            raise ValueError(f"adam_step: got {len(params)} params but {len(arrays)} {name}; "
                             f"every list needs one array per parameter")
    device = None
    for i, p in enumerate(params):
        if p.dtype.kind != "f":
            raise TypeError(f"adam_step: params[{i}] has dtype {p.dtype}; Adam updates "
                            f"floating-point parameters only")
        for name, arrays in lists.items():
            a = arrays[i]
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError(f"adam_step: {name}[{i}] has shape {tuple(a.shape)} and dtype "
                                 f"{a.dtype}, but params[{i}] has shape {tuple(p.shape)} and "
                                 f"dtype {p.dtype}; they must match")
            if device is None:
                device = device_of(a)
            elif device_of(a) != device:
                raise ValueError(f"adam_step: {name}[{i}] is on {device_of(a)} but earlier "
                                 f"arrays are on {device}; one call updates one device")
    return device

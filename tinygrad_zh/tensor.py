"""Tensor: an array, the device it lives on, and the gradient that flows back to it.

A Tensor wraps a NumPy array (CPU) or a CuPy array (GPU) in ``.data``. Every
math method is one line that hands the work to an op in ``tinygrad_zh/ops``;
the op records itself in ``._ctx`` when gradients are needed (see autograd.py).

    >>> import tinygrad_zh as tg
    >>> x = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([[2., 4.],
            [6., 8.]])

Where this differs from PyTorch, on purpose:

- ``.data`` is the raw NumPy/CuPy array (as in micrograd), not a Tensor; use
  ``.detach()`` for a Tensor that shares it.
- ``.device`` is a string ('cpu' or 'cuda:0'), not a ``torch.device``.
- In-place ops (``add_``, ``mul_``, ``x[i] = v`` ...) are not recorded by
  autograd: on a tensor that requires grad they are allowed only under
  ``no_grad()`` (the optimizer's case), and with grad mode on, writing a value
  that requires grad into any tensor raises (write ``acc = acc + loss``, not
  ``acc += loss``) instead of silently dropping that value's gradient; PyTorch
  records such writes. Out-of-place ops cover
  the rest.
- ``view`` may copy where NumPy cannot reshape in place, instead of raising.
- Lenient where PyTorch raises: negative-step slices (``x[::-1]``, NumPy's
  rule), ``mean`` of an integer tensor (a float32 mean), ``@`` of mixed
  dtypes (promoted like ``+``).
- Where a backward cuts the gradient off (relu, abs, clamp, maximum, amax,
  where, pow at 0, std of constant data), it selects and gives exactly 0, also
  when the gradient arriving is inf or NaN; PyTorch multiplies by a 0/1 mask in
  abs and amax and gets NaN there. ``amax``/``amin`` treat a NaN as the
  extremum and send it the gradient (as PyTorch's ``max()`` does; its
  ``amax`` gives NaN to every element).
"""
import numpy as np

from . import autograd, backend
from .ops import activation, elementwise, index, matmul, movement, reduce

# ------------------------------------------------------------------ dtypes
float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)
_SUPPORTED_KINDS = "fiub"  # float, int, unsigned, bool


def as_dtype(dtype):
    """``float32``, ``np.float32``, ``'float32'`` -> the dtype; others raise."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"unknown dtype {dtype!r}") from e
    if dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"unsupported dtype {dtype}; expected a float, integer or bool dtype")
    return dtype


def _default_dtype(data):
    """PyTorch's rule: arrays keep their dtype; Python floats become float32."""
    if isinstance(data, (np.ndarray, np.generic)) or hasattr(data, "__cuda_array_interface__"):
        return as_dtype(data.dtype)
    kind = np.asarray(data).dtype.kind
    if kind == "f":
        return float32
    if kind in "iu":
        return int64
    if kind == "b":
        return bool_
    raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} "
                    f"(NumPy reads it as dtype {np.asarray(data).dtype})")


class Tensor:
    """A multi-dimensional array with autograd; see the module docstring."""
    __slots__ = ("data", "_requires_grad", "grad", "_ctx", "_version", "_hooks", "__weakref__")
    __array_ufunc__ = None    # so `ndarray + tensor` calls Tensor.__radd__
    __hash__ = object.__hash__  # tensors are dict keys by identity, as in PyTorch

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        dtype = _default_dtype(data) if dtype is None else as_dtype(dtype)
        if device is None:
            device = backend.device_of(data)
        self.data = backend.asarray(data, dtype, device)
        if self.data is data:
            self.data = data.copy()  # tensor() copies, like torch.tensor
        self._requires_grad = False
        self.grad = None
        self._ctx = None
        self._version = None
        self._hooks = None  # {"grad": [...], "post_accumulate": [...]} once a hook is registered
        if requires_grad:
            self.requires_grad_()

    @staticmethod
    def _make(data):
        """Wrap an array without checks or copies: the ops' fast path."""
        t = object.__new__(Tensor)
        t.data = data
        t._requires_grad = False
        t.grad = None
        t._ctx = None
        t._version = None
        t._hooks = None
        return t

    # ---------------------------------------------------------------- properties
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad=True):
        """Mark this tensor as a leaf whose gradient ``backward()`` should compute."""
        if requires_grad and self.dtype.kind != "f":
            raise RuntimeError(f"only floating point tensors can require gradients; this tensor "
                               f"has dtype {self.dtype} (cast with .float() first)")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be switched off on a leaf tensor; "
                               "use .detach() to cut a computed tensor from the graph")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def grad_fn(self):
        """The op that produced this tensor (None for a leaf)."""
        return self._ctx

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def size(self, dim=None):
        if dim is None:
            return self.shape
        return self.shape[movement.normalize_dim(dim, self.ndim, "size")]

    def dim(self):
        return self.ndim

    def numel(self):
        return self.data.size

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ---------------------------------------------------------------- conversion
    def numpy(self):
        """The data as a NumPy array (shared, not copied), like ``torch.Tensor.numpy``."""
        if self.requires_grad:
            raise RuntimeError("numpy(): this tensor requires grad; use tensor.detach().numpy()")
        if self.device != "cpu":
            raise TypeError(f"numpy(): the tensor is on {self.device}; call .cpu() first")
        return self.data

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item(): only a one-element tensor can become a Python number; "
                             f"this one has shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                               "use .any() or .all()")
        return bool(self.item())

    def to(self, *args, dtype=None, device=None):
        """``t.to('cuda')``, ``t.to(float64)``, ``t.to('cpu', float32)``; differentiable."""
        for arg in args:
            if isinstance(arg, str) and (arg == "cpu" or arg.startswith("cuda")):
                device = arg
            else:
                dtype = arg
        dtype = self.dtype if dtype is None else as_dtype(dtype)
        device = self.device if device is None else backend.parse_device(device)
        if dtype == self.dtype and device == self.device:
            return self
        if self.requires_grad and dtype.kind != "f":
            return self.detach().to(dtype, device)  # integer results carry no gradient
        return elementwise.Convert.apply(self, dtype=dtype, device=device)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device="cuda"):
        return self.to(device)

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)

    def bool(self):
        return self.to(bool_)

    def detach(self):
        """The same data, cut from the graph (shares memory and version counter)."""
        t = Tensor._make(self.data)
        t._version = self._version_counter()
        return t

    def clone(self):
        """A copy of the data that gradients flow through."""
        return elementwise.Clone.apply(self)

    def contiguous(self):
        if self.data.flags.c_contiguous:
            return self
        return self.clone()

    # ---------------------------------------------------------------- autograd
    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Compute the gradient of this tensor w.r.t. every leaf; add it to ``.grad``.

        ``retain_graph`` defaults to ``create_graph``, as in PyTorch.
        """
        autograd.backward(self, gradient, retain_graph, create_graph)

    def register_hook(self, hook):
        """Call ``hook(grad)`` whenever the gradient w.r.t. this tensor is computed.

        The hook sees the total gradient (all uses of the tensor summed) before it
        goes into ``.grad`` or on to earlier ops; if it returns a tensor, that
        replaces the gradient. Returns a handle with ``.remove()``.

            >>> import tinygrad_zh as tg
            >>> x = tg.ones(2, requires_grad=True)
            >>> handle = x.register_hook(lambda g: g * 10)
            >>> (x * 3).sum().backward()
            >>> x.grad
            tensor([30., 30.])
        """
        if not self._requires_grad:
            raise RuntimeError(f"register_hook: this tensor (shape {self.shape}) does not "
                               "require grad, so no gradient will ever reach a hook on it")
        return self._add_hook("grad", hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` after ``backward()`` has accumulated this leaf's ``.grad``.

        For leaves only, as in PyTorch: data-parallel training uses it to start
        averaging a parameter's gradient as soon as it is ready.

            >>> import tinygrad_zh as tg
            >>> w = tg.ones(2, requires_grad=True)
            >>> handle = w.register_post_accumulate_grad_hook(lambda t: print(t.grad))
            >>> (w * 2).sum().backward()
            tensor([2., 2.])
        """
        if self._ctx is not None or not self._requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor that "
                               "requires grad accumulates .grad, so only it can have this hook")
        return self._add_hook("post_accumulate", hook)

    def _add_hook(self, kind, hook):
        if not callable(hook):
            raise TypeError(f"register hook: expected a callable, got {type(hook).__name__}")
        if self._hooks is None:
            self._hooks = {"grad": [], "post_accumulate": []}
        self._hooks[kind].append(hook)
        return autograd.RemovableHandle(self._hooks[kind], hook)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor too (leaves always keep it)."""
        if self._ctx is not None:
            self._ctx.retains_grad = True

    # Version counters catch an in-place change to a tensor that backward still
    # needs. A view shares its counter with the tensor it looks into.
    def _version_counter(self):
        if self._version is None:
            self._version = [0]
        return self._version

    def _current_version(self):
        return 0 if self._version is None else self._version[0]

    # ---------------------------------------------------------------- in-place
    def _write(self, op, write, value=None):
        """Run ``write`` (which changes self.data in place) and bump the version.

        Autograd records no in-place op, so with grad mode on it refuses both a
        target that requires grad and a ``value`` that does: the first would
        corrupt the graph, the second would lose the value's gradient.
        """
        if autograd.is_grad_enabled():
            if self._requires_grad:
                raise RuntimeError(
                    f"{op}: in-place change of a tensor that requires grad (shape {self.shape}); "
                    "autograd does not record in-place ops. Wrap optimizer-style updates in "
                    "`with no_grad():`, or use the out-of-place op")
            if isinstance(value, Tensor) and value._requires_grad:
                raise RuntimeError(
                    f"{op}: the value written in place (shape {value.shape}) requires grad, but "
                    "autograd does not record in-place ops, so its gradient would be lost; "
                    "write the out-of-place form, e.g. `acc = acc + value` instead of "
                    "`acc += value`")
        try:
            write()
        except ValueError as e:
            raise ValueError(f"{op}: cannot write into this tensor of shape {self.shape} "
                             f"and dtype {self.dtype}: {e}") from e
        self._version_counter()[0] += 1
        return self

    def _operand_array(self, other):
        return other.data if isinstance(other, Tensor) else other

    def __setitem__(self, key, value):
        key = index.normalize_index(key)[0]
        array = self._operand_array(value)
        self._write("setitem", lambda: self.data.__setitem__(key, array), value)

    def copy_(self, src):
        array = self._operand_array(src)
        return self._write("copy_", lambda: self.data.__setitem__(Ellipsis, array), src)

    def fill_(self, value):
        return self._write("fill_", lambda: self.data.fill(value))

    def zero_(self):
        return self.fill_(0)

    def _update(self, op, ufunc, other, alpha=1):
        """self = ufunc(self, alpha * other), written into self's memory."""
        array = self._operand_array(other)
        if alpha != 1:
            array = array * alpha
        xp = backend.array_module(self.data)
        if xp is not np:
            ufunc = getattr(xp, ufunc.__name__)  # CuPy's own ufunc writes into a GPU array
        return self._write(op, lambda: ufunc(self.data, array, out=self.data, casting="same_kind"),
                           other)

    def add_(self, other, alpha=1):
        return self._update("add_", np.add, other, alpha)

    def sub_(self, other, alpha=1):
        return self._update("sub_", np.subtract, other, alpha)

    def mul_(self, other):
        return self._update("mul_", np.multiply, other)

    def div_(self, other):
        return self._update("div_", np.divide, other)

    # `w -= lr * w.grad` must change w in place (it is a parameter), as in PyTorch;
    # without these Python would rebind w to a new tensor that needs no grad.
    __iadd__, __isub__, __imul__, __itruediv__ = add_, sub_, mul_, div_

    # ---------------------------------------------------------------- arithmetic
    def _lift(self, other):
        """Turn the other operand of a binary op into a Tensor on our device.

        A Python or NumPy scalar is "weak", as in PyTorch: ``x * 2.0`` keeps a
        float32 ``x`` float32 instead of promoting it to float64, and an integer
        wraps around into an integer dtype (uint8 + 300 is uint8 + 44).
        """
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (float, int, np.number, np.bool_)):
            dtype = self.dtype
            if dtype.kind != "f" and isinstance(other, (float, np.floating)):
                dtype = float32
            elif dtype.kind == "b" and not isinstance(other, (bool, np.bool_)):
                dtype = int64
            xp = backend.array_module(self.data)
            try:
                return Tensor._make(xp.asarray(other, dtype=dtype))
            except OverflowError:  # NumPy refuses to wrap a Python int; PyTorch wraps
                return Tensor._make(xp.asarray(other).astype(dtype))
        return Tensor(other, device=self.device)

    def _binary(self, op, other, reverse=False):
        a, b = self, other if other.__class__ is Tensor else self._lift(other)
        if a.data.dtype is not b.data.dtype:
            a, b = elementwise.promote(a, b)
        return op.apply(b, a) if reverse else op.apply(a, b)

    def __add__(self, other):
        return self._binary(elementwise.Add, other)

    def __radd__(self, other):
        return self._binary(elementwise.Add, other, reverse=True)

    def __sub__(self, other):
        return self._binary(elementwise.Sub, other)

    def __rsub__(self, other):
        return self._binary(elementwise.Sub, other, reverse=True)

    def __mul__(self, other):
        return self._binary(elementwise.Mul, other)

    def __rmul__(self, other):
        return self._binary(elementwise.Mul, other, reverse=True)

    def __truediv__(self, other):
        return self._floating()._binary(elementwise.Div, other)

    def __rtruediv__(self, other):
        return self._floating()._binary(elementwise.Div, other, reverse=True)

    def _floating(self):
        """Ops with fractional results (``/``, exp, softmax...) turn integers into
        float32, as in PyTorch; NumPy would give float64."""
        return self if self.dtype.kind == "f" else self.to(float32)

    def __pow__(self, exponent):
        return self._binary(elementwise.Pow, exponent)

    def __rpow__(self, base):
        return self._binary(elementwise.Pow, base, reverse=True)

    def __neg__(self):
        return elementwise.Neg.apply(self)

    def __matmul__(self, other):
        return matmul.matmul(self, self._lift(other))

    def __rmatmul__(self, other):
        return matmul.matmul(self._lift(other), self)

    add, sub, mul, div, pow, matmul = __add__, __sub__, __mul__, __truediv__, __pow__, __matmul__

    def exp(self):
        return elementwise.Exp.apply(self._floating())

    def log(self):
        return elementwise.Log.apply(self._floating())

    def sqrt(self):
        return elementwise.Sqrt.apply(self._floating())

    def abs(self):
        return elementwise.Abs.apply(self)

    def erf(self):
        return elementwise.Erf.apply(self._floating())

    def maximum(self, other):
        return elementwise.maximum(self, other)

    def minimum(self, other):
        return elementwise.minimum(self, other)

    def clamp(self, min=None, max=None):
        return elementwise.clamp(self, min, max)

    clip = clamp

    def where(self, condition, other):
        """``x.where(cond, y)`` is ``where(cond, x, y)``, as in PyTorch."""
        return elementwise.where(condition, self, other)

    # ---------------------------------------------------------------- comparisons, bits (no grad)
    def _compare(self, name, ufunc, other):
        try:
            return Tensor._make(backend.ensure_array(ufunc(self.data, self._operand_array(other))))
        except (ValueError, TypeError) as e:
            other_desc = (f"{other.shape} {other.dtype}" if isinstance(other, Tensor)
                          else type(other).__name__)
            raise type(e)(f"{name}: cannot apply to {self.shape} {self.dtype} and "
                          f"{other_desc}: {e}") from e

    def __eq__(self, other):
        return self._compare("eq", np.equal, other)

    def __ne__(self, other):
        return self._compare("ne", np.not_equal, other)

    def __lt__(self, other):
        return self._compare("lt", np.less, other)

    def __le__(self, other):
        return self._compare("le", np.less_equal, other)

    def __gt__(self, other):
        return self._compare("gt", np.greater, other)

    def __ge__(self, other):
        return self._compare("ge", np.greater_equal, other)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def __invert__(self):
        return Tensor._make(~self.data)

    # Bitwise on integers, logical on bools (the same thing for one bit), as in PyTorch.
    def __and__(self, other):
        return self._compare("bitwise_and", np.bitwise_and, other)

    def __or__(self, other):
        return self._compare("bitwise_or", np.bitwise_or, other)

    def __xor__(self, other):
        return self._compare("bitwise_xor", np.bitwise_xor, other)

    def isfinite(self):
        return Tensor._make(backend.array_module(self.data).isfinite(self.data))

    def sign(self):
        return Tensor._make(backend.array_module(self.data).sign(self.data))

    def any(self):
        return Tensor._make(backend.ensure_array(self.data.any()))

    def all(self):
        return Tensor._make(backend.ensure_array(self.data.all()))

    # ---------------------------------------------------------------- reductions
    def sum(self, dim=None, keepdim=False):
        dim = movement.normalize_dims(dim, self.ndim, "sum")
        return reduce.Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        return reduce.mean(self, dim, keepdim)

    def var(self, dim=None, correction=1, keepdim=False):
        return reduce.var(self, dim, correction, keepdim)

    def std(self, dim=None, correction=1, keepdim=False):
        return reduce.std(self, dim, correction, keepdim)

    def amax(self, dim=None, keepdim=False):
        dim = movement.normalize_dims(dim, self.ndim, "amax")
        return reduce.Max.apply(self, dim=dim, keepdim=keepdim)

    def amin(self, dim=None, keepdim=False):
        dim = movement.normalize_dims(dim, self.ndim, "amin")
        return reduce.Min.apply(self, dim=dim, keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        """``x.max()`` -> tensor; ``x.max(dim)`` -> (values, indices), as in PyTorch.

        With ``dim`` the gradient goes to the returned index only; ``amax``
        splits it between tied maxima instead. Both match PyTorch.
        """
        return self.amax() if dim is None else reduce.values_at(self, "argmax", dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return self.amin() if dim is None else reduce.values_at(self, "argmin", dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return reduce.arg_reduce(self, "argmax", dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return reduce.arg_reduce(self, "argmin", dim, keepdim)

    def logsumexp(self, dim, keepdim=False):
        return reduce.logsumexp(self._floating(), dim, keepdim)

    # ---------------------------------------------------------------- movement
    def reshape(self, *shape):
        return movement.Reshape.apply(self, shape=movement.as_shape(shape))

    view = reshape

    def view_as(self, other):
        return self.reshape(other.shape)

    def permute(self, *dims):
        dims = movement.as_shape(dims)
        return movement.Permute.apply(self, dims=movement.normalize_permutation(dims, self.ndim))

    def transpose(self, dim0, dim1):
        return movement.transpose(self, dim0, dim1)

    def expand(self, *sizes):
        return movement.Expand.apply(self, shape=movement.expanded_shape(self.shape, sizes))

    def expand_as(self, other):
        return self.expand(other.shape)

    def squeeze(self, dim=None):
        return movement.squeeze(self, dim)

    def unsqueeze(self, dim):
        return movement.unsqueeze(self, dim)

    def flatten(self, start_dim=0, end_dim=-1):
        return movement.flatten(self, start_dim, end_dim)

    def split(self, split_size_or_sections, dim=0):
        return movement.split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return movement.chunk(self, chunks, dim)

    def __getitem__(self, key):
        return index.getitem(self, key)

    def gather(self, dim, index_tensor):
        return index.gather(self, dim, index_tensor)

    # ---------------------------------------------------------------- activations
    def relu(self):
        return activation.Relu.apply(self)

    def sigmoid(self):
        return activation.Sigmoid.apply(self._floating())

    def tanh(self):
        return activation.Tanh.apply(self._floating())

    def softmax(self, dim):
        dim = movement.normalize_dim(dim, self.ndim, "softmax")
        return activation.Softmax.apply(self._floating(), dim=dim)

    def log_softmax(self, dim):
        dim = movement.normalize_dim(dim, self.ndim, "log_softmax")
        return activation.LogSoftmax.apply(self._floating(), dim=dim)

    # ---------------------------------------------------------------- printing
    def __repr__(self):
        data = self.data if self.device == "cpu" else self.data.get()
        body = np.array2string(data, separator=", ", prefix="tensor(", precision=4,
                               threshold=1000, edgeitems=3)
        extras = []
        # Like PyTorch: the dtype is shown when it cannot be read off the numbers.
        readable = (float32, int64, bool_) if self.numel() else (float32,)
        if self.dtype not in readable:
            extras.append(f"dtype={self.dtype}")
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self._ctx is not None:
            extras.append(f"grad_fn={self._ctx!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        if self.numel() == 0:
            extras.insert(0, f"size={self.shape}")
        return "tensor(" + ", ".join([body] + extras) + ")"

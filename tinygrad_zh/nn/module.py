"""Module and Parameter: how a network keeps track of its weights.

A :class:`Module` is an object whose attributes are its parts. Assigning a
:class:`Parameter` registers a weight, assigning a Module registers a sub-layer,
``register_buffer`` registers a tensor that is state but not trained (BatchNorm's
running mean). Everything else walks those three ordered dicts: parameters(),
state_dict(), to(), train()/eval(), the printed tree.

    >>> import tinygrad_zh as tg
    >>> from tinygrad_zh import nn
    >>> class TwoLayers(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = nn.Linear(2, 3)
    ...         self.out = nn.Linear(3, 1)
    ...     def forward(self, x):
    ...         return self.out(self.hidden(x).relu())
    >>> model = TwoLayers()
    >>> [name for name, _ in model.named_parameters()]
    ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    >>> model(tg.randn(5, 2)).shape
    (5, 1)
"""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor, as_dtype


class Parameter(Tensor):
    """A Tensor that a Module registers as a weight: requires grad by default.

    It shares memory with the data it is made from (as ``torch.nn.Parameter``),
    and arithmetic on it gives ordinary Tensors.

        >>> import tinygrad_zh as tg
        >>> nn_parameter = Parameter(tg.zeros(2))
        >>> nn_parameter
        Parameter containing:
        tensor([0., 0.], requires_grad=True)
    """
    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.zeros(0, np.float32)
        array = data.data if isinstance(data, Tensor) else backend.ensure_array(
            np.asarray(data, dtype=np.float32) if not hasattr(data, "dtype") else data)
        # Every slot starts as Tensor._make sets it (so a slot the core adds later
        # is initialised too); then the data and its version counter are shared.
        fresh = Tensor._make(array)
        for slot in Tensor.__slots__:
            if slot != "__weakref__":
                object.__setattr__(self, slot, getattr(fresh, slot))
        if isinstance(data, Tensor):
            self._version = data._version_counter()
        self.requires_grad_(requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model; subclasses write ``forward``."""

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dicts to exist.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward() method")

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks):  # the common, fast case
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            changed = hook(self, args, out)
            if changed is not None:
                out = changed
        return out

    # ---------------------------------------------------------------- registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning attribute {name!r}")
        if isinstance(value, Parameter):
            self._forget(name, keep=self._parameters)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=self._modules)
            self._modules[name] = value
        elif name in self._buffers_seen():
            self._forget(name, keep=self._buffers)
            self._buffers[name] = value
        elif name in self._parameters and value is not None:
            raise TypeError(f"{type(self).__name__}: cannot assign a {type(value).__name__} as "
                            f"parameter {name!r} (nn.Parameter or None expected); wrap it: "
                            f"nn.Parameter(value)")
        elif value is None and name in self._parameters_seen():
            self._forget(name, keep=self._parameters)
            self._parameters[name] = None  # e.g. bias=False keeps the name, as PyTorch
        else:
            self._forget(name)
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Called only when normal lookup fails: look in the registries.
        for registry in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(registry)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name, keep=None):
        """Remove ``name`` from whichever registry holds it (except ``keep``, where
        a reassignment keeps its place in the order); True if one did. A name
        about to be registered also leaves the plain attributes, which would
        otherwise hide the registered value."""
        if keep is not None:
            self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep and name in registry:
                del registry[name]
                return True
        return False

    # A name stays a buffer (or parameter slot) when it is reassigned, as in
    # PyTorch: `self.running_mean = new_tensor` keeps it registered.
    def _buffers_seen(self):
        return self.__dict__.setdefault("_buffer_names", set())

    def _parameters_seen(self):
        return self.__dict__.setdefault("_parameter_names", set())

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter or None) under ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, "
                            f"got {type(param).__name__}")
        self._forget(name)
        self.__dict__.pop(name, None)
        self._parameters_seen().add(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register state that is not trained (running statistics, masks).

        Persistent buffers are saved in ``state_dict``; others are not.
        """
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, "
                            f"got {type(tensor).__name__}")
        self._forget(name)
        self.__dict__.pop(name, None)
        self._buffers_seen().add(name)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, got {type(module).__name__}")
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    register_module = add_module

    # ---------------------------------------------------------------- walking the tree
    def named_modules(self, prefix="", memo=None):
        """(name, module) for this module and every descendant, each once."""
        memo = set() if memo is None else memo
        if self in memo:
            return
        memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and module not in seen:
                seen.add(module)
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry, prefix, recurse, remove_duplicate):
        """(name, tensor) from one registry of every module, shared tensors once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, t in getattr(module, registry).items():
                if t is None or (remove_duplicate and t in seen):
                    continue
                seen.add(t)  # weight tying: the same Parameter under two names is listed once
                yield (f"{module_prefix}.{name}" if module_prefix else name), t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---------------------------------------------------------------- modes
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget the gradients: ``.grad = None`` (cheaper), or fill them with zeros."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
                continue
            if p.grad.grad_fn is not None:   # from backward(create_graph=True)
                p.grad = p.grad.detach()
            with no_grad():
                p.grad.zero_()

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively), then on this module."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def to(self, *args, dtype=None, device=None):
        """Move/cast every parameter and buffer **in place**: the Parameter objects
        stay the same (an optimizer built before still holds them); only their
        ``.data`` (and ``.grad``) change. Like PyTorch, dtype applies to floating
        tensors only."""
        for arg in args:
            if isinstance(arg, str):
                device = arg
            else:
                dtype = arg
        dtype = None if dtype is None else as_dtype(dtype)
        device = None if device is None else backend.parse_device(device)
        for module in self.modules():
            for registry in (module._parameters, module._buffers):
                for t in registry.values():
                    if t is not None:
                        _move_in_place(t, dtype, device)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device="cuda"):
        return self.to(device)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ---------------------------------------------------------------- hooks
    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` runs before forward; it may return new args."""
        return _HookHandle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` runs after forward; it may return a new output."""
        return _HookHandle(self._forward_hooks, hook)

    # ---------------------------------------------------------------- state dict
    def state_dict(self, *, prefix="", keep_vars=False):
        """Ordered name -> tensor: every parameter and persistent buffer, each
        module's own first, then its children's (PyTorch's order).

        The tensors are detached but share memory with the model (as PyTorch):
        copy them if you want a snapshot that later training does not change.
        ``keep_vars=True`` returns the Parameter objects themselves.
        """
        result = OrderedDict()
        for module_prefix, module in self.named_modules(prefix.rstrip(".")):
            dot = f"{module_prefix}." if module_prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    result[dot + name] = p if keep_vars else p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    result[dot + name] = b if keep_vars else b.detach()
        return result

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the existing tensors, in place (identity is kept).

        With ``strict=True`` every key must match; the error lists every
        missing, unexpected and mis-shaped key at once (with both shapes).
        Returns ``(missing_keys, unexpected_keys)`` as PyTorch does.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = [(k, tuple(own[k].shape), tuple(_array(state_dict[k]).shape))
                      for k in own if k in state_dict
                      and tuple(own[k].shape) != tuple(_array(state_dict[k]).shape)]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:  # a wrong shape is an error even with strict=False, as in PyTorch
            problems.append("shape mismatch: " + ", ".join(
                f"{k} (model {m}, checkpoint {c})" for k, m, c in mismatched))
        if problems:
            raise RuntimeError(f"load_state_dict: cannot load into {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    value = _array(state_dict[key])
                    if backend.device_of(value) != target.device:
                        value = backend.to_device(value, target.device)
                    target.copy_(value)
        return _LoadResult(missing, unexpected)

    # ---------------------------------------------------------------- printing
    def extra_repr(self):
        """The layer's arguments, shown in its printed form; layers override this."""
        return ""

    def __repr__(self):
        total = sum(p.numel() for p in self.parameters())
        if total == 0:  # ReLU(), Dropout(p=0.5): nothing worth counting
            return self._tree_repr()
        return f"{self._tree_repr()}\n(total parameters: {total:,})"

    def _tree_repr(self):
        lines = [line for line in self.extra_repr().split("\n") if line]
        for name, module in self._modules.items():
            child = "None" if module is None else module._tree_repr()
            lines.append(f"({name}): " + child.replace("\n", "\n  "))
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))


class _LoadResult(tuple):
    """``(missing_keys, unexpected_keys)``, also readable by name."""

    def __new__(cls, missing, unexpected):
        return super().__new__(cls, (missing, unexpected))

    @property
    def missing_keys(self):
        return self[0]

    @property
    def unexpected_keys(self):
        return self[1]


class _HookHandle:
    """Returned by register_*_hook; ``handle.remove()`` unregisters the hook."""
    _next_id = 0

    def __init__(self, hooks, hook):
        self.hooks, self.id = hooks, _HookHandle._next_id
        _HookHandle._next_id += 1
        hooks[self.id] = hook

    def remove(self):
        self.hooks.pop(self.id, None)


def _array(value):
    """A state-dict value (Tensor, NumPy or CuPy array, list) as its raw array."""
    if isinstance(value, Tensor):
        return value.data
    return value if backend.device_of(value) != "cpu" else np.asarray(value)


def _move_in_place(t, dtype, device):
    """Change ``t.data`` (and its grad) to ``dtype``/``device``, keeping the object."""
    new_dtype = dtype if dtype is not None and t.dtype.kind == "f" else t.dtype
    new_device = device if device is not None else t.device
    if new_dtype == t.dtype and new_device == t.device:
        return
    t.data = backend.to_device(t.data, new_device).astype(new_dtype, copy=False)
    if t.grad is not None:
        t.grad = t.grad.detach().to(new_dtype, new_device)

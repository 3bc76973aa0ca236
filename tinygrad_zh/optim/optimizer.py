"""Optimizer: the one mechanism every optimizer shares.

An optimizer holds *parameter groups*: lists of tensors, each list with its own
hyperparameters (a smaller learning rate for a pretrained backbone, no weight
decay for biases ...). ``step()`` walks the groups, skips parameters whose
``.grad`` is None, creates each parameter's state on first use, and hands the
raw arrays to the subclass. A subclass writes only its update rule, on raw
NumPy/CuPy arrays, in place::

    class SGD(Optimizer):
        def _update(self, param, grad, state, group):   # arrays, a dict, a dict
            param -= group["lr"] * grad

Parameters are keyed by identity (a Tensor hashes by ``id``), so the same
tensor may not sit in two groups. ``state_dict()`` uses PyTorch's layout:
parameters become their index counted across all groups, so a checkpoint
does not depend on object identity::

    {"state": {0: {"step": 3, "momentum_buffer": tensor([...])}, ...},
     "param_groups": [{"lr": 0.1, ..., "params": [0, 1]}, ...]}

    >>> import tinygrad_zh as tg
    >>> w = tg.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = tg.optim.SGD([w], lr=0.1)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w
    tensor([0.8, 1.6], requires_grad=True)
    >>> opt.zero_grad()
    >>> w.grad is None
    True

Extra keys in a group (a ``"name"``, say) are kept, as in PyTorch.

Where this differs from PyTorch: ``opt.state[p]`` holds raw NumPy/CuPy arrays
(what the update rules and kernels write into), and ``state_dict()`` wraps them
in tensors; the ``step`` count is a Python int, not a tensor; the ``foreach`` /
``fused`` / ``capturable`` / ``differentiable`` flags do not exist (there is
one implementation per optimizer, and updates are never differentiated).
"""
from .. import autograd, backend
from ..tensor import Tensor


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``step``, state dicts.

    ``params`` is an iterable of tensors, or of dicts (parameter groups) each
    holding ``"params"`` and any hyperparameters that override ``defaults``.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}          # parameter tensor -> {"step": int, name: raw array, ...}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"{self._name}: params must be an iterable of tensors or dicts, "
                            "got a single Tensor; wrap it in a list: [w]")
        groups = self._ordered(params)
        if not groups:
            raise ValueError(f"{self._name} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group (a dict with ``"params"``), e.g. layers unfrozen mid-training."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}.add_param_group: expected a dict with a 'params' key, "
                            f"got {type(param_group).__name__}")
        params = param_group.get("params")
        if params is None:
            raise ValueError(f"{self._name}.add_param_group: the group has no 'params' key")
        params = [params] if isinstance(params, Tensor) else self._ordered(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{self._name} can only optimize Tensors, but parameter {i} of "
                                f"the group is a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{self._name} can't optimize a non-leaf Tensor (parameter {i}, "
                                 f"shape {p.shape}, made by {p.grad_fn!r}); use a leaf tensor "
                                 "with requires_grad=True")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{self._name}: a parameter appears twice in one group")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{self._name}: some parameters appear in more than one parameter "
                             "group")
        group = {**self.defaults, **param_group, "params": params}
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Forget the gradients: set ``.grad`` to None (default) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; return ``closure()``'s loss if given.

        ``closure`` re-evaluates the model and returns the loss (with grad
        mode on), for optimizers that need it; the update itself runs under
        ``no_grad``.
        """
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        with autograd.no_grad():
            for group in self.param_groups:
                params, grads, states = [], [], []
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    self._check_grad(p)
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = self._init_state(p.data, group)
                    state["step"] += 1
                    params.append(p.data)
                    grads.append(p.grad.data)
                    states.append(state)
                    p._version_counter()[0] += 1  # the parameter changes in place
                if params:
                    self._update_group(group, params, grads, states)
        return loss

    # ------------------------------------------------------------ state dicts
    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [...]}``, as in PyTorch.

        The state's arrays are shared with the optimizer, not copied (as in
        PyTorch): save the dict, or copy it, before stepping again.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: {k: Tensor._make(v) if _is_array(v) else v for k, v in s.items()}
                 for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load hyperparameters and state saved by ``state_dict()`` (copies the arrays)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{self._name}.load_state_dict: the saved state has "
                             f"{len(saved_groups)} parameter group(s), this optimizer has "
                             f"{len(self.param_groups)}")
        params = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{self._name}.load_state_dict: parameter group {i} has "
                                 f"{len(saved['params'])} parameter(s) in the saved state but "
                                 f"{len(group['params'])} here")
            params.update(zip(saved["params"], group["params"]))
        new_state = {}
        for key, saved in state_dict["state"].items():
            p = params.get(int(key))
            if p is None:
                raise ValueError(f"{self._name}.load_state_dict: the saved state has an entry "
                                 f"for parameter {key}, which no parameter group lists")
            new_state[p] = {name: _state_array(value, p, f"{self._name}.load_state_dict: "
                                                         f"state[{key}][{name!r}]")
                            for name, value in saved.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self):
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines + [")"])

    # ------------------------------------------------------------ for subclasses
    def _init_state(self, param, group):
        """The state of a parameter before its first update (subclasses add buffers)."""
        return {"step": 0}

    def _update_group(self, group, params, grads, states):
        """Update one group's parameters; by default one ``_update`` per parameter.

        ``step`` has already been incremented. Subclasses that update a whole
        group at once (Adam, through a fused kernel) override this instead.
        """
        for param, grad, state in zip(params, grads, states):
            self._update(param, grad, state, group)

    def _update(self, param, grad, state, group):
        raise NotImplementedError(f"{self._name} must define _update or _update_group")

    def _check_hyperparameters(self, group):
        """Raise ValueError for an invalid value; subclasses list their rules."""
        if group.get("lr", 0) < 0:
            raise ValueError(f"{self._name}: invalid learning rate {group['lr']} (must be >= 0)")

    @property
    def _name(self):
        return type(self).__name__

    def _ordered(self, params):
        """A list of the parameters or groups, refusing unordered sets."""
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{self._name}: parameters must be an ordered collection (a list), "
                            "not a set: a set's order changes between runs, which breaks "
                            "state_dict indices")
        return list(params)

    def _check_grad(self, p):
        g = p.grad
        if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
            raise RuntimeError(f"{self._name}.step: a parameter of shape {p.shape}, dtype "
                               f"{p.dtype} on {p.device} has a gradient of shape {g.shape}, "
                               f"dtype {g.dtype} on {g.device}; they must match")


# ------------------------------------------------------------------ helpers
def weight_decayed_grad(grad, param, weight_decay, maximize):
    """``(-grad if maximize else grad) + weight_decay * param``: L2 decay as PyTorch adds it.

    Returns ``grad`` itself when there is nothing to change (the caller must
    not write into it: it is the user's ``.grad``), else a fresh array.
    """
    if weight_decay != 0:
        decayed = param * weight_decay
        if maximize:
            decayed -= grad
        else:
            decayed += grad
        return decayed
    return -grad if maximize else grad


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Tensor)


def _state_array(value, param, where):
    """A saved state value as this optimizer keeps it: numbers stay, tensors become
    fresh arrays with the parameter's dtype and device."""
    if isinstance(value, Tensor):
        value = value.data
    if not _is_array(value):
        return value
    if value.shape != param.shape:
        raise ValueError(f"{where} has shape {value.shape}, but the parameter has shape "
                         f"{param.shape}")
    dtype = param.dtype if value.dtype.kind == "f" else value.dtype
    return backend.asarray(backend.to_device(value, param.device), dtype, param.device).copy()

"""Reverse-mode automatic differentiation, all of it in one file.

The whole idea, in four steps:

1. Every differentiable op is a :class:`Function` with two methods side by side:
   ``forward`` computes on raw arrays, ``backward`` turns the gradient of the
   output into gradients of the inputs, written with *Tensor* ops.
2. When an input requires grad, ``Function.apply`` records the op: the output
   tensor's ``_ctx`` points at the Function object, which remembers its inputs.
   Those links are the graph.
3. ``backward()`` sorts that graph so every node comes after everything that
   uses it (without recursion, so a chain of 100,000 ops is fine) and walks it,
   calling each ``backward`` and adding up gradients of tensors used twice.
4. Because ``backward`` itself is made of Tensor ops, running it with grad mode
   on (``create_graph=True``) records a graph of the gradient: differentiate it
   again for second derivatives. With grad mode off it records nothing.

Broadcasting's gradient rule — sum the gradient over the broadcast dims — lives
in exactly one place, :func:`sum_to_shape`, called by the walk for every input.

    >>> import tinygrad_zh as tg
    >>> x = tg.tensor(3.0, requires_grad=True)
    >>> y = x * x * x
    >>> (dy,) = tg.autograd.grad(y, [x], create_graph=True)   # 3x^2 = 27
    >>> dy.item(), tg.autograd.grad(dy, [x])[0].item()        # 6x = 18
    (27.0, 18.0)

The minimal walk (micrograd's shape) is all there is to step 3::

    def minimal_backward(loss):
        order, seen = [], set()
        def visit(t):                        # topological order: inputs first
            if t not in seen:
                seen.add(t)
                for parent in (t._ctx.inputs if t._ctx else ()):
                    visit(parent)
                order.append(t)
        visit(loss)
        grads = {loss: ones_like(loss)}
        for t in reversed(order):            # the loss first, the leaves last
            if t._ctx is None:
                t.grad = grads[t]            # a leaf: keep its gradient
                continue
            for parent, g in zip(t._ctx.inputs, t._ctx.backward(grads[t])):
                grads[parent] = grads.get(parent, 0) + g   # used twice: add

The real walk below is that loop plus what real code needs:

- no recursion (a chain of 100,000 ops would overflow Python's stack);
- freeing each node after its backward (``retain_graph=False``), so the
  activations it saved go away as early as possible;
- version checks: a saved tensor changed in place since the forward is an
  error, not a silently wrong gradient;
- anomaly mode (:class:`detect_anomaly`), which names the op that made a NaN;
- ``create_graph``: grad mode stays on inside the walk so the gradient has a
  graph of its own (second derivatives);
- hooks (``register_hook``), ``retain_grad`` and ``grad()``, which walks only
  the part of the graph between its outputs and inputs.
"""
import functools
import traceback
import weakref

import numpy as np

from . import backend

# Grad mode and anomaly mode are process-wide switches (like PyTorch's, but not
# per-thread: data-parallel training here uses processes, not threads).
_grad_enabled = True
_anomaly_enabled = False


# ------------------------------------------------------------------ grad mode
class _GradMode:
    """Base of the grad-mode context managers; also usable as decorators."""
    mode = True

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self._fresh():
                return func(*args, **kwargs)
        return wrapper

    def _fresh(self):
        """A new manager of the same kind, one per call of a decorated function."""
        return self.__class__()


class no_grad(_GradMode):
    """Record no graph inside: for evaluation and optimizer updates.

        >>> import tinygrad_zh as tg
        >>> w = tg.ones(2, requires_grad=True)
        >>> with tg.no_grad():
        ...     y = w * 2
        >>> y.requires_grad
        False
    """
    mode = False


class enable_grad(_GradMode):
    """Record the graph again inside a ``no_grad`` block."""
    mode = True


class set_grad_enabled(_GradMode):
    """Switch grad mode by a flag: ``with set_grad_enabled(is_training): ...``.

    As in PyTorch it also works as a plain call, ``set_grad_enabled(False)``,
    which switches at once (the ``with`` form switches back at the end), and
    as a decorator, ``@set_grad_enabled(False)``.

        >>> import tinygrad_zh as tg
        >>> _ = tg.set_grad_enabled(False)
        >>> tg.is_grad_enabled()
        False
        >>> _ = tg.set_grad_enabled(True)
    """

    def __init__(self, mode):
        global _grad_enabled
        self.mode = bool(mode)
        self._previous, _grad_enabled = _grad_enabled, self.mode

    def __enter__(self):
        pass  # already switched by __init__

    def __call__(self, func):
        global _grad_enabled
        _grad_enabled = self._previous  # decorating switches nothing; calling does
        return super().__call__(func)

    def _fresh(self):
        return set_grad_enabled(self.mode)


def is_grad_enabled():
    return _grad_enabled


class detect_anomaly:
    """Stop at the first op whose forward or backward produced NaN or inf.

    Inside this block every op checks its output (slow: use it for debugging).
    The error names the op and, for a backward, the line that created the op.

        >>> import tinygrad_zh as tg
        >>> x = tg.tensor([0.0], requires_grad=True)
        >>> with tg.autograd.detect_anomaly():
        ...     x.log()
        Traceback (most recent call last):
        FloatingPointError: log: forward produced non-finite values (-inf) from finite inputs ...
    """

    def __enter__(self):
        global _anomaly_enabled
        self._previous = _anomaly_enabled
        _anomaly_enabled = True

    def __exit__(self, *exc):
        global _anomaly_enabled
        _anomaly_enabled = self._previous


# ------------------------------------------------------------------ Function
class Function:
    """One differentiable op: ``forward`` on arrays, ``backward`` on Tensors.

    A subclass writes::

        class Mul(Function):
            save_inputs = True                   # backward reads the inputs
            def forward(self, a, b):             # raw NumPy/CuPy arrays
                return a * b
            def backward(self, grad):            # Tensor in, Tensor per input out
                a, b = self.saved_inputs
                return grad * b, grad * a

    ``backward`` may return a gradient with the broadcast shape of the output:
    the walk sums it back to each input's shape. It returns ``None`` for an
    input that gets no gradient.

    The instance is the graph node. ``save_inputs`` / ``save_output`` declare
    what backward reads, so that an in-place change to exactly those tensors
    is caught (their version counters are compared) while other in-place
    changes stay allowed, as in PyTorch.
    """
    save_inputs = False
    save_output = False
    is_view = False          # output shares memory with input 0 (reshape, slice...)
    inputs = None            # the input tensors, set when the op is recorded
    retains_grad = False     # set by the output's retain_grad()
    edges = ()               # what _free() keeps of the inputs
    created_at = None        # stack summary, recorded in anomaly mode
    watched = ()             # (tensor, version) pairs from remember_versions

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run forward on the inputs' arrays; record the node if grad is needed.

        This runs for every op, so it is kept lean: per-op Python overhead is
        most of a small model's training step.
        """
        ctx = cls()
        try:
            data = ctx.forward(*[t.data for t in inputs], **params)
        except (ValueError, TypeError, IndexError) as e:
            raise op_error(cls, inputs, e) from e
        if data.__class__ is not np.ndarray:
            data = backend.ensure_array(data)
        out = _tensor.Tensor._make(data)
        if ctx.is_view:  # shares memory with input 0, so shares its version counter
            out._version = inputs[0]._version_counter()
        if _grad_enabled:
            for t in inputs:
                if t._requires_grad:
                    ctx._record(inputs, out)
                    break
        if _anomaly_enabled:
            _check_forward(cls, inputs, data)
            ctx.created_at = traceback.format_stack()[:-2]
        return out

    def _record(self, inputs, out):
        """Link ``out`` to this node and remember what backward will read."""
        out._requires_grad = True
        out._ctx = self
        self.inputs = inputs
        if self.save_inputs:
            self.versions = [t._current_version() for t in inputs]
        if self.save_output:
            # A weak reference: the output holds this node, so a strong one would
            # make a cycle. The backward walk carries each output along with its
            # gradient, so the output is alive whenever its node's backward runs.
            self._output = weakref.ref(out)
            self.output_version = out._current_version()

    # -- what backward reads; these raise if an in-place op changed it since
    @property
    def saved_inputs(self):
        for t, version in zip(self.inputs, self.versions):
            if t._current_version() != version:  # (inline: this runs for every node)
                self._version_error(t, version, "an input")
        return self.inputs

    def remember_versions(self, tensors):
        """For tensors backward reads that are not inputs (integer indices, bool
        masks): remember their versions now, for ``check_versions`` in backward."""
        if tensors:
            self.watched = [(t, t._current_version()) for t in tensors]

    def check_versions(self):
        for t, version in self.watched:
            if t._current_version() != version:
                self._version_error(t, version, f"an index tensor ({t.dtype})")

    def _version_error(self, t, version, what):
        raise RuntimeError(
            f"{self.name}: {what} of shape {t.shape} needed for the gradient was "
            f"modified by an in-place operation (version {version} -> "
            f"{t._current_version()}); use an out-of-place op instead")

    @property
    def saved_output(self):
        out = self._output()
        if out is None:
            raise RuntimeError(f"{self.name}: its output was freed; backward must be run through "
                               "tensor.backward() or autograd.grad()")
        if out._current_version() != self.output_version:
            raise RuntimeError(
                f"{self.name}: its output of shape {out.shape}, needed for the gradient, was "
                f"modified by an in-place operation; use an out-of-place op instead")
        return out

    @property
    def name(self):
        return self.__class__.__name__.lower()

    def __repr__(self):
        return f"<{self.__class__.__name__}Backward>"

    def _free(self):
        """Drop everything the node holds, so the arrays it saved can be freed,
        except its edges: weak references to its inputs and their nodes. A later
        ``grad()`` can still tell whether it would need this node (and then says
        the graph was freed) or not (and then does not care)."""
        edges = [(weakref.ref(t), t._ctx) for t in self.inputs]
        self.__dict__.clear()  # inputs falls back to the class default, None
        self.edges = edges

    def _input_edges(self):
        """(input tensor or None if it is gone, its node) for each input."""
        if self.inputs is not None:
            return [(t, t._ctx) for t in self.inputs]
        return [(ref(), node) for ref, node in self.edges]


def op_error(cls, inputs, error):
    """The error for a failed forward, naming the op and every input's shape,
    dtype and device. Built only after the forward failed, so it costs nothing
    per op; it keeps NumPy's exception type (ValueError for shapes...)."""
    name = cls.__name__.lower()
    devices = sorted({t.device for t in inputs})
    if len(devices) > 1:
        return RuntimeError(f"{name}: expected all inputs on one device, but they are on "
                            f"{' and '.join(devices)}; move them with .to(device)")
    described = ", ".join(f"{tuple(t.shape)} {t.dtype} on {t.device}" for t in inputs)
    return type(error)(f"{name}: cannot apply to inputs [{described}]: {error}")


# ------------------------------------------------------------------ anomaly mode
def _check_forward(cls, inputs, data):
    xp = backend.array_module(data)
    if data.dtype.kind != "f" or bool(xp.isfinite(data).all()):
        return
    if all(t.dtype.kind != "f" or bool(xp.isfinite(t.data).all()) for t in inputs):
        bad = data[~xp.isfinite(data)].ravel()[0]
        raise FloatingPointError(
            f"{cls.__name__.lower()}: forward produced non-finite values ({bad}) from finite "
            f"inputs of shapes {[tuple(t.shape) for t in inputs]}")


def _check_backward(node, grads):
    for i, g in enumerate(grads):
        if g is None or g.dtype.kind != "f":
            continue
        xp = backend.array_module(g.data)
        if not bool(xp.isfinite(g.data).all()):
            where = "".join(node.created_at[-2:]) if node.created_at else "(unknown)\n"
            raise FloatingPointError(
                f"{node.name}: backward produced non-finite values in the gradient of input {i} "
                f"(shape {tuple(g.shape)}). The op was created at:\n{where}")


# ------------------------------------------------------------------ the walk
def sum_to_shape(grad, shape):
    """Sum a broadcast gradient back to ``shape``: the one broadcasting rule.

    If ``x`` of shape (3, 1) was broadcast to (2, 3, 4), its gradient is the
    output gradient summed over dim 0 (added in front) and dim 2 (size 1).
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.reshape(shape)


def _topological_order(roots):
    """Nodes reachable from ``roots``, each before the nodes that feed it.

    An iterative depth-first search: recursion would overflow Python's stack on
    a long chain of ops. The search appends a node only after all the nodes
    that feed it (its inputs' nodes); reversing that list at the end puts every
    node before the nodes it sends gradients to, the order the walk needs.
    A node freed by an earlier backward is followed through its edges; the walk
    complains only if it must run that node's backward.
    """
    order, visited = [], set()
    stack = [(node, False) for node in roots]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append((node, True))
        inputs = node.inputs
        children = [t._ctx for t in inputs] if inputs is not None else [c for _, c in node.edges]
        for child in children:
            if child is not None and child not in visited:
                stack.append((child, False))
    order.reverse()
    return order


def _nodes_leading_to(order, targets):
    """The nodes whose backward must run for gradients to reach ``targets``
    (a set of tensor ids): those with a path down to one of them. ``grad()``
    runs only these, so it neither wastes work nor frees the graph below an
    intermediate tensor it was asked about."""
    needed = set()
    for node in reversed(order):  # inputs' nodes first
        if any(id(t) in targets or child in needed for t, child in node._input_edges()):
            needed.add(node)
    return needed


def _backpropagate(outputs, grad_outputs, retain_graph, create_graph, sink, targets=None):
    """Push ``grad_outputs`` back from ``outputs``, calling ``sink(tensor, grad)``
    once for every tensor reached (leaves and non-leaves) with its total
    gradient, after that tensor's hooks; the sink keeps the ones it wants.

    With ``targets`` (tensor ids, from ``grad()``) only the nodes leading to
    them run; otherwise all do. Only nodes whose backward ran are freed.
    """
    global _grad_enabled, _anomaly_enabled
    # node -> [its output tensor, the gradient accumulated so far]. Holding the
    # output here keeps it alive for the node's backward even after the nodes
    # that used it have been freed. Leaves collect their total in leaf_grads
    # and get it once every path to them has been walked: right after the last
    # node that uses them, so that a post-accumulate hook can act on a final
    # gradient while the walk goes on (DistributedDataParallel sends it then).
    pending, leaf_grads = {}, {}
    for out, g in zip(outputs, grad_outputs):
        _add_gradient(pending, leaf_grads, out, g)
    order = _topological_order(list(pending))
    needed = None if targets is None else _nodes_leading_to(order, targets)
    leaves_done_after = _leaves_by_last_user(order)
    # The ops inside a backward are checked as that backward (below), so a NaN is
    # blamed on e.g. "sqrt's backward", not on the division it is made of.
    anomaly, _anomaly_enabled = _anomaly_enabled, False
    previous, _grad_enabled = _grad_enabled, create_graph
    try:
        for node in order:
            out, grad = pending.pop(node, (None, None))
            if grad is None:  # nothing flowed here (every path to it was cut)
                continue
            if out._hooks is not None:
                grad = _run_hooks(out, grad)
            sink(out, grad)
            if needed is not None and node not in needed:
                continue
            if node.inputs is None:
                raise RuntimeError(
                    f"{node.name}: trying to backward through the graph a second time: its "
                    "saved values were freed by the first backward(). Pass retain_graph=True "
                    "to the first call if you need to backward twice")
            input_grads = node.backward(grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            if anomaly:
                _check_backward(node, input_grads)
            for t, g in zip(node.inputs, input_grads):
                if g is not None and t._requires_grad:
                    _add_gradient(pending, leaf_grads, t, _fit_to(g, t, node))
            for leaf in leaves_done_after.get(node, ()):
                if leaf in leaf_grads:
                    sink(leaf, _run_hooks(leaf, leaf_grads.pop(leaf)))
            if not retain_graph:
                node._free()
        for leaf, grad in leaf_grads.items():  # outputs that are leaves; skipped last users
            sink(leaf, _run_hooks(leaf, grad))
    finally:
        _grad_enabled, _anomaly_enabled = previous, anomaly


def _leaves_by_last_user(order):
    """node -> the leaves it is the last node of the walk to send a gradient to."""
    last_user = {}
    for node in order:
        for t in node.inputs or ():
            if t._ctx is None and t._requires_grad:
                last_user[t] = node
    by_node = {}
    for leaf, node in last_user.items():
        by_node.setdefault(node, []).append(leaf)
    return by_node


def _add_gradient(pending, leaf_grads, t, grad):
    """Add ``grad`` to what ``t`` has received so far (a leaf's in leaf_grads,
    a non-leaf's beside its node in pending)."""
    if t._ctx is None:
        leaf_grads[t] = leaf_grads[t] + grad if t in leaf_grads else grad
    elif t._ctx in pending:
        pending[t._ctx][1] = pending[t._ctx][1] + grad
    else:
        pending[t._ctx] = [t, grad]


def _run_hooks(t, grad):
    """Apply ``t``'s gradient hooks (register_hook): each may return a new gradient."""
    if t._hooks is None:
        return grad
    for hook in t._hooks["grad"]:
        result = hook(grad)
        if result is not None:
            grad = result
    return grad


class RemovableHandle:
    """What ``register_hook`` returns: ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _fit_to(grad, t, node):
    """Bring a gradient to its input's shape (broadcasting) and dtype."""
    if grad.shape != t.shape:
        try:
            grad = sum_to_shape(grad, t.shape)
        except (ValueError, IndexError) as e:
            raise RuntimeError(f"{node.name}: backward returned a gradient of shape {grad.shape} "
                               f"for an input of shape {t.shape}") from e
    if grad.dtype != t.dtype:
        grad = grad.to(t.dtype)
    return grad


def _initial_grads(outputs, grad_outputs, caller):
    Tensor = _tensor.Tensor
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    result = []
    for out, g in zip(outputs, grad_outputs):
        if not out.requires_grad:
            raise RuntimeError(f"{caller}: a tensor of shape {out.shape} does not require grad "
                               "and has no grad_fn; nothing to differentiate")
        if g is None:
            if out.numel() != 1:
                raise RuntimeError(
                    f"{caller}: grad can be implicitly created only for scalar outputs, but the "
                    f"output has shape {out.shape}; pass gradient= (a tensor of that shape)")
            g = Tensor._make(backend.array_module(out.data).ones_like(out.data))  # dL/dL = 1
        elif not isinstance(g, Tensor):
            g = Tensor(g, dtype=out.dtype, device=out.device)
        if g.shape != out.shape:
            raise RuntimeError(f"{caller}: gradient has shape {g.shape} but the output has "
                               f"shape {out.shape}")
        result.append(g)
    return result


def backward(tensor, gradient=None, retain_graph=None, create_graph=False):
    """Accumulate d(tensor)/d(leaf) into every leaf's ``.grad``: ``Tensor.backward``.

    ``retain_graph`` defaults to ``create_graph``, as in PyTorch: a graph of
    the gradient built on top of this one must be able to backward through it.
    """
    if retain_graph is None:
        retain_graph = create_graph
    caller_owned = set() if gradient is None else {id(getattr(gradient, "data", gradient))}

    def accumulate(t, g):
        if t._ctx is not None and not t._ctx.retains_grad:
            return
        if t.grad is not None:
            t.grad = t.grad + g
        else:
            # .grad must own its memory: optimizers and clipping change it in place.
            # A gradient may be a read-only broadcast view (from sum's backward),
            # the very array another leaf got (add's backward passes one to both),
            # or the caller's own `gradient` tensor.
            if g.data.base is not None or id(g.data) in caller_owned:
                g = g.clone()
            caller_owned.add(id(g.data))
            t.grad = g
        if t._hooks is not None:
            for hook in t._hooks["post_accumulate"]:
                hook(t)
    grads = _initial_grads([tensor], None if gradient is None else [gradient], "backward")
    _backpropagate([tensor], grads, retain_graph, create_graph, accumulate)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned, not stored.

    Like ``torch.autograd.grad``: nothing is written into ``.grad``. With
    ``create_graph=True`` the returned gradients carry their own graph, so they
    can be differentiated again (Hessian-vector products, gradient penalties).
    Only the part of the graph between the outputs and the inputs is walked
    (and, without ``retain_graph``, freed).
    """
    Tensor = _tensor.Tensor
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    if retain_graph is None:
        retain_graph = create_graph
    found = {id(t): None for t in inputs}

    def collect(t, g):
        if id(t) in found:
            found[id(t)] = g

    _backpropagate(outputs, _initial_grads(outputs, grad_outputs, "grad"),
                   retain_graph, create_graph, collect, targets=found.keys())
    result = tuple(found[id(t)] for t in inputs)
    for i, (t, g) in enumerate(zip(inputs, result)):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} (shape {t.shape}) was not used to compute the "
                               "outputs; pass allow_unused=True to get None for it")
    return result


from . import tensor as _tensor  # noqa: E402 -- at the end: tensor.py imports this module

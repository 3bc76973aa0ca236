"""Differential fuzzing: random expression graphs, run here and in PyTorch.

A *program* is a few leaf arrays and 3-12 steps; each step applies one op from
``OPS`` to earlier values (leaves or step results, reused freely). Leaves have
shapes with 0-d, size-1, zero-size and broadcast dims, and may hold special
values (0, +-inf, NaN, huge, tiny, ties). The same program runs with
``tinygrad_zh`` and with PyTorch (through ``helpers.torch_api``), so one
description serves both, and:

- ``test_fuzz_matches_torch`` (marker ``torch``): every step's value and dtype,
  the gradient of a random weighting of all steps w.r.t. every leaf, and for
  every 4th program (on ordinary data) the second derivative, all in float64,
  against PyTorch;
- ``test_fuzz_dtypes_match_torch`` (``torch``): float32 programs with 0-d
  float64 leaves and Python scalars mixed in: every dtype as PyTorch's;
- ``test_fuzz_inplace_changes_are_caught`` (``torch``): a computed value is
  changed in place after the forward; backward either reports the stale saved
  tensor or gives the unmodified program's gradient (and PyTorch's, where it
  does not raise);
- ``test_fuzz_gradcheck`` (no PyTorch needed): programs on ordinary data are
  gradchecked, and a finite loss must give gradients without NaN unless an op
  was evaluated at a point where it has no derivative.

A fixed-seed slice runs with the suite. The long run is one command::

    FUZZ_CASES=5000 .venv/bin/python -m pytest -m fuzz tests/test_fuzz.py -p no:cacheprovider -s

(``FUZZ_START=N`` picks other seeds; ``-s`` shows the summary line with the
counts of accepted deviations.)

Known, deliberate differences are accepted by kind (``ACCEPTED``) and counted,
never silently: a gradient element where PyTorch gives NaN and we do not.
Mostly that is PyTorch multiplying an inf or NaN upstream gradient by a 0 mask
(abs at 0, amax's unselected elements), where we select and give exactly 0.
The reverse, NaN here where PyTorch has a number, always fails. Programs with
a tiny (1e-300) leaf compare only the NaN pattern of their gradients, and the
in-place check counts where one library raises and the other does not.
"""
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import tinygrad_zh as tg
from helpers import torch_api

CASES = int(os.environ.get("FUZZ_CASES", "0"))  # the long run's count (marker fuzz)
START = int(os.environ.get("FUZZ_START", "1000000"))  # and its first seed
SLICE = {"torch": 500, "dtypes": 300, "gradcheck": 300, "inplace": 200}  # the fixed-seed slices

TINY = 1e-300
# Special values; exact ties come from the 1.0s. "Huge" is 1e8 (exp overflows,
# and inf covers the rest): at 1e200, 1e200 + 1 == 1e200, so results depend on
# the order of a sum, and PyTorch's logsumexp gradient exp(x - out) sums to 2 where
# ours sums to 1, which is rounding, not a bug. Tiny is 1e-300 (x * x underflows).
SPECIAL = [0.0, np.inf, -np.inf, np.nan, 1e8, -1e8, TINY, 1.0, 1.0]
LEAF_SHAPES = [(), (1,), (3,), (2, 3), (3, 1), (1, 3), (2, 1, 3), (0,), (2, 0), (4,), (3, 3)]


# ------------------------------------------------------------------ the ops
@dataclass(frozen=True)
class Op:
    """One op: ``params(rng, *shapes)`` draws its constant arguments (None: the
    operand shapes do not fit), ``apply(m, params, *xs)`` runs it in library m.
    ``singular(params, *arrays)``: it is evaluated where it has no derivative;
    ``ill_conditioned(params, *arrays)``: there its gradient is rounding noise."""
    arity: int
    apply: Callable
    params: Callable = lambda rng, *shapes: ()
    singular: Callable = lambda params, *arrays: False
    ill_conditioned: Callable = lambda params, *arrays: False


def _broadcasts(rng, *shapes):
    try:
        np.broadcast_shapes(*shapes)
        return ()
    except ValueError:
        return None


def _bound_fits(rng, x, bound):
    return () if _broadcasts(rng, x, bound) == () and np.broadcast_shapes(x, bound) == x \
        else None


def _dim(rng, shape, allow_none=True):
    """A dim argument: None, an int or a tuple (maybe negative)."""
    n = len(shape)
    kinds = ["none", "int", "tuple"] if allow_none else ["int"]
    kind = kinds[rng.integers(len(kinds))] if n else "none"
    if kind == "none":
        return None
    if kind == "int":
        d = int(rng.integers(n))
        return d - n if rng.random() < 0.5 else d
    # (no empty tuple: PyTorch's keepdim and var/std backward mishandle dim=(), see
    # test_regressions.py::test_reducing_over_an_empty_dim_tuple_reduces_all_dims)
    chosen = rng.permutation(n)[:rng.integers(1, n + 1)]
    return tuple(int(d - n) if rng.random() < 0.5 else int(d) for d in chosen)


def _reduced_sizes(shape, dim):
    dims = range(len(shape)) if dim is None else [dim] if isinstance(dim, int) else dim
    return [shape[d] for d in dims]


def _reduced_nonempty(shape, dim):
    return all(_reduced_sizes(shape, dim))


def _at_zero(*arrays):
    return any(np.any(a == 0) for a in arrays)


def _nonpositive(a):
    return np.any(a <= 0)


def _reduction(method):
    def params(rng, shape):
        return (_dim(rng, shape), bool(rng.integers(2)))
    return Op(1, lambda m, p, x: getattr(x, method)(**_dim_kwargs(p)), params)


def _dim_kwargs(p):
    dim, keepdim = p
    return {} if dim is None else {"dim": dim, "keepdim": keepdim}


def _nonempty_reduction(method):
    def params(rng, shape):
        dim = _dim(rng, shape)
        return (dim, bool(rng.integers(2))) if _reduced_nonempty(shape, dim) else None
    return Op(1, lambda m, p, x: getattr(x, method)(**_dim_kwargs(p)), params)


def _variance(method):
    def params(rng, shape):
        # n <= correction makes the variance NaN or inf by definition (both sides);
        # its derivatives there mean nothing, so such programs are not drawn
        dim, correction = _dim(rng, shape), int(rng.integers(2))
        if math.prod(_reduced_sizes(shape, dim)) <= correction:
            return None
        return (dim, bool(rng.integers(2)), correction)

    def apply(m, p, x):
        dim, keepdim, correction = p
        if dim is None:
            return getattr(x, method)(correction=correction)
        return getattr(x, method)(dim=dim, correction=correction, keepdim=keepdim)
    # (the variance itself is smooth; std is singular at a zero variance, and its
    # gradient (x - mean) / std is noise / noise where the data is almost constant)
    is_std = method == "std"
    return Op(1, apply, params,
              singular=lambda p, a: is_std and (a.size < 2 or np.ptp(a) == 0),
              ill_conditioned=lambda p, a: is_std and _almost_constant(a, p[0]))


def _almost_constant(a, dim):
    """Some reduced row of ``a`` spreads by a rounding error only (but not by 0)."""
    axis = None if dim is None else tuple(d % a.ndim for d in ([dim] if isinstance(dim, int)
                                                                else dim)) if a.ndim else None
    with np.errstate(all="ignore"):
        spread = np.abs(a - a.mean(axis=axis, keepdims=True)).max(axis=axis, initial=0)
        scale = 1 + np.abs(a).max(initial=0)
    return bool(np.any((spread > 0) & (spread < 1e-6 * scale)))


def _single_dim(method):
    def params(rng, shape):
        n = max(len(shape), 1)
        return (int(rng.integers(-n, n)),)
    return Op(1, lambda m, p, x: getattr(x, method)(p[0]), params)


def _matmul_params(rng, a, b):
    if len(a) == 0 or len(b) == 0:
        return None
    k_a = a[-1]
    k_b = b[0] if len(b) == 1 else b[-2]
    if k_a != k_b:
        return None
    try:
        np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        return None
    return ()


def _getitem_params(rng, shape):
    if not shape or shape[0] == 0:
        return None
    n = shape[0]
    kind = ["int", "slice", "list", "none", "mixed"][rng.integers(5)]
    if kind == "int":
        return (int(rng.integers(-n, n)),)
    if kind == "slice":
        return (slice(int(rng.integers(0, n)), None),)
    if kind == "list":
        return (list(int(i) for i in rng.integers(-n, n, size=rng.integers(0, 4))),)
    if kind == "none":
        return ((None, Ellipsis),)
    if len(shape) >= 3 and shape[2] > 0:
        return ((0, slice(None), [0, shape[2] - 1]),)
    return None


def _gather_params(rng, shape):
    if not shape or 0 in shape:
        return None
    d = int(rng.integers(len(shape)))
    index_shape = tuple(int(rng.integers(1, 3)) if i == d else int(rng.integers(1, s + 1))
                        for i, s in enumerate(shape))
    return (d, rng.integers(0, shape[d], size=index_shape))


OPS = {
    "neg": Op(1, lambda m, p, x: -x),
    "exp": Op(1, lambda m, p, x: m.exp(x)),
    "log": Op(1, lambda m, p, x: m.log(x), singular=lambda p, a: _nonpositive(a)),
    "sqrt": Op(1, lambda m, p, x: m.sqrt(x), singular=lambda p, a: _nonpositive(a)),
    "abs": Op(1, lambda m, p, x: m.abs(x)),
    "relu": Op(1, lambda m, p, x: m.relu(x)),
    "sigmoid": Op(1, lambda m, p, x: m.sigmoid(x)),
    "tanh": Op(1, lambda m, p, x: m.tanh(x)),
    "erf": Op(1, lambda m, p, x: m.erf(x)),
    "gelu": Op(1, lambda m, p, x: m.gelu(x)),
    "gelu_tanh": Op(1, lambda m, p, x: m.gelu(x, approximate="tanh")),
    "softplus": Op(1, lambda m, p, x: m.softplus(x)),
    "logsigmoid": Op(1, lambda m, p, x: m.logsigmoid(x)),
    "square": Op(1, lambda m, p, x: x * x),
    "pow_scalar": Op(1, lambda m, p, x: x ** p[0],
                     lambda rng, s: ([0, 1, 2, 3, 0.5, -1, -1.5, 2.5][rng.integers(8)],),
                     singular=lambda p, a: p[0] < 1 and p[0] != 0 and _nonpositive(a)),
    "rpow": Op(1, lambda m, p, x: 2.0 ** x),
    "add_scalar": Op(1, lambda m, p, x: x + 1.5),
    "rsub_scalar": Op(1, lambda m, p, x: 2 - x),
    "mul_scalar": Op(1, lambda m, p, x: x * -3),
    "div_scalar": Op(1, lambda m, p, x: x / 4),
    "rdiv_scalar": Op(1, lambda m, p, x: 1 / x, singular=lambda p, a: _at_zero(a)),
    "clamp": Op(1, lambda m, p, x: m.clamp(x, min=p[0], max=p[1]),
                lambda rng, s: ([None, -0.5, 0.0][rng.integers(3)], [None, 0.5, 1.0][rng.integers(2) + 1])),
    "add": Op(2, lambda m, p, a, b: a + b, _broadcasts),
    "sub": Op(2, lambda m, p, a, b: a - b, _broadcasts),
    "mul": Op(2, lambda m, p, a, b: a * b, _broadcasts),
    "div": Op(2, lambda m, p, a, b: a / b, _broadcasts, singular=lambda p, a, b: _at_zero(b)),
    "pow": Op(2, lambda m, p, a, b: a ** b, _broadcasts,
              singular=lambda p, a, b: _nonpositive(a)),
    "maximum": Op(2, lambda m, p, a, b: m.maximum(a, b), _broadcasts),
    "minimum": Op(2, lambda m, p, a, b: m.minimum(a, b), _broadcasts),
    "where": Op(3, lambda m, p, c, a, b: m.where(c > 0, a, b), _broadcasts),
    "matmul": Op(2, lambda m, p, a, b: a @ b, _matmul_params),
    "sum": _reduction("sum"),
    "mean": _reduction("mean"),
    "var": _variance("var"),
    "std": _variance("std"),
    "amax": _nonempty_reduction("amax"),
    "amin": _nonempty_reduction("amin"),
    "max_all": Op(1, lambda m, p, x: x.max(), lambda rng, s: () if 0 not in s else None),
    "max_dim": Op(1, lambda m, p, x: x.max(p[0]).values,
                  lambda rng, s: (int(rng.integers(len(s))),) if s and 0 not in s else None),
    # (PyTorch's logsumexp gradient exp(x - out) loses log(n) next to |out| = 1e16:
    # its softmax then sums to n; ours keeps the shift apart and stays exact)
    "logsumexp": Op(1, lambda m, p, x: x.logsumexp(p[0]),
                    lambda rng, s: (_dim(rng, s, allow_none=False) if s else 0,),
                    ill_conditioned=lambda p, a: bool(np.any(np.abs(a[np.isfinite(a)]) > 1e9))),
    "softmax": _single_dim("softmax"),
    "log_softmax": _single_dim("log_softmax"),
    "reshape_flat": Op(1, lambda m, p, x: x.reshape(-1)),
    "transpose": Op(1, lambda m, p, x: x.transpose(0, -1), lambda rng, s: () if s else None),
    "unsqueeze": Op(1, lambda m, p, x: x.unsqueeze(0)),
    "expand": Op(1, lambda m, p, x: x.expand((2,) + tuple(x.shape))),
    "getitem": Op(1, lambda m, p, x: x[p[0]], _getitem_params),
    "gather": Op(1, lambda m, p, x: x.gather(p[0], m.tensor(p[1])), _gather_params),
    "cat": Op(2, lambda m, p, a, b: m.cat([a, b], dim=0),
              lambda rng, a, b: () if a and a == b else None),
    "stack": Op(2, lambda m, p, a, b: m.stack([a, b], dim=-1),
                lambda rng, a, b: () if a == b else None),
    "split_first": Op(1, lambda m, p, x: x.split(p[0], dim=0)[0],
                      lambda rng, s: (int(rng.integers(1, 3)),) if s and s[0] else None),
    "chunk_last": Op(1, lambda m, p, x: x.chunk(2, dim=0)[-1],
                     lambda rng, s: () if s and s[0] else None),
    "permute_reversed": Op(1, lambda m, p, x: x.permute(*reversed(range(x.ndim))),
                           lambda rng, s: () if s else None),
    "squeeze": Op(1, lambda m, p, x: x.squeeze()),
    "flatten": Op(1, lambda m, p, x: x.flatten()),
    "min_dim": Op(1, lambda m, p, x: x.min(p[0]).values,
                  lambda rng, s: (int(rng.integers(len(s))),) if s and 0 not in s else None),
    # (one tensor bound at a time: where min == max, PyTorch gives the gradient to
    # neither bound, we give it to min, see elementwise.Clamp. PyTorch's clamp keeps
    # x's shape, so the bound must broadcast to it; ours would broadcast x up.)
    "clamp_tensor_min": Op(2, lambda m, p, x, lo: m.clamp(x, min=lo), _bound_fits),
    "clamp_tensor_max": Op(2, lambda m, p, x, hi: m.clamp(x, max=hi), _bound_fits),
    "where_scalar": Op(2, lambda m, p, c, a: m.where(c > 0, a, 0.5), _broadcasts),
    "getitem_array_pair": Op(1, lambda m, p, x: x[m.tensor(p[0]), m.tensor(p[1])],
                             lambda rng, s: (rng.integers(0, s[0], 3), rng.integers(0, s[1], 3))
                             if len(s) >= 2 and s[0] and s[1] else None),
}


# ------------------------------------------------------------------ programs
@dataclass
class Program:
    leaves: list            # float64 arrays
    steps: list = field(default_factory=list)  # (op name, operand positions, params)

    def __repr__(self):
        lines = [f"leaf {i}: shape {a.shape} {a.ravel()[:6].tolist()}"
                 for i, a in enumerate(self.leaves)]
        lines += [f"v{len(self.leaves) + i} = {name}{tuple(args)} params={params!r}"
                  for i, (name, args, params) in enumerate(self.steps)]
        return "\n".join(lines)


def random_program(seed, special=True):
    """1-3 leaves, then 3-12 steps whose operands are drawn from all earlier values."""
    rng = np.random.default_rng(seed)
    leaves = []
    for _ in range(rng.integers(1, 4)):
        shape = LEAF_SHAPES[rng.integers(len(LEAF_SHAPES))]
        a = rng.standard_normal(shape)
        if special and a.size and rng.random() < 0.5:
            picks = rng.random(shape) < 0.3
            a[picks] = rng.choice(SPECIAL, size=int(picks.sum()))
        leaves.append(a)
    program = Program(leaves)
    shapes = [a.shape for a in leaves]
    names, n_steps = sorted(OPS), rng.integers(3, 13)
    while len(program.steps) < n_steps:
        name = names[rng.integers(len(names))]
        op = OPS[name]
        args = [int(rng.integers(len(shapes))) for _ in range(op.arity)]
        params = op.params(rng, *[shapes[i] for i in args])
        if params is None:
            continue
        shape = _shape_of(op, params, [shapes[i] for i in args])
        if shape is None or math.prod(shape) > 200:
            continue
        program.steps.append((name, args, params))
        shapes.append(shape)
    return program


def _shape_of(op, params, shapes):
    """The op's output shape, found by running it on zeros (None if it fails)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            xs = [tg.zeros(s, dtype=tg.float64) for s in shapes]
            return tuple(op.apply(tg, params, *xs).shape)
        except (ValueError, IndexError, RuntimeError, TypeError):
            return None


def run(m, program, dtypes=None, requires_grad=True):
    """Every value of the program (leaves first) in library m."""
    values = []
    for i, a in enumerate(program.leaves):
        dtype = getattr(m, dtypes[i] if dtypes else "float64")
        values.append(m.tensor(a, dtype=dtype, requires_grad=requires_grad and
                               dtype == m.float64))
    for name, args, params in program.steps:
        values.append(OPS[name].apply(m, params, *[values[i] for i in args]))
    return values


def gradients(m, program, second_order):
    """Values, d(loss)/d(leaves) and optionally d(sum of grads * v)/d(leaves).

    The loss is a random weighting of every step's value, so every op's
    backward is exercised, not only the last one's.
    """
    values = run(m, program)
    leaves = values[:len(program.leaves)]
    rng = np.random.default_rng(99)
    weights = [rng.standard_normal(tuple(v.shape)) for v in values]  # same on both sides
    loss = sum((v * m.tensor(w, dtype=m.float64)).sum()
               for v, w in zip(values[len(leaves):], weights[len(leaves):]) if v.requires_grad)
    if isinstance(loss, int):  # no step depends on a leaf
        return values, [None] * len(leaves), None
    grads = m.autograd.grad(loss, leaves, allow_unused=True, create_graph=second_order)
    second = None
    if second_order:
        weights = [rng.standard_normal(a.shape) for a in program.leaves]  # same on both sides
        total = sum((g * m.tensor(w, dtype=m.float64)).sum()
                    for g, w in zip(grads, weights) if g is not None and g.requires_grad)
        if isinstance(total, (int, float)):
            second = [None] * len(leaves)
        else:
            second = m.autograd.grad(total, leaves, allow_unused=True)
    return values, grads, second


# ------------------------------------------------------------------ comparing
# Gradient elements where PyTorch gives NaN and we do not: the selecting
# backwards (0 instead of inf * 0, and so a sum of inf and that 0 stays inf), amax
# at a NaN input (the NaN is the maximum and gets the gradient, as in PyTorch's
# max()), std's second derivative at a zero variance. Counted, split by whether
# ours is 0; the reverse (our NaN where PyTorch has a number) always fails.
# Programs PyTorch refuses to run (matmul of mixed dtypes, which we promote) are
# counted too.
ACCEPTED = {"zero_where_torch_nan": 0, "number_where_torch_nan": 0,
            "gradients_compared_for_nan_only": 0,
            "torch_refused_mixed_dtypes": 0, "inplace_ours_stricter": 0,
            "inplace_torch_stricter": 0, "inplace_write_refused": 0}


def _numpy(t):
    if t is None:
        return None
    if isinstance(t, tg.Tensor):
        return t.detach().numpy()
    return t.detach().numpy(force=True)  # (PyTorch may hand back a lazy "ZeroTensor")


def _close(ours, theirs, what, program, gradient=False, nan_only=False):
    if ours is None or theirs is None:
        # an unused leaf: None on one side, zeros (or None) on the other
        other = theirs if ours is None else ours
        assert other is None or not np.any(other), f"{what}: one side has no gradient\n{program}"
        return
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}\n{program}"
    if gradient:
        accepted = np.isnan(theirs) & ~np.isnan(ours)
        zeros = int((accepted & (ours == 0)).sum())
        ACCEPTED["zero_where_torch_nan"] += zeros
        ACCEPTED["number_where_torch_nan"] += int(accepted.sum()) - zeros
        theirs = np.where(accepted, ours, theirs)
    if nan_only:
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{what}\n{program}")
        return
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9, equal_nan=True,
                               err_msg=f"{what}\n{program}")


def check_against_torch(seed):
    torch = torch_api()
    # Every 4th program checks second derivatives, on ordinary data: with huge and
    # tiny values they are rounding noise on both sides (x / x has d2 = 0 exactly,
    # computed as the difference of two terms of size 1e300).
    second_order = seed % 4 == 0
    program = random_program(seed, special=not second_order)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ours = gradients(tg, program, second_order)
        theirs = gradients(torch, program, second_order)
    (values, grads, second), (t_values, t_grads, t_second) = ours, theirs
    for i, (v, t) in enumerate(zip(values, t_values)):
        assert str(v.dtype) == str(t.dtype).replace("torch.", ""), f"dtype of v{i}\n{program}"
        _close(_numpy(v), _numpy(t), f"value v{i}", program)
    nan_only = _gradients_are_rounding_noise(program, [_numpy(v) for v in values])
    ACCEPTED["gradients_compared_for_nan_only"] += nan_only
    for i, (g, t) in enumerate(zip(grads, t_grads)):
        _close(_numpy(g), _numpy(t), f"gradient of leaf {i}", program, gradient=True,
               nan_only=nan_only)
    if second is not None and t_second is not None:
        for i, (g, t) in enumerate(zip(second, t_second)):
            _close(_numpy(g), _numpy(t), f"second derivative, leaf {i}", program, gradient=True)


def check_inplace_against_torch(seed):
    """After the forward, change one computed value in place (itself or through a
    view) under no_grad, then backward. A backward either reports that a tensor it
    saved was modified, or gives exactly the gradient of the unmodified program:
    never one computed from the changed values. Whether it must raise depends on
    what each op saves (our abs keeps sign(x), PyTorch keeps x), so the two
    libraries may differ there; such cases are counted."""
    torch = torch_api()
    program = random_program(seed)
    rng = np.random.default_rng(seed)
    k = int(rng.integers(len(program.leaves), len(program.leaves) + len(program.steps)))
    through_view = bool(rng.integers(2))
    results = []
    for m, modify in ((tg, False), (tg, True), (torch, True)):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            values = run(m, program)
            if not modify:
                arrays = [_numpy(v) for v in values]  # the unmodified forward
            else:
                target = values[k]
                try:
                    with m.no_grad():
                        if through_view and target.ndim and len(target):
                            target = target[0]
                        target.mul_(1.5)
                except (RuntimeError, ValueError):  # an expanded (broadcast) value refuses
                    ACCEPTED["inplace_write_refused"] += 1
                    return
            leaves = values[:len(program.leaves)]
            try:
                loss = sum(v.sum() for v in values[len(leaves):] if v.requires_grad)
                grads = m.autograd.grad(loss, leaves, allow_unused=True)
                results.append([_numpy(g) for g in grads])
            except RuntimeError as e:
                assert modify and "modified by an in-place" in str(e) or "inplace" in str(e), e
                results.append(None)
    clean, ours, theirs = results
    nan_only = _gradients_are_rounding_noise(program, arrays)
    if ours is not None:  # no error: then nothing stale was used
        for i, (g, c) in enumerate(zip(ours, clean)):
            _close(g, c, f"gradient of leaf {i} after v{k} changed in place", program,
                   nan_only=nan_only)
    if theirs is not None:
        for i, (c, t) in enumerate(zip(clean, theirs)):
            _close(c, t, f"PyTorch's gradient of leaf {i} after v{k} changed", program,
                   gradient=True, nan_only=nan_only)
    if (ours is None) != (theirs is None):
        ACCEPTED["inplace_ours_stricter" if ours is None else "inplace_torch_stricter"] += 1


def _gradients_are_rounding_noise(program, arrays):
    """Programs whose gradients are compared only by their NaN pattern: a tiny leaf
    makes 1/x = 1e300 inside a backward, where O(1) terms are absorbed in an
    order-dependent way (x / x: g/x - g·(1/x) + 0.07 is 0 or 0.07); or a step is
    ill-conditioned there (see Op)."""
    return (any(np.any(a == TINY) for a in program.leaves) or
            any(OPS[name].ill_conditioned(params, *[arrays[i] for i in args])
                for name, args, params in program.steps))


def check_dtypes_against_torch(seed):
    """float32 programs with 0-d float64 / int64 leaves: each value's dtype as PyTorch's."""
    torch = torch_api()
    rng = np.random.default_rng(seed)
    program = random_program(seed)
    dtypes = [("float64" if a.ndim == 0 and rng.random() < 0.5 else "float32")
              for a in program.leaves]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ours = run(tg, program, dtypes)
        try:
            theirs = run(torch, program, dtypes)
        except RuntimeError as e:  # PyTorch's matmul refuses mixed dtypes; we promote
            if "dtype" not in str(e):
                raise
            ACCEPTED["torch_refused_mixed_dtypes"] += 1
            return
    for i, (v, t) in enumerate(zip(ours, theirs)):
        assert str(v.dtype) == str(t.dtype).replace("torch.", ""), \
            f"dtype of v{i}: {v.dtype} vs {t.dtype} (leaf dtypes {dtypes})\n{program}"


def check_gradcheck_and_invariants(seed):
    """Ordinary data: gradcheck where everything is finite and smooth; a finite loss
    never gives a NaN gradient unless some op met a point without a derivative."""
    program = random_program(seed, special=False)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        values, grads, _ = gradients(tg, program, second_order=False)
        arrays = [v.detach().numpy() for v in values]
        singular = any(OPS[name].singular(params, *[arrays[i] for i in args])
                       for name, args, params in program.steps)
        # (gradcheck also needs moderate values: a finite difference of exp(exp(3)) has
        # no digits left for a small change elsewhere)
        finite = all(np.isfinite(a).all() and not (np.abs(a) > 1e4).any() for a in arrays)
        if finite and not singular:
            for i, g in enumerate(grads):
                assert g is None or not np.isnan(g.numpy()).any(), \
                    f"NaN gradient for leaf {i} from a finite, smooth graph\n{program}"
            leaves = values[:len(program.leaves)]
            if any(leaf.numel() for leaf in leaves):
                fn = lambda *xs: run_from(program, xs)  # noqa: E731
                tg.gradcheck(fn, [tg.tensor(a, dtype=tg.float64, requires_grad=True)
                                  for a in program.leaves], atol=1e-4, rtol=1e-3)
    return finite and not singular


def run_from(program, leaves):
    """The program's step values (the outputs gradcheck weighs), from these leaves."""
    values = list(leaves)
    for name, args, params in program.steps:
        values.append(OPS[name].apply(tg, params, *[values[i] for i in args]))
    return tuple(values[len(leaves):])


# ------------------------------------------------------------------ the tests
def _seeds(kind):
    return range(10_000 * (1 + list(SLICE).index(kind)), 10_000 * (1 + list(SLICE).index(kind))
                 + SLICE[kind])


@pytest.mark.torch
def test_fuzz_matches_torch():
    for seed in _seeds("torch"):
        check_against_torch(seed)


@pytest.mark.torch
def test_fuzz_inplace_changes_are_caught():
    for seed in _seeds("inplace"):
        check_inplace_against_torch(seed)


@pytest.mark.torch
def test_fuzz_dtypes_match_torch():
    for seed in _seeds("dtypes"):
        check_dtypes_against_torch(seed)


def test_fuzz_gradcheck():
    checked = sum(check_gradcheck_and_invariants(seed) for seed in _seeds("gradcheck"))
    assert checked >= SLICE["gradcheck"] // 4, f"only {checked} programs were smooth and finite"


@pytest.mark.fuzz
@pytest.mark.skipif(CASES == 0, reason="set FUZZ_CASES=N for the long fuzz run")
def test_fuzz_long_run():
    """The long run: FUZZ_CASES programs of each kind (against PyTorch when installed)."""
    failures = []
    try:
        torch_api()
        has_torch = True
    except pytest.skip.Exception:
        has_torch = False
    checks = [check_gradcheck_and_invariants] + (
        [check_against_torch, check_dtypes_against_torch, check_inplace_against_torch]
        if has_torch else [])
    for seed in range(START, START + CASES):
        for check in checks:
            try:
                check(seed)
            except (AssertionError, Exception) as e:  # collect them all, report at the end
                failures.append(f"{check.__name__}({seed}): {str(e)[:2000]}")
    print(f"\nfuzz: {CASES} seeds x {len(checks)} checks, {len(failures)} failures; "
          f"accepted deviations: {ACCEPTED}")
    assert not failures, "\n\n".join(failures[:20])


# ------------------------------------------------------------------ the promotion table
# PyTorch's result dtypes, row dtype (a tensor with dims) with column dtype: as a
# tensor with dims / as a 0-d tensor. Checked against PyTorch itself below when
# it is installed; tinygrad_zh must follow it without PyTorch.
PROMOTION_TABLE = """
         bool            uint8           int32           int64           float16         float32         float64
bool     bool/bool       uint8/uint8     int32/int32     int64/int64     float16/float16 float32/float32 float64/float64
uint8    uint8/uint8     uint8/uint8     int32/uint8     int64/uint8     float16/float16 float32/float32 float64/float64
int32    int32/int32     int32/int32     int32/int32     int64/int32     float16/float16 float32/float32 float64/float64
int64    int64/int64     int64/int64     int64/int64     int64/int64     float16/float16 float32/float32 float64/float64
float16  float16/float16 float16/float16 float16/float16 float16/float16 float16/float16 float32/float16 float64/float16
float32  float32/float32 float32/float32 float32/float32 float32/float32 float32/float32 float32/float32 float64/float32
float64  float64/float64 float64/float64 float64/float64 float64/float64 float64/float64 float64/float64 float64/float64
"""
# a tensor of the row dtype with a Python scalar: (2, 2.5, True)
SCALAR_TABLE = {"bool": ("int64", "float32", "bool"), "uint8": ("uint8", "float32", "uint8"),
                "int32": ("int32", "float32", "int32"), "int64": ("int64", "float32", "int64"),
                "float16": ("float16", "float16", "float16"),
                "float32": ("float32", "float32", "float32"),
                "float64": ("float64", "float64", "float64")}
BINARY_DTYPE_OPS = {"add": lambda m, a, b: a + b, "mul": lambda m, a, b: a * b,
                    "maximum": lambda m, a, b: m.maximum(a, b),
                    "where": lambda m, a, b: m.where(a == a, a, b)}


def _promotion_cases():
    header, *rows = PROMOTION_TABLE.split("\n")[1:-1]
    columns = header.split()
    for row in rows:
        a, *cells = row.split()
        for b, cell in zip(columns, cells):
            with_dims, zero_dim = cell.split("/")
            yield a, b, (), with_dims
            yield a, b, 0, zero_dim


@pytest.mark.parametrize("op", sorted(BINARY_DTYPE_OPS))
def test_result_dtypes_follow_the_promotion_table(op):
    fn = BINARY_DTYPE_OPS[op]
    for a, b, b_shape, want in _promotion_cases():
        x = tg.ones(2, dtype=getattr(tg, a if a != "bool" else "bool_"))
        y = tg.ones(2 if b_shape == () else (), dtype=getattr(tg, b if b != "bool" else "bool_"))
        got = fn(tg, x, y).dtype
        assert str(got) == want, f"{op}({a} tensor, {b} {'0-d ' if b_shape == 0 else ''}tensor)"
    for a, wants in SCALAR_TABLE.items():
        x = tg.ones(2, dtype=getattr(tg, a if a != "bool" else "bool_"))
        for scalar, want in zip((2, 2.5, True), wants):
            assert str(fn(tg, x, scalar).dtype) == want, f"{op}({a} tensor, {scalar!r})"


@pytest.mark.torch
def test_promotion_table_is_pytorchs():
    torch = torch_api()
    for a, b, b_shape, want in _promotion_cases():
        x = torch.ones(2, dtype=getattr(torch, a))
        y = torch.ones(2 if b_shape == () else (), dtype=getattr(torch, b))
        assert str(torch.maximum(x, y).dtype) == f"torch.{want}", (a, b, b_shape)
    for a, wants in SCALAR_TABLE.items():
        for scalar, want in zip((2, 2.5, True), wants):
            got = (torch.ones(2, dtype=getattr(torch, a)) * scalar).dtype
            assert str(got) == f"torch.{want}", (a, scalar)

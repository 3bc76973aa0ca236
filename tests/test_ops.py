"""Every differentiable op: gradient (gradcheck), second derivative, forward value.

The ops live in one table, ``OPS``: op name -> a Hypothesis strategy drawing a
:class:`helpers.Case` (shapes with broadcasting, size-1 and zero-size dims,
negative dim arguments; the op's arguments; float64 data from a drawn seed).
The four standard test bodies (``helpers.op_table_tests``) serve the whole table:

- ``test_gradcheck``            tg.gradcheck: backward vs central differences
- ``test_gradgradcheck``        tg.gradgradcheck, for the ops in ``SECOND_ORDER``
- ``test_forward_matches_numpy``  forward vs a NumPy formula (no PyTorch needed)
- ``test_matches_torch``        forward and weighted gradient vs PyTorch

and the sections after the table test what one body cannot: the fused softmax
against its composite definition, PyTorch's conventions at kinks and ties,
gradient accumulation for repeated indices, dtype promotion, and gradcheck
itself (it must fail on a wrong backward).
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_zh as tg
from helpers import (FORWARD_TOL, TORCH_TOL, Case, as_tuple, broadcastable_shapes, draw_arrays,
                     dtype_name, hypothesis_settings, make_case, numel, op_table_tests, seeds,
                     shapes, to_numpy, torch_api, weighted_grads)
from tinygrad_zh.autograd import Function
from tinygrad_zh.ops.activation import gelu_reference, log_softmax_reference, softmax_reference
from tinygrad_zh.ops.reduce import logsumexp_reference, var_reference


GRADCHECK = hypothesis_settings(25)


# ------------------------------------------------------------------ NumPy formulas
_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_gelu(a):
    return 0.5 * a * (1 + _erf(a / math.sqrt(2)))


def np_gelu_tanh(a):
    return 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))


def np_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True, initial=-np.inf))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(a, axis):
    shifted = a - a.max(axis=axis, keepdims=True, initial=-np.inf)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_matmul(a, b):
    """matmul by broadcasting and summing (not np.matmul): 1-D operands as row / column."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    out = (a2[..., :, :, None] * b2[..., None, :, :]).sum(axis=-2)
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out


def _quiet(ref):
    """NumPy formulas may divide 0 by 0 on empty reductions (NaN, as PyTorch); no warnings."""
    def call(*arrays):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return ref(*arrays)
    return call


# ------------------------------------------------------------------ elementwise
# (name, fn(m, x), NumPy formula, domain of x)
UNARY = [
    ("neg", lambda m, x: -x, np.negative, "real"),
    ("exp", lambda m, x: m.exp(x), np.exp, "real"),
    ("log", lambda m, x: m.log(x), np.log, "positive"),
    ("sqrt", lambda m, x: m.sqrt(x), np.sqrt, "positive"),
    ("abs", lambda m, x: m.abs(x), np.abs, "nonzero"),
    ("erf", lambda m, x: m.erf(x), _erf, "real"),
    ("relu", lambda m, x: m.relu(x), lambda a: np.maximum(a, 0.0), "nonzero"),
    ("sigmoid", lambda m, x: m.sigmoid(x), lambda a: 1 / (1 + np.exp(-a)), "real"),
    ("tanh", lambda m, x: m.tanh(x), np.tanh, "real"),
    ("softplus", lambda m, x: m.softplus(x), lambda a: np.logaddexp(0, a), "real"),
    ("softplus_beta", lambda m, x: m.softplus(x, beta=2.0, threshold=1.5),
     lambda a: np.where(2 * a > 1.5, a, np.logaddexp(0, 2 * a) / 2), "nonzero"),
    ("logsigmoid", lambda m, x: m.logsigmoid(x), lambda a: -np.logaddexp(0, -a), "real"),
    ("gelu", lambda m, x: m.gelu(x), np_gelu, "real"),
    ("gelu_tanh", lambda m, x: m.gelu(x, approximate="tanh"), np_gelu_tanh, "real"),
    ("clamp_min", lambda m, x: m.clamp(x, min=-0.5), lambda a: np.maximum(a, -0.5), "real"),
    ("clamp_max", lambda m, x: m.clamp(x, max=0.5), lambda a: np.minimum(a, 0.5), "real"),
    ("clamp_both", lambda m, x: m.clamp(x, -0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5), "real"),
    # a Python scalar on either side of an operator
    ("add_scalar", lambda m, x: x + 2, lambda a: a + 2, "real"),
    ("radd_scalar", lambda m, x: 2 + x, lambda a: 2 + a, "real"),
    ("sub_scalar", lambda m, x: x - 2.5, lambda a: a - 2.5, "real"),
    ("rsub_scalar", lambda m, x: 2 - x, lambda a: 2 - a, "real"),
    ("mul_scalar", lambda m, x: x * 3, lambda a: a * 3, "real"),
    ("rmul_scalar", lambda m, x: -1.5 * x, lambda a: -1.5 * a, "real"),
    ("div_scalar", lambda m, x: x / 3, lambda a: a / 3, "real"),
    ("rdiv_scalar", lambda m, x: 3 / x, lambda a: 3 / a, "nonzero"),
    ("pow_int_exponent", lambda m, x: x ** 3, lambda a: a ** 3, "real"),
    ("pow_float_exponent", lambda m, x: x ** 0.5, np.sqrt, "positive"),
    ("pow_negative_exponent", lambda m, x: x ** -1.5, lambda a: a ** -1.5, "positive"),
    ("rpow_scalar_base", lambda m, x: 2 ** x, lambda a: 2.0 ** a, "real"),
]

# (name, fn(m, a, b), NumPy formula, domains of a and b)
BINARY = [
    ("add", lambda m, a, b: a + b, np.add, ("real", "real")),
    ("sub", lambda m, a, b: a - b, np.subtract, ("real", "real")),
    ("mul", lambda m, a, b: a * b, np.multiply, ("real", "real")),
    ("div", lambda m, a, b: a / b, np.divide, ("real", "nonzero")),
    ("pow", lambda m, a, b: a ** b, np.power, ("positive", "real")),
    ("maximum", lambda m, a, b: m.maximum(a, b), np.maximum, ("real", "real")),
    ("minimum", lambda m, a, b: m.minimum(a, b), np.minimum, ("real", "real")),
    ("clamp_tensor_min", lambda m, a, b: m.clamp(a, min=b), np.maximum, ("real", "real")),
    ("clamp_tensor_max", lambda m, a, b: m.clamp(a, max=b), np.minimum, ("real", "real")),
]


def unary_case(name, fn, ref, domain):
    @st.composite
    def strategy(draw):
        return make_case(draw, name, fn, ref, [draw(shapes())], [domain])
    return strategy()


def binary_case(name, fn, ref, domains):
    @st.composite
    def strategy(draw):
        return make_case(draw, name, fn, ref, draw(broadcastable_shapes(2)), domains)
    return strategy()


@st.composite
def where_case(draw, scalar_other=False):
    """where(cond, a, b): cond, a and b broadcast together; cond is a constant."""
    cond_shape, a_shape, b_shape = draw(broadcastable_shapes(3))
    if scalar_other:
        def build(rng):
            cond = rng.standard_normal(cond_shape) > 0
            return (lambda m, a: m.where(m.tensor(cond), a, 0.5),
                    lambda a: np.where(cond, a, 0.5))
        return make_case(draw, "where(cond, x, 0.5)", None, None, [a_shape], ["real"],
                         build=build)

    def build(rng):
        cond = rng.standard_normal(cond_shape) > 0
        return (lambda m, a, b: m.where(m.tensor(cond), a, b),
                lambda a, b: np.where(cond, a, b))
    return make_case(draw, f"where(cond{cond_shape}, a, b)", None, None, [a_shape, b_shape],
                     ["real", "real"], build=build)


# ------------------------------------------------------------------ reductions
def _draw_axis(draw, ndim):
    """One axis of an ndim-d tensor: (d in [0, ndim), the same axis maybe as a negative dim)."""
    d = draw(st.integers(0, ndim - 1))
    return d, d - ndim if draw(st.booleans()) else d


def _draw_dim(draw, ndim, kinds):
    """A dim argument: None, an int or a tuple of ints, each possibly negative.

    Returns (dim, reduced) with ``reduced`` the non-negative dims it names.
    A 0-d tensor accepts dims 0 and -1 (and reduces nothing), as in PyTorch.
    """
    n = max(ndim, 1)
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None, tuple(range(ndim))
    if kind == "int":
        dim = draw(st.integers(-n, n - 1))
        return dim, (dim % n,) if ndim else ()
    chosen = draw(st.permutations(range(n)))[:draw(st.integers(1, n))]
    dim = tuple(d - n if draw(st.booleans()) else d for d in chosen)
    return dim, tuple(sorted(chosen)) if ndim else ()


def reduction_case(name, method, np_name, kinds=("tuple", "int", "none"), nonempty=False,
                   correction=False):
    """``x.method(dim=..., keepdim=...)`` vs ``np_name(axis=..., keepdims=...)``.

    ``nonempty``: max/min of an empty set is undefined, so every reduced dim is
    non-empty. ``correction``: var/std, with correction 0 or 1 and at least
    correction + 1 elements per output (fewer gives NaN, also in PyTorch); std
    needs two, since sqrt has no derivative at a zero variance.
    """
    @st.composite
    def strategy(draw):
        shape = draw(shapes())
        dim, reduced = _draw_dim(draw, len(shape), kinds)
        count = math.prod(shape[d] for d in reduced)
        if nonempty:
            assume(count > 0)
        kwargs = {} if dim is None else {"dim": dim, "keepdim": draw(st.booleans())}
        np_kwargs = {"axis": reduced if shape else None, "keepdims": kwargs.get("keepdim", False)}
        if correction:
            kwargs["correction"] = np_kwargs["ddof"] = draw(st.sampled_from([0, 1]))
            assume(count >= kwargs["correction"] + 1 and (method != "std" or count >= 2))
        values = method in ("max", "min") and dim is not None  # max(dim) -> (values, indices)

        def fn(m, x):
            out = getattr(x, method)(**kwargs)
            return out.values if values else out

        label = f"{method}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        ref = _quiet(lambda a: getattr(a, np_name)(**np_kwargs))
        return make_case(draw, label, fn, ref, [shape], ["real"])
    return strategy()


def np_logsumexp(a, axis, keepdims):
    return np.log(np.exp(a).sum(axis=axis, keepdims=keepdims))  # fine for standard-normal data


@st.composite
def logsumexp_case(draw):
    shape = draw(shapes())
    dim, reduced = _draw_dim(draw, len(shape), ("int", "tuple"))
    keepdim = draw(st.booleans())
    axis = reduced if shape else None
    return make_case(draw, f"logsumexp(dim={dim}, keepdim={keepdim})",
                     lambda m, x: x.logsumexp(dim, keepdim),
                     _quiet(lambda a: np_logsumexp(a, axis, keepdim)), [shape], ["real"])


@st.composite
def softmax_case(draw, log=False):
    shape = draw(shapes())
    n = max(len(shape), 1)
    dim = draw(st.integers(-n, n - 1))
    axis = dim if shape else None
    name = "log_softmax" if log else "softmax"
    ref = np_log_softmax if log else np_softmax
    return make_case(draw, f"{name}(dim={dim})", lambda m, x: getattr(m, name)(x, dim),
                     lambda a: ref(a, axis), [shape], ["real"])


# ------------------------------------------------------------------ matmul
@st.composite
def matmul_case(draw):
    """1-D or matrix operands on either side; matrices carry broadcast batch dims."""
    sizes = {name: draw(st.integers(1, 3)) for name in "nkp"}
    empty = draw(st.sampled_from([None] * 5 + list("nkp")))   # sometimes one size is 0
    if empty:
        sizes[empty] = 0
    n, k, p = sizes["n"], sizes["k"], sizes["p"]
    a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=2, min_side=1, max_side=3)).input_shapes
    a_shape = (k,) if a_vec else batch_a + (n, k)
    b_shape = (k,) if b_vec else batch_b + (k, p)
    assume(numel(a_shape) <= 30 and numel(b_shape) <= 30)
    spelling = draw(st.sampled_from(["@", "matmul", "method"]))
    fn = {"@": lambda m, a, b: a @ b,
          "matmul": lambda m, a, b: m.matmul(a, b),
          "method": lambda m, a, b: a.matmul(b)}[spelling]
    return make_case(draw, f"matmul via {spelling}", fn, np_matmul, [a_shape, b_shape],
                     ["real", "real"])


# ------------------------------------------------------------------ movement
@st.composite
def reshape_case(draw, method="reshape"):
    shape = draw(shapes())
    target = list(draw(st.permutations(shape)))
    for _ in range(draw(st.integers(0, 2))):
        target.insert(draw(st.integers(0, len(target))), 1)
    if target and numel(shape) > 0 and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    target = tuple(target)
    return make_case(draw, f"{method}{target}", lambda m, x: getattr(x, method)(target),
                     lambda a: a.reshape(target), [shape], ["real"])


@st.composite
def transpose_case(draw):
    shape = draw(shapes())
    n = max(len(shape), 1)
    d0, d1 = draw(st.integers(-n, n - 1)), draw(st.integers(-n, n - 1))
    return make_case(draw, f"transpose({d0}, {d1})", lambda m, x: x.transpose(d0, d1),
                     lambda a: np.swapaxes(a, d0, d1) if a.ndim else a, [shape], ["real"])


@st.composite
def permute_case(draw):
    shape = draw(shapes(min_dims=1))
    n = len(shape)
    dims = tuple(d - n if draw(st.booleans()) else d for d in draw(st.permutations(range(n))))
    return make_case(draw, f"permute{dims}", lambda m, x: x.permute(*dims),
                     lambda a: np.transpose(a, dims), [shape], ["real"])


@st.composite
def expand_case(draw):
    """Size-1 dims grow (to 0 too), others stay (or are given as -1), new dims go in front."""
    shape = draw(shapes())
    target = [draw(st.sampled_from([n, -1] if n != 1 else [1, 0, 2, 3, -1])) for n in shape]
    lead = [draw(st.integers(0, 3)) for _ in range(draw(st.integers(0, 2)))]
    target = tuple(lead + target)
    resolved = tuple(lead) + tuple(n if t == -1 else t for n, t in zip(shape, target[len(lead):]))
    assume(numel(resolved) <= 100)
    return make_case(draw, f"expand{target}", lambda m, x: x.expand(target),
                     lambda a: np.broadcast_to(a, resolved), [shape], ["real"])


@st.composite
def squeeze_case(draw):
    shape = draw(shapes())
    dim, squeezed = _draw_dim(draw, len(shape), ("none", "int", "tuple"))
    new_shape = tuple(n for i, n in enumerate(shape) if not (i in squeezed and n == 1))

    def fn(m, x):
        return x.squeeze() if dim is None else x.squeeze(dim)
    return make_case(draw, f"squeeze({'' if dim is None else dim})", fn,
                     lambda a: a.reshape(new_shape), [shape], ["real"])


@st.composite
def unsqueeze_case(draw):
    shape = draw(shapes())
    dim = draw(st.integers(-len(shape) - 1, len(shape)))
    return make_case(draw, f"unsqueeze({dim})", lambda m, x: x.unsqueeze(dim),
                     lambda a: np.expand_dims(a, dim), [shape], ["real"])


@st.composite
def flatten_case(draw):
    shape = draw(shapes())
    n = len(shape)
    if n == 0:
        return make_case(draw, "flatten()", lambda m, x: x.flatten(), lambda a: a.reshape(1),
                         [shape], ["real"])
    start, end = sorted([draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))])
    start_arg = start - n if draw(st.booleans()) else start
    end_arg = end - n if draw(st.booleans()) else end
    new_shape = shape[:start] + (numel(shape[start:end + 1]),) + shape[end + 1:]
    return make_case(draw, f"flatten({start_arg}, {end_arg})",
                     lambda m, x: x.flatten(start_arg, end_arg),
                     lambda a: a.reshape(new_shape), [shape], ["real"])


@st.composite
def cat_case(draw):
    """1-3 tensors, equal except along ``dim`` (where a piece may be empty)."""
    base = draw(shapes(min_dims=1, max_numel=12))
    n = len(base)
    d, dim = _draw_axis(draw, n)
    sizes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    shapes_ = [base[:d] + (s,) + base[d + 1:] for s in sizes]
    return make_case(draw, f"cat(dim={dim})", lambda m, *xs: m.cat(list(xs), dim=dim),
                     lambda *a: np.concatenate(a, axis=dim), shapes_, ["real"] * len(sizes))


@st.composite
def stack_case(draw):
    shape = draw(shapes(max_dims=2, max_numel=12))
    count = draw(st.integers(1, 3))
    dim = draw(st.integers(-len(shape) - 1, len(shape)))
    return make_case(draw, f"stack(dim={dim})", lambda m, *xs: m.stack(list(xs), dim=dim),
                     lambda *a: np.stack(a, axis=dim), [shape] * count, ["real"] * count)


def _np_split(a, sizes, axis):
    return tuple(np.split(a, np.cumsum(sizes)[:-1].astype(int), axis=axis))


@st.composite
def split_case(draw):
    """split by a size (last piece smaller) or by a list of section sizes."""
    shape = draw(shapes(min_dims=1))
    n = len(shape)
    d, dim = _draw_axis(draw, n)
    length = shape[d]
    if draw(st.booleans()):
        arg = draw(st.integers(1, 4))
        whole, rest = divmod(length, arg)
        sizes = [arg] * whole + ([rest] if rest else []) or [0]
    else:
        cuts = sorted(draw(st.lists(st.integers(0, length), max_size=3)))
        sizes = arg = [b - a for a, b in zip([0] + cuts, cuts + [length])]
    return make_case(draw, f"split({arg}, dim={dim})", lambda m, x: x.split(arg, dim),
                     lambda a: _np_split(a, sizes, d), [shape], ["real"])


@st.composite
def chunk_case(draw):
    """PyTorch's chunk: pieces of ceil(length / chunks); a zero-length dim gives
    ``chunks`` empty pieces."""
    shape = draw(shapes(min_dims=1))
    n = len(shape)
    d, dim = _draw_axis(draw, n)
    chunks = draw(st.integers(1, 4))
    length = shape[d]
    if length == 0:
        sizes = [0] * chunks
    else:
        step = -(-length // chunks)
        sizes = [min(step, length - s) for s in range(0, length, step)]
    return make_case(draw, f"chunk({chunks}, dim={dim})", lambda m, x: x.chunk(chunks, dim),
                     lambda a: _np_split(a, sizes, d), [shape], ["real"])


# ------------------------------------------------------------------ indexing
def _has_negative_step(key):
    key = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in key)


@st.composite
def getitem_basic_case(draw):
    """ints, slices (negative steps too), None and Ellipsis."""
    shape = draw(shapes())
    key = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    case = make_case(draw, f"getitem[{key!r}]", lambda m, x: x[key], lambda a: a[key],
                     [shape], ["real"])
    # PyTorch has no negative-step slicing: NumPy alone is the reference then.
    return Case(case.label, case.fn, case.ref, case.arrays, case.seed,
                torch=not _has_negative_step(key))


@st.composite
def getitem_int_array_case(draw):
    """An integer array (list or tensor) on one dim, with a repeated index, after
    slices and before an Ellipsis."""
    shape = draw(shapes(min_dims=1, min_side=1))
    d = draw(st.integers(0, len(shape) - 1))
    size = shape[d]
    picks = draw(st.lists(st.integers(-size, size - 1), min_size=1, max_size=5))
    picks = picks + [picks[0]]                                   # a repeat, always
    as_tensor = draw(st.booleans())
    np_key = (slice(None),) * d + (np.array(picks),) + (Ellipsis,)

    def fn(m, x):
        index = m.tensor(np.array(picks)) if as_tensor else list(picks)
        return x[(slice(None),) * d + (index, Ellipsis)]
    return make_case(draw, f"getitem[{':, ' * d}{picks}{' (tensor)' if as_tensor else ''}, ...]",
                     fn, lambda a: a[np_key], [shape], ["real"])


@st.composite
def getitem_int_pair_case(draw):
    """Two integer arrays that broadcast together pick elements (repeats likely)."""
    shape = draw(shapes(min_dims=2, min_side=1))
    length = draw(st.integers(1, 4))
    rows = draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=length,
                         max_size=length))
    cols = draw(st.lists(st.integers(-shape[1], shape[1] - 1), min_size=1, max_size=1)
                | st.lists(st.integers(-shape[1], shape[1] - 1), min_size=length,
                           max_size=length))
    rows_a, cols_a = np.array(rows), np.array(cols)
    return make_case(draw, f"getitem[{rows}, {cols}]",
                     lambda m, x: x[m.tensor(rows_a), m.tensor(cols_a)],
                     lambda a: a[rows_a, cols_a], [shape], ["real"])


@st.composite
def getitem_mask_case(draw):
    """A boolean mask over dims start..start+k (after full slices)."""
    shape = draw(shapes(min_dims=1))
    start = draw(st.integers(0, len(shape) - 1))
    stop = draw(st.integers(start + 1, len(shape)))

    def build(rng):
        mask = rng.standard_normal(shape[start:stop]) > 0
        key = (slice(None),) * start + (mask,)
        return lambda m, x: x[(slice(None),) * start + (m.tensor(mask),)], lambda a: a[key]
    return make_case(draw, f"getitem[{':, ' * start}mask{shape[start:stop]}]", None, None,
                     [shape], ["real"], build=build)


@st.composite
def getitem_comparison_mask_case(draw):
    """x[x > 0]: a mask computed from the data itself."""
    shape = draw(shapes())
    return make_case(draw, "getitem[x > 0]", lambda m, x: x[x > 0], lambda a: a[a > 0],
                     [shape], ["real"])


@st.composite
def gather_case(draw):
    """torch.gather: the index may be smaller than the input in every dim."""
    shape = draw(shapes(min_dims=1))
    n = len(shape)
    d, dim = _draw_axis(draw, n)
    # (drawn as "size minus a cut" so that it is mostly as large as the input)
    index_shape = tuple(draw(st.integers(1, 4)) if i == d else size - draw(st.integers(0, size))
                        for i, size in enumerate(shape))
    assume(shape[d] > 0 or numel(index_shape) == 0)

    def build(rng):
        index = rng.integers(0, max(shape[d], 1), size=index_shape)
        cut = tuple(slice(0, k) if i != d else slice(None) for i, k in enumerate(index_shape))
        return (lambda m, x: x.gather(dim, m.tensor(index)),
                lambda a: np.take_along_axis(a[cut], index, axis=d))
    return make_case(draw, f"gather(dim={dim}, index{index_shape})", None, None, [shape],
                     ["real"], build=build)


# ------------------------------------------------------------------ the table
OPS = {}
OPS.update({name: unary_case(name, fn, ref, domain) for name, fn, ref, domain in UNARY})
OPS.update({name: binary_case(name, fn, ref, domains) for name, fn, ref, domains in BINARY})
OPS.update({
    "where": where_case(),
    "where_scalar_other": where_case(scalar_other=True),
    "sum": reduction_case("sum", "sum", "sum"),
    "mean": reduction_case("mean", "mean", "mean"),
    "var": reduction_case("var", "var", "var", correction=True),
    "std": reduction_case("std", "std", "std", correction=True),
    "amax": reduction_case("amax", "amax", "max", nonempty=True),
    "amin": reduction_case("amin", "amin", "min", nonempty=True),
    "max": reduction_case("max", "max", "max", kinds=("int", "none"), nonempty=True),
    "min": reduction_case("min", "min", "min", kinds=("int", "none"), nonempty=True),
    "logsumexp": logsumexp_case(),
    "matmul": matmul_case(),
    "reshape": reshape_case(),
    "view": reshape_case("view"),
    "transpose": transpose_case(),
    "permute": permute_case(),
    "expand": expand_case(),
    "squeeze": squeeze_case(),
    "unsqueeze": unsqueeze_case(),
    "flatten": flatten_case(),
    "cat": cat_case(),
    "stack": stack_case(),
    "split": split_case(),
    "chunk": chunk_case(),
    "getitem_basic": getitem_basic_case(),
    "getitem_int_array": getitem_int_array_case(),
    "getitem_int_pair": getitem_int_pair_case(),
    "getitem_bool_mask": getitem_mask_case(),
    "getitem_comparison_mask": getitem_comparison_mask_case(),
    "gather": gather_case(),
    "softmax": softmax_case(),
    "log_softmax": softmax_case(log=True),
})

SECOND_ORDER = ["mul", "div", "rdiv_scalar", "pow", "pow_int_exponent", "pow_float_exponent",
                "rpow_scalar_base", "exp", "log", "sqrt", "tanh", "sigmoid", "gelu",
                "gelu_tanh", "where", "matmul", "softmax", "log_softmax", "softplus",
                "logsigmoid", "logsumexp", "std", "var", "abs", "relu", "maximum", "minimum",
                "clamp_both", "clamp_tensor_min", "amax", "getitem_int_array", "gather"]


# ------------------------------------------------------------------ one body per check
test_gradcheck, test_gradgradcheck, test_forward_matches_numpy, test_matches_torch = \
    op_table_tests(OPS, SECOND_ORDER)


# ------------------------------------------------------------------ fused softmax vs composite
FUSED = [("softmax", lambda x, d: x.softmax(d), softmax_reference, np_softmax),
         ("log_softmax", lambda x, d: x.log_softmax(d), log_softmax_reference, np_log_softmax)]
FUSED_REDUCTIONS = FUSED + [("logsumexp", lambda x, d: x.logsumexp(d), logsumexp_reference, None),
                            ("var", lambda x, d: x.var(d), var_reference, None)]


@pytest.mark.parametrize("name, fused, composite, np_ref", FUSED_REDUCTIONS,
                         ids=[f[0] for f in FUSED_REDUCTIONS])
@GRADCHECK
@given(shape=shapes(min_dims=1, min_side=1), seed=seeds(), data=st.data())
def test_fused_softmax_matches_composite(name, fused, composite, np_ref, shape, seed, data):
    # (no empty dims: the composite's amax of an empty row is undefined, as in PyTorch;
    # the fused op on empty dims is covered by the OPS table)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    (x,) = draw_arrays(np.random.default_rng(seed), [shape], ["real"])
    outs, grads = weighted_grads(tg, lambda m, t: fused(t, dim), [x])
    ref_outs, ref_grads = weighted_grads(tg, lambda m, t: composite(t, dim), [x])
    np.testing.assert_allclose(outs[0], ref_outs[0], strict=True, **FORWARD_TOL)
    np.testing.assert_allclose(grads[0], ref_grads[0], strict=True, **FORWARD_TOL)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@GRADCHECK
@given(shape=shapes(), seed=seeds())
def test_fused_gelu_matches_composite(approximate, shape, seed):
    (x,) = draw_arrays(np.random.default_rng(seed), [shape], ["real"])
    outs, grads = weighted_grads(tg, lambda m, t: tg.gelu(t, approximate), [x])
    ref_outs, ref_grads = weighted_grads(tg, lambda m, t: gelu_reference(t, approximate), [x])
    np.testing.assert_allclose(outs[0], ref_outs[0], strict=True, **FORWARD_TOL)
    np.testing.assert_allclose(grads[0], ref_grads[0], strict=True, **FORWARD_TOL)


def _large_logits(dtype):
    """Logits around ±1000 with gaps of order 1: exp() overflows in float32 and float64."""
    rng = np.random.default_rng(7)
    x = 1000 * np.sign(rng.standard_normal((3, 5))) + rng.standard_normal((3, 5))
    x[1] += 1000   # a row near 2000 and one all positive
    x[2] = 1000 + rng.standard_normal(5)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, fused, composite, np_ref", FUSED, ids=[f[0] for f in FUSED])
def test_fused_softmax_is_stable_for_large_logits(name, fused, composite, np_ref, dtype):
    x = _large_logits(dtype)
    # The data really breaks the textbook formula ...
    with np.errstate(all="ignore"):
        naive = tg.tensor(x).exp() / tg.tensor(x).exp().sum(-1, keepdim=True)
    assert not np.isfinite(naive.numpy()).all(), "the test data should overflow a naive softmax"
    # ... but not the fused op: finite, and equal to the shifted formula in float64.
    t = tg.tensor(x, requires_grad=True)
    out = fused(t, -1)
    assert out.dtype == np.dtype(dtype)
    values = out.detach().numpy()
    assert np.isfinite(values).all()
    want = np_ref(x.astype(np.float64), -1)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else FORWARD_TOL
    np.testing.assert_allclose(values, want, **tol)
    # The gradient is finite and follows y = softmax: g - sum(g) * y for log_softmax,
    # y * (g - sum(g * y)) for softmax.
    g = np.random.default_rng(3).standard_normal(x.shape)
    (grad,) = tg.autograd.grad((out * tg.tensor(g.astype(dtype))).sum(), [t])
    y = np_softmax(x.astype(np.float64), -1)
    if name == "softmax":
        want_grad = y * (g - (g * y).sum(-1, keepdims=True))
    else:
        want_grad = g - y * g.sum(-1, keepdims=True)
    assert np.isfinite(grad.numpy()).all()
    np.testing.assert_allclose(grad.numpy(), want_grad, **tol)
    # The composite reference agrees too (it is the definition the fused op must keep).
    (ref_grad,) = tg.autograd.grad((composite(t, -1) * tg.tensor(g.astype(dtype))).sum(), [t])
    np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), **tol)


@pytest.mark.parametrize("name, fused, composite, np_ref", FUSED, ids=[f[0] for f in FUSED])
def test_large_logits_match_torch(name, fused, composite, np_ref):
    torch = torch_api()
    x = _large_logits("float64")
    outs, grads = weighted_grads(tg, lambda m, t: fused(t, -1), [x])
    torch_outs, torch_grads = weighted_grads(torch, lambda m, t: fused(t, -1), [x])
    np.testing.assert_allclose(outs[0], torch_outs[0], err_msg="forward", **TORCH_TOL)
    np.testing.assert_allclose(grads[0], torch_grads[0], err_msg="gradient", **TORCH_TOL)


# ------------------------------------------------------------------ kinks and ties
# Where an op is not differentiable, PyTorch picks a value; we must pick the same.
# (name, fn(m, *xs), inputs, expected gradient of out.sum() for each input)
CONVENTIONS = [
    ("relu_at_zero", lambda m, x: m.relu(x), [[-1.0, 0.0, 2.0]], [[0.0, 0.0, 1.0]]),
    ("abs_at_zero", lambda m, x: m.abs(x), [[-1.0, 0.0, 2.0]], [[-1.0, 0.0, 1.0]]),
    ("clamp_at_bounds", lambda m, x: m.clamp(x, -1.0, 1.0), [[-2.0, -1.0, 0.0, 1.0, 2.0]],
     [[0.0, 1.0, 1.0, 1.0, 0.0]]),
    ("maximum_tie_splits", lambda m, a, b: m.maximum(a, b), [[1.0, 2.0, 3.0], [1.0, 5.0, 3.0]],
     [[0.5, 0.0, 0.5], [0.5, 1.0, 0.5]]),
    ("minimum_tie_splits", lambda m, a, b: m.minimum(a, b), [[1.0, 2.0, 3.0], [1.0, 5.0, 0.0]],
     [[0.5, 1.0, 0.0], [0.5, 0.0, 1.0]]),
    ("amax_ties_split", lambda m, x: x.amax(-1), [[[3.0, 1.0, 3.0], [0.0, 2.0, 2.0]]],
     [[[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]]),
    ("amin_ties_split", lambda m, x: x.amin(0), [[[3.0, 1.0], [3.0, 1.0], [4.0, 0.0]]],
     [[[0.5, 0.0], [0.5, 0.0], [0.0, 1.0]]]),
    ("max_all_ties_split", lambda m, x: x.max(), [[2.0, 2.0, 1.0, 2.0]],
     [[1 / 3, 1 / 3, 0.0, 1 / 3]]),
    ("max_dim_tie_goes_to_index", lambda m, x: x.max(1).values, [[[3.0, 1.0, 3.0], [0.0, 2.0, 2.0]]],
     [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]),
    ("min_dim_tie_goes_to_index", lambda m, x: x.min(0).values, [[[3.0, 1.0], [3.0, 1.0]]],
     [[[1.0, 1.0], [0.0, 0.0]]]),
]


@pytest.mark.parametrize("name, fn, inputs, expected", CONVENTIONS,
                         ids=[c[0] for c in CONVENTIONS])
def test_gradient_at_kinks_and_ties(name, fn, inputs, expected):
    xs = [tg.tensor(v, dtype=tg.float64, requires_grad=True) for v in inputs]
    grads = tg.autograd.grad(fn(tg, *xs).sum(), xs)
    for grad, want in zip(grads, expected):
        np.testing.assert_allclose(grad.numpy(), np.array(want), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, fn, inputs, expected", CONVENTIONS,
                         ids=[c[0] for c in CONVENTIONS])
def test_kink_conventions_are_pytorchs(name, fn, inputs, expected):
    """The expected values in CONVENTIONS are what PyTorch does."""
    torch = torch_api()
    xs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in inputs]
    grads = torch.autograd.grad(fn(torch, *xs).sum(), xs)
    for grad, want in zip(grads, expected):
        np.testing.assert_allclose(grad.numpy(), np.array(want), rtol=1e-12, atol=0)


# ------------------------------------------------------------------ repeated indices
@GRADCHECK
@given(shape=shapes(min_dims=1, min_side=1), seed=seeds(), data=st.data())
def test_repeated_indices_accumulate_gradient(shape, seed, data):
    """x[idx] with idx = [i, i, j, i ...]: x[i] gets the sum of its picks' gradients."""
    picks = data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=6),
                      label="picks")
    picks = picks + picks[:1] * 2
    (x,) = draw_arrays(np.random.default_rng(seed), [shape], ["real"])
    w = np.random.default_rng(seed + 1).standard_normal((len(picks),) + shape[1:])
    t = tg.tensor(x, requires_grad=True)
    (grad,) = tg.autograd.grad((t[picks] * tg.tensor(w)).sum(), [t])
    want = np.zeros(shape)
    np.add.at(want, np.array(picks), w)
    np.testing.assert_allclose(grad.numpy(), want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ dtype promotion
def _t(m, values, dtype):
    return m.tensor(values, dtype=getattr(m, dtype))


# (label, fn(m) -> tensor, the dtype PyTorch gives)
PROMOTIONS = [
    ("float32 * python float", lambda m: _t(m, [1.0, 2.0], "float32") * 2.5, "float32"),
    ("python float - float32", lambda m: 2.5 - _t(m, [1.0, 2.0], "float32"), "float32"),
    ("float32 + python int", lambda m: _t(m, [1.0, 2.0], "float32") + 2, "float32"),
    ("float32 ** python int", lambda m: _t(m, [1.0, 2.0], "float32") ** 2, "float32"),
    ("python float ** float32", lambda m: 2.0 ** _t(m, [1.0, 2.0], "float32"), "float32"),
    ("float16 * python float", lambda m: _t(m, [1.0, 2.0], "float16") * 2.5, "float16"),
    ("float64 * python float", lambda m: _t(m, [1.0, 2.0], "float64") * 2.5, "float64"),
    ("int64 + python float", lambda m: _t(m, [1, 2], "int64") + 2.5, "float32"),
    ("python float * int64", lambda m: 2.5 * _t(m, [1, 2], "int64"), "float32"),
    ("int64 + python int", lambda m: _t(m, [1, 2], "int64") + 2, "int64"),
    ("int64 / python int", lambda m: _t(m, [1, 2], "int64") / 2, "float32"),
    ("int64 / int64", lambda m: _t(m, [1, 2], "int64") / _t(m, [2, 2], "int64"), "float32"),
    ("float32 + float64", lambda m: _t(m, [1.0], "float32") + _t(m, [1.0], "float64"),
     "float64"),
    ("float64 * float32", lambda m: _t(m, [1.0], "float64") * _t(m, [1.0], "float32"),
     "float64"),
    ("int64 + float32", lambda m: _t(m, [1], "int64") + _t(m, [1.0], "float32"), "float32"),
    ("float32 - int64", lambda m: _t(m, [1.0], "float32") - _t(m, [1], "int64"), "float32"),
    ("exp of int64", lambda m: _t(m, [1, 2], "int64").exp(), "float32"),
    ("sigmoid of int64", lambda m: _t(m, [1, 2], "int64").sigmoid(), "float32"),
    ("int32 + int64", lambda m: _t(m, [1], "int32") + _t(m, [1], "int64"), "int64"),
    ("bool + python int", lambda m: _t(m, [True], "bool") + 1, "int64"),
    ("cat float32, float64", lambda m: m.cat([_t(m, [1.0], "float32"), _t(m, [1.0], "float64")]),
     "float64"),
    ("cat int64, float32", lambda m: m.cat([_t(m, [1], "int64"), _t(m, [1.0], "float32")]),
     "float32"),
    ("where float32, python float",
     lambda m: m.where(_t(m, [True, False], "bool"), _t(m, [1.0, 2.0], "float32"), 0.5),
     "float32"),
]


@pytest.mark.parametrize("label, fn, expected", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_dtype_promotion(label, fn, expected):
    assert dtype_name(fn(tg).dtype) == expected


@pytest.mark.parametrize("label, fn, expected", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_dtype_promotion_table_is_pytorchs(label, fn, expected):
    assert dtype_name(fn(torch_api()).dtype) == expected


def test_gradient_keeps_each_inputs_dtype():
    """float32 x float64 computes in float64, but x.grad comes back float32."""
    x = tg.tensor([1.0, 2.0], dtype=tg.float32, requires_grad=True)
    y = tg.tensor([3.0, 4.0], dtype=tg.float64, requires_grad=True)
    (x * y * 2.5).sum().backward()
    assert x.grad.dtype == np.float32 and y.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), [7.5, 10.0])
    np.testing.assert_allclose(y.grad.numpy(), [2.5, 5.0])


# ------------------------------------------------------------------ gradcheck itself
class _SquareWithBump(Function):
    """x², whose backward adds 1 at one position: wrong at exactly that element."""
    save_inputs = True

    def forward(self, a, position):
        self.position = position
        return a * a

    def backward(self, grad):
        (a,) = self.saved_inputs
        bump = np.zeros(a.shape)
        bump[self.position] = 1.0
        return grad * 2 * a + tg.tensor(bump)


@pytest.mark.parametrize("shape, position", [((12,), (5,)), ((3, 4), (1, 2)), ((2, 1, 3), (1, 0, 0))])
def test_gradcheck_fails_on_wrong_backward_and_names_the_element(shape, position):
    x = tg.tensor(np.random.default_rng(0).standard_normal(shape), dtype=tg.float64,
                  requires_grad=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda t: _SquareWithBump.apply(t, position=position), (x,))
    message = str(info.value)
    assert f"index {position}" in message
    assert f"1 of {x.numel()} elements disagree" in message


class _SoftmaxWithBuggyBackward(Function):
    """A correct softmax forward with a backward that is right only when the
    incoming gradient is the same for every element of a row (as under .sum())."""
    save_output = True
    buggy_backward = None

    def forward(self, a):
        return np_softmax(a, -1)

    def backward(self, grad):
        return self.buggy_backward(grad, self.saved_output)


SUM_HIDDEN_BUGS = [
    # y * (g - mean(g)) instead of y * (g - Σ g·y)
    ("mean_instead_of_weighted_sum", lambda g, y: y * (g - g.mean(-1, keepdim=True))),
    # a backward that drops the gradient: sum(softmax) is constant, so 0 "is right"
    ("returns_zeros", lambda g, y: g * 0),
]


@pytest.mark.parametrize("name, backward", SUM_HIDDEN_BUGS, ids=[b[0] for b in SUM_HIDDEN_BUGS])
def test_gradcheck_weights_outputs_so_sum_cannot_hide_a_softmax_bug(name, backward):
    op = type("Buggy", (_SoftmaxWithBuggyBackward,), {"buggy_backward": staticmethod(backward)})
    x = tg.tensor(np.random.default_rng(0).standard_normal((3, 4)), dtype=tg.float64,
                  requires_grad=True)
    # A check of out.sum() passes: its true gradient is 0, and so is the buggy one.
    (summed_grad,) = tg.autograd.grad(op.apply(x).sum(), [x])
    np.testing.assert_allclose(summed_grad.numpy(), 0.0, atol=1e-12)
    # gradcheck's random output weights expose it.
    with pytest.raises(tg.GradcheckError):
        tg.gradcheck(op.apply, (x,))


class _SquareWithConstantBackward(Function):
    """x² with backward grad · 2x where 2x is a constant: the first derivative is
    right, but the graph of the gradient misses its dependence on x."""
    save_inputs = True

    def forward(self, a):
        return a * a

    def backward(self, grad):
        (a,) = self.saved_inputs
        return grad * tg.tensor(2 * a.data)


def test_gradgradcheck_fails_on_wrong_double_backward():
    x = tg.tensor(np.random.default_rng(0).standard_normal((2, 3)), dtype=tg.float64,
                  requires_grad=True)
    assert tg.gradcheck(_SquareWithConstantBackward.apply, (x,))
    with pytest.raises(tg.GradcheckError):
        tg.gradgradcheck(_SquareWithConstantBackward.apply, (x,))


def test_gradcheck_refuses_float32_inputs():
    x = tg.tensor([1.0, 2.0], dtype=tg.float32, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        tg.gradcheck(lambda t: t * 2, (x,))

"""Shared pieces of the op tests: shape strategies, test data, and the PyTorch bridge.

An op under test is written once as ``fn(m, *xs)``, where ``m`` is either the
``tinygrad_zh`` module or :func:`torch_api` (PyTorch with the same spellings:
``m.cat``, ``m.where``, ``m.gelu`` ...), and ``xs`` are tensors of that library.
The same ``fn`` is then gradchecked, compared with a NumPy formula, and compared
with PyTorch.

Data is drawn with ``numpy.random.default_rng(seed).standard_normal`` from a
seed that Hypothesis draws (not with Hypothesis floats, which love exact ties
and huge values); a *domain* then maps it away from an op's kinks or poles.
"""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_zh as tg

# gradcheck runs two forward passes per input element: keep tensors small.
MAX_NUMEL = 40

# Where data may lie, as a map from standard-normal samples.
DOMAINS = {
    "real": lambda z: z,
    "positive": lambda z: np.abs(z) + 0.5,                       # log, sqrt, a ** b
    "nonzero": lambda z: np.where(z < 0, z - 0.5, z + 0.5),      # |x| >= 0.5: abs, relu, 1/x
}

# Shapes every shape strategy mixes in, so that each test meets them early:
# 0-d, size-1 dims, zero-size dims.
EDGE_SHAPES = [(), (1,), (0,), (1, 1), (3, 0), (0, 1, 2), (2, 1, 3), (1, 4, 1)]
EDGE_BROADCASTS = {
    2: [((3, 1), (1, 4)), ((2, 3), ()), ((), (2, 3)), ((0, 3), (1, 3)), ((2, 1, 3), (4, 1)),
        ((1,), (3, 0)), ((4,), (2, 1, 4))],
    3: [((2, 3), (1, 3), (2, 1)), ((0, 1), (1, 2), ()), ((3, 1), (), (1, 1, 4)), ((), (), ())],
}


def numel(shape):
    return math.prod(shape)


def shapes(min_dims=0, max_dims=3, min_side=0, max_side=4, max_numel=MAX_NUMEL):
    """Array shapes up to ``max_numel`` elements, edge cases (0-d, 1s, 0s) mixed in."""
    # 0-d and zero-size shapes come from the edge list: left to itself Hypothesis draws
    # them far too often, and they test little beyond that the op runs.
    general = hnp.array_shapes(min_dims=max(min_dims, 1), max_dims=max_dims,
                               min_side=max(min_side, 1), max_side=max_side,
                               ).filter(lambda s: numel(s) <= max_numel)
    edges = [s for s in EDGE_SHAPES
             if min_dims <= len(s) <= max_dims and all(min_side <= n <= max_side for n in s)]
    return st.one_of(general, st.sampled_from(edges)) if edges else general


def broadcastable_shapes(num_shapes, max_numel=MAX_NUMEL):
    """``num_shapes`` shapes that broadcast together (size-1 dims, missing dims, 0s)."""
    # (0-d operands and zero-size dims come from the edge list, as in shapes())
    general = hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=1, max_dims=3, min_side=1, max_side=4,
    ).filter(lambda b: numel(b.result_shape) <= max_numel).map(lambda b: b.input_shapes)
    return st.one_of(general, st.sampled_from(EDGE_BROADCASTS[num_shapes]))


def seeds():
    return st.integers(0, 2**32 - 1)


def draw_arrays(rng, shapes_, domains):
    """float64 test data: standard normal samples, mapped into each input's domain."""
    return tuple(DOMAINS[d](rng.standard_normal(s)) for s, d in zip(shapes_, domains))


@dataclass(frozen=True)
class Case:
    """One drawn test case: an op with its arguments fixed, and its input data.

    ``fn(m, *xs)`` runs the op with library ``m``; ``ref(*arrays)`` is the NumPy
    formula for its forward value; ``torch`` is False where PyTorch cannot run
    the case (e.g. a negative-step slice).
    """
    label: str
    fn: Callable
    ref: Callable
    arrays: tuple
    seed: int
    torch: bool = True

    def __repr__(self):
        shapes_ = ", ".join(str(a.shape) for a in self.arrays)
        return f"Case({self.label} on shapes [{shapes_}], seed={self.seed})"

    def leaves(self):
        """Fresh float64 leaf tensors that require grad."""
        return tuple(tg.tensor(a, dtype=tg.float64, requires_grad=True) for a in self.arrays)


def make_case(draw, label, fn, ref, shapes_, domains, torch=True, build=None):
    """Draw a seed and the input data of a Case.

    ``build(rng)``, if given, draws the op's constant operands (masks, conditions)
    from the same generator, after the data, and returns ``(fn, ref)``.
    """
    seed = draw(seeds())
    rng = np.random.default_rng(seed)
    arrays = draw_arrays(rng, shapes_, domains)
    if build is not None:
        fn, ref = build(rng)
    return Case(label, fn, ref, arrays, seed, torch)


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# ------------------------------------------------------------------ PyTorch
class _TorchAPI:
    """PyTorch under tinygrad_zh's module-level names (the activations from torch.nn.functional)."""

    def __init__(self, torch):
        self._torch = torch

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def gelu(self, x, approximate="none"):
        return self._torch.nn.functional.gelu(x, approximate=approximate)

    def softplus(self, x, beta=1.0, threshold=20.0):
        return self._torch.nn.functional.softplus(x, beta=beta, threshold=threshold)

    def logsigmoid(self, x):
        return self._torch.nn.functional.logsigmoid(x)


_torch_api = None


def torch_api():
    """PyTorch behind tinygrad_zh's names, or skip the test when it is not installed."""
    global _torch_api
    if _torch_api is None:
        torch = pytest.importorskip(
            "torch", reason="PyTorch is not installed: the comparison with PyTorch is skipped "
                            "(the gradcheck and NumPy checks still run)")
        torch.set_num_threads(1)
        _torch_api = _TorchAPI(torch)
    return _torch_api


def to_numpy(t):
    """A tinygrad_zh or torch tensor's values as a NumPy array."""
    if isinstance(t, tg.Tensor):
        return t.detach().numpy()
    return t.detach().cpu().numpy()


def weighted_grads(m, fn, arrays, weight_seed=1234):
    """Outputs of ``fn(m, *xs)`` and d(Σ w ⊙ out)/d(xs) with random weights w.

    Runs the same way on tinygrad_zh (``m = tg``) and PyTorch, so the two can be
    compared element for element. Inputs the output does not use get zeros.
    """
    if m is tg:
        xs = [tg.tensor(a, dtype=tg.float64, requires_grad=True) for a in arrays]
        constant = lambda w: tg.tensor(w, dtype=tg.float64)  # noqa: E731
        grad = tg.autograd.grad
    else:
        xs = [m.tensor(a, dtype=m.float64, requires_grad=True) for a in arrays]
        constant = lambda w: m.tensor(w, dtype=m.float64)  # noqa: E731
        grad = m.autograd.grad
    outs = as_tuple(fn(m, *xs))
    rng = np.random.default_rng(weight_seed)
    loss = sum((o * constant(rng.standard_normal(tuple(o.shape)))).sum() for o in outs)
    grads = grad(loss, xs, allow_unused=True)
    return ([to_numpy(o) for o in outs],
            [np.zeros(a.shape) if g is None else to_numpy(g) for g, a in zip(grads, arrays)])


def dtype_name(dtype):
    """'float32' for both np.dtype('float32') and torch.float32."""
    return str(dtype).replace("torch.", "")


# ------------------------------------------------------------------ the four checks of an op table
FORWARD_TOL = dict(rtol=1e-9, atol=1e-12)
TORCH_TOL = dict(rtol=1e-7, atol=1e-10)


def hypothesis_settings(max_examples):
    """Derandomized: the same cases on every run, so a failure reproduces, and
    no .hypothesis database is written."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def op_table_tests(table, second_order, gradcheck=25, gradgradcheck=8, forward=15, torch=15):
    """The four tests every table of op cases (name -> strategy drawing a Case) gets:

    - ``test_gradcheck``              tg.gradcheck: backward vs central differences
    - ``test_gradgradcheck``          tg.gradgradcheck, for the names in ``second_order``
    - ``test_forward_matches_numpy``  forward vs the case's NumPy formula (same dtype too)
    - ``test_matches_torch``          forward and weighted gradients vs PyTorch

    A test module binds them by name so that pytest collects them::

        test_gradcheck, test_gradgradcheck, test_forward_matches_numpy, test_matches_torch = \
            op_table_tests(OPS, SECOND_ORDER)

    The numbers are Hypothesis examples per op for each test.
    """
    @pytest.mark.parametrize("op", list(table))
    @hypothesis_settings(gradcheck)
    @given(data=st.data())
    def test_gradcheck(op, data):
        case = data.draw(table[op], label="case")
        assert tg.gradcheck(lambda *xs: case.fn(tg, *xs), case.leaves()), case

    @pytest.mark.parametrize("op", list(second_order))
    @hypothesis_settings(gradgradcheck)
    @given(data=st.data())
    def test_gradgradcheck(op, data):
        case = data.draw(table[op], label="case")
        assert tg.gradgradcheck(lambda *xs: case.fn(tg, *xs), case.leaves()), case

    @pytest.mark.parametrize("op", list(table))
    @hypothesis_settings(forward)
    @given(data=st.data())
    def test_forward_matches_numpy(op, data):
        case = data.draw(table[op], label="case")
        outs = as_tuple(case.fn(tg, *case.leaves()))
        expected = as_tuple(case.ref(*case.arrays))
        assert len(outs) == len(expected), f"{len(outs)} outputs, expected {len(expected)}"
        for out, want in zip(outs, expected):
            # strict: same shape and dtype (float64 in, float64 out), then same values
            np.testing.assert_allclose(to_numpy(out), np.asarray(want), strict=True,
                                       err_msg=repr(case), **FORWARD_TOL)

    @pytest.mark.parametrize("op", list(table))
    @hypothesis_settings(torch)
    @given(data=st.data())
    def test_matches_torch(op, data):
        torch_ = torch_api()
        case = data.draw(table[op], label="case")
        assume(case.torch)
        outs, grads = weighted_grads(tg, case.fn, case.arrays)
        torch_outs, torch_grads = weighted_grads(torch_, case.fn, case.arrays)
        assert len(outs) == len(torch_outs), f"{len(outs)} outputs, PyTorch has {len(torch_outs)}"
        for out, want in zip(outs, torch_outs):
            np.testing.assert_allclose(out, want, strict=True, err_msg=f"forward: {case!r}",
                                       **TORCH_TOL)
        for i, (grad, want) in enumerate(zip(grads, torch_grads)):
            np.testing.assert_allclose(grad, want, strict=True,
                                       err_msg=f"gradient of input {i}: {case!r}", **TORCH_TOL)

    return test_gradcheck, test_gradgradcheck, test_forward_matches_numpy, test_matches_torch

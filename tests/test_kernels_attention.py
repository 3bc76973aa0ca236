"""The attention kernels against the NumPy reference, on raw (..., L, E) arrays.

Every implementation — Numba CPU, numba.cuda (in the CUDA simulator here) —
must give the reference's output, log-sum-exp and gradients on odd sizes that
are not multiples of the block sizes, L = 1, L != S, causal or not, with an
additive mask, in float64 (rtol 1e-10) and float32 (rtol 1e-4, atol 1e-5).
The reference itself is checked against the composite Tensor-op attention and
PyTorch in test_attention.py. Then: causality for every implementation, a
fully masked row, the dispatch switch and the compile-failure fallback.
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh.kernels as K
from conftest import requires_real_gpu
from tinygrad_zh.kernels import dispatch, reference

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None)
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def implementations():
    """name -> module with attention_forward / attention_backward."""
    from tinygrad_zh.kernels.numba_cpu import attention as numba_attention
    impls = {"reference": reference, "numba_cpu": numba_attention}
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        from tinygrad_zh.kernels.cuda_gpu import attention as cuda_attention
        impls["cuda_sim"] = cuda_attention
    return impls


FAST = sorted(set(implementations()) - {"reference"})


def make_problem(rng, n, length, source_length, key_dim, value_dim, dtype, masked):
    q = rng.standard_normal((n, length, key_dim))
    k = rng.standard_normal((n, source_length, key_dim))
    v = rng.standard_normal((n, source_length, value_dim))
    grad_out = rng.standard_normal((n, length, value_dim))
    mask = None
    if masked:  # random additive values, about a third of the keys dropped (-inf), key 0 kept
        mask = np.where(rng.random((n, length, source_length)) < 0.3, -np.inf,
                        rng.standard_normal((n, length, source_length)))
        mask[..., 0] = 0.0
        mask = mask.astype(dtype)
    return [a.astype(dtype) for a in (q, k, v)], mask, grad_out.astype(dtype)


def run(module, q, k, v, mask, is_causal, scale, grad_out):
    out, lse = module.attention_forward(q, k, v, mask, is_causal, scale)
    grads = module.attention_backward(q, k, v, mask, is_causal, scale, out, lse, grad_out)
    return (out, lse) + tuple(grads)


@st.composite
def problems(draw):
    # Sizes around the CPU kernel's blocks (32 query rows, 64 keys) and the GPU
    # kernel's 32-thread blocks, but kept small for the CUDA simulator.
    sizes = dict(n=draw(st.sampled_from([1, 3])),
                 length=draw(st.sampled_from([1, 2, 7, 33])),
                 source_length=draw(st.sampled_from([1, 5, 33, 65])),
                 key_dim=draw(st.sampled_from([1, 3, 8])),
                 value_dim=draw(st.sampled_from([1, 2, 5])),
                 dtype=draw(st.sampled_from([np.float32, np.float64])),
                 masked=draw(st.booleans()))
    is_causal = draw(st.booleans()) and not sizes["masked"]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return sizes, is_causal, make_problem(rng, **sizes)


@pytest.mark.parametrize("impl", FAST)
@SETTINGS
@given(problem=problems())
def test_matches_the_reference(impl, problem):
    sizes, is_causal, ((q, k, v), mask, grad_out) = problem
    scale = 1 / np.sqrt(sizes["key_dim"])
    expected = run(reference, q, k, v, mask, is_causal, scale, grad_out)
    got = run(implementations()[impl], q, k, v, mask, is_causal, scale, grad_out)
    for name, a, e in zip(("out", "lse", "grad_q", "grad_k", "grad_v"), got, expected):
        assert a.shape == e.shape and a.dtype == sizes["dtype"], (name, a.shape, a.dtype)
        np.testing.assert_allclose(a, e, **TOLERANCE[sizes["dtype"]],
                                   err_msg=f"{impl}: {name}, {sizes}, causal={is_causal}")


@pytest.mark.parametrize("impl", sorted(implementations()))
def test_changing_future_keys_changes_nothing_before(impl):
    # Causal: outputs at rows < t, and every gradient of a loss on those rows,
    # must not depend on keys and values at positions >= t.
    rng = np.random.default_rng(5)
    t, length = 4, 9
    (q, k, v), _, grad_out = make_problem(rng, 2, length, length, 3, 2, np.float64, False)
    grad_out[:, t:] = 0.0          # the loss only looks at rows < t
    k2, v2 = k.copy(), v.copy()
    k2[:, t:] = rng.standard_normal(k2[:, t:].shape) * 10
    v2[:, t:] = rng.standard_normal(v2[:, t:].shape) * 10
    module = implementations()[impl]
    before = run(module, q, k, v, None, True, 0.5, grad_out)
    after = run(module, q, k2, v2, None, True, 0.5, grad_out)
    for name, a, b in zip(("out", "lse", "grad_q", "grad_k", "grad_v"), before, after):
        np.testing.assert_allclose(a[:, :t], b[:, :t], rtol=1e-13, atol=1e-15, err_msg=name)
    for name, a in zip(("grad_k", "grad_v"), after[3:]):
        np.testing.assert_array_equal(a[:, t:], 0.0, err_msg=f"{name}: future keys got gradient")
    assert not np.allclose(before[0][:, t:], after[0][:, t:])   # the change was seen later on


@pytest.mark.parametrize("impl", sorted(implementations()))
def test_batch_dims_are_heads_and_gradients_are_arrays_of_their_own(impl):
    # (B, H, L, E) gives what the same heads give as (B*H, L, E); the gradients
    # come back in the inputs' shapes and own their memory (not views), so that
    # autograd can keep them as .grad without copying megabytes.
    rng = np.random.default_rng(11)
    (q, k, v), mask, grad_out = make_problem(rng, 6, 33, 35, 3, 2, np.float64, True)
    batched = [a.reshape(2, 3, *a.shape[1:]) for a in (q, k, v, mask, grad_out)]
    module = implementations()[impl]
    flat = run(module, q, k, v, mask, False, 0.7, grad_out)
    got = run(module, *batched[:4], False, 0.7, batched[4])
    for name, f, g in zip(["out", "lse", "grad_q", "grad_k", "grad_v"], flat, got):
        assert g.shape == (2, 3) + f.shape[1:], name
        np.testing.assert_allclose(g.reshape(f.shape), f, rtol=1e-12, err_msg=name)
    for name, g in zip(["grad_q", "grad_k", "grad_v"], got[2:]):
        assert g.base is None, name


@pytest.mark.parametrize("impl", sorted(implementations()))
def test_a_fully_masked_row_gives_nan_as_pytorch(impl):
    rng = np.random.default_rng(6)
    (q, k, v), mask, _ = make_problem(rng, 1, 3, 4, 2, 2, np.float64, True)
    mask[0, 1, :] = -np.inf
    out, _ = implementations()[impl].attention_forward(q, k, v, mask, False, 1.0)
    assert np.isnan(out[0, 1]).all()
    assert np.isfinite(out[0, [0, 2]]).all()


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_nan_reaches_the_same_outputs_and_gradients_as_in_the_reference(impl, dtype):
    # A NaN in key 2 of head 1 reaches the causal rows that see it (2 and
    # later) and their gradients, never rows 0 and 1: a kernel that turned it
    # into a probability of 0 would be silently wrong. (The reference's matmul
    # also multiplies the masked zeros by the NaN, 0 * NaN = NaN, in places the
    # fused kernels rightly skip: only where it is finite must they agree.)
    rng = np.random.default_rng(8)
    (q, k, v), _, grad_out = make_problem(rng, 2, 37, 37, 3, 2, dtype, False)
    k[1, 2, 0] = np.nan
    with np.errstate(invalid="ignore"):
        expected = run(reference, q, k, v, None, True, 0.5, grad_out)
        got = run(implementations()[impl], q, k, v, None, True, 0.5, grad_out)
    for name, e, g in zip(["out", "lse", "grad_q", "grad_k", "grad_v"], expected, got):
        if name in ("out", "lse"):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(e), err_msg=name)
            assert np.isnan(g[1, 2:]).all() and not np.isnan(g[1, :2]).any(), name
        else:
            assert np.isnan(g[1]).any() and not np.isnan(g[0]).any(), name
        finite = np.isfinite(e)
        np.testing.assert_allclose(g[finite], e[finite], **TOLERANCE[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_exp_matches_numpy(dtype):
    from numba import njit
    from tinygrad_zh.kernels.numba_cpu.attention import exp_shifted

    @njit
    def run_exp(tile, shifts, rows, cols):
        exp_shifted(tile, shifts, rows, cols, np.empty(tile.shape, np.int32))

    rng = np.random.default_rng(9)
    special = [0.0, 1.5, -1e-3, -85.0, -200.0, -np.inf, np.nan]   # at the start of the rows
    tile = np.concatenate([np.tile(special, (3, 1)), rng.uniform(-80, 2, (3, 333))], 1)
    tile[2, :] = -np.inf               # a row with every key masked so far: its shift is -inf
    tile[2, 6] = np.nan
    tile = tile.astype(dtype)
    shifts = np.array([1.5, -2.0, -np.inf], dtype)
    rows, cols = 3, tile.shape[1] - 5  # the last 5 columns must stay untouched
    with np.errstate(invalid="ignore"):
        expected = np.exp((tile - shifts[:, None]).astype(np.float64))  # of the very differences
    expected[tile == -np.inf] = 0.0    # masked: 0 whatever the shift
    got = tile.copy()
    run_exp(got, shifts, rows, cols)
    np.testing.assert_array_equal(got[:, cols:], tile[:, cols:])
    assert np.isnan(got[:, 6]).all()   # NaN stays NaN: bad input shows in the output
    got, expected = np.delete(got[:, :cols], 6, 1), np.delete(expected[:, :cols], 6, 1)
    tiny = expected < 2.0**-126        # below float32's normal range the float32 version gives 0
    if dtype == np.float32:
        np.testing.assert_array_equal(got[tiny], 0.0)
        np.testing.assert_allclose(got[~tiny], expected[~tiny], rtol=5e-7)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)


def test_dispatch_switch_and_fallback_warning(monkeypatch):
    with dispatch.use_reference(False):
        assert K.chosen("attention_forward", "cpu") == "tinygrad_zh.kernels.numba_cpu.attention"
        assert K.chosen("attention_backward", "cuda:0") == \
            "tinygrad_zh.kernels.cuda_gpu.attention"
        with K.use_reference():
            assert K.chosen("attention_forward", "cpu") == "tinygrad_zh.kernels.reference"
    from numba.core.errors import LoweringError
    from tinygrad_zh.kernels.numba_cpu import attention as numba_attention

    def cannot_compile(*args):
        raise LoweringError("simulated: cannot lower the attention kernel")

    monkeypatch.setattr(numba_attention, "_forward", cannot_compile)
    monkeypatch.setattr(dispatch, "_failed", set())
    rng = np.random.default_rng(7)
    (q, k, v), _, _ = make_problem(rng, 2, 3, 5, 4, 4, np.float64, False)
    with dispatch.use_reference(False), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = K.attention_forward(q, k, v, None, True, 0.5)
        second = K.attention_forward(q, k, v, None, True, 0.5)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "attention_forward" in messages[0], messages
    assert "LoweringError" in messages[0] and "NumPy reference" in messages[0]
    expected = reference.attention_forward(q, k, v, None, True, 0.5)
    for got in (first, second):
        np.testing.assert_array_equal(got[0], expected[0])
    assert K.chosen("attention_backward", "cpu") == "tinygrad_zh.kernels.numba_cpu.attention"


# ------------------------------------------------------------------ real GPU
@requires_real_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("is_causal", [False, True])
def test_gpu_kernels_on_cupy_match_the_reference(dtype, is_causal):
    import cupy
    rng = np.random.default_rng(8)
    (q, k, v), _, grad_out = make_problem(rng, 3, 77, 130, 16, 8, dtype, False)
    expected = run(reference, q, k, v, None, is_causal, 0.25, grad_out)
    on_gpu = [cupy.asarray(a) for a in (q, k, v, grad_out)]
    out, lse = K.attention_forward(*on_gpu[:3], None, is_causal, 0.25)
    grads = K.attention_backward(*on_gpu[:3], None, is_causal, 0.25, out, lse, on_gpu[3])
    for a, e in zip((out, lse) + tuple(grads), expected):
        np.testing.assert_allclose(cupy.asnumpy(a), e, **TOLERANCE[dtype])

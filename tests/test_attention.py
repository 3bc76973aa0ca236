"""scaled_dot_product_attention: every path against the composite's autograd.

Paths: the fused Function with the default kernel (Numba on the CPU), the
fused Function with the NumPy reference forced, and the composite
``sdpa_reference`` itself (checked against PyTorch and by gradcheck). Shapes
are drawn with Hypothesis: batch dims that broadcast, L = 1, L != S, odd sizes,
causal or not, bool and float masks. float64 agrees to rtol 1e-10; float32 to
rtol 1e-4 / atol 1e-5.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import requires_real_gpu
import tinygrad_zh as tg
import tinygrad_zh.kernels as K
from helpers import to_numpy, torch_api
from tinygrad_zh.ops.attention import FusedAttention, scaled_dot_product_attention, sdpa_reference

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None)
TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}

PATHS = {
    "fused_default": (scaled_dot_product_attention, lambda: K.use_reference(False)),
    "fused_reference": (scaled_dot_product_attention, K.use_reference),
    "composite": (sdpa_reference, contextlib.nullcontext),
}


@st.composite
def attention_cases(draw):
    """Shapes, options and float64 data of one attention call."""
    batch = draw(st.sampled_from([(), (1,), (2,), (2, 3)]))
    # key/value may broadcast over the leading batch dims (e.g. one key set for every head)
    kv_batch = draw(st.sampled_from([batch, tuple(1 for _ in batch), batch[1:]]))
    length, source_length = draw(st.sampled_from([1, 2, 5])), draw(st.sampled_from([1, 3, 6]))
    key_dim, value_dim = draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 2]))
    mask_kind = draw(st.sampled_from(["none", "causal", "bool", "float"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = [rng.standard_normal(batch + (length, key_dim)),
              rng.standard_normal(kv_batch + (source_length, key_dim)),
              rng.standard_normal(kv_batch + (source_length, value_dim))]
    mask = None
    if mask_kind == "bool":   # broadcast over the batch; key 0 always allowed (no NaN rows)
        mask = rng.random((length, source_length)) < 0.6
        mask[:, 0] = True
    elif mask_kind == "float":
        mask = rng.standard_normal(batch[-1:] + (1, source_length))
    scale = draw(st.sampled_from([None, 0.7]))
    return dict(arrays=arrays, mask=mask, is_causal=mask_kind == "causal", scale=scale)


def outputs_and_grads(path, case, dtype="float64"):
    """Output of one path and d(sum(w * out))/d(q, k, v), as NumPy arrays."""
    fn, context = PATHS[path]
    q, k, v = (tg.tensor(a, dtype=dtype, requires_grad=True) for a in case["arrays"])
    mask = case["mask"]
    if mask is not None:
        mask = tg.tensor(mask, dtype=tg.bool if mask.dtype == bool else dtype)
    with context():
        out = fn(q, k, v, attn_mask=mask, is_causal=case["is_causal"], scale=case["scale"])
        weights = tg.tensor(np.random.default_rng(0).standard_normal(out.shape), dtype=dtype)
        grads = tg.autograd.grad((out * weights).sum(), [q, k, v])
    return [to_numpy(out)] + [to_numpy(g) for g in grads]


@pytest.mark.parametrize("path", ["fused_default", "fused_reference"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@SETTINGS
@given(case=attention_cases())
def test_fused_matches_the_composite(path, dtype, case):
    expected = outputs_and_grads("composite", case, dtype)
    got = outputs_and_grads(path, case, dtype)
    for name, a, e in zip(("out", "grad_q", "grad_k", "grad_v"), got, expected):
        assert a.shape == e.shape, (name, a.shape, e.shape)
        np.testing.assert_allclose(a, e, **TOLERANCE[dtype], err_msg=f"{path}: {name}")


@SETTINGS
@given(case=attention_cases())
def test_composite_matches_torch(case):
    torch = torch_api()
    expected = outputs_and_grads("composite", case)
    q, k, v = (torch.tensor(a, requires_grad=True) for a in case["arrays"])
    mask = None if case["mask"] is None else torch.tensor(case["mask"])
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=case["is_causal"], scale=case["scale"])
    weights = torch.tensor(np.random.default_rng(0).standard_normal(tuple(out.shape)))
    grads = torch.autograd.grad((out * weights).sum(), [q, k, v])
    for name, a, e in zip(("out", "grad_q", "grad_k", "grad_v"), [out, *grads], expected):
        np.testing.assert_allclose(to_numpy(a), e, rtol=1e-9, atol=1e-12, err_msg=name)


def test_gradcheck_and_gradgradcheck_of_the_fused_function():
    rng = np.random.default_rng(1)
    q, k, v = (tg.tensor(rng.standard_normal(s), dtype=tg.float64, requires_grad=True)
               for s in [(2, 3, 2), (2, 4, 2), (2, 4, 3)])
    mask = tg.tensor(rng.random((3, 4)) < 0.7)
    mask[:, 0] = True
    for kwargs in (dict(is_causal=True), dict(attn_mask=mask)):
        def fused(a, b, c):
            return scaled_dot_product_attention(a, b, c, **kwargs)
        assert isinstance(fused(q, k, v).grad_fn, FusedAttention)  # the fused path is tested
        assert tg.gradcheck(fused, (q, k, v))
        assert tg.gradgradcheck(fused, (q, k, v))


@pytest.mark.parametrize("path", sorted(PATHS))
def test_changing_future_keys_leaves_earlier_outputs_and_gradients_unchanged(path):
    rng = np.random.default_rng(2)
    t, length = 3, 7
    q, k, v = (rng.standard_normal((2, length, 4)) for _ in range(3))
    k2, v2 = k.copy(), v.copy()
    k2[:, t:] += 5 * rng.standard_normal(k2[:, t:].shape)
    v2[:, t:] += 5 * rng.standard_normal(v2[:, t:].shape)
    fn, context = PATHS[path]
    results = []
    for keys, values in ((k, v), (k2, v2)):
        tensors = [tg.tensor(a, dtype=tg.float64, requires_grad=True) for a in (q, keys, values)]
        with context():
            out = fn(*tensors, is_causal=True)
            grads = tg.autograd.grad(out[:, :t].sum(), tensors)   # a loss on the early rows
        results.append([to_numpy(out)[:, :t]] + [to_numpy(g) for g in grads])
    for name, before, after in zip(("out", "grad_q", "grad_k", "grad_v"), *results):
        np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-14, err_msg=name)
    for grad in results[1][2:]:
        assert not grad[:, t:].any(), "future keys/values got a gradient from earlier rows"


def test_non_contiguous_inputs_from_a_head_split():
    # (B, T, H, D).transpose(1, 2): the usual multi-head layout, not contiguous.
    rng = np.random.default_rng(3)
    x = [tg.tensor(rng.standard_normal((2, 5, 3, 4)), dtype=tg.float64, requires_grad=True)
         for _ in range(3)]
    heads = [a.transpose(1, 2) for a in x]
    assert not heads[0].data.flags.c_contiguous
    fused = scaled_dot_product_attention(*heads, is_causal=True)
    composite = sdpa_reference(*heads, is_causal=True)
    np.testing.assert_allclose(to_numpy(fused), to_numpy(composite), rtol=1e-12)
    grads = tg.autograd.grad(fused.sum() + (fused * fused).sum(), x, retain_graph=True)
    expected = tg.autograd.grad(composite.sum() + (composite * composite).sum(), x)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(to_numpy(g), to_numpy(e), rtol=1e-10, atol=1e-12)


def test_a_fully_masked_row_is_nan_on_both_paths():
    q, k, v = tg.ones(1, 2, 2), tg.ones(1, 3, 2), tg.ones(1, 3, 2)
    mask = tg.tensor([[True, False, True], [False, False, False]])
    for fn in (scaled_dot_product_attention, sdpa_reference):
        with np.errstate(invalid="ignore"):   # softmax of a row of -inf only: NaN, expected
            out = to_numpy(fn(q, k, v, attn_mask=mask))
        assert np.isfinite(out[0, 0]).all() and np.isnan(out[0, 1]).all(), fn.__name__


def test_dropout_runs_the_composite_seeded():
    rng = np.random.default_rng(4)
    q, k, v = (tg.tensor(rng.standard_normal((2, 4, 3)), dtype=tg.float64, requires_grad=True)
               for _ in range(3))

    def with_dropout(a, b, c):
        tg.manual_seed(7)
        return scaled_dot_product_attention(a, b, c, dropout_p=0.5)

    first, second = with_dropout(q, k, v), with_dropout(q, k, v)
    assert not isinstance(first.grad_fn, FusedAttention)
    np.testing.assert_array_equal(to_numpy(first), to_numpy(second))
    no_dropout = to_numpy(scaled_dot_product_attention(q, k, v))
    assert not np.allclose(to_numpy(first), no_dropout)
    assert tg.gradcheck(with_dropout, (q, k, v))


def test_float_mask_that_needs_a_gradient_takes_the_composite():
    rng = np.random.default_rng(5)
    q, k, v = (tg.tensor(rng.standard_normal((3, 2)), dtype=tg.float64) for _ in range(3))
    mask = tg.tensor(rng.standard_normal((3, 3)), dtype=tg.float64, requires_grad=True)
    out = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not isinstance(out.grad_fn, FusedAttention)
    assert tg.gradcheck(lambda m: scaled_dot_product_attention(q, k, v, attn_mask=m), (mask,))


def test_error_messages():
    q, k, v = tg.ones(2, 3, 4), tg.ones(2, 5, 4), tg.ones(2, 5, 6)
    sdpa = scaled_dot_product_attention
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention: expected query "
                                         r"\(\.\.\., L, E\).*key \(2, 5, 3\)"):
        sdpa(q, tg.ones(2, 5, 3), v)
    with pytest.raises(TypeError, match=r"share one floating dtype.*value \(2, 5, 6\) float64"):
        sdpa(q, k, v.double())
    with pytest.raises(ValueError, match=r"batch dims .* do not broadcast"):
        sdpa(q, tg.ones(3, 5, 4), tg.ones(3, 5, 6))
    with pytest.raises(ValueError, match=r"either attn_mask or is_causal"):
        sdpa(q, k, v, attn_mask=tg.ones(3, 5).bool(), is_causal=True)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 4\) does not broadcast to "
                                         r"the scores' shape \(2, 3, 5\)"):
        sdpa(q, k, v, attn_mask=tg.ones(3, 4).bool())
    with pytest.raises(TypeError, match=r"attn_mask must be bool or have the query's dtype"):
        sdpa(q, k, v, attn_mask=tg.ones(3, 5).double())
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\), got 1.5"):
        sdpa(q, k, v, dropout_p=1.5)
    with pytest.raises(ValueError, match=r"query must have at least 2 dims"):
        sdpa(tg.ones(4), k, v)
    with pytest.raises(TypeError, match=r"key must be a Tensor, got ndarray"):
        sdpa(q, np.ones((2, 5, 4)), v)



@requires_real_gpu
@pytest.mark.parametrize("is_causal", [False, True])
def test_cuda_tensors_take_the_gpu_kernels_and_match_the_cpu(is_causal):
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal((2, 3, 37, 8)).astype(np.float32) for _ in range(3)]
    results = {}
    for device in ("cpu", "cuda"):
        tensors = [tg.tensor(a, device=device, requires_grad=True) for a in arrays]
        out = scaled_dot_product_attention(*tensors, is_causal=is_causal)
        grads = tg.autograd.grad((out * out).sum(), tensors)
        results[device] = [to_numpy(out.cpu())] + [to_numpy(g.cpu()) for g in grads]
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, **TOLERANCE["float32"])

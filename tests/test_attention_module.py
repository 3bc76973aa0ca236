"""nn.MultiheadAttention: against a NumPy formula, gradcheck, PyTorch, and its errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from tinygrad_zh import nn

CHECK = settings(max_examples=8, deadline=None, derandomize=True, database=None)


def make(E=8, H=2, seed=0, **kwargs):
    tg.manual_seed(seed)
    return nn.MultiheadAttention(E, H, **kwargs).double()


def numpy_mha(mha, q, k, v, mask=None):
    """The layer's formula, batch first, written with NumPy only; mask True = banned."""
    W, b = mha.in_proj_weight.detach().numpy(), mha.in_proj_bias.detach().numpy()
    E, H = mha.embed_dim, mha.num_heads
    hd = E // H

    def heads(x, i):
        y = x @ W[i * E:(i + 1) * E].T + b[i * E:(i + 1) * E]
        return y.reshape(y.shape[0], y.shape[1], H, hd).transpose(0, 2, 1, 3)

    scores = heads(q, 0) @ heads(k, 1).transpose(0, 1, 3, 2) / np.sqrt(hd)
    if mask is not None:
        scores = np.where(mask, -np.inf, scores)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out = (w @ heads(v, 2)).transpose(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], E)
    out = out @ mha.out_proj.weight.detach().numpy().T + mha.out_proj.bias.detach().numpy()
    return out, w.mean(1)


@given(N=st.integers(1, 3), L=st.integers(1, 5), S=st.integers(1, 5), seed=st.integers(0, 999))
@CHECK
def test_forward_matches_numpy(N, L, S, seed):
    mha = make(batch_first=True)
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((N, L, 8)), rng.standard_normal((N, S, 8)), \
        rng.standard_normal((N, S, 8))
    out, w = mha(tg.tensor(q), tg.tensor(k), tg.tensor(v))
    ref_out, ref_w = numpy_mha(mha, q, k, v)
    np.testing.assert_allclose(out.detach().numpy(), ref_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.detach().numpy(), ref_w, rtol=1e-10, atol=1e-12)


def test_causal_mask_matches_numpy_and_hides_the_future():
    mha = make(batch_first=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 8))
    banned = np.triu(np.ones((4, 4), dtype=bool), 1)
    out, w = mha(tg.tensor(x), tg.tensor(x), tg.tensor(x), attn_mask=tg.tensor(banned),
                 is_causal=True)
    ref_out, _ = numpy_mha(mha, x, x, x, banned)
    np.testing.assert_allclose(out.detach().numpy(), ref_out, rtol=1e-10)
    assert np.all(w.detach().numpy()[:, banned] == 0)


@given(N=st.integers(1, 2), L=st.integers(1, 3), seed=st.integers(0, 999))
@CHECK
def test_gradcheck(N, L, seed):
    mha = make(E=4, H=2, batch_first=True)
    rng = np.random.default_rng(seed)
    q, k = (tg.tensor(rng.standard_normal((N, L, 4)), requires_grad=True) for _ in range(2))
    mask = tg.tensor(rng.random((N, L)) < 0.3)
    mask.data[:, 0] = False   # every query keeps at least one key
    assert tg.gradcheck(lambda a, b: mha(a, b, b, key_padding_mask=mask)[0], (q, k))


@pytest.mark.parametrize("name", ["in_proj_weight", "in_proj_bias", "out_proj.weight",
                                  "out_proj.bias"])
def test_parameter_gradients_match_finite_differences(name):
    mha = make(E=4, H=2, batch_first=True)
    rng = np.random.default_rng(1)
    q, k = tg.tensor(rng.standard_normal((2, 3, 4))), tg.tensor(rng.standard_normal((2, 2, 4)))
    G = tg.tensor(rng.standard_normal((2, 3, 4)))
    p = dict(mha.named_parameters())[name]

    def loss():
        return (mha(q, k, k)[0] * G).sum()

    loss().backward()
    eps = 1e-6
    numeric = np.zeros(p.shape)
    for i in np.ndindex(*p.shape):
        with tg.no_grad():
            p.data[i] += eps
            up = loss().item()
            p.data[i] -= 2 * eps
            down = loss().item()
            p.data[i] += eps
        numeric[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(p.grad.numpy(), numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "padding", "per_head"])
def test_matches_pytorch(batch_first, masks):
    torch = pytest.importorskip("torch")
    E, H, N, L, S = 8, 2, 3, 4, 5
    ours = make(E, H, batch_first=batch_first)
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=torch.float64)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.tensor(dict(ours.named_parameters())[name].detach().numpy()))
    rng = np.random.default_rng(3)
    shape = (lambda T: (N, T, E)) if batch_first else (lambda T: (T, N, E))
    arrays = [rng.standard_normal(shape(L)), rng.standard_normal(shape(S)),
              rng.standard_normal(shape(S))]
    kwargs = {
        "none": {},
        "bool": {"attn_mask": rng.random((L, S)) < 0.3},
        "float": {"attn_mask": rng.standard_normal((L, S))},
        "padding": {"key_padding_mask": np.arange(S)[None, :] >= np.array([[5], [3], [1]])},
        "per_head": {"attn_mask": rng.standard_normal((N * H, L, S)),
                     "average_attn_weights": False},
    }[masks]
    if masks == "bool":
        kwargs["attn_mask"][:, 0] = False  # no fully banned row (both libraries give NaN)

    def run(m, module):
        xs = [m.tensor(a, requires_grad=True) for a in arrays]
        kw = {k: m.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        out, w = module(*xs, **kw)
        loss = (out * m.tensor(rng_w.standard_normal(tuple(out.shape)))).sum() + (w * w).sum()
        loss.backward()
        detach = (lambda t: t.detach().numpy())
        return [detach(out), detach(w)] + [detach(x.grad) for x in xs] + \
            [detach(module.in_proj_weight.grad), detach(module.out_proj.weight.grad)]

    rng_w = np.random.default_rng(9)
    ours_result = run(tg, ours)
    rng_w = np.random.default_rng(9)
    theirs_result = run(torch, theirs)
    for a, b in zip(ours_result, theirs_result):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_unbatched_and_need_weights_false():
    mha = make()
    x = tg.randn(5, 8, dtype=tg.float64)
    out, w = mha(x, x, x)
    assert out.shape == (5, 8) and w.shape == (5, 5)
    batched, _ = mha(x.unsqueeze(1), x.unsqueeze(1), x.unsqueeze(1))
    np.testing.assert_allclose(out.detach().numpy(), batched.detach().numpy()[:, 0])
    assert mha(x, x, x, need_weights=False)[1] is None


def test_dropout_only_in_training():
    mha = make(dropout=0.5, batch_first=True)
    x = tg.randn(2, 6, 8, dtype=tg.float64)
    mha.eval()
    a, _ = mha(x, x, x)
    b, _ = mha(x, x, x)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    mha.train()
    c, _ = mha(x, x, x)
    assert not np.allclose(a.detach().numpy(), c.detach().numpy())


def test_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(4\)"):
        nn.MultiheadAttention(10, 4)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(8, 2, add_bias_kv=True)
    mha = make(batch_first=True)
    x = tg.randn(2, 3, 8, dtype=tg.float64)
    with pytest.raises(ValueError, match=r"E = 8; got \(2, 3, 6\)"):
        y = tg.randn(2, 3, 6, dtype=tg.float64)
        mha(y, y, y)
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\)"):
        mha(x, x, x, attn_mask=tg.zeros(2, 3, dtype=tg.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 3\)"):
        mha(x, x, x, key_padding_mask=tg.zeros(3, dtype=tg.bool))
    with pytest.raises(ValueError, match="is_causal=True is only a hint"):
        mha(x, x, x, is_causal=True)

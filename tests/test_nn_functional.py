"""Every layer function of ``nn.functional``: gradient, second derivative, forward value.

As in test_ops.py, the ops live in one table, ``OPS``: name -> a Hypothesis
strategy drawing a :class:`helpers.Case` whose ``fn(m, *xs)`` calls
``m.nn.functional`` (``m`` is tinygrad_zh or PyTorch) and whose ``ref`` is an
independent NumPy formula (loops over output pixels for conv and pooling).
The four standard checks (helpers.op_table_tests) serve the table: gradcheck, gradgradcheck (``SECOND_ORDER``),
forward vs NumPy, forward and gradient vs PyTorch. Then: the fused ops against
their composites on random inputs, dropout, batch norm's running statistics,
and the error messages.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_zh as tg
import tinygrad_zh.nn.functional as F
from helpers import hypothesis_settings, make_case, op_table_tests, seeds, to_numpy, torch_api
from tinygrad_zh.ops.conv import Conv2d, conv2d_reference
from tinygrad_zh.ops.linear import Linear, linear_reference
from tinygrad_zh.ops.norm import LayerNorm, layer_norm_reference


# ------------------------------------------------------------------ NumPy references
def np_conv2d(x, w, b, stride, padding, dilation, groups):
    """The definition, one output pixel at a time."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * stride[0]:i * stride[0] + dilation[0] * (kh - 1) + 1:dilation[0],
                           j * stride[1]:j * stride[1] + dilation[1] * (kw - 1) + 1:dilation[1]]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return out if b is None else out + b[:, None, None]


def np_pool(x, kernel, stride, padding, reduce, pad_value):
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2),
                constant_values=pad_value)
    oh = (x.shape[2] + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (x.shape[3] + 2 * padding[1] - kernel[1]) // stride[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * stride[0]:i * stride[0] + kernel[0],
                        j * stride[1]:j * stride[1] + kernel[1]]
            out[:, :, i, j] = reduce(window, axis=(2, 3))
    return out


def np_adaptive_avg(x, size):
    h, w = x.shape[2:]
    out = np.zeros(x.shape[:2] + size)
    for i in range(size[0]):
        for j in range(size[1]):
            rows = slice(math.floor(i * h / size[0]), math.ceil((i + 1) * h / size[0]))
            cols = slice(math.floor(j * w / size[1]), math.ceil((j + 1) * w / size[1]))
            out[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return out


def np_layer_norm(x, ndims, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - ndims, x.ndim))
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


def np_batch_norm(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return y * w.reshape(shape) + b.reshape(shape)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_sigmoid(a):
    return 1 / (1 + np.exp(-a))


# ------------------------------------------------------------------ cases
@st.composite
def linear_case(draw, bias=True):
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shapes_ = [lead + (n_in,), (n_out, n_in)] + ([(n_out,)] if bias else [])
    return make_case(draw, f"linear(bias={bias})",
                     lambda m, *xs: m.nn.functional.linear(*xs),
                     lambda x, w, b=None: x @ w.T + (0 if b is None else b),
                     shapes_, ["real"] * len(shapes_))


@st.composite
def conv2d_setup(draw):
    """Shapes (x, w, maybe b) and keyword arguments of a small random convolution."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    n = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = [draw(st.integers(d * (k - 1) + 1 - 2 * p, 5)) for k, p, d in
            zip(kernel, padding, dilation)]
    size = [max(s, 1) for s in size]
    bias = draw(st.booleans())
    shapes_ = [(n, cg * groups, *size), (og * groups, cg, *kernel)] + \
        ([(og * groups,)] if bias else [])
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return shapes_, kwargs


@st.composite
def conv2d_case(draw):
    shapes_, kwargs = draw(conv2d_setup())
    bias = len(shapes_) == 3

    def fn(m, x, w, b=None):
        return m.nn.functional.conv2d(x, w, b, **kwargs)

    return make_case(draw, f"conv2d({kwargs}, bias={bias})", fn,
                     lambda x, w, b=None: np_conv2d(x, w, b, **kwargs), shapes_,
                     ["real"] * len(shapes_))


@st.composite
def pool_case(draw, kind):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             draw(st.integers(kernel[0], 5)), draw(st.integers(kernel[1], 5)))
    if kind == "max":
        return make_case(draw, f"max_pool2d({kernel}, {stride}, {padding})",
                         lambda m, x: m.nn.functional.max_pool2d(x, kernel, stride, padding),
                         lambda a: np_pool(a, kernel, stride, padding, np.max, -np.inf),
                         [shape], ["real"])
    return make_case(draw, f"avg_pool2d({kernel}, {stride}, {padding})",
                     lambda m, x: m.nn.functional.avg_pool2d(x, kernel, stride, padding),
                     lambda a: np_pool(a, kernel, stride, padding, np.mean, 0.0),
                     [shape], ["real"])


@st.composite
def adaptive_case(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    size = (draw(st.integers(1, shape[2])), draw(st.integers(1, shape[3])))
    return make_case(draw, f"adaptive_avg_pool2d({size})",
                     lambda m, x: m.nn.functional.adaptive_avg_pool2d(x, size),
                     lambda a: np_adaptive_avg(a, size), [shape], ["real"])


@st.composite
def layer_norm_case(draw):
    lead = draw(st.sampled_from([(1,), (3,), (2, 2)]))
    normalized = draw(st.sampled_from([(1,), (2,), (5,), (2, 3)]))
    affine = draw(st.sampled_from(["none", "weight", "both"]))
    n_affine = {"none": 0, "weight": 1, "both": 2}[affine]

    def fn(m, x, *wb):
        w, b = (list(wb) + [None, None])[:2]
        return m.nn.functional.layer_norm(x, normalized, w, b)

    return make_case(draw, f"layer_norm({normalized}, affine={affine})", fn,
                     lambda x, *wb: np_layer_norm(x, len(normalized), *wb),
                     [lead + normalized] + [normalized] * n_affine, ["real"] * (1 + n_affine))


@st.composite
def batch_norm_case(draw):
    shape = draw(st.sampled_from([(2, 3), (5, 1), (3, 2, 3), (2, 2, 3, 3), (1, 3, 2, 1)]))
    c = shape[1]

    def fn(m, x, w, b):
        # training mode: batch statistics (running stats updated on a throwaway copy)
        rm, rv = m.zeros(c, dtype=x.dtype), m.ones(c, dtype=x.dtype)
        return m.nn.functional.batch_norm(x, rm, rv, w, b, training=True)

    return make_case(draw, f"batch_norm(train) {shape}", fn, np_batch_norm,
                     [shape, (c,), (c,)], ["real"] * 3)


@st.composite
def embedding_case(draw):
    rows, dim = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    index_shape = draw(st.sampled_from([(1,), (4,), (2, 3)]))

    def build(rng):
        # (padding_idx is tested on its own: it cuts a gradient on purpose, so the
        # numerical gradient disagrees by design, in PyTorch too)
        idx = rng.integers(0, rows, index_shape)
        return lambda m, w: m.nn.functional.embedding(m.tensor(idx), w), lambda w: w[idx]
    return make_case(draw, "embedding", None, None,
                     [(rows, dim)], ["real"], build=build)


@st.composite
def pad_case(draw):
    shape = draw(st.sampled_from([(3,), (2, 3), (1, 2, 2)]))
    widths = tuple(draw(st.integers(0, 2)) for _ in range(2 * draw(st.integers(1, len(shape)))))
    value = draw(st.sampled_from([0.0, 1.5]))
    np_widths = [(0, 0)] * len(shape)
    for i in range(len(widths) // 2):
        np_widths[len(shape) - 1 - i] = widths[2 * i:2 * i + 2]
    return make_case(draw, f"pad({widths}, value={value})",
                     lambda m, x: m.nn.functional.pad(x, widths, value=value),
                     lambda a: np.pad(a, np_widths, constant_values=value), [shape], ["real"])


def activation_case(name, ref, domain="real", **kwargs):
    @st.composite
    def strategy(draw):
        shape = draw(st.sampled_from([(1,), (3,), (2, 3), (2, 1, 4)]))
        return make_case(draw, f"{name}({kwargs})",
                         lambda m, x: getattr(m.nn.functional, name)(x, **kwargs),
                         ref, [shape], [domain])
    return strategy()


def _softmax(a, dim):
    e = np.exp(a - a.max(dim, keepdims=True))
    return e / e.sum(dim, keepdims=True)


OPS = {
    "linear": linear_case(),
    "linear_no_bias": linear_case(bias=False),
    "conv2d": conv2d_case(),
    "max_pool2d": pool_case("max"),
    "avg_pool2d": pool_case("avg"),
    "adaptive_avg_pool2d": adaptive_case(),
    "layer_norm": layer_norm_case(),
    "batch_norm": batch_norm_case(),
    "embedding": embedding_case(),
    "pad": pad_case(),
    "relu": activation_case("relu", lambda a: np.maximum(a, 0), "nonzero"),
    "gelu": activation_case("gelu", lambda a: 0.5 * a * (1 + _erf(a / math.sqrt(2)))),
    "gelu_tanh": activation_case("gelu", lambda a: 0.5 * a * (1 + np.tanh(
        math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3))), approximate="tanh"),
    "silu": activation_case("silu", lambda a: a * np_sigmoid(a)),
    "leaky_relu": activation_case("leaky_relu", lambda a: np.where(a > 0, a, 0.2 * a),
                                  "nonzero", negative_slope=0.2),
    "sigmoid": activation_case("sigmoid", np_sigmoid),
    "softplus": activation_case("softplus", lambda a: np.log1p(np.exp(2 * a)) / 2, beta=2.0),
    "logsigmoid": activation_case("logsigmoid", lambda a: -np.log1p(np.exp(-a))),
    "tanh": activation_case("tanh", np.tanh),
    "softmax": activation_case("softmax", lambda a: _softmax(a, -1), dim=-1),
    "log_softmax": activation_case("log_softmax", lambda a: np.log(_softmax(a, 0)), dim=0),
}
SECOND_ORDER = ["linear", "conv2d", "layer_norm", "batch_norm", "avg_pool2d", "max_pool2d",
                "embedding", "gelu", "silu", "softmax"]


test_gradcheck, test_gradgradcheck, test_forward_matches_numpy, test_matches_torch = \
    op_table_tests(OPS, SECOND_ORDER, gradcheck=40, gradgradcheck=12, forward=30, torch=30)


# ------------------------------------------------------------------ fused vs composite
FUSED = hypothesis_settings(15)


@FUSED
@given(conv2d_setup(), seeds())
def test_fused_conv2d_matches_its_composite(setup, seed):
    """Random inputs through Conv2d (im2col + GEMM) and conv2d_reference (pad, slices,
    matmul): same values and same gradients (float32, as in training)."""
    shapes_, params = setup
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes_]

    def grads(fn):
        xs = [tg.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*xs)
        (out * tg.tensor(np.cos(np.arange(out.numel())).reshape(out.shape))).sum().backward()
        return [out.detach().numpy()] + [x.grad.numpy() for x in xs]

    fused = grads(lambda *xs: Conv2d.apply(*xs, **params))
    composite = grads(lambda *xs: conv2d_reference(*(list(xs) + [None])[:3], **params))
    for a, b in zip(fused, composite):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"{shapes_} {params}")


@FUSED
@given(st.sampled_from([(1,), (3,), (2, 2)]), st.sampled_from([(1,), (2,), (5,), (2, 3)]),
       st.booleans(), seeds())
def test_fused_layer_norm_matches_its_composite(lead, normalized, affine, seed):
    rng = np.random.default_rng(seed)
    shapes_ = [lead + normalized] + [normalized] * (2 * affine)
    xs = [tg.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes_]
    w, b = (xs[1:] + [None, None])[:2]
    fused = F.layer_norm(xs[0], normalized, w, b)
    composite = layer_norm_reference(xs[0], len(normalized), w, b)
    np.testing.assert_allclose(fused.detach().numpy(), composite.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    g = tg.tensor(rng.standard_normal(fused.shape))
    ours = tg.autograd.grad((fused * g).sum(), xs)
    theirs = tg.autograd.grad((composite * g).sum(), xs)
    for a, b_ in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b_.numpy(), rtol=1e-8, atol=1e-10)


@FUSED
@given(linear_case())
def test_fused_linear_matches_its_composite(case):
    xs = case.leaves()
    fused, composite = Linear.apply(*xs), linear_reference(*xs)
    np.testing.assert_allclose(fused.detach().numpy(), composite.detach().numpy(), rtol=1e-12)
    ours = tg.autograd.grad(fused.sum() * 1.0 + (fused * fused).sum(), xs)
    theirs = tg.autograd.grad(composite.sum() * 1.0 + (composite * composite).sum(), xs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_conv2d_keeps_float32_and_accepts_unbatched_input():
    x, w = tg.randn(3, 6, 6), tg.randn(4, 3, 3, 3)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (4, 6, 6) and y.dtype == tg.float32
    np.testing.assert_allclose(y.numpy(), F.conv2d(x.unsqueeze(0), w, padding=1)[0].numpy())


def test_max_pool_gradient_goes_to_the_max_even_when_windows_overlap():
    x = tg.tensor([[[[1.0, 5.0, 2.0], [0.0, 3.0, 4.0], [6.0, 1.0, 0.0]]]], requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    # windows: max 5 (twice: top-left and top-right windows), 6, 4
    expected = [[0, 2, 0], [0, 0, 1], [1, 0, 0]]
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], expected)


# ------------------------------------------------------------------ dropout
def test_dropout_is_inverted_seeded_and_off_in_eval():
    x = tg.ones(20000)
    tg.manual_seed(0)
    a = F.dropout(x, 0.3)
    tg.manual_seed(0)
    b = F.dropout(x, 0.3)
    np.testing.assert_array_equal(a.numpy(), b.numpy())          # same seed, same mask
    values = set(np.unique(a.numpy()).tolist())
    assert values == {0.0, np.float32(1 / 0.7)}                  # kept values scaled by 1/(1-p)
    assert abs((a.numpy() == 0).mean() - 0.3) < 0.02             # about p of them dropped
    assert abs(a.numpy().mean() - 1) < 0.03                      # expectation unchanged
    assert F.dropout(x, 0.3, training=False) is x
    assert float(F.dropout(x, 1.0).abs().sum()) == 0


def test_dropout_gradient_uses_the_same_mask():
    x = tg.ones(1000, requires_grad=True)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())


# ------------------------------------------------------------------ batch norm statistics
def test_batch_norm_running_statistics_match_torch_formula():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 2, 2)) * 3 + 1
    rm, rv = tg.zeros(3, dtype=tg.float64), tg.ones(3, dtype=tg.float64)
    F.batch_norm(tg.tensor(x), rm, rv, training=True, momentum=0.2)
    n = 6 * 2 * 2
    np.testing.assert_allclose(rm.numpy(), 0.2 * x.mean((0, 2, 3)))
    unbiased = x.var((0, 2, 3)) * n / (n - 1)                      # unbiased running var
    np.testing.assert_allclose(rv.numpy(), 0.8 + 0.2 * unbiased)
    y = F.batch_norm(tg.tensor(x), rm, rv, training=False)          # eval: running stats
    expected = (x - rm.numpy()[:, None, None]) / np.sqrt(rv.numpy()[:, None, None] + 1e-5)
    np.testing.assert_allclose(y.numpy(), expected)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("call, message", [
    (lambda: F.linear(tg.ones(2, 3), tg.ones(4, 5)), r"linear: input of shape \(2, 3\)"),
    (lambda: F.conv2d(tg.ones(1, 3, 5, 5), tg.ones(2, 4, 3, 3)),
     r"conv2d: input of shape \(1, 3, 5, 5\) has 3 channels.*\(2, 4, 3, 3\)"),
    (lambda: F.conv2d(tg.ones(1, 1, 2, 2), tg.ones(1, 1, 3, 3)), "does not fit"),
    (lambda: F.conv2d(tg.ones(5, 5), tg.ones(1, 1, 3, 3)), r"4-D input.*\(5, 5\)"),
    (lambda: F.max_pool2d(tg.ones(1, 1, 4, 4), 2, padding=2), "at most half"),
    (lambda: F.layer_norm(tg.ones(2, 3), (4,)), r"\(2, 3\) does not end with.*\(4,\)"),
    (lambda: F.embedding(tg.tensor([0, 5]), tg.ones(3, 2)), r"index 5 is out of range.*3 rows"),
    (lambda: F.embedding(tg.tensor([0.0]), tg.ones(3, 2)), "integer tensor"),
    (lambda: F.batch_norm(tg.ones(1, 3), tg.zeros(3), tg.ones(3), training=True),
     "more than 1 value per channel"),
    (lambda: F.pad(tg.ones(2), (1, 1, 1, 1)), r"at most 1 dims"),
    (lambda: F.dropout(tg.ones(2), 1.5), "between 0 and 1"),
    (lambda: F.one_hot(tg.tensor([3]), 2), r"\[0, 2\)"),
    (lambda: F.linear(tg.ones(2, 3, dtype=tg.float64), tg.ones(4, 3)),
     r"linear: expected floating-point tensors of one dtype, got \[\(2, 3\) float64, "
     r"\(4, 3\) float32\]"),
    (lambda: F.conv2d(tg.ones(1, 1, 3, 3, dtype=tg.int64), tg.ones(1, 1, 3, 3)),
     "conv2d: expected floating-point tensors of one dtype"),
])
def test_bad_input_names_the_op_and_shapes(call, message):
    with pytest.raises((ValueError, TypeError, IndexError), match=message):
        call()


def test_one_hot():
    out = F.one_hot(tg.tensor([[0, 2], [1, 1]]))
    assert out.dtype == tg.int64 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.numpy(), np.eye(3, dtype=np.int64)[[[0, 2], [1, 1]]])


@given(seeds())
@hypothesis_settings(5)
def test_embedding_padding_row_gets_no_gradient(seed):
    rng = np.random.default_rng(seed)
    w = tg.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    idx = tg.tensor(rng.integers(0, 5, (4, 6)))
    F.embedding(idx, w, padding_idx=2).sum().backward()
    assert not w.grad.numpy()[2].any()
    counts = np.bincount(idx.numpy().ravel(), minlength=5)
    for row in (0, 1, 3, 4):
        np.testing.assert_allclose(w.grad.numpy()[row], counts[row])


def test_max_pool_ties_go_to_the_first_and_nan_propagates():
    x = tg.tensor([[[[5.0, 5.0, 1.0, float("nan")], [3.0, 4.0, 2.0, 0.0]]]], requires_grad=True)
    y = F.max_pool2d(x, 2)
    assert y.detach().numpy()[0, 0, 0, 0] == 5 and np.isnan(y.detach().numpy()[0, 0, 0, 1])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[1, 0, 0, 1], [0, 0, 0, 0]])

"""Every loss: gradcheck, forward vs a NumPy formula, values and gradients vs PyTorch.

The same table discipline as test_nn_functional.py. Targets are constants
drawn from the case's seed (class indices, probabilities, 0/1 labels); the
input is the leaf. Then the fused cross-entropy against its composite, its
second derivative, huge logits, the module forms and the error messages.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_zh as tg
import tinygrad_zh.nn.functional as F
from helpers import hypothesis_settings, make_case, op_table_tests, seeds, to_numpy, torch_api
from tinygrad_zh import nn
from tinygrad_zh.ops.loss import CrossEntropy, cross_entropy_reference


# ------------------------------------------------------------------ NumPy references
def np_log_softmax(a, axis):
    s = a - a.max(axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis, keepdims=True))


def np_reduce(losses, reduction, denominator=None):
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / (losses.size if denominator is None else denominator)


def np_cross_entropy(x, target, weight, ignore_index, smoothing, reduction):
    """Loops over rows, written from the definition: a_c = w_c((1-ε)[c=y] + ε/C)."""
    classes = x.shape[1] if x.ndim > 1 else x.shape[0]
    rows = np.moveaxis(x if x.ndim > 1 else x[None], 1, -1).reshape(-1, classes)
    w = np.ones(classes) if weight is None else weight
    log_probs = np_log_softmax(rows, 1)
    if target.dtype.kind == "f":
        t = np.moveaxis(target if x.ndim > 1 else target[None], 1, -1).reshape(-1, classes)
        coeff = w * ((1 - smoothing) * t + smoothing / classes)
        losses = -(coeff * log_probs).sum(1)
        lead = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
        return np_reduce(losses.reshape(lead), reduction, len(rows))
    losses, denominator = [], 0.0
    for row, y in zip(log_probs, target.reshape(-1)):
        if y == ignore_index:
            losses.append(0.0)
            continue
        coeff = np.full(classes, smoothing / classes)
        coeff[y] += 1 - smoothing
        losses.append(-(w * coeff * row).sum())
        denominator += w[y]
    return np_reduce(np.array(losses).reshape(target.shape), reduction, denominator)


def np_nll(x, target, weight, ignore_index, reduction):
    classes = x.shape[1]
    rows = np.moveaxis(x, 1, -1).reshape(-1, classes)
    w = np.ones(classes) if weight is None else weight
    t = target.reshape(-1)
    keep = t != ignore_index
    safe = np.where(keep, t, 0)
    losses = -rows[np.arange(len(t)), safe] * w[safe] * keep
    return np_reduce(losses.reshape(target.shape), reduction, (w[safe] * keep).sum())


def np_sigmoid(a):
    return 1 / (1 + np.exp(-a))


# ------------------------------------------------------------------ cases
REDUCTIONS = ["mean", "sum", "none"]


@st.composite
def cross_entropy_case(draw, probabilities=False):
    layout = draw(st.sampled_from(["rows", "rows", "spatial", "unbatched"]))
    classes, n = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape = {"rows": (n, classes), "spatial": (n, classes, draw(st.integers(1, 3))),
             "unbatched": (classes,)}[layout]
    target_shape = shape[:1] + shape[2:] if layout != "unbatched" else ()
    weighted = draw(st.booleans())
    smoothing = draw(st.sampled_from([0.0, 0.0, 0.25]))
    reduction = draw(st.sampled_from(REDUCTIONS))
    # ignore_index may be a real class (then rows of that class are skipped)
    ignore_index = draw(st.sampled_from([-100, classes - 1])) \
        if not probabilities and classes > 1 else -100

    def build(rng):
        if probabilities:
            target = np.moveaxis(rng.dirichlet(np.ones(classes), target_shape), -1,
                                 1 if layout != "unbatched" else 0)
        else:
            target = rng.integers(0, classes, target_shape)
            flat = target.reshape(-1)   # a view
            if flat.size > 1 and rng.random() < 0.5:
                flat[0] = ignore_index   # one row ignored
            if flat[-1] == ignore_index:   # but not all of them (the mean would be NaN)
                flat[-1] = (ignore_index + 1) % classes
        weight = rng.random(classes) + 0.5 if weighted else None
        kwargs = dict(ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction)

        def fn(m, x):
            return m.nn.functional.cross_entropy(
                x, m.tensor(target), None if weight is None else m.tensor(weight), **kwargs)
        return fn, lambda x: np_cross_entropy(x, target, weight, ignore_index, smoothing,
                                              reduction)
    label = (f"cross_entropy({layout}, probabilities={probabilities}, weighted={weighted}, "
             f"smoothing={smoothing}, reduction={reduction}, ignore_index={ignore_index})")
    return make_case(draw, label, None, None, [shape], ["real"], build=build)


@st.composite
def nll_case(draw):
    classes, n = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape = draw(st.sampled_from([(n, classes), (n, classes, 2)]))
    weighted, reduction = draw(st.booleans()), draw(st.sampled_from(REDUCTIONS))

    def build(rng):
        target = rng.integers(0, classes, shape[:1] + shape[2:])
        weight = rng.random(classes) + 0.5 if weighted else None
        return (lambda m, x: m.nn.functional.nll_loss(
                    x, m.tensor(target), None if weight is None else m.tensor(weight),
                    reduction=reduction),
                lambda x: np_nll(x, target, weight, -100, reduction))
    return make_case(draw, f"nll_loss(weighted={weighted}, reduction={reduction})", None, None,
                     [shape], ["real"], build=build)


def regression_case(name, ref, **kwargs):
    """mse / l1 / smooth_l1: input leaf, target a constant of the same shape."""
    @st.composite
    def strategy(draw):
        shape = draw(st.sampled_from([(1,), (3,), (2, 3), (2, 1, 2)]))
        reduction = draw(st.sampled_from(REDUCTIONS))

        def build(rng):
            target = rng.standard_normal(shape)
            return (lambda m, x: getattr(m.nn.functional, name)(
                        x, m.tensor(target), reduction=reduction, **kwargs),
                    lambda x: np_reduce(ref(x - target), reduction))
        return make_case(draw, f"{name}({kwargs}, reduction={reduction})", None, None,
                         [shape], ["real"], build=build)
    return strategy()


def smooth_l1(beta):
    return lambda d: np.where(np.abs(d) < beta, 0.5 * d * d / beta, np.abs(d) - 0.5 * beta)


@st.composite
def bce_case(draw, logits):
    shape = draw(st.sampled_from([(1,), (4,), (2, 3)]))
    reduction = draw(st.sampled_from(REDUCTIONS))
    weighted, pos_weighted = draw(st.booleans()), logits and draw(st.booleans())

    def build(rng):
        target = rng.random(shape).round() if rng.random() < 0.5 else rng.random(shape)
        weight = rng.random(shape) + 0.5 if weighted else None
        pos_weight = rng.random(shape[-1:]) * 3 if pos_weighted else None
        t = lambda m, a: None if a is None else m.tensor(a)  # noqa: E731

        def fn(m, z):
            if logits:
                return m.nn.functional.binary_cross_entropy_with_logits(
                    z, m.tensor(target), t(m, weight), reduction=reduction,
                    pos_weight=t(m, pos_weight))
            # probabilities as the sigmoid of the leaf: inside (0, 1), as BCE needs
            return m.nn.functional.binary_cross_entropy(
                z.sigmoid(), m.tensor(target), t(m, weight), reduction=reduction)

        def ref(z):
            p = np_sigmoid(z)
            scale = 1 if pos_weight is None else pos_weight
            loss = -(scale * target * np.log(p) + (1 - target) * np.log(1 - p))
            return np_reduce(loss * (1 if weight is None else weight), reduction)
        return fn, ref
    label = f"bce(logits={logits}, weighted={weighted}, pos_weight={pos_weighted}, {reduction})"
    return make_case(draw, label, None, None, [shape], ["real"], build=build)


@st.composite
def multi_margin_case(draw):
    n, classes = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    p, margin = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1.0, 0.5]))
    weighted, reduction = draw(st.booleans()), draw(st.sampled_from(REDUCTIONS))

    def build(rng):
        target = rng.integers(0, classes, n)
        weight = rng.random(classes) + 0.5 if weighted else None

        def ref(x):
            losses = []
            for row, y in zip(x, target):
                terms = [max(0.0, margin - row[y] + row[c]) ** p
                         for c in range(classes) if c != y]
                losses.append(sum(terms) / classes * (1 if weight is None else weight[y]))
            return np_reduce(np.array(losses), reduction)
        return (lambda m, x: m.nn.functional.multi_margin_loss(
                    x, m.tensor(target), p=p, margin=margin,
                    weight=None if weight is None else m.tensor(weight), reduction=reduction),
                ref)
    return make_case(draw, f"multi_margin(p={p}, margin={margin}, weighted={weighted}, "
                     f"{reduction})", None, None, [(n, classes)], ["real"], build=build)


@st.composite
def kl_div_case(draw):
    shape = draw(st.sampled_from([(1, 3), (2, 4), (3, 2)]))
    log_target = draw(st.booleans())
    reduction = draw(st.sampled_from(REDUCTIONS + ["batchmean"]))

    def build(rng):
        p = rng.dirichlet(np.ones(shape[1]), shape[0])
        p[0, 0] = 0.0 if not log_target else p[0, 0]   # 0·log 0 = 0
        target = np.log(p) if log_target else p

        def ref(x):
            loss = p * (np.log(np.where(p > 0, p, 1)) - x)
            if reduction == "batchmean":
                return loss.sum() / shape[0]
            return np_reduce(loss, reduction)
        return (lambda m, x: m.nn.functional.kl_div(x, m.tensor(target), reduction=reduction,
                                                    log_target=log_target), ref)
    return make_case(draw, f"kl_div(log_target={log_target}, {reduction})", None, None,
                     [shape], ["real"], build=build)


LOSSES = {
    "cross_entropy": cross_entropy_case(),
    "cross_entropy_probabilities": cross_entropy_case(probabilities=True),
    "nll_loss": nll_case(),
    "mse_loss": regression_case("mse_loss", lambda d: d * d),
    "l1_loss": regression_case("l1_loss", np.abs),
    "smooth_l1_loss": regression_case("smooth_l1_loss", smooth_l1(1.0)),
    "smooth_l1_loss_beta": regression_case("smooth_l1_loss", smooth_l1(0.3), beta=0.3),
    "binary_cross_entropy": bce_case(logits=False),
    "binary_cross_entropy_with_logits": bce_case(logits=True),
    "multi_margin_loss": multi_margin_case(),
    "kl_div": kl_div_case(),
}


SECOND_ORDER = ["cross_entropy", "cross_entropy_probabilities", "binary_cross_entropy_with_logits",
                "mse_loss"]
# PyTorch's kl_div warns that reduction='mean' divides by the element count.
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")

test_gradcheck, test_gradgradcheck, test_forward_matches_numpy, test_matches_torch = \
    op_table_tests(LOSSES, SECOND_ORDER, gradcheck=40, gradgradcheck=12, forward=30, torch=30)


# ------------------------------------------------------------------ fused cross-entropy
@hypothesis_settings(20)
@given(st.integers(1, 6), st.integers(1, 5), st.booleans(), st.sampled_from([0.0, 0.1]),
       st.sampled_from(REDUCTIONS), seeds())
def test_fused_cross_entropy_matches_its_composite(m, c, weighted, smoothing, reduction, seed):
    """The fused op and the log_softmax + gather composite: values and gradients."""
    rng = np.random.default_rng(seed)
    logits = tg.tensor(rng.standard_normal((m, c)) * 3, requires_grad=True)
    target = tg.tensor(np.where(rng.random(m) < 0.2, -100, rng.integers(0, c, m)))
    weight = tg.tensor(rng.random(c) + 0.5) if weighted else None
    kwargs = dict(label_smoothing=smoothing, reduction=reduction)
    fused = F.cross_entropy(logits, target, weight, **kwargs)
    with np.errstate(invalid="ignore"):   # every row ignored: 0 / 0 = NaN, as PyTorch
        composite = cross_entropy_reference(logits, target, weight, **kwargs)
    np.testing.assert_allclose(fused.detach().numpy(), composite.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    if np.isfinite(composite.detach().numpy()).all():   # every row ignored: NaN in both
        g = tg.tensor(rng.standard_normal(fused.shape))
        (ours,) = tg.autograd.grad((fused * g).sum(), [logits])
        (theirs,) = tg.autograd.grad((composite * g).sum(), [logits])
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-12)


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    logits = tg.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], dtype=tg.float64, requires_grad=True)
    F.cross_entropy(logits, tg.tensor([0, 2]), reduction="sum").backward()
    z = logits.detach().numpy()
    softmax = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(logits.grad.numpy(), softmax - np.eye(3)[[0, 2]], rtol=1e-12)


def test_cross_entropy_is_finite_for_huge_logits():
    logits = tg.tensor([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(logits, tg.tensor([2, 0]), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [2e4, 2e4 + math.log(2)], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(logits.grad.numpy()).all()
    np.testing.assert_allclose(logits.grad.numpy(), [[1, 0, -1], [-1, 0.5, 0.5]], atol=1e-6)


def test_cross_entropy_float32_stays_float32():
    loss = F.cross_entropy(tg.randn(4, 3), tg.tensor([0, 1, 2, 0]))
    assert loss.dtype == tg.float32 and loss.shape == ()


def test_cross_entropy_all_ignored_mean_is_nan_as_in_pytorch():
    loss = F.cross_entropy(tg.randn(2, 3), tg.tensor([-100, -100]))
    assert math.isnan(loss.item())


def test_binary_cross_entropy_clamps_the_log_at_minus_100():
    x = tg.tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    y = tg.tensor([1.0, 0.0, 0.0, 1.0])
    loss = F.binary_cross_entropy(x, y, reduction="none")
    np.testing.assert_array_equal(loss.detach().numpy(), [100, 100, 0, 0])
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_bce_with_logits_is_stable_for_large_logits():
    x = tg.tensor([100.0, -100.0, 30.0], dtype=tg.float64, requires_grad=True)
    y = tg.tensor([0.0, 1.0, 1.0], dtype=tg.float64)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [100, 100, math.log1p(math.exp(-30))],
                               rtol=1e-12)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1, -1, -np_sigmoid(-30.0)], rtol=1e-9)


# ------------------------------------------------------------------ module forms
def test_loss_modules_call_the_functions():
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((4, 3)))
    y_cls = tg.tensor([0, 2, 1, 1])
    y = tg.tensor(rng.random((4, 3)))
    w = tg.tensor(rng.random(3) + 0.5)
    pairs = [
        (nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(x, y_cls),
         F.cross_entropy(x, y_cls, w, label_smoothing=0.1)),
        (nn.NLLLoss(reduction="sum")(x, y_cls), F.nll_loss(x, y_cls, reduction="sum")),
        (nn.MSELoss()(x, y), F.mse_loss(x, y)),
        (nn.L1Loss(reduction="none")(x, y), F.l1_loss(x, y, reduction="none")),
        (nn.SmoothL1Loss(beta=0.5)(x, y), F.smooth_l1_loss(x, y, beta=0.5)),
        (nn.BCELoss()(x.sigmoid(), y), F.binary_cross_entropy(x.sigmoid(), y)),
        (nn.BCEWithLogitsLoss(pos_weight=w)(x, y),
         F.binary_cross_entropy_with_logits(x, y, pos_weight=w)),
        (nn.MultiMarginLoss(p=2)(x, y_cls), F.multi_margin_loss(x, y_cls, p=2)),
        (nn.KLDivLoss(reduction="batchmean")(x.log_softmax(1), y),
         F.kl_div(x.log_softmax(1), y, reduction="batchmean")),
    ]
    for module_value, function_value in pairs:
        np.testing.assert_array_equal(module_value.numpy(), function_value.numpy())
    assert "label_smoothing=0.1" in repr(nn.CrossEntropyLoss(label_smoothing=0.1))
    assert "weight" not in nn.CrossEntropyLoss(weight=w).state_dict()  # not persistent


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("call, error, message", [
    (lambda: F.cross_entropy(tg.zeros(2, 3), tg.tensor([0, 3])), IndexError,
     r"cross_entropy: target value 3 is out of range for 3 classes \(input shape \(2, 3\), "
     r"target shape \(2,\)\)"),
    (lambda: F.cross_entropy(tg.zeros(2, 3), tg.tensor([-1, 0])), IndexError,
     "target value -1 is out of range"),
    (lambda: F.cross_entropy(tg.zeros(2, 3), tg.tensor([0, 1, 2])), ValueError,
     r"cross_entropy: input of shape \(2, 3\) needs a class-index target of shape \(2,\), got "
     r"\(3,\)"),
    (lambda: F.cross_entropy(tg.zeros(2, 3), tg.tensor([True, False])), TypeError,
     "cross_entropy: target must hold class indices.*got dtype bool"),
    (lambda: F.cross_entropy(tg.zeros(2, 3), tg.zeros(2, 4)), ValueError,
     r"probability target of shape \(2, 4\) must have the input's shape \(2, 3\)"),
    (lambda: F.cross_entropy(tg.zeros(2, 3), tg.tensor([0, 1]), weight=tg.ones(2)), ValueError,
     r"weight has shape \(2,\), expected one weight per class \(3,\)"),
    (lambda: F.cross_entropy(tg.zeros(2, 3), tg.tensor([0, 1]), reduction="avg"), ValueError,
     "reduction must be one of"),
    (lambda: F.nll_loss(tg.zeros(2, 3), tg.tensor([0, 5])), IndexError,
     "nll_loss: target value 5"),
    (lambda: F.mse_loss(tg.zeros(2, 3), tg.zeros(3)), ValueError,
     r"mse_loss: input shape \(2, 3\) and target shape \(3,\) differ"),
    (lambda: F.l1_loss(tg.zeros(2), tg.tensor([1, 2])), TypeError,
     "l1_loss: expected floating-point input and target, got dtypes float32 and int64"),
    (lambda: F.binary_cross_entropy(tg.tensor([1.5]), tg.tensor([1.0])), ValueError,
     r"binary_cross_entropy: input values must be probabilities in \[0, 1\], got min 1.5"),
    (lambda: F.multi_margin_loss(tg.zeros(2, 3), tg.tensor([0, 3])), IndexError,
     "multi_margin_loss: target value 3"),
])
def test_bad_targets_raise_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_fused_op_rejects_nothing_silently():
    """The fused op itself is only reached through F.cross_entropy's checks; called
    directly with a bad target it must still fail loudly, not pick a wrong row."""
    with pytest.raises(IndexError, match="crossentropy"):
        CrossEntropy.apply(tg.zeros(2, 3), tg.tensor([0, 7]), index_target=True,
                           ignore_index=-100, label_smoothing=0.0, reduction="mean")

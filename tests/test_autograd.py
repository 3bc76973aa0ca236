"""The autograd engine itself: graph walk, accumulation, grad modes, higher order, errors."""
import math
import sys

import numpy as np
import pytest

import tinygrad_zh as tg
from tinygrad_zh.autograd import Function


def randn64(*shape, seed=0):
    rng = np.random.default_rng(seed)
    return tg.tensor(rng.standard_normal(shape), requires_grad=True)


# ------------------------------------------------------------------ the walk
def test_topological_order_visits_each_node_once_after_all_its_users():
    # x feeds a diamond: b and c both use a; d uses b and c. a's backward must
    # run once, after both b's and c's gradients reached it.
    calls = []

    class Spy(Function):
        def forward(self, x, label):
            self.label = label
            return x.copy()

        def backward(self, grad):
            calls.append(self.label)
            return grad

    x = tg.tensor([1.0, 2.0], requires_grad=True)
    a = Spy.apply(x, label="a")
    b = Spy.apply(a * 2, label="b")
    c = Spy.apply(a * 3, label="c")
    (b + c).sum().backward()
    assert calls.count("a") == 1
    assert calls.index("a") > calls.index("b") and calls.index("a") > calls.index("c")
    assert x.grad.tolist() == [5.0, 5.0]


def test_gradient_of_tensor_used_twice_accumulates():
    x = tg.tensor(3.0, requires_grad=True)
    (x * x + x).backward()
    assert x.grad.item() == 7.0   # d(x² + x)/dx = 2x + 1


def test_grad_accumulates_across_backward_calls_until_zeroed():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_broadcast_gradient_is_summed_back_to_input_shape():
    a = tg.ones(2, 3, 4, requires_grad=True)
    b = tg.ones(3, 1, requires_grad=True)
    (a * b).sum().backward()
    assert b.grad.shape == (3, 1)
    assert b.grad.tolist() == [[8.0], [8.0], [8.0]]   # summed over dims 0 and 2: 2 * 4
    assert a.grad.shape == (2, 3, 4)


def test_deep_chain_of_100k_ops_does_not_recurse():
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0
    assert sys.getrecursionlimit() < 100_000  # the walk really had to be iterative


def test_graph_is_freed_after_backward_and_second_backward_says_so():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]   # 2 * 2x


def test_non_scalar_backward_needs_gradient():
    x = tg.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2, 3\)"):
        (x * 2).backward()
    (x * 2).backward(gradient=tg.full((2, 3), 0.5))
    assert x.grad.tolist() == [[1.0] * 3] * 2


def test_gradient_of_wrong_shape_is_rejected():
    x = tg.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\).*\(2, 3\)"):
        (x * 2).backward(gradient=tg.ones(3))


def test_backward_on_tensor_without_grad_explains():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.ones(2).sum().backward()


def test_retain_grad_keeps_non_leaf_gradient():
    x = tg.tensor([0.5, -1.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    h.tanh().sum().backward()
    expected = 1 - np.tanh(3 * np.array([0.5, -1.0], np.float32)) ** 2
    np.testing.assert_allclose(h.grad.numpy(), expected, rtol=1e-6)
    assert (x * 3).grad is None


def test_constant_inputs_get_no_grad():
    x = tg.ones(3, requires_grad=True)
    c = tg.ones(3)
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


# ------------------------------------------------------------------ grad modes
def test_no_grad_records_nothing():
    x = tg.ones(3, requires_grad=True)
    with tg.no_grad():
        y = x * 2
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_no_grad_as_decorator_and_enable_grad_inside():
    x = tg.ones(3, requires_grad=True)

    @tg.no_grad()
    def evaluate():
        inner = x * 2
        with tg.enable_grad():
            recorded = x * 2
        return inner, recorded

    inner, recorded = evaluate()
    assert not inner.requires_grad and recorded.requires_grad
    assert tg.is_grad_enabled()


def test_grad_mode_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with tg.no_grad():
            1 / 0
    assert tg.is_grad_enabled()


def test_set_grad_enabled_switches_by_flag():
    x = tg.ones(2, requires_grad=True)
    with tg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    with tg.set_grad_enabled(True):
        assert (x * 2).requires_grad


def test_detach_cuts_the_graph_and_shares_memory():
    x = tg.ones(3, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    y = x * 2
    assert np.shares_memory(y.detach().data, y.data)


def test_requires_grad_off_only_on_leaves():
    x = tg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2).requires_grad_(False)
    x.requires_grad = False
    assert not x.requires_grad


# ------------------------------------------------------------------ higher order
def test_second_derivative_of_tanh():
    x = tg.tensor([-1.5, 0.0, 0.3, 2.0], dtype=tg.float64, requires_grad=True)
    (dy,) = tg.autograd.grad(x.tanh().sum(), [x], create_graph=True)
    (d2y,) = tg.autograd.grad(dy.sum(), [x])
    t = np.tanh(x.detach().numpy())
    np.testing.assert_allclose(dy.detach().numpy(), 1 - t ** 2, rtol=1e-12)
    np.testing.assert_allclose(d2y.numpy(), -2 * t * (1 - t ** 2), rtol=1e-12, atol=1e-15)


def test_third_derivative_of_cube():
    x = tg.tensor(2.0, dtype=tg.float64, requires_grad=True)
    (d1,) = tg.autograd.grad(x ** 3, [x], create_graph=True)
    (d2,) = tg.autograd.grad(d1, [x], create_graph=True)
    (d3,) = tg.autograd.grad(d2, [x])
    assert (d1.item(), d2.item(), d3.item()) == (12.0, 12.0, 6.0)


def test_hessian_vector_product_matches_explicit_hessian():
    # f(x) = Σ softmax(Ax)·c has a dense Hessian; Hv by double backward must match
    # the Hessian built column by column from finite differences of the gradient.
    rng = np.random.default_rng(1)
    a = tg.tensor(rng.standard_normal((4, 3)))
    c = tg.tensor(rng.standard_normal(4))
    v = tg.tensor(rng.standard_normal(3))

    def gradient(x_values):
        x = tg.tensor(x_values, requires_grad=True)
        return tg.autograd.grad(((a @ x).softmax(-1) * c).sum(), [x])[0].numpy()

    x0 = rng.standard_normal(3)
    x = tg.tensor(x0, requires_grad=True)
    (g,) = tg.autograd.grad(((a @ x).softmax(-1) * c).sum(), [x], create_graph=True)
    (hv,) = tg.autograd.grad((g * v).sum(), [x])
    eps = 1e-6
    hessian = np.stack([(gradient(x0 + eps * e) - gradient(x0 - eps * e)) / (2 * eps)
                        for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(hv.numpy(), hessian @ v.numpy(), rtol=1e-6, atol=1e-8)


def test_create_graph_false_records_no_graph_for_gradients():
    x = tg.ones(3, requires_grad=True)
    (x * x).sum().backward()
    assert not x.grad.requires_grad and x.grad.grad_fn is None


def test_create_graph_true_gives_differentiable_grad():
    x = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (g2,) = tg.autograd.grad(x.grad.sum(), [x])
    assert g2.tolist() == [6.0, 12.0]


def test_autograd_grad_does_not_touch_dot_grad_and_reaches_non_leaves():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    gx, gh = tg.autograd.grad((h * h).sum(), [x, h])
    assert x.grad is None
    assert gh.tolist() == [6.0, 12.0] and gx.tolist() == [18.0, 36.0]


def test_autograd_grad_unused_input():
    x, y = tg.ones(2, requires_grad=True), tg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not used"):
        tg.autograd.grad((x * 2).sum(), [x, y])
    gx, gy = tg.autograd.grad((x * 2).sum(), [x, y], allow_unused=True)
    assert gy is None and gx.tolist() == [2.0, 2.0]


# ------------------------------------------------------------------ in-place detection
def test_inplace_change_of_saved_input_is_detected():
    x = tg.ones(3, requires_grad=True)
    w = tg.ones(3)
    y = (x * w).sum()
    w.mul_(2)
    with pytest.raises(RuntimeError, match=r"mul: an input of shape \(3,\).*in-place"):
        y.backward()


def test_inplace_change_of_saved_output_through_a_detached_alias_is_detected():
    x = tg.ones(3, requires_grad=True)
    e = x.exp()
    alias = e.detach()
    alias.zero_()  # writes into e's memory; e is what exp's backward needs
    with pytest.raises(RuntimeError, match="exp: its output.*in-place"):
        e.sum().backward()


def test_inplace_change_through_a_view_is_detected():
    x = tg.ones(2, 3, requires_grad=True)
    w = tg.ones(2, 3)
    y = (x * w).sum()
    row = w[0]          # a view into w
    row.fill_(5.0)
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_inplace_change_not_needed_by_backward_is_allowed():
    x = tg.ones(3, requires_grad=True)
    w = tg.ones(3)
    y = (x + w).sum()   # add's backward does not read its inputs
    w.mul_(2)
    y.backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_inplace_on_tensor_requiring_grad_needs_no_grad():
    w = tg.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="add_: in-place change of a tensor that requires grad"):
        w.add_(1.0)
    with tg.no_grad():
        w.sub_(tg.full((3,), 0.5))
    assert w.tolist() == [0.5, 0.5, 0.5]


def test_optimizer_style_update_after_forward_is_caught():
    w = tg.ones(2, 2, requires_grad=True)
    x = tg.ones(2, 2)
    loss = (x @ w).sum()
    with tg.no_grad():
        w.sub_(0.1)      # updated before backward used it
    with pytest.raises(RuntimeError, match="matmul.*in-place"):
        loss.backward()


# ------------------------------------------------------------------ anomaly mode
def test_anomaly_mode_names_the_forward_op_that_made_nan():
    x = tg.tensor([-1.0, 4.0], requires_grad=True)
    y = x * 2    # finite: fine
    with tg.autograd.detect_anomaly():
        with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError, match=r"^sqrt: forward"):
            y.sqrt()


def test_anomaly_mode_names_the_backward_that_made_inf():
    x = tg.tensor([0.0, 4.0], requires_grad=True)
    with tg.autograd.detect_anomaly():
        y = x.sqrt().sum()   # forward is finite: sqrt(0) = 0
        with pytest.warns(RuntimeWarning), \
                pytest.raises(FloatingPointError, match=r"(?s)sqrt: backward.*test_autograd"):
            y.backward()


def test_anomaly_mode_does_not_blame_an_op_for_nan_it_was_given():
    x = tg.tensor([math.nan, 1.0], requires_grad=True)
    with tg.autograd.detect_anomaly():
        y = x * 2    # NaN in, NaN out: not this op's fault
    assert math.isnan(y.tolist()[0])


# ------------------------------------------------------------------ error messages
def test_shape_mismatch_names_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"^add: .*\(2, 3\).*\(4,\)"):
        tg.ones(2, 3) + tg.ones(4)


def test_matmul_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"^matmul: .*\(2, 3\).*\(4, 5\)"):
        tg.ones(2, 3) @ tg.ones(4, 5)


def test_dim_out_of_range_names_op():
    with pytest.raises(IndexError, match=r"sum: dimension out of range.*\[-2, 1\].*got 2"):
        tg.ones(2, 3).sum(dim=2)


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="only floating point tensors.*int64"):
        tg.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="only floating point"):
        tg.arange(3).requires_grad_()


def test_backward_returning_wrong_shape_is_reported():
    class Broken(Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad.reshape(-1)[:1]   # wrong: shape (1,) for a (2, 3) input

    x = tg.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"broken: backward returned a gradient of shape"):
        Broken.apply(x).sum().backward()


def test_leaf_gradients_own_their_memory():
    # sum's backward is a broadcast view and add's backward hands one array to
    # both inputs: neither may leak into .grad, which optimizers change in place.
    a, b = tg.ones(3, requires_grad=True), tg.ones(3, requires_grad=True)
    (a + b).sum().backward()
    assert a.grad.data.flags.writeable and b.grad.data.flags.writeable
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.mul_(0.5)
    assert b.grad.tolist() == [1.0, 1.0, 1.0]

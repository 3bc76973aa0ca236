"""One test per behaviour that a differential fuzz against PyTorch found wrong (issue 5).

Each test is named after the behaviour it pins down and uses the issue's
minimal reproducer; PyTorch's answer is written out, so no PyTorch is needed.
"""
import warnings

import numpy as np
import pytest

import tinygrad_zh as tg


def leaf(values, dtype=tg.float64):
    return tg.tensor(values, dtype=dtype, requires_grad=True)


# ------------------------------------------------------------------ the backward walk
def test_leaf_grad_never_aliases_the_callers_gradient_tensor():
    x = leaf([1.0, 2.0])
    g = tg.ones(2, dtype=tg.float64)
    (x + 0).backward(g)
    assert x.grad is not g and not np.shares_memory(x.grad.data, g.data)
    x.grad.zero_()
    assert g.tolist() == [1.0, 1.0]


def test_backward_of_a_leaf_itself_copies_the_callers_gradient():
    x = leaf([1.0, 2.0])
    g = tg.ones(2, dtype=tg.float64)
    x.backward(g)
    x.grad.zero_()
    assert g.tolist() == [1.0, 1.0]


def test_backward_with_create_graph_retains_the_graph():
    x = leaf([0.5, -1.0])
    (x * x).tanh().sum().backward(create_graph=True)
    first = x.grad.detach().clone()
    x.grad.sum().backward()  # through the graph a second time: it was retained
    t = np.tanh(np.array([0.25, 1.0]))
    second = 2 * (1 - t * t) - 8 * np.array([0.25, 1.0]) * t * (1 - t * t)  # d/dx of 2x(1-tanh²(x²))
    assert np.allclose(x.grad.detach().numpy() - first.numpy(), second)


def test_grad_of_the_same_input_twice_returns_it_twice():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    g1, g2 = tg.autograd.grad(y, [x, x])
    assert g1.tolist() == g2.tolist() == [2.0, 4.0]


def test_grad_wrt_an_intermediate_leaves_the_graph_below_it_intact():
    x = leaf([1.0, 2.0])
    h = x * 3
    (gh,) = tg.autograd.grad((h * h).sum(), h)
    assert gh.tolist() == [6.0, 12.0]
    h.sum().backward()  # h's own node was never walked, so it was not freed
    assert x.grad.tolist() == [3.0, 3.0]


def test_grad_after_the_graph_was_freed_says_so():
    x = leaf([1.0])
    y = x * 2
    y.sum().backward()
    with pytest.raises(RuntimeError, match="freed"):
        tg.autograd.grad(y.sum(), x)


def test_set_grad_enabled_called_as_a_function_switches_grad_mode():
    try:
        tg.set_grad_enabled(False)
        assert not tg.is_grad_enabled()
        assert not (leaf([1.0]) * 2).requires_grad
    finally:
        tg.set_grad_enabled(True)
    assert tg.is_grad_enabled()


def test_set_grad_enabled_works_as_a_decorator():
    @tg.set_grad_enabled(False)
    def double(t):
        return t * 2

    assert tg.is_grad_enabled()  # decorating switched nothing
    assert not double(leaf([1.0])).requires_grad
    assert tg.is_grad_enabled()


def test_sink_gets_one_total_gradient_per_leaf():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_hook(lambda g: seen.append(g.tolist()))
    (x * 2 + x * 3).sum().backward()
    assert seen == [[5.0, 5.0]]


# ------------------------------------------------------------------ hooks
def test_register_hook_on_a_leaf_can_replace_its_gradient():
    x = leaf([1.0, 2.0])
    handle = x.register_hook(lambda g: g * 10)
    (x * x).sum().backward()
    assert x.grad.tolist() == [20.0, 40.0]
    handle.remove()
    x.grad = None
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]


def test_register_hook_on_a_non_leaf_changes_what_flows_below_it():
    x = leaf([1.0, 2.0])
    h = x * 3
    h.register_hook(lambda g: g * 0.5)
    h.sum().backward()
    assert x.grad.tolist() == [1.5, 1.5]


def test_post_accumulate_grad_hook_sees_the_accumulated_grad():
    w = leaf([1.0, 2.0])
    w.grad = tg.ones(2, dtype=tg.float64)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.tolist()))
    (w * w).sum().backward()
    assert seen == [[3.0, 5.0]]  # called once, after 1 + 2w was added
    tg.autograd.grad((w * w).sum(), w)  # grad() accumulates nothing, so no call
    assert len(seen) == 1


def test_post_accumulate_grad_hook_only_on_leaves():
    x = leaf([1.0])
    with pytest.raises(RuntimeError, match="only a leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.ones(2).register_hook(lambda g: g)

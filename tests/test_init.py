"""nn.init: each initialiser's distribution (range, mean, std from its formula),
in-place filling without recording a graph, seeding, gains and fans."""
import math

import numpy as np
import pytest

import tinygrad_zh as tg
from tinygrad_zh import nn
from tinygrad_zh.nn import init


def sample(fn, shape=(300, 200), **kwargs):
    w = nn.Parameter(tg.empty(*shape))
    out = fn(w, **kwargs)
    assert out is w and isinstance(w, nn.Parameter) and w.grad_fn is None  # in place, no graph
    return w.detach().numpy()


def close_to(value, expected, n, std):
    """Within 5 standard errors (of a mean: std/√n; of a std: std/√(2n))."""
    return abs(value - expected) < 5 * std / math.sqrt(n)


@pytest.mark.parametrize("fn, kwargs, low, high", [
    (init.uniform_, dict(a=-0.5, b=2.0), -0.5, 2.0),
    (init.xavier_uniform_, dict(gain=2.0), -2 * math.sqrt(6 / 500), 2 * math.sqrt(6 / 500)),
    (init.kaiming_uniform_, dict(a=math.sqrt(5)), -1 / math.sqrt(200), 1 / math.sqrt(200)),
    (init.kaiming_uniform_, dict(mode="fan_out", nonlinearity="relu"),
     -math.sqrt(6 / 300), math.sqrt(6 / 300)),
])
def test_uniform_initialisers_fill_their_range(fn, kwargs, low, high):
    w = sample(fn, **kwargs)
    assert low <= w.min() and w.max() <= high
    assert w.min() < low + 0.01 * (high - low) and w.max() > high - 0.01 * (high - low)
    std = (high - low) / math.sqrt(12)
    assert close_to(w.mean(), (low + high) / 2, w.size, std)
    assert close_to(w.std(), std, 2 * w.size, std)


@pytest.mark.parametrize("fn, kwargs, mean, std", [
    (init.normal_, dict(mean=1.0, std=0.5), 1.0, 0.5),
    (init.xavier_normal_, {}, 0.0, math.sqrt(2 / 500)),
    (init.kaiming_normal_, dict(nonlinearity="relu"), 0.0, math.sqrt(2 / 200)),
    (init.kaiming_normal_, dict(mode="fan_out", nonlinearity="tanh"), 0.0, 5 / 3 / math.sqrt(300)),
])
def test_normal_initialisers_have_their_std(fn, kwargs, mean, std):
    w = sample(fn, **kwargs)
    assert close_to(w.mean(), mean, w.size, std)
    assert close_to(w.std(), std, 2 * w.size, std)


def test_trunc_normal_stays_in_bounds():
    w = sample(init.trunc_normal_, mean=0.5, std=1.0, a=0.0, b=1.0)
    assert w.min() >= 0 and w.max() <= 1 and w.dtype == np.float32
    assert 0.45 < w.mean() < 0.55   # symmetric around the mean inside [0, 1]
    with pytest.raises(ValueError, match="need a < b"):
        init.trunc_normal_(tg.empty(2), a=1, b=0)


def test_constants_and_seeding():
    assert sample(init.zeros_, (3,)).tolist() == [0, 0, 0]
    assert sample(init.ones_, (2,)).tolist() == [1, 1]
    assert sample(init.constant_, (2,), val=0.25).tolist() == [0.25, 0.25]
    tg.manual_seed(3)
    a = sample(init.normal_, (5,))
    tg.manual_seed(3)
    np.testing.assert_array_equal(a, sample(init.normal_, (5,)))


def test_conv_weights_use_the_receptive_field_in_their_fans():
    w = sample(init.kaiming_normal_, (64, 32, 3, 3), nonlinearity="relu")
    std = math.sqrt(2 / (32 * 9))
    assert close_to(w.std(), std, 2 * w.size, std)


def test_calculate_gain_table():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match=r"fewer than 2 dims \(shape \(5,\)\)"):
        init.xavier_uniform_(tg.empty(5))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_uniform_(tg.empty(2, 2), mode="fan")


def test_matches_pytorch_gain_and_std():
    torch = pytest.importorskip("torch")
    for name in ("linear", "relu", "tanh", "selu"):
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu", 0.3) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.3))
    for fn in ("xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"):
        ours = sample(getattr(init, fn))
        theirs = getattr(torch.nn.init, fn)(torch.empty(300, 200)).numpy()
        assert close_to(ours.std(), theirs.std(), 2 * ours.size, theirs.std()), fn

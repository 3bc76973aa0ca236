"""nn.utils: gradient clipping (by norm, by value) and parameters <-> one vector."""
import math

import numpy as np
import pytest

import tinygrad_zh as tg
from tinygrad_zh import nn
from tinygrad_zh.nn.utils import (clip_grad_norm_, clip_grad_value_, parameters_to_vector,
                                  vector_to_parameters)


def params_with_grads(*grads):
    result = []
    for g in grads:
        p = nn.Parameter(tg.zeros(len(g)))
        p.grad = tg.tensor(g)
        result.append(p)
    return result


@pytest.mark.parametrize("norm_type, expected", [
    (2.0, math.sqrt(9 + 16 + 144)), (1, 3 + 4 + 12), (math.inf, 12.0),
    (3, (27 + 64 + 1728) ** (1 / 3))])
def test_clip_grad_norm_returns_the_total_norm_and_scales(norm_type, expected):
    ps = params_with_grads([3.0, -4.0], [12.0])
    total = clip_grad_norm_(ps, max_norm=1.0, norm_type=norm_type)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    scale = 1.0 / (expected + 1e-6)
    np.testing.assert_allclose(ps[0].grad.numpy(), [3 * scale, -4 * scale], rtol=1e-6)
    np.testing.assert_allclose(ps[1].grad.numpy(), [12 * scale], rtol=1e-6)


def test_clip_grad_norm_leaves_small_gradients_alone():
    ps = params_with_grads([0.3, 0.4])
    grad = ps[0].grad
    assert clip_grad_norm_(ps, 1.0).item() == pytest.approx(0.5)
    assert ps[0].grad is grad and ps[0].grad.tolist() == pytest.approx([0.3, 0.4])
    assert clip_grad_norm_([nn.Parameter(tg.zeros(1))], 1.0).item() == 0  # no grads


def test_clip_grad_norm_nonfinite():
    ps = params_with_grads([math.inf, 1.0])
    with pytest.raises(RuntimeError, match="total norm of order 2.0 of the gradients is inf"):
        clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    with np.errstate(invalid="ignore"):   # inf * 0 = NaN gradients, as in PyTorch
        assert math.isinf(clip_grad_norm_(ps, 1.0).item())


def test_clip_grad_value():
    ps = params_with_grads([-3.0, 0.5, 2.0])
    clip_grad_value_(ps, 1.0)
    assert ps[0].grad.tolist() == [-1.0, 0.5, 1.0]


def test_clip_grad_norm_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(5), rng.standard_normal(3)]
    ours = params_with_grads(*grads)
    theirs = [torch.zeros(len(g), dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(theirs, grads):
        p.grad = torch.tensor(g)
    for p in ours:
        p.grad = p.grad.double()
    a = clip_grad_norm_(ours, 0.7)
    b = torch.nn.utils.clip_grad_norm_(theirs, 0.7)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12)


def test_parameters_to_vector_and_back():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    vec = parameters_to_vector(model.parameters())
    assert vec.shape == (13,)
    np.testing.assert_array_equal(vec.detach().numpy()[:6],
                                  model[0].weight.detach().numpy().ravel())
    weight = model[0].weight
    vector_to_parameters(tg.arange(13.0), model.parameters())
    assert model[0].weight is weight and model[1].bias.item() == 12.0
    with pytest.raises(ValueError, match="the vector has 3 elements but the parameters hold 13"):
        vector_to_parameters(tg.zeros(3), model.parameters())

"""Optimizers: trajectories against the update formulas written out here, against
torch.optim, and the shared machinery (groups, state dicts, None grads, errors).

Every trajectory runs on the same small non-quadratic problem, so that the
gradient changes from step to step:

    L(w) = sum(a * w^2 / 2 + b * w + w^4 / 12),   dL/dw = a * w + b + w^3 / 3

The NumPy references below are written from the formulas in PyTorch's
documentation, one function per optimizer, in float64; they share no code
with tinygrad_zh.optim.
"""
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from helpers import shapes, torch_api
from tinygrad_zh import optim

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True, database=None)
STEPS = 6


# ------------------------------------------------------------------ the problem
def problem(shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 2.0, shape)
    b = rng.standard_normal(shape)
    w0 = rng.standard_normal(shape)
    return a, b, w0


def loss_of(m, w, a, b):
    """The loss, written once for tinygrad_zh (m = tg) and torch (m = torch)."""
    a, b = (m.tensor(c, dtype=m.float64, device=w.device) for c in (a, b))
    return (a * w * w / 2 + b * w + w ** 4 / 12).sum()


def grad_of(w, a, b):
    return a * w + b + w ** 3 / 3


# ------------------------------------------------------------------ NumPy references
def ref_sgd(w, grads, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
            maximize=False):
    buf = None
    for t in range(1, STEPS + 1):
        g = grads(w)
        g = -g if maximize else g
        g = g + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
    return w


def ref_adam(w, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
             maximize=False, decoupled=False):
    b1, b2 = betas
    m = v = vmax = np.zeros_like(w)
    for t in range(1, STEPS + 1):
        g = grads(w)
        g = -g if maximize else g
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)                           # bias correction
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def ref_adamw(w, grads, weight_decay=1e-2, **kw):
    return ref_adam(w, grads, weight_decay=weight_decay, decoupled=True, **kw)


def ref_rmsprop(w, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                centered=False, maximize=False):
    v = avg = buf = np.zeros_like(w)
    for t in range(1, STEPS + 1):
        g = grads(w)
        g = -g if maximize else g
        g = g + weight_decay * w
        v = alpha * v + (1 - alpha) * g ** 2
        avg = alpha * avg + (1 - alpha) * g
        denom = np.sqrt(v - avg ** 2 if centered else v) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            w = w - lr * buf
        else:
            w = w - lr * g / denom
    return w


def ref_adagrad(w, grads, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                eps=1e-10, maximize=False):
    s = np.full_like(w, initial_accumulator_value)
    for t in range(1, STEPS + 1):
        g = grads(w)
        g = -g if maximize else g
        g = g + weight_decay * w
        s = s + g * g
        w = w - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
    return w


# (optimizer name, keyword arguments): every option of every optimizer.
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.1, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.1, amsgrad=True, eps=1e-3)),
    ("Adam", dict(lr=0.05, maximize=True, weight_decay=0.05)),
    ("AdamW", dict(lr=0.1)),
    ("AdamW", dict(lr=0.1, weight_decay=0.5, amsgrad=True, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.7, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, eps=1e-4)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, eps=1e-3, maximize=True)),
]
REFERENCES = {"SGD": ref_sgd, "Adam": ref_adam, "AdamW": ref_adamw, "RMSprop": ref_rmsprop,
              "Adagrad": ref_adagrad}
CONFIG_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}"
              for name, kw in CONFIGS]


def run_tg(name, kw, w0, a, b, steps=STEPS, dtype=tg.float64):
    w = tg.tensor(w0, dtype=dtype, requires_grad=True)
    opt = getattr(optim, name)([w], **kw)
    for _ in range(steps):
        opt.zero_grad()
        loss_of(tg, w, a, b).backward()
        opt.step()
    return w.detach().numpy(), opt


# ------------------------------------------------------------------ trajectories
@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
@given(shape=shapes(min_dims=1, max_dims=2, min_side=1), seed=st.integers(0, 2**31))
@SETTINGS
def test_trajectory_matches_written_out_formulas(name, kw, shape, seed):
    a, b, w0 = problem(shape, seed)
    got, _ = run_tg(name, kw, w0, a, b)
    want = REFERENCES[name](w0, lambda w: grad_of(w, a, b), **kw)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.abs(got - w0).max() > 1e-4  # the parameters did move


@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_torch(name, kw):
    torch = torch_api()
    a, b, w0 = problem((3, 5), seed=7)
    got, _ = run_tg(name, kw, w0, a, b)
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, name)([w], **kw)
    for _ in range(STEPS):
        opt.zero_grad()
        loss_of(torch, w, a, b).backward()
        opt.step()
    np.testing.assert_allclose(got, w.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_first_adam_step_is_lr_times_sign_of_grad():
    # Bias correction at t = 1: m_hat = g and v_hat = g^2, so the step is
    # lr * g / (|g| + eps), whatever betas are.
    g = np.array([0.5, -3.0, 1e-3])
    w = tg.tensor([1.0, 1.0, 1.0], dtype=tg.float64, requires_grad=True)
    opt = optim.Adam([w], lr=0.1, betas=(0.5, 0.9))
    w.grad = tg.tensor(g)
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), 1 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    # With a zero gradient, AdamW still shrinks w by (1 - lr * wd) exactly,
    # while Adam's L2 decay goes through the adaptive step (about lr per step).
    w_adamw = tg.tensor([2.0], dtype=tg.float64, requires_grad=True)
    w_adam = tg.tensor([2.0], dtype=tg.float64, requires_grad=True)
    adamw = optim.AdamW([w_adamw], lr=0.1, weight_decay=0.5)
    adam = optim.Adam([w_adam], lr=0.1, weight_decay=0.5)
    for w in (w_adamw, w_adam):
        w.grad = tg.zeros(1, dtype=tg.float64)
    adamw.step()
    adam.step()
    assert w_adamw.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5), rel=1e-12)
    assert w_adam.item() == pytest.approx(2.0 - 0.1, rel=1e-6)


def test_parameters_keep_their_array_dtype_and_identity():
    for name, kw in CONFIGS:
        w = tg.randn(4, 3, requires_grad=True)
        array = w.data
        opt = getattr(optim, name)([w], **kw)
        for _ in range(2):
            w.grad = tg.randn(4, 3)
            opt.step()
        assert w.data is array and w.dtype == tg.float32, name
        assert all(v.dtype == tg.float32 for v in opt.state[w].values() if hasattr(v, "dtype"))


def test_updates_allocate_at_most_two_temporaries():
    # The update rules work in place with out= ufuncs; tracemalloc sees NumPy's
    # allocations, so the peak during a step counts the temporaries.
    n = 100_000
    for name, kw in CONFIGS:
        w = tg.zeros(n, requires_grad=True)
        w.grad = tg.ones(n)
        opt = getattr(optim, name)([w], **kw)
        opt.step()  # the state is allocated here, once
        tracemalloc.start()
        try:
            opt.step()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= 2 * w.data.nbytes + 10_000, (name, kw, peak / w.data.nbytes)


def test_step_runs_under_no_grad_and_returns_the_closure_loss():
    a, b, w0 = problem((4,), seed=1)
    w = tg.tensor(w0, dtype=tg.float64, requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)

    def closure():
        opt.zero_grad()
        loss = loss_of(tg, w, a, b)
        loss.backward()
        return loss

    with tg.no_grad():  # the closure still records its graph
        loss = opt.step(closure)
    assert loss.item() == pytest.approx(np.sum(a * w0 ** 2 / 2 + b * w0 + w0 ** 4 / 12))
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    np.testing.assert_allclose(w.detach().numpy(), w0 - 0.1 * grad_of(w0, a, b), rtol=1e-12)


# ------------------------------------------------------------------ groups and state
def test_param_groups_use_their_own_hyperparameters():
    torch = torch_api()
    a, b, w0 = problem((5,), seed=3)
    kw = [dict(lr=0.1), dict(lr=0.01, weight_decay=0.5, betas=(0.8, 0.9))]

    def run(m, opt_cls):
        ws = [m.tensor(w0, dtype=m.float64, requires_grad=True) for _ in kw]
        opt = opt_cls([{"params": [w], **k} for w, k in zip(ws, kw)], amsgrad=True)
        for _ in range(STEPS):
            opt.zero_grad()
            sum(loss_of(m, w, a, b) for w in ws).backward()
            opt.step()
        return [w.detach().numpy() for w in ws]

    got, want = run(tg, optim.AdamW), run(torch, torch.optim.AdamW)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert np.abs(got[0] - got[1]).max() > 1e-3


def test_defaults_fill_groups_and_add_param_group():
    w1, w2, w3 = (tg.zeros(2, requires_grad=True) for _ in range(3))
    opt = optim.SGD([{"params": [w1]}, {"params": w2, "lr": 0.5, "name": "head"}], lr=0.1,
                    momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["name"] == "head"
    opt.add_param_group({"params": [w3], "momentum": 0.0})
    assert opt.param_groups[2]["params"] == [w3] and opt.param_groups[2]["momentum"] == 0.0
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [w1]})
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([w1, w1])


def test_none_grads_are_skipped():
    used, unused = tg.ones(3, requires_grad=True), tg.ones(3, requires_grad=True)
    for name, kw in CONFIGS:
        opt = getattr(optim, name)([used, unused], **kw)
        used.grad, unused.grad = tg.ones(3), None
        opt.step()
        assert (unused.detach().numpy() == 1).all() and unused not in opt.state, name
        assert (used.detach().numpy() != 1).any(), name
        used.data[...] = 1


def test_adam_with_a_parameter_that_skipped_steps_matches_torch():
    # The two parameters reach different step counts (different bias corrections).
    torch = torch_api()
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((STEPS, 2, 3))

    def run(m, opt_cls):
        ws = [m.tensor(np.ones(3), dtype=m.float64, requires_grad=True) for _ in range(2)]
        opt = opt_cls(ws, lr=0.1)
        for t in range(STEPS):
            for i, w in enumerate(ws):
                w.grad = m.tensor(grads[t, i]) if i == 0 or t % 2 else None
            opt.step()
        return [w.detach().numpy() for w in ws]

    for got, want in zip(run(tg, optim.Adam), run(torch, torch.optim.Adam)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_zero_grad():
    w = tg.ones(2, requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    w.grad = tg.ones(2)
    opt.zero_grad(set_to_none=False)
    assert w.grad is not None and (w.grad.numpy() == 0).all()
    opt.zero_grad()
    assert w.grad is None


@pytest.mark.parametrize("name, kw", CONFIGS[1:4] + CONFIGS[6:8] + CONFIGS[12:15] + CONFIGS[16:],
                         ids=CONFIG_IDS[1:4] + CONFIG_IDS[6:8] + CONFIG_IDS[12:15]
                         + CONFIG_IDS[16:])
def test_state_dict_round_trip_mid_training_continues_exactly(name, kw, tmp_path):
    a, b, w0 = problem((2, 3), seed=5)
    straight, _ = run_tg(name, kw, w0, a, b, steps=6)

    first, opt = run_tg(name, kw, w0, a, b, steps=3)
    tg.save({"w": tg.tensor(first), "optimizer": opt.state_dict()}, tmp_path / "ckpt.npz")
    del opt
    ckpt = tg.load(tmp_path / "ckpt.npz")
    w = tg.tensor(ckpt["w"], requires_grad=True)
    opt = getattr(optim, name)([w])  # default hyperparameters: the checkpoint restores them
    opt.load_state_dict(ckpt["optimizer"])
    for _ in range(3):
        opt.zero_grad()
        loss_of(tg, w, a, b).backward()
        opt.step()
    np.testing.assert_array_equal(w.detach().numpy(), straight)


def test_state_dict_layout_is_pytorchs():
    torch = torch_api()
    w1, w2 = tg.ones(2, requires_grad=True), tg.ones(3, requires_grad=True)
    t1, t2 = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = optim.Adam([{"params": [w1]}, {"params": [w2], "lr": 0.1}])
    topt = torch.optim.Adam([{"params": [t1]}, {"params": [t2], "lr": 0.1}])
    for w, t in ((w1, t1), (w2, t2)):
        w.grad, t.grad = tg.ones(w.shape), torch.ones(t.shape)
    opt.step()
    topt.step()
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["state"].keys() == tsd["state"].keys() == {0, 1}
    assert sd["state"][1].keys() == tsd["state"][1].keys()
    assert sd["state"][1]["step"] == 1 and sd["state"][1]["exp_avg"].shape == (3,)
    shared = set(sd["param_groups"][1]) & set(tsd["param_groups"][1])
    assert {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "params"} <= shared
    for ours, theirs in zip(sd["param_groups"], tsd["param_groups"]):
        assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_load_state_dict_errors():
    w = tg.ones(2, requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = tg.ones(2)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="1 parameter group.* 2"):
        optim.SGD([{"params": [tg.ones(2, requires_grad=True)]},
                   {"params": [tg.ones(2, requires_grad=True)]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 1 parameter.* but 2 here"):
        optim.SGD([tg.ones(2, requires_grad=True), tg.ones(2, requires_grad=True)]
                  ).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\] has shape \(2,\), "
                                         r"but the parameter has shape \(5,\)"):
        optim.SGD([tg.ones(5, requires_grad=True)]).load_state_dict(sd)


def test_load_state_dict_copies_the_state():
    w = tg.ones(2, requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = tg.ones(2)
    opt.step()
    sd = opt.state_dict()
    other = optim.SGD([w], lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    other.step()
    assert sd["state"][0]["momentum_buffer"].tolist() == [1.0, 1.0]  # unchanged by `other`


def test_repr_lists_each_group():
    opt = optim.SGD([tg.ones(1, requires_grad=True)], lr=0.1, momentum=0.9)
    assert repr(opt) == ("SGD (\nParameter Group 0\n    dampening: 0\n    lr: 0.1\n"
                         "    maximize: False\n    momentum: 0.9\n    nesterov: False\n"
                         "    weight_decay: 0\n)")


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("make, message", [
    (lambda w: optim.SGD([w], lr=-1), "invalid learning rate -1"),
    (lambda w: optim.SGD([w], lr=0.1, nesterov=True), "Nesterov momentum requires a momentum"),
    (lambda w: optim.SGD([w], momentum=-0.5), "invalid momentum value -0.5"),
    (lambda w: optim.Adam([w], betas=(0.9, 1.0)), "invalid beta parameter at index 1: 1.0"),
    (lambda w: optim.AdamW([w], eps=-1e-8), "AdamW: invalid eps value"),
    (lambda w: optim.RMSprop([w], alpha=-0.1), "RMSprop: invalid alpha value"),
    (lambda w: optim.Adagrad([w], lr_decay=-1), "Adagrad: invalid lr_decay value"),
    (lambda w: optim.SGD([], lr=0.1), "SGD got an empty parameter list"),
    (lambda w: optim.SGD(w, lr=0.1), "got a single Tensor; wrap it in a list"),
    (lambda w: optim.SGD({w}, lr=0.1), "not a set"),
    (lambda w: optim.SGD([w, np.ones(2)], lr=0.1), "parameter 1 of the group is a ndarray"),
    (lambda w: optim.Adam([w * 2]), "can't optimize a non-leaf Tensor"),
])
def test_bad_arguments_raise_clear_errors(make, message):
    w = tg.ones(2, requires_grad=True)
    with pytest.raises((ValueError, TypeError), match=message):
        make(w)


def test_gradient_of_the_wrong_shape_is_reported():
    w = tg.ones(2, 3, requires_grad=True)
    opt = optim.Adam([w])
    w.grad = tg.ones(3, 2)
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\).* gradient of shape \(3, 2\)"):
        opt.step()


def test_adam_converges_on_a_least_squares_problem():
    # An end-to-end sanity check beside the exact ones: fit y = X w_true.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4))
    w_true = np.array([1.0, -2.0, 0.5, 3.0])
    X, y = tg.tensor(x), tg.tensor(x @ w_true)
    w = tg.zeros(4, dtype=tg.float64, requires_grad=True)
    opt = optim.Adam([w], lr=0.2)
    for _ in range(150):
        opt.zero_grad()
        ((X @ w - y) ** 2).mean().backward()
        opt.step()
    assert math.dist(w.detach().numpy(), w_true) < 1e-2


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_is_the_same_with_the_reference_kernel_forced(name):
    # Adam runs through tinygrad_zh.kernels.adam_step (Numba on the CPU); the
    # NumPy reference behind the same switch must give the same trajectory.
    from tinygrad_zh import kernels
    a, b, w0 = problem((4, 3), seed=11)
    kw = dict(lr=0.1, weight_decay=0.1, amsgrad=True)
    fast, _ = run_tg(name, kw, w0, a, b)
    with kernels.use_reference():
        slow, _ = run_tg(name, kw, w0, a, b)
    np.testing.assert_allclose(fast, slow, rtol=1e-13)


# ------------------------------------------------------------------ GPU
def _gpu_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device: all mean "no GPU here"
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_gpu_trajectory_matches_cpu(name, kw, tmp_path):
    a, b, w0 = problem((3, 5), seed=2)
    want, _ = run_tg(name, kw, w0, a, b)
    w = tg.tensor(w0, dtype=tg.float64, device="cuda", requires_grad=True)
    opt = getattr(optim, name)([w], **kw)
    for _ in range(STEPS):
        opt.zero_grad()
        loss_of(tg, w, a, b).backward()
        opt.step()
    np.testing.assert_allclose(w.detach().cpu().numpy(), want, rtol=1e-10, atol=1e-12)
    tg.save(opt.state_dict(), tmp_path / "gpu.npz")
    state = tg.load(tmp_path / "gpu.npz")["state"][0]
    assert all(v.device == "cuda:0" for v in state.values() if isinstance(v, tg.Tensor))
    state = tg.load(tmp_path / "gpu.npz", map_location="cpu")["state"][0]
    assert all(v.device == "cpu" for v in state.values() if isinstance(v, tg.Tensor))

"""The fused Adam / AdamW step: every implementation against the written-out formula.

Three implementations (NumPy reference, Numba CPU, numba.cuda — here in the
CUDA simulator) and the public dispatcher are run for several steps over
Hypothesis-drawn options (weight decay both ways, amsgrad, maximize, float32 and
float64, odd sizes) and compared with the update written out element by element
in plain Python floats below — an implementation that shares no code with them.
Then: PyTorch's Adam/AdamW, the dispatch switch, the compile-failure fallback,
non-contiguous arrays and the error messages.

Tolerances: float64 agrees with the float64 formula to rtol 1e-10; float32
(computed in float32 arithmetic) to rtol 1e-5 / atol 1e-6 after three steps.
"""
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh.kernels as K
from conftest import requires_real_gpu
from tinygrad_zh.kernels import dispatch, reference

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None)
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
STEPS = 3


def implementations():
    """name -> adam_step; the CUDA one only where Numba's simulator (or a GPU) is on."""
    from tinygrad_zh.kernels.numba_cpu import adam as numba_adam
    impls = {"reference": reference.adam_step, "numba_cpu": numba_adam.adam_step,
             "numba_cpu_parallel": _all_sizes_parallel(numba_adam), "dispatch": K.adam_step}
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        from tinygrad_zh.kernels.cuda_gpu import adam as cuda_adam
        impls["cuda_sim"] = cuda_adam.adam_step
    return impls


def _all_sizes_parallel(numba_adam):
    """The Numba kernel with its prange path forced on (tests use small arrays)."""
    def adam_step(*args, **options):
        threshold, numba_adam.PARALLEL_MIN_SIZE = numba_adam.PARALLEL_MIN_SIZE, 0
        try:
            numba_adam.adam_step(*args, **options)
        finally:
            numba_adam.PARALLEL_MIN_SIZE = threshold
    return adam_step


IMPLEMENTATIONS = sorted(implementations())


# ------------------------------------------------------------------ the formula, written out
def adam_by_hand(p, g, m, v, vmax, *, step, lr, beta1, beta2, eps, weight_decay, decoupled,
                 amsgrad, maximize):
    """PyTorch's Adam for one element, in Python floats: returns the new (p, m, v, vmax)."""
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    if amsgrad:
        vmax = max(vmax, v)
    v_hat = vmax if amsgrad else v
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    p = p - lr / bias_correction1 * m / (math.sqrt(v_hat) / math.sqrt(bias_correction2) + eps)
    return p, m, v, vmax


def run_by_hand(state, grads_per_step, options):
    """The written-out formula over several steps, element by element."""
    p, m, v, vmax = (a.astype(np.float64).ravel().tolist() for a in state)
    for step, g in enumerate(grads_per_step, start=1):
        for i, g_i in enumerate(g.astype(np.float64).ravel().tolist()):
            p[i], m[i], v[i], vmax[i] = adam_by_hand(p[i], g_i, m[i], v[i], vmax[i], step=step,
                                                     **options)
    return [np.array(a).reshape(state[0].shape) for a in (p, m, v, vmax)]


@st.composite
def adam_problems(draw):
    """A parameter shape, dtype, options, start state and gradients for STEPS steps."""
    shape = draw(st.sampled_from([(1,), (7,), (3, 5), (33,), (2, 1, 9)]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    options = dict(lr=draw(st.sampled_from([1e-3, 0.05])),
                   beta1=draw(st.sampled_from([0.9, 0.5])),
                   beta2=draw(st.sampled_from([0.999, 0.9])),
                   eps=draw(st.sampled_from([1e-8, 1e-3])),
                   weight_decay=draw(st.sampled_from([0.0, 0.1])),
                   decoupled=draw(st.booleans()), amsgrad=draw(st.booleans()),
                   maximize=draw(st.booleans()))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # A mid-training state: m anything, v >= 0 (and vmax, if used, >= 0 too).
    state = [rng.standard_normal(shape), rng.standard_normal(shape) * 0.1,
             rng.random(shape) * 0.01, rng.random(shape) * 0.01]
    grads = [rng.standard_normal(shape) for _ in range(STEPS)]
    return dtype, [a.astype(dtype) for a in state], [g.astype(dtype) for g in grads], options


def run_impl(adam_step, state, grads_per_step, options):
    p, m, v, vmax = (a.copy() for a in state)
    for step, g in enumerate(grads_per_step, start=1):
        adam_step([p], [g], [m], [v], [vmax] if options["amsgrad"] else None, step=step,
                  **options)
    return [p, m, v, vmax]


# ------------------------------------------------------------------ against the formula
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@SETTINGS
@given(problem=adam_problems())
def test_matches_the_written_out_formula(impl, problem):
    dtype, state, grads, options = problem
    expected = run_by_hand(state, grads, options)
    got = run_impl(implementations()[impl], state, grads, options)
    for name, e, a in zip(("param", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"), expected, got):
        assert a.dtype == dtype, f"{impl}: {name} changed dtype to {a.dtype}"
        np.testing.assert_allclose(a, e, **TOLERANCE[dtype], err_msg=f"{impl}: {name}, {options}")
    if not options["amsgrad"]:
        np.testing.assert_array_equal(got[3], state[3], err_msg="vmax touched without amsgrad")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_first_step_moves_each_weight_by_lr(impl):
    # At step 1 bias correction makes m_hat = g and v_hat = g^2, so with a tiny
    # eps every weight moves by lr * sign(g), whatever the size of g: this fails
    # if either bias correction is missing or applied twice.
    g = np.array([1e-3, -2.0, 50.0, -7e-2, 3.0], np.float64)
    p, m, v = np.zeros(5), np.zeros(5), np.zeros(5)
    implementations()[impl]([p], [g], [m], [v], None, step=1, lr=0.1, beta1=0.9, beta2=0.999,
                            eps=1e-12, weight_decay=0.0, decoupled=False, amsgrad=False,
                            maximize=False)
    np.testing.assert_allclose(p, -0.1 * np.sign(g), rtol=1e-6)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-12)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_list_of_parameters_updates_each_in_one_call(impl):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (5,), (1,), (0,), (2, 3, 3)]
    options = dict(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1, decoupled=True,
                   amsgrad=False, maximize=False)
    params = [rng.standard_normal(s) for s in shapes]
    grads = [rng.standard_normal(s) for s in shapes]
    together = [[a.copy() for a in params], [np.zeros(s) for s in shapes],
                [np.zeros(s) for s in shapes]]
    implementations()[impl](together[0], grads, together[1], together[2], None, step=1, **options)
    for i, s in enumerate(shapes):
        alone = run_impl(reference.adam_step, [params[i], np.zeros(s), np.zeros(s), np.zeros(s)],
                         [grads[i]], options)
        for got, expected in zip((together[0][i], together[1][i], together[2][i]), alone):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ against PyTorch
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_matches_torch_optim(decoupled, amsgrad, maximize):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: comparison skipped")
    rng = np.random.default_rng(1)
    shape = (5, 3)
    start = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(4)]
    options = dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05, amsgrad=amsgrad,
                   maximize=maximize)
    w = torch.tensor(start, requires_grad=True)
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)([w], foreach=False, **options)
    p, m, v, vmax = start.copy(), np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for step, g in enumerate(grads, start=1):
        w.grad = torch.tensor(g)
        opt.step()
        K.adam_step([p], [g], [m], [v], [vmax] if amsgrad else None, step=step, lr=0.02,
                    beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.05, decoupled=decoupled,
                    amsgrad=amsgrad, maximize=maximize)
    np.testing.assert_allclose(p, w.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m, opt.state[w]["exp_avg"].numpy(), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ the dispatcher
def test_dispatch_picks_numba_on_cpu_and_the_switch_forces_the_reference():
    with dispatch.use_reference(False):
        assert K.chosen("adam_step", "cpu") == "tinygrad_zh.kernels.numba_cpu.adam"
        assert K.chosen("adam_step", "cuda:0") == "tinygrad_zh.kernels.cuda_gpu.adam"
        with K.use_reference():
            assert K.reference_forced()
            assert K.chosen("adam_step", "cpu") == "tinygrad_zh.kernels.reference"
            assert K.chosen("adam_step", "cuda:0") == "tinygrad_zh.kernels.reference"
        assert K.chosen("adam_step", "cpu") == "tinygrad_zh.kernels.numba_cpu.adam"


def test_environment_variable_forces_the_reference():
    code = "import tinygrad_zh.kernels as K; print(K.chosen('adam_step', 'cpu'))"
    env = dict(os.environ, TINYGRAD_ZH_KERNELS="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "tinygrad_zh.kernels.reference"


def test_unknown_environment_value_is_a_clear_error():
    env = dict(os.environ, TINYGRAD_ZH_KERNELS="refrence")
    proc = subprocess.run([sys.executable, "-c", "import tinygrad_zh.kernels"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "TINYGRAD_ZH_KERNELS='refrence' is not understood" in proc.stderr


def test_reference_really_runs_under_the_switch(monkeypatch):
    calls = []
    monkeypatch.setattr(reference, "adam_step", lambda *a, **k: calls.append(1))
    p = np.zeros(3)
    with K.use_reference():
        K.adam_step([p], [p], [p.copy()], [p.copy()], None, step=1, lr=0.1, beta1=0.9,
                    beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False,
                    maximize=False)
    assert calls == [1]


def test_compile_failure_falls_back_to_the_reference_with_one_warning(monkeypatch):
    from numba.core.errors import TypingError
    from tinygrad_zh.kernels.numba_cpu import adam as numba_adam

    def cannot_compile(*args):
        raise TypingError("simulated: this Numba cannot type the Adam kernel")

    monkeypatch.setattr(numba_adam, "_serial_kernel", cannot_compile)
    monkeypatch.setattr(numba_adam, "_parallel_kernel", cannot_compile)
    monkeypatch.setattr(dispatch, "_failed", set())
    rng = np.random.default_rng(2)
    state = [rng.standard_normal(9), np.zeros(9), np.zeros(9), np.zeros(9)]
    grads = [rng.standard_normal(9) for _ in range(2)]
    options = dict(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
                   amsgrad=False, maximize=False)
    with dispatch.use_reference(False), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = run_impl(K.adam_step, state, grads, options)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "adam_step" in messages[0] and "could not be compiled" in messages[0]
    assert "NumPy reference" in messages[0] and "simulated" in messages[0]
    assert K.chosen("adam_step", "cpu") == "tinygrad_zh.kernels.reference"
    for a, e in zip(got, run_impl(reference.adam_step, state, grads, options)):
        np.testing.assert_array_equal(a, e)


def test_non_contiguous_arrays_are_updated_in_place():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 6))
    p = base.T  # a transposed (Fortran-ordered) view: the update must reach `base`
    g = rng.standard_normal((12, 4))[::2]  # every other row
    m, v = np.zeros((6, 4)), np.zeros((6, 4))
    expected = run_impl(reference.adam_step, [p.copy(), m, v, v], [g.copy()],
                        dict(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                             decoupled=False, amsgrad=False, maximize=False))
    K.adam_step([p], [g], [m], [v], None, step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)
    np.testing.assert_allclose(base.T, expected[0], rtol=1e-12)
    np.testing.assert_allclose(m, expected[1], rtol=1e-12)


def test_mixed_dtypes_in_one_call():
    p32, p64 = np.ones(3, np.float32), np.ones(2, np.float64)
    state = [[np.zeros_like(p32), np.zeros_like(p64)] for _ in range(2)]
    K.adam_step([p32, p64], [np.ones_like(p32), np.ones_like(p64)], *state, None, step=1,
                lr=0.5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
                amsgrad=False, maximize=False)
    assert p32.dtype == np.float32 and p64.dtype == np.float64
    np.testing.assert_allclose(p32, 0.5, rtol=1e-6)
    np.testing.assert_allclose(p64, 0.5 + 0.5e-8, rtol=1e-12)  # eps: 1 - 0.5 / (1 + 1e-8)


# ------------------------------------------------------------------ errors
def _call(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, amsgrad=False, step=1):
    K.adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step=step, lr=0.1,
                beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
                amsgrad=amsgrad, maximize=False)


def test_error_messages():
    z = np.zeros(3)
    with pytest.raises(ValueError, match=r"adam_step: exp_avgs\[0\] has shape \(4,\).*"
                                         r"params\[0\] has shape \(3,\)"):
        _call([z], [z], [np.zeros(4)], [z.copy()])
    with pytest.raises(ValueError, match=r"grads\[0\] has shape \(3,\) and dtype float32.*float64"):
        _call([z], [z.astype(np.float32)], [z.copy()], [z.copy()])
    with pytest.raises(ValueError, match=r"got 1 params but 2 grads"):
        _call([z], [z, z], [z.copy()], [z.copy()])
    with pytest.raises(TypeError, match=r"params\[0\] has dtype int64.*floating-point"):
        i = np.zeros(3, np.int64)
        _call([i], [i], [i], [i])
    with pytest.raises(ValueError, match=r"amsgrad=True needs max_exp_avg_sqs"):
        _call([z], [z], [z.copy()], [z.copy()], amsgrad=True)
    with pytest.raises(ValueError, match=r"step must be >= 1.*got 0"):
        _call([z], [z], [z.copy()], [z.copy()], step=0)


def test_empty_parameter_list_is_a_no_op():
    _call([], [], [], [])


# ------------------------------------------------------------------ real GPU
@requires_real_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_kernel_on_cupy_matches_the_cpu(dtype):
    import cupy
    rng = np.random.default_rng(4)
    shape = (1001, 3)
    state = [rng.standard_normal(shape).astype(dtype)] + [np.zeros(shape, dtype)] * 3
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    options = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=True,
                   amsgrad=True, maximize=False)
    assert K.chosen("adam_step", "cuda:0") == "tinygrad_zh.kernels.cuda_gpu.adam"
    on_gpu = [cupy.asarray(a) for a in state]
    for step, g in enumerate(grads, start=1):
        K.adam_step([on_gpu[0]], [cupy.asarray(g)], [on_gpu[1]], [on_gpu[2]], [on_gpu[3]],
                    step=step, **options)
    expected = run_impl(reference.adam_step, state, grads, options)
    for a, e in zip(on_gpu, expected):
        np.testing.assert_allclose(cupy.asnumpy(a), e, **TOLERANCE[dtype])

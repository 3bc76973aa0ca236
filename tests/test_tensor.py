"""The Tensor class: creation, dtypes, conversion, printing, in-place writes, factories."""
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_zh as tg


# ------------------------------------------------------------------ creation and dtypes
@pytest.mark.parametrize("data, dtype", [
    (1.5, tg.float32), ([1.0, 2.0], tg.float32), ([1, 2], tg.int64), (True, tg.bool),
    (np.zeros(2, np.float64), tg.float64), (np.zeros(2, np.float32), tg.float32),
    (np.arange(3, dtype=np.uint8), tg.uint8),
])
def test_default_dtypes_follow_pytorch(data, dtype):
    assert tg.tensor(data).dtype == dtype


def test_tensor_copies_its_data_and_from_numpy_shares_it():
    array = np.zeros(3, np.float32)
    copied, shared = tg.tensor(array), tg.from_numpy(array)
    array[0] = 7.0
    assert copied.tolist() == [0.0, 0.0, 0.0]
    assert shared.tolist() == [7.0, 0.0, 0.0]


def test_unsupported_dtype_is_refused():
    with pytest.raises(TypeError, match="unsupported dtype complex128"):
        tg.tensor(np.zeros(2, complex))
    with pytest.raises(TypeError, match="cannot make a tensor from str"):
        tg.tensor("abc")


def test_properties():
    x = tg.zeros(2, 3, 4)
    assert (x.shape, x.ndim, x.numel(), x.dim(), len(x)) == ((2, 3, 4), 3, 24, 3, 2)
    assert x.size() == (2, 3, 4) and x.size(-1) == 4
    assert x.device == "cpu" and x.is_leaf and x.grad_fn is None


@pytest.mark.parametrize("scalar", [2, 2.0, np.float64(2.0), np.int64(2)])
def test_python_and_numpy_scalars_keep_float32(scalar):
    x = tg.ones(3)
    for result in (x * scalar, scalar * x, x + scalar, scalar - x, x / scalar, x ** scalar):
        assert result.dtype == tg.float32


def test_type_promotion_follows_pytorch():
    f32, f64 = tg.ones(2), tg.ones(2, dtype=tg.float64)
    i64, b = tg.tensor([1, 2]), tg.tensor([True, False])
    assert (f32 + f64).dtype == tg.float64
    assert (i64 + f32).dtype == tg.float32        # NumPy alone would give float64
    assert (i64 * 2.5).dtype == tg.float32
    assert (i64 + 1).dtype == tg.int64
    assert (b + 1).dtype == tg.int64
    assert tg.cat([i64, f32]).dtype == tg.float32


def test_mixed_dtype_gradient_comes_back_in_each_inputs_dtype():
    a = tg.ones(2, requires_grad=True)
    b = tg.ones(2, dtype=tg.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == tg.float32 and b.grad.dtype == tg.float64


def test_numpy_array_on_the_left_defers_to_tensor():
    result = np.ones(3, np.float32) + tg.ones(3)
    assert isinstance(result, tg.Tensor) and result.tolist() == [2.0, 2.0, 2.0]


# ------------------------------------------------------------------ conversion
def test_to_changes_dtype_and_is_differentiable():
    x = tg.tensor([1.5, 2.5], requires_grad=True)
    y = x.to(tg.float64)
    assert y.dtype == tg.float64 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == tg.float32 and x.grad.tolist() == [3.0, 5.0]
    assert x.to("cpu") is x and x.float() is x


def test_integer_cast_cuts_the_graph():
    x = tg.tensor([1.7, -2.2], requires_grad=True)
    assert x.long().tolist() == [1, -2] and not x.long().requires_grad


def test_numpy_item_tolist():
    x = tg.tensor([[1.0, 2.0]])
    assert isinstance(x.numpy(), np.ndarray)
    assert x.sum().item() == 3.0 and x.tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match=r"item\(\): only a one-element tensor.*\(1, 2\)"):
        x.item()
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        tg.ones(2, requires_grad=True).numpy()


def test_bool_of_multi_element_tensor_is_ambiguous():
    assert bool(tg.tensor([1.0]))
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(tg.ones(2))


def test_clone_is_a_copy_that_gradients_flow_through():
    x = tg.ones(2, requires_grad=True)
    c = x.clone()
    assert not np.shares_memory(c.data, x.data)
    (c * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


# ------------------------------------------------------------------ printing
def test_repr_looks_like_pytorch():
    assert repr(tg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tg.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(tg.tensor([1.0], dtype=tg.float64)) == "tensor([1.], dtype=float64)"
    assert repr(tg.ones(2, requires_grad=True)) == "tensor([1., 1.], requires_grad=True)"
    assert repr(tg.ones(2, requires_grad=True) * 2) == "tensor([2., 2.], grad_fn=<MulBackward>)"
    assert repr(tg.zeros(0, 3)) == "tensor([], size=(0, 3))"
    assert repr(tg.tensor([[1.0, 2.0], [3.0, 4.0]])) == "tensor([[1., 2.],\n        [3., 4.]])"


# ------------------------------------------------------------------ in-place writes
def test_setitem_and_inplace_ops_write_and_bump_version():
    x = tg.zeros(2, 3)
    x[0, 1] = 5.0
    x[1] = tg.tensor([1.0, 2.0, 3.0])
    x.add_(1.0).mul_(2.0)
    assert x.tolist() == [[2.0, 12.0, 2.0], [4.0, 6.0, 8.0]]
    assert x._current_version() == 4


def test_inplace_write_with_wrong_shape_names_the_op():
    with pytest.raises(ValueError, match=r"copy_: cannot write into this tensor of shape \(2,\)"):
        tg.zeros(2).copy_(tg.ones(3))


def test_inplace_write_into_an_expanded_view_is_refused_clearly():
    v = tg.ones(1, 3).expand(4, 3)   # a broadcast view: one row seen four times
    with pytest.raises(ValueError, match="fill_: cannot write into this tensor"):
        v.fill_(0.0)


# ------------------------------------------------------------------ factories and seeds
def test_factories():
    assert tg.zeros(2, 3).tolist() == [[0.0] * 3] * 2
    assert tg.ones((2,)).dtype == tg.float32
    assert tg.full((2,), 7).dtype == tg.int64 and tg.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert tg.arange(4).tolist() == [0, 1, 2, 3] and tg.arange(4).dtype == tg.int64
    assert tg.arange(0, 1, 0.5).tolist() == [0.0, 0.5] and tg.arange(0, 1, 0.5).dtype == tg.float32
    assert tg.linspace(0, 1, 3).tolist() == [0.0, 0.5, 1.0]
    assert tg.eye(2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    x = tg.randn(2, 3, dtype=tg.float64)
    assert tg.zeros_like(x).dtype == tg.float64 and tg.ones_like(x).shape == (2, 3)
    assert tg.full_like(x, 2.0).tolist() == [[2.0] * 3] * 2
    assert tg.randn_like(x).shape == (2, 3) and tg.rand_like(x).dtype == tg.float64
    assert tg.randn(2, 3, requires_grad=True).requires_grad


def test_random_distributions_have_the_right_moments():
    tg.manual_seed(0)
    n = tg.randn(200_000).numpy()
    u = tg.rand(200_000).numpy()
    i = tg.randint(3, 7, (10_000,)).numpy()
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert set(np.unique(i)) == {3, 4, 5, 6}


def test_manual_seed_makes_runs_repeatable():
    tg.manual_seed(42)
    first = (tg.randn(5).tolist(), tg.rand(3).tolist())
    tg.manual_seed(42)
    assert (tg.randn(5).tolist(), tg.rand(3).tolist()) == first
    tg.manual_seed(43)
    assert tg.randn(5).tolist() != first[0]


# ------------------------------------------------------------------ devices and packaging
def test_importing_the_engine_and_running_cpu_ops_never_imports_cupy():
    code = ("import sys, tinygrad_zh as tg; x = tg.randn(3, requires_grad=True); "
            "(x * 2).sum().backward(); print('cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tg.zeros(2, device="tpu")


def test_cuda_without_cupy_says_how_to_install_it():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here; this checks the message shown without it")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match=r"CuPy is not installed.*tinygrad_zh\[gpu\]"):
        tg.zeros(2, device="cuda")


def test_kernels_folder_is_installed_as_tinygrad_zh_kernels():
    import tinygrad_zh.kernels as kernels
    assert kernels.__name__ == "tinygrad_zh.kernels"
    code = "import importlib.util; print(importlib.util.find_spec('kernels') is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    assert out.stdout.strip() == "True"   # we did not claim the generic name


def test_augmented_assignment_updates_a_parameter_in_place():
    w = tg.ones(2, requires_grad=True)
    original = w
    (w * 3).sum().backward()
    with tg.no_grad():
        w -= 0.5 * w.grad
        w *= 2.0
    assert w is original and w.requires_grad and w.is_leaf
    assert w.tolist() == [-1.0, -1.0]
    with pytest.raises(RuntimeError, match="sub_: in-place change"):
        w -= 1.0

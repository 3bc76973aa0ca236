"""The same ops on the GPU (CuPy) must match the CPU (NumPy). Skipped without a GPU."""
import numpy as np
import pytest

import tinygrad_zh as tg


def _gpu_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device: all mean "no GPU here"
        return False


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")]

OPS = {
    "add_broadcast": lambda a, b: a + b[0],
    "mul_div": lambda a, b: a * b / (b.abs() + 1),
    "matmul": lambda a, b: a @ b.mT,
    "softmax": lambda a, b: a.softmax(-1) * b,
    "log_softmax": lambda a, b: a.log_softmax(0) * b,
    "reductions": lambda a, b: a.amax(1) + b.var(0).sum() + a.logsumexp(-1),
    "gelu_exact": lambda a, b: tg.gelu(a) * b,
    "index_and_gather": lambda a, b: a[[0, 0, 1]].sum() + a.gather(1, tg.tensor([[0], [1], [2]],
                                                                        device=a.device)).sum(),
    "movement": lambda a, b: tg.cat([a.T, b.T], 1).reshape(-1).split(4)[1],
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_gpu_forward_and_backward_match_cpu(name):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((3, 4)) for _ in range(2)]
    results = {}
    for device in ("cpu", "cuda"):
        a, b = (tg.tensor(v, device=device, requires_grad=True) for v in values)
        out = OPS[name](a, b)
        out.sum().backward()
        assert out.device == a.device == a.grad.device
        results[device] = [out.detach().cpu().numpy(), a.grad.cpu().numpy(), b.grad.cpu().numpy()]
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)


def test_mixing_devices_names_both():
    with pytest.raises(RuntimeError, match="one device.*cpu and cuda:0"):
        tg.ones(2) + tg.ones(2, device="cuda")


def test_to_device_round_trip_is_differentiable():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.to("cuda") * 3).cpu()
    y.sum().backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [3.0, 3.0]


def test_seeded_gpu_random_is_repeatable():
    tg.manual_seed(1)
    first = tg.randn(4, device="cuda").cpu().tolist()
    tg.manual_seed(1)
    assert tg.randn(4, device="cuda").cpu().tolist() == first

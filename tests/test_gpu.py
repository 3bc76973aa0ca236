"""The GPU (CuPy) must give the CPU's (NumPy's) results, from single ops to training runs.

The tests marked ``gpu`` need CuPy and a CUDA GPU, and the real kernels: conftest
turns Numba's CUDA simulator on unless ``TINYGRAD_ZH_REAL_GPU=1``, so on a GPU
machine run ``TINYGRAD_ZH_REAL_GPU=1 pytest tests/test_gpu.py``. Elsewhere they
are skipped with that reason. The tests at the end (no mark) run everywhere:
they check, on the CPU, the device plumbing that the GPU runs go through.

Tolerances, stated once. float64 ops: rtol 1e-10 (the same formulas; only the
order of additions differs). float32 training: cuBLAS and CuPy's reductions add
in another order than BLAS and NumPy, about 1e-7 relative per op, which a few
steps of training carry into the losses and weights: losses within rtol 1e-4,
weights and optimizer buffers within rtol 1e-4 plus a small absolute floor for
values near 0 (1e-5 for weights, 1e-6 for first moments and momentum buffers,
1e-9 for second moments, which are squares of gradients).
"""
import numpy as np
import pytest

import tinygrad_zh as tg
from conftest import requires_real_gpu
from tinygrad_zh import backend, kernels, nn, optim
from tinygrad_zh import gpt as cli
from tinygrad_zh.models.cnn import CNN
from tinygrad_zh.models.gpt import GPT, GPTConfig, _causal_mask
from tinygrad_zh.models.mlp import MLP
from tinygrad_zh.nn import functional as F
from tinygrad_zh.train.trainer import Trainer, TrainingArguments, _to_device, model_device
from tinygrad_zh.utils.data import TensorDataset

F64 = dict(rtol=1e-10, atol=1e-12)
LOSS = dict(rtol=1e-4, atol=0)
WEIGHTS = dict(rtol=1e-4, atol=1e-5)
STATE = {"momentum_buffer": dict(rtol=1e-4, atol=1e-6), "exp_avg": dict(rtol=1e-4, atol=1e-6),
         "grad_avg": dict(rtol=1e-4, atol=1e-6), "exp_avg_sq": dict(rtol=1e-4, atol=1e-9),
         "max_exp_avg_sq": dict(rtol=1e-4, atol=1e-9), "square_avg": dict(rtol=1e-4, atol=1e-9),
         "sum": dict(rtol=1e-4, atol=1e-9)}


def host(t):
    """A tensor's values as a NumPy array, from either device."""
    return t.detach().cpu().numpy()


def tiny_gpt(seed=0):
    tg.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))


# ================================================================== ops, forward and backward
OPS = {
    "add_broadcast": lambda a, b: a + b[0],
    "mul_div": lambda a, b: a * b / (b.abs() + 1),
    "matmul": lambda a, b: a @ b.mT,
    "softmax": lambda a, b: a.softmax(-1) * b,
    "log_softmax": lambda a, b: a.log_softmax(0) * b,
    "reductions": lambda a, b: a.amax(1) + b.var(0).sum() + a.logsumexp(-1),
    "pow_both_sides": lambda a, b: (a.abs() + 0.5) ** b,             # d/db: log of the base
    "std": lambda a, b: a.std(1) * b[:, 0],
    "gelu_exact": lambda a, b: tg.gelu(a) * b,
    "clamp_where_maximum": lambda a, b: a.clamp(-0.5, 0.5) + tg.where(a > b, a, b) + a.maximum(b),
    "index_and_gather": lambda a, b: a[[0, 0, 1]].sum() + a.gather(1, tg.tensor([[0], [1], [2]],
                                                                        device=a.device)).sum(),
    "movement": lambda a, b: tg.cat([a.T, b.T], 1).reshape(-1).split(4)[1],
    "linear": lambda a, b: F.linear(a, b, b[0, :3]),
    "layer_norm": lambda a, b: F.layer_norm(a, (4,), b[0], b[1]),
    "embedding": lambda a, b: F.embedding(tg.tensor([[2, 0], [2, 1]], device=a.device), a) * b[0],
    "cross_entropy": lambda a, b: F.cross_entropy(a * b, tg.tensor([0, 3, 1], device=a.device),
                                                  label_smoothing=0.1),
}


@requires_real_gpu
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
        # b.grad is None where the op does not use b (on both devices alike)
        results[device] = [host(out), host(a.grad), b.grad if b.grad is None else host(b.grad)]
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        assert (cpu is None) == (gpu is None)
        if cpu is not None:
            np.testing.assert_allclose(gpu, cpu, **F64)


@requires_real_gpu
def test_conv_and_pooling_match_cpu():
    rng = np.random.default_rng(1)
    values = [rng.standard_normal(s) for s in ((2, 3, 7, 7), (4, 3, 3, 3), (4,))]
    results = {}
    for device in ("cpu", "cuda"):
        x, w, b = (tg.tensor(v, device=device, requires_grad=True) for v in values)
        y = F.conv2d(x, w, b, stride=2, padding=1)                 # im2col + one GEMM
        y = F.max_pool2d(y, 2, stride=1)                            # overlapping windows
        y = F.avg_pool2d(y, 2) + F.adaptive_avg_pool2d(y, 1)
        (y * y).sum().backward()
        results[device] = [host(y)] + [host(t.grad) for t in (x, w, b)]
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, **F64)


@requires_real_gpu
def test_empty_softmax_axes_match_cpu():
    """The shift by the row max is -inf over an empty axis (CuPy's max has no ``initial``)."""
    for device in ("cpu", "cuda"):
        x = tg.zeros(2, 0, device=device)
        assert x.softmax(-1).shape == x.log_softmax(-1).shape == (2, 0)
        assert x.logsumexp(-1).cpu().tolist() == [-np.inf, -np.inf]
        loss = F.cross_entropy(tg.zeros(0, 3, device=device), tg.zeros(0, dtype=tg.int64,
                                                                       device=device))
        assert np.isnan(loss.item())   # the mean over no rows, as PyTorch


@requires_real_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masking", ["none", "causal", "bool_mask"])
def test_fused_attention_on_cuda_matches_the_cpu_kernel(dtype, masking):
    assert kernels.chosen("attention_forward", "cuda:0") == "tinygrad_zh.kernels.cuda_gpu.attention"
    assert kernels.chosen("attention_forward", "cpu") == "tinygrad_zh.kernels.numba_cpu.attention"
    rng = np.random.default_rng(2)
    length, source = (9, 9) if masking == "causal" else (9, 13)
    values = [rng.standard_normal(s).astype(dtype)
              for s in ((2, 3, length, 8), (2, 1, source, 8), (2, 3, source, 5), (2, 3, length, 5))]
    mask = rng.random((length, source)) < 0.7
    mask[:, 0] = True                     # every query keeps a key: no all-masked row
    results = {}
    for device in ("cpu", "cuda"):
        q, k, v = (tg.tensor(a, device=device, requires_grad=True) for a in values[:3])
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=tg.tensor(mask, device=device) if masking == "bool_mask" else None,
            is_causal=masking == "causal")
        (out * tg.tensor(values[3], device=device)).sum().backward()
        results[device] = [host(out)] + [host(t.grad) for t in (q, k, v)]
    tolerance = F64 if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, **tolerance)


# ================================================================== tensors and modules
@requires_real_gpu
def test_mixing_devices_is_a_clear_error():
    with pytest.raises(RuntimeError, match="one device.*cpu and cuda:0"):
        tg.ones(2) + tg.ones(2, device="cuda")


@requires_real_gpu
def test_embedding_ids_on_another_device_are_a_clear_error():
    with pytest.raises(RuntimeError, match="embedding: .* on cpu and cuda:0"):
        F.embedding(tg.tensor([1, 2]), tg.randn(4, 3, device="cuda"))


@requires_real_gpu
def test_to_device_round_trip_is_differentiable():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.to("cuda") * 3).cpu()
    y.sum().backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [3.0, 3.0]


@requires_real_gpu
def test_seeded_gpu_random_is_repeatable():
    tg.manual_seed(1)
    first = tg.randn(4, device="cuda").cpu().tolist()
    dropped = F.dropout(tg.ones(50, device="cuda"), 0.5).cpu().tolist()
    tg.manual_seed(1)
    assert tg.randn(4, device="cuda").cpu().tolist() == first
    assert F.dropout(tg.ones(50, device="cuda"), 0.5).cpu().tolist() == dropped


@requires_real_gpu
def test_cupy_arrays_become_cuda_tensors_and_update_in_place():
    import cupy
    t = tg.tensor(cupy.arange(4.0))
    assert t.device == "cuda:0" and t.dtype == tg.float64
    t.add_(1).mul_(2)
    t -= tg.ones(4, dtype=tg.float64, device="cuda")
    t.div_(2.0)
    assert t.device == "cuda:0" and t.tolist() == [0.5, 1.5, 2.5, 3.5]
    counts = tg.zeros(3, device="cuda")
    counts.add_(tg.ones(3, dtype=tg.int64, device="cuda"))   # same_kind casting, as on the CPU
    assert counts.dtype == tg.float32 and counts.tolist() == [1.0, 1.0, 1.0]


@requires_real_gpu
def test_module_to_cuda_moves_parameters_buffers_and_grads_and_keeps_sharing():
    model = tiny_gpt()
    params = list(model.parameters())
    before = {name: host(p).copy() for name, p in model.named_parameters()}
    model.wte.weight.grad = tg.ones(*model.wte.weight.shape)
    seen = []
    model.ln_f.weight.register_hook(lambda g: seen.append(g.device))
    assert model.to("cuda") is model
    assert list(model.parameters()) == params                 # the same objects, moved
    assert model.lm_head.weight is model.wte.weight           # the tied weight stays one
    assert all(p.device == "cuda:0" for p in params)
    assert model.wte.weight.grad.device == "cuda:0"
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(host(p), before[name])
    ids = tg.tensor([[1, 2, 3]], device="cuda")
    model.zero_grad()
    model(ids, targets=ids)[1].backward()
    assert seen == ["cuda:0"]                                 # the hook moved with the tensor
    # the tied matrix collects the gradient of both its uses, as on the CPU
    cpu_model = tiny_gpt()
    cpu_model(ids.cpu(), targets=ids.cpu())[1].backward()
    np.testing.assert_allclose(host(model.wte.weight.grad), host(cpu_model.wte.weight.grad),
                               rtol=1e-4, atol=1e-7)
    model.to("cpu")
    assert all(p.device == "cpu" for p in params) and model.lm_head.weight is model.wte.weight

    bn_cpu, bn_gpu = nn.BatchNorm1d(3), nn.BatchNorm1d(3).to("cuda")
    assert {b.device for b in bn_gpu.buffers()} == {"cuda:0"}
    assert bn_gpu.num_batches_tracked.dtype == tg.int64       # dtype kept: only the device moved
    x = np.random.default_rng(3).standard_normal((8, 3)).astype(np.float32)
    bn_cpu(tg.tensor(x))
    bn_gpu(tg.tensor(x, device="cuda"))
    for name, b in bn_cpu.named_buffers():
        np.testing.assert_allclose(host(dict(bn_gpu.named_buffers())[name]), host(b),
                                   rtol=1e-5, atol=1e-6)


# ================================================================== optimizers
OPTIMIZERS = {
    "sgd_nesterov_decay": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                               weight_decay=0.01),
    "adam_amsgrad_l2": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01),
    "rmsprop_centered": lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.9, centered=True),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1),
}


@requires_real_gpu
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_on_cuda_match_cpu(name):
    rng = np.random.default_rng(4)
    start = [rng.standard_normal(s).astype(np.float32) for s in ((5, 3), (7,))]
    grads = [[rng.standard_normal(a.shape).astype(np.float32) for a in start] for _ in range(4)]
    runs = {}
    for device in ("cpu", "cuda"):
        params = [tg.tensor(a, device=device, requires_grad=True) for a in start]
        opt = OPTIMIZERS[name](params)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = tg.tensor(g, device=device)
            opt.step()
        runs[device] = params, opt
    (cpu_params, cpu_opt), (gpu_params, gpu_opt) = runs["cpu"], runs["cuda"]
    for p_cpu, p_gpu in zip(cpu_params, gpu_params):
        assert p_gpu.device == "cuda:0"
        np.testing.assert_allclose(host(p_gpu), host(p_cpu), rtol=1e-5, atol=1e-6)
        for key, value in cpu_opt.state[p_cpu].items():
            if isinstance(value, np.ndarray):   # state lives on the parameter's device
                gpu_value = gpu_opt.state[p_gpu][key]
                assert backend.device_of(gpu_value) == "cuda:0"
                np.testing.assert_allclose(backend.to_device(gpu_value, "cpu"), value,
                                           rtol=1e-5, atol=1e-7)
            else:
                assert gpu_opt.state[p_gpu][key] == value


def _train_batches(kind, steps):
    rng = np.random.default_rng(5)
    if kind == "gpt":
        tokens = rng.integers(0, 11, (steps, 4, 9))
        return [(t[:, :-1], t[:, 1:]) for t in tokens]
    shape = (16, 1, 28, 28) if kind == "mlp" else (6, 1, 28, 28)
    return [(rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, shape[0]))
            for _ in range(steps)]


def _model_and_optimizer(kind, device):
    tg.manual_seed(0)    # the same initial weights: built on the CPU, then moved
    if kind == "gpt":
        model = tiny_gpt().to(device)
        return model, model.configure_optimizers(learning_rate=1e-3)
    model = (MLP(784, [64, 32], 10) if kind == "mlp" else CNN(channels=(4, 8), hidden=16))
    model.to(device)
    return model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def _train(kind, device, steps):
    model, opt = _model_and_optimizer(kind, device)
    losses, norms = [], []
    for x, y in _train_batches(kind, steps):
        x, y = tg.tensor(x, device=device), tg.tensor(y, device=device)
        loss = model(x, targets=y)[1] if kind == "gpt" else F.cross_entropy(model(x), y)
        loss.backward()
        assert loss.device == device and all(p.grad.device == device
                                             for p in model.parameters())
        norms.append(nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert {n.device for n in norms} == {device}
    return model, opt, losses, [n.item() for n in norms]


@requires_real_gpu
@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("kind", ["mlp", "cnn", "gpt"])
def test_training_steps_on_cuda_match_cpu(kind, steps):
    cpu_model, cpu_opt, cpu_losses, cpu_norms = _train(kind, "cpu", steps)
    gpu_model, gpu_opt, gpu_losses, gpu_norms = _train(kind, "cuda:0", steps)
    np.testing.assert_allclose(gpu_losses, cpu_losses, **LOSS)
    np.testing.assert_allclose(gpu_norms, cpu_norms, **LOSS)
    for (name, p_cpu), p_gpu in zip(cpu_model.named_parameters(), gpu_model.parameters()):
        np.testing.assert_allclose(host(p_gpu), host(p_cpu), **WEIGHTS, err_msg=name)
        for key, value in cpu_opt.state[p_cpu].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_allclose(backend.to_device(gpu_opt.state[p_gpu][key], "cpu"),
                                           value, **STATE[key], err_msg=f"{name} {key}")


@requires_real_gpu
def test_checkpoint_saved_on_cuda_loads_on_cpu_and_training_goes_on(tmp_path):
    (x, y), (x2, y2) = _train_batches("gpt", 2)
    gpu_model, gpu_opt = _model_and_optimizer("gpt", "cuda")
    gpu_model(tg.tensor(x, device="cuda"), targets=tg.tensor(y, device="cuda"))[1].backward()
    gpu_opt.step()
    gpu_opt.zero_grad()
    tg.save({"model": gpu_model.state_dict(), "optimizer": gpu_opt.state_dict()},
            tmp_path / "ckpt.npz")
    on_gpu = tg.load(tmp_path / "ckpt.npz")
    assert {t.device for t in on_gpu["model"].values()} == {"cuda:0"}
    state = tg.load(tmp_path / "ckpt.npz", map_location="cpu")
    assert {t.device for t in state["model"].values()} == {"cpu"}
    for key, t in gpu_model.state_dict().items():
        np.testing.assert_array_equal(state["model"][key].numpy(), host(t))   # bit for bit
    cpu_model, cpu_opt = _model_and_optimizer("gpt", "cpu")
    cpu_model.load_state_dict(state["model"])
    cpu_opt.load_state_dict(state["optimizer"])
    for model, opt, device in ((cpu_model, cpu_opt, "cpu"), (gpu_model, gpu_opt, "cuda")):
        model(tg.tensor(x2, device=device), targets=tg.tensor(y2, device=device))[1].backward()
        opt.step()
    for p_cpu, p_gpu in zip(cpu_model.parameters(), gpu_model.parameters()):
        np.testing.assert_allclose(host(p_gpu), host(p_cpu), **WEIGHTS)


# ================================================================== generation, Trainer, CLI
@requires_real_gpu
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_on_cuda_gives_the_cpu_tokens(use_cache):
    prompt = np.array([[1, 2, 3], [4, 4, 0]])
    cpu_model, gpu_model = tiny_gpt(), tiny_gpt().to("cuda")
    # 12 new tokens: past block_size 8, so the cache is also rebuilt once the context is full
    steps = list(cpu_model.stream(tg.tensor(prompt), 12, temperature=0, use_cache=use_cache))
    for _, logits in steps:     # a precondition: no near-tie that rounding could flip
        top2 = np.sort(host(logits), axis=-1)[:, -2:]
        assert (top2[:, 1] - top2[:, 0] > 1e-4).all()
    expected = np.concatenate([prompt] + [host(token) for token, _ in steps], axis=1)
    out = gpu_model.generate(tg.tensor(prompt, device="cuda"), 12, temperature=0,
                             use_cache=use_cache)
    assert out.device == "cuda:0" and out.dtype == tg.int64
    np.testing.assert_array_equal(host(out), expected)


@requires_real_gpu
def test_seeded_sampling_on_cuda_draws_from_the_host_generator():
    """Sampling runs on the CPU, so a seed gives the CPU's tokens (unless a uniform draw
    falls within rounding, about 1e-6, of a cumulative-probability boundary)."""
    prompt = np.array([[1, 2]])
    cpu = tiny_gpt().generate(tg.tensor(prompt), 10, temperature=0.8, top_k=5, generator=7)
    gpu = tiny_gpt().to("cuda").generate(tg.tensor(prompt, device="cuda"), 10, temperature=0.8,
                                          top_k=5, generator=7)
    assert gpu.device == "cuda:0"
    np.testing.assert_array_equal(host(gpu), host(cpu))


@requires_real_gpu
def test_trainer_on_cuda_matches_cpu(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    data = TensorDataset(tg.tensor(x), tg.tensor((x[:, 0] > 0).astype(np.int64)))  # CPU data
    runs = {}
    for device in ("cpu", "cuda:0"):
        tg.manual_seed(0)
        model = MLP(4, [16], 2).to(device)
        args = TrainingArguments(str(tmp_path / device.replace(":", "")), max_steps=6,
                                 learning_rate=0.05, per_device_train_batch_size=16,
                                 logging_steps=2, save_strategy="no", disable_tqdm=True)
        trainer = Trainer(model, args, train_dataset=data)
        out = trainer.train()
        predicted = trainer.predict(data)
        assert isinstance(predicted.predictions, np.ndarray)   # host arrays for the metrics
        assert all(p.device == device for p in model.parameters())
        runs[device] = out, predicted, model
    (cpu_out, cpu_pred, cpu_model), (gpu_out, gpu_pred, gpu_model) = runs["cpu"], runs["cuda:0"]
    np.testing.assert_allclose(gpu_out.training_loss, cpu_out.training_loss, **LOSS)
    np.testing.assert_allclose(gpu_pred.predictions, cpu_pred.predictions, **WEIGHTS)
    for p_cpu, p_gpu in zip(cpu_model.parameters(), gpu_model.parameters()):
        np.testing.assert_allclose(host(p_gpu), host(p_cpu), **WEIGHTS)


@requires_real_gpu
def test_gpt_command_line_trains_and_samples_on_cuda(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be, that is the question.\n" * 20, encoding="utf-8")
    common = ["--text", str(corpus), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
              "--block-size", "16", "--batch-size", "4", "--max-iters", "6", "--eval-interval",
              "3", "--eval-iters", "2", "--warmup", "2"]
    for device in ("cpu", "cuda"):
        cli.main(["train", *common, "--out", str(tmp_path / device), "--device", device])
    (_, _, cpu_state), (gpu_model, _, gpu_state) = (
        cli.load_checkpoint(tmp_path / "cpu"), cli.load_checkpoint(tmp_path / "cuda", "cuda"))
    assert all(p.device == "cuda:0" for p in gpu_model.parameters())
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(gpu_state["history"][key], cpu_state["history"][key], **LOSS)
    capsys.readouterr()
    cli.main(["sample", "--ckpt", str(tmp_path / "cuda"), "--device", "cuda", "--prompt", "to",
              "--max-new-tokens", "10", "--seed", "0"])
    assert capsys.readouterr().out.startswith("to")


# ================================================================== the plumbing, on the CPU
@pytest.mark.parametrize("shape, axis", [((3, 4), 1), ((3, 4), None), ((2, 3, 4), (0, 2)),
                                         ((2, 0), 1), ((0, 3), 1), ((0, 3), (0, 1)), ((2, 0, 3), 1)])
def test_max_keepdims_is_numpys_max_with_initial_minus_inf(shape, axis):
    a = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    got = backend.max_keepdims(a, axis)
    expected = a.max(axis=axis, keepdims=True, initial=-np.inf)
    assert got.dtype == a.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_trainer_sends_batches_to_the_device_of_the_models_parameters(tmp_path):
    assert model_device(nn.Linear(2, 3)) == "cpu"
    assert model_device(nn.ReLU()) == "cpu"                      # no parameters: the CPU
    x, label = tg.ones(2), "not a tensor"
    moved = _to_device([x, label], "cpu")
    assert moved[0] is x and moved[1] is label                   # already there: no copy
    data = TensorDataset(tg.randn(8, 4), tg.tensor([0, 1] * 4))
    args = TrainingArguments(str(tmp_path), max_steps=1, save_strategy="no", disable_tqdm=True)
    predicted = Trainer(MLP(4, [8], 2), args, train_dataset=data).predict(data)
    assert type(predicted.predictions) is np.ndarray and type(predicted.label_ids) is np.ndarray


def test_clip_grad_norm_returns_the_norm_on_the_gradients_device():
    w = tg.zeros(2, requires_grad=True)
    w.grad = tg.tensor([3.0, 4.0])
    norm = nn.utils.clip_grad_norm_([w], 1.0)
    assert norm.device == "cpu" and norm.dtype == tg.float32 and norm.item() == 5.0


def test_gpt_masks_and_positions_follow_the_input_array_module():
    mask = _causal_mask(3, 2, tg.zeros(1))
    assert type(mask.data) is np.ndarray
    np.testing.assert_array_equal(mask.numpy(), np.arange(5)[None, :] <= np.arange(2, 5)[:, None])
    model = tiny_gpt()
    out = model.generate(tg.tensor([[1, 2]]), 3, temperature=0.8, generator=0)
    assert out.device == "cpu" and out.dtype == tg.int64 and out.shape == (1, 5)


def test_gpt_command_line_device_option():
    parser = cli._parser()
    assert parser.parse_args(["train"]).device == "cpu"
    assert parser.parse_args(["sample", "--ckpt", "x", "--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--device", "tpu"])


def test_gpt_command_line_says_how_to_get_cupy(capsys):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["train", "--device", "cuda"])
    assert "pip install 'tinygrad_zh[gpu]'" in capsys.readouterr().err


def test_a_foreign_gpu_array_is_recognised_by_its_cuda_array_interface():
    """An array that is not NumPy's but exports ``__cuda_array_interface__`` is a GPU
    array: device_of imports CuPy for it (here there is none, hence the error)."""
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass

    class GpuArray:
        __cuda_array_interface__ = {"shape": (1,), "typestr": "<f4", "data": (0, False),
                                    "version": 3}

    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        backend.device_of(GpuArray())
    assert backend.device_of([1.0]) == "cpu"

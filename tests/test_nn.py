"""nn.Module and the layers as objects: registration, state dicts, modes, devices,
the printed tree, PyTorch's parameter layouts and default initialisation, and a
randomized differential test of small layer stacks against PyTorch."""
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_zh as tg
from helpers import hypothesis_settings, torch_api
from tinygrad_zh import nn


class MLP(nn.Module):
    def __init__(self, sizes=(3, 4, 2)):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])
        self.norm = nn.BatchNorm1d(sizes[-1])
        self.register_buffer("steps", tg.zeros(1))
        self.register_buffer("scratch", tg.zeros(2), persistent=False)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x).relu()
        return self.norm(x)


# ------------------------------------------------------------------ Parameter
def test_parameter_is_a_tensor_that_requires_grad_and_shares_memory():
    data = tg.zeros(3)
    p = nn.Parameter(data)
    assert isinstance(p, tg.Tensor) and p.requires_grad and p.is_leaf
    assert p.data is data.data
    assert repr(p).startswith("Parameter containing:\ntensor([0., 0., 0.], requires_grad=True)")
    assert not nn.Parameter(tg.zeros(1), requires_grad=False).requires_grad
    assert type(p * 2) is tg.Tensor  # arithmetic gives plain tensors
    with tg.no_grad():
        p -= 1.0                     # in place: still the same Parameter
    assert isinstance(p, nn.Parameter) and p.tolist() == [-1.0] * 3


# ------------------------------------------------------------------ registration
def test_parameters_buffers_children_in_registration_order():
    model = MLP()
    assert [n for n, _ in model.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
        "norm.weight", "norm.bias"]
    assert [n for n, _ in model.named_buffers()] == [
        "steps", "scratch", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]
    assert [n for n, _ in model.named_children()] == ["layers", "norm"]
    assert [type(m).__name__ for m in model.modules()] == [
        "MLP", "ModuleList", "Linear", "Linear", "BatchNorm1d"]
    assert len(list(model.parameters(recurse=False))) == 0


def test_shared_parameters_are_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight   # weight tying, as in GPT
    model = Tied()
    assert [n for n, _ in model.named_parameters()] == ["embed.weight"]
    assert [n for n, _ in model.named_parameters(prefix="m", remove_duplicate=False)] == [
        "m.embed.weight", "m.head.weight"]
    assert list(model.state_dict()) == ["embed.weight", "head.weight"]


def test_reassigning_and_deleting_attributes():
    layer = nn.Linear(2, 2)
    layer.weight = nn.Parameter(tg.ones(2, 2))
    assert layer.weight.tolist() == [[1, 1], [1, 1]]
    assert layer.bias is not None and "bias" in dict(layer.named_parameters())
    del layer.bias
    assert "bias" not in dict(layer.named_parameters())
    bn = nn.BatchNorm1d(2)
    bn.running_mean = tg.ones(2)   # stays a buffer
    assert "running_mean" in dict(bn.named_buffers())
    assert nn.Linear(2, 2, bias=False).bias is None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        layer.nope


def test_registering_a_name_that_was_a_plain_attribute():
    class Late(nn.Module):
        def __init__(self):
            super().__init__()
            self.extra = None                       # a plain attribute first
            self.extra = nn.Parameter(tg.ones(1))   # then a parameter under that name
    late = Late()
    assert isinstance(late.extra, nn.Parameter) and len(list(late.parameters())) == 1


def test_module_without_super_init_gets_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tg.zeros(1))
    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\)"):
        Broken()


# ------------------------------------------------------------------ modes and grads
def test_train_eval_zero_grad_requires_grad_apply():
    model = MLP()
    assert model.training and model.norm.training
    model.eval()
    assert not model.training and not model.norm.training and not model.layers[0].training
    model.train()
    model(tg.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Linear", "ModuleList", "BatchNorm1d", "MLP"]


def test_to_changes_dtype_in_place_keeping_identity():
    model = MLP()
    weight = model.layers[0].weight
    model(tg.randn(4, 3)).sum().backward()
    model.to(tg.float64)
    assert model.layers[0].weight is weight and weight.dtype == tg.float64
    assert weight.grad.dtype == tg.float64
    assert model.norm.running_mean.dtype == tg.float64
    assert model.norm.num_batches_tracked.dtype == tg.int64   # integers are not cast
    assert model(tg.randn(4, 3, dtype=tg.float64)).dtype == tg.float64


def test_forward_hooks_run_and_can_be_removed():
    layer = nn.Linear(2, 2)
    calls = []
    pre = layer.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    post = layer.register_forward_hook(lambda m, args, out: out * 0)
    assert not layer(tg.ones(1, 2)).detach().numpy().any() and calls == ["pre"]
    pre.remove()
    post.remove()
    assert layer(tg.ones(1, 2)).detach().numpy().any() and calls == ["pre"]


# ------------------------------------------------------------------ state dict
def test_state_dict_round_trip_keeps_identity_and_values():
    tg.manual_seed(0)
    source, target = MLP(), MLP()
    source(tg.randn(8, 3))   # changes the running statistics
    sd = source.state_dict()
    # PyTorch's order: each module's own parameters and buffers, then its children's
    assert list(sd) == ["steps", "layers.0.weight", "layers.0.bias", "layers.1.weight",
                        "layers.1.bias", "norm.weight", "norm.bias", "norm.running_mean",
                        "norm.running_var", "norm.num_batches_tracked"]   # scratch not saved
    assert not any(t.requires_grad for t in sd.values())
    assert sd["layers.0.weight"].data is source.layers[0].weight.data   # shares memory
    before = target.layers[0].weight
    result = target.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert target.layers[0].weight is before
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), sd[name].numpy())
    x = tg.randn(5, 3)
    np.testing.assert_array_equal(source.eval()(x).detach().numpy(),
                                  target.eval()(x).detach().numpy())


def test_load_state_dict_lists_every_bad_key_with_both_shapes():
    sd = MLP((3, 4, 2)).state_dict()
    del sd["layers.0.bias"]
    sd["extra.weight"] = tg.zeros(1)
    with pytest.raises(RuntimeError) as info:
        MLP((3, 5, 2)).load_state_dict(sd)
    message = str(info.value)
    assert "missing keys: layers.0.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "layers.0.weight (model (5, 3), checkpoint (4, 3))" in message
    assert "layers.1.weight (model (2, 5), checkpoint (2, 4))" in message
    result = MLP((3, 4, 2)).load_state_dict(sd, strict=False)
    assert result.missing_keys == ["layers.0.bias"] and result.unexpected_keys == ["extra.weight"]


def test_load_state_dict_accepts_numpy_arrays():
    layer = nn.Linear(2, 1)
    layer.load_state_dict({"weight": np.array([[1.0, 2.0]]), "bias": np.array([0.5])})
    assert layer(tg.tensor([[1.0, 1.0]])).item() == 3.5


# ------------------------------------------------------------------ printing
def test_repr_is_a_tree_with_arguments_and_parameter_count():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(),
                          nn.Sequential(nn.Linear(16, 3), nn.Dropout(0.2)))
    text = repr(model)
    assert "(0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    assert "(5): Sequential(\n    (0): Linear(in_features=16, out_features=3, bias=True)" in text
    assert "(1): Dropout(p=0.2)" in text
    total = sum(p.numel() for p in model.parameters())
    assert total == 4 * 9 + 4 + 8 + 16 * 3 + 3
    assert text.endswith(f"(total parameters: {total:,})")
    assert repr(nn.ReLU()) == "ReLU()"   # nothing to count: no count line


# ------------------------------------------------------------------ containers
def test_sequential_modulelist_moduledict():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and len(seq[:2]) == 2
    assert seq(tg.ones(4, 2)).shape == (4, 1)
    named = nn.Sequential(OrderedDict(first=nn.Linear(2, 2), act=nn.Tanh()))
    assert [n for n, _ in named.named_children()] == ["first", "act"]
    with pytest.raises(IndexError, match="index 5 is out of range for 3 modules"):
        seq[5]
    ml = nn.ModuleList([nn.Linear(1, 1)])
    ml.extend([nn.Linear(1, 1)])
    ml[0] = nn.Identity()
    assert len(ml) == 2 and isinstance(ml[0], nn.Identity) and len(list(ml.parameters())) == 2
    md = nn.ModuleDict({"a": nn.Linear(1, 2)})
    md["b"] = nn.Linear(2, 1)
    assert list(md) == ["a", "b"] and "a" in md and len(list(md.parameters())) == 4


# ------------------------------------------------------------------ layers
def test_layer_parameter_shapes_follow_pytorch():
    assert nn.Linear(3, 5).weight.shape == (5, 3)
    conv = nn.Conv2d(4, 6, (3, 2), groups=2)
    assert conv.weight.shape == (6, 2, 3, 2) and conv.bias.shape == (6,)
    assert nn.LayerNorm((2, 3)).weight.shape == (2, 3)
    assert nn.LayerNorm(4, bias=False).bias is None
    assert nn.LayerNorm(4, elementwise_affine=False).weight is None
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert bn.weight is None and bn.running_mean is None
    assert nn.Embedding(10, 4).weight.shape == (10, 4)


def test_batchnorm_module_tracks_statistics_only_in_training():
    bn = nn.BatchNorm2d(2)
    x = tg.randn(4, 2, 3, 3) * 2 + 1
    bn(x)
    assert bn.num_batches_tracked.item() == 1 and bn.running_mean.numpy().any()
    mean = bn.running_mean.numpy().copy()
    bn.eval()
    bn(x)
    np.testing.assert_array_equal(bn.running_mean.numpy(), mean)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(2\): expected input with 4 dims"):
        bn(tg.ones(2, 2))


def test_embedding_padding_and_from_pretrained():
    emb = nn.Embedding(4, 2, padding_idx=-1)
    assert emb.padding_idx == 3 and not emb.weight.detach().numpy()[3].any()
    emb(tg.tensor([3, 3, 1])).sum().backward()
    assert not emb.weight.grad.numpy()[3].any() and emb.weight.grad.numpy()[1].all()
    frozen = nn.Embedding.from_pretrained(tg.eye(3))
    assert not frozen.weight.requires_grad and frozen(tg.tensor([2])).tolist() == [[0, 0, 1]]


def test_dropout_module_follows_the_mode():
    drop = nn.Dropout(0.5)
    x = tg.ones(1000)
    assert (drop(x).numpy() == 0).any()
    assert drop.eval()(x) is x


def test_activation_modules_match_functions():
    x = tg.randn(3, 4)
    F = nn.functional
    pairs = [(nn.ReLU(), F.relu(x)), (nn.GELU(approximate="tanh"), F.gelu(x, "tanh")),
             (nn.SiLU(), F.silu(x)), (nn.Tanh(), F.tanh(x)), (nn.Sigmoid(), F.sigmoid(x)),
             (nn.LeakyReLU(0.2), F.leaky_relu(x, 0.2)), (nn.Softmax(dim=1), F.softmax(x, 1)),
             (nn.Softplus(beta=2.0), F.softplus(x, 2.0)), (nn.LogSigmoid(), F.logsigmoid(x)),
             (nn.LogSoftmax(dim=0), F.log_softmax(x, 0)), (nn.Identity(), x),
             (nn.Flatten(0), x.reshape(-1))]
    for module, expected in pairs:
        np.testing.assert_array_equal(module(x).detach().numpy(), expected.detach().numpy())


# ------------------------------------------------------------------ PyTorch
def test_default_initialisation_statistics_match_pytorch():
    """A big Linear / Conv2d weight: same range and std as PyTorch's (U(-1/√fan_in, ...))."""
    torch = torch_api()
    torch.manual_seed(0)
    tg.manual_seed(0)
    pairs = [(nn.Linear(400, 300), torch.nn.Linear(400, 300)),
             (nn.Conv2d(16, 32, 5), torch.nn.Conv2d(16, 32, 5)),
             (nn.Embedding(300, 64), torch.nn.Embedding(300, 64))]
    for ours, theirs in pairs:
        for name, p in ours.named_parameters():
            q = dict(theirs.named_parameters())[name].detach().numpy()
            a = p.detach().numpy()
            assert a.shape == q.shape and a.dtype == q.dtype
            n = a.size   # tolerances: 5 standard errors of the sample std and mean
            assert abs(a.std() - q.std()) < 5 * q.std() / math.sqrt(2 * n), name
            assert abs(a.mean()) < 5 * q.std() / math.sqrt(n), name
            if not isinstance(ours, nn.Embedding):
                bound = 1 / math.sqrt(ours.weight[0].numel())
                assert a.max() <= bound and a.min() >= -bound
                assert a.max() > 0.9 * bound   # the whole range is used


LAYER_KINDS = ["linear", "relu", "gelu", "tanh", "layernorm", "batchnorm", "dropout0"]


@hypothesis_settings(12)
@given(st.lists(st.sampled_from(LAYER_KINDS), min_size=1, max_size=5), st.integers(1, 4),
       st.integers(0, 2**32 - 1))
def test_random_layer_stacks_match_pytorch(kinds, batch, seed):
    """Build the same random stack in both libraries, copy our weights into
    PyTorch's through the state dict, and compare outputs and every gradient."""
    torch = torch_api()
    width = 3

    def make(lib):
        layers = []
        for kind in kinds:
            layers.append({"linear": lambda: lib.Linear(width, width),
                           "relu": lib.ReLU, "gelu": lib.GELU, "tanh": lib.Tanh,
                           "layernorm": lambda: lib.LayerNorm(width),
                           "batchnorm": lambda: lib.BatchNorm1d(width),
                           "dropout0": lambda: lib.Dropout(0.0)}[kind]())
        return lib.Sequential(*layers, lib.Linear(width, 2))

    tg.manual_seed(seed % 1000)
    ours = make(nn).to(tg.float64)
    theirs = make(torch.nn).double()
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(seed).standard_normal((batch + 1, width))   # BatchNorm: N > 1
    target = np.arange(batch + 1) % 2
    our_loss = nn.functional.cross_entropy(ours(tg.tensor(x)), tg.tensor(target))
    their_loss = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(target))
    our_loss.backward()
    their_loss.backward()
    np.testing.assert_allclose(our_loss.item(), their_loss.item(), rtol=1e-10)
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), their_params[name].grad.numpy(), rtol=1e-7,
                                   atol=1e-10, err_msg=name)
    for name, b in ours.named_buffers():
        np.testing.assert_allclose(b.numpy(), dict(theirs.named_buffers())[name].numpy(),
                                   rtol=1e-10, err_msg=name)


def test_cnn_matches_pytorch():
    """A small MNIST-style CNN, weights copied: the same logits and gradients."""
    torch = torch_api()

    def make(lib):
        return lib.Sequential(lib.Conv2d(1, 4, 3, padding=1), lib.ReLU(), lib.MaxPool2d(2),
                              lib.Conv2d(4, 6, 3, padding=1, stride=2), lib.BatchNorm2d(6),
                              lib.ReLU(), lib.AdaptiveAvgPool2d(1), lib.Flatten(),
                              lib.Linear(6, 3))
    ours, theirs = make(nn).double(), make(torch.nn).double()
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 9, 9))
    t = np.array([0, 2])
    nn.functional.cross_entropy(ours(tg.tensor(x)), tg.tensor(t)).backward()
    torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(t)).backward()
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), their_params[name].grad.numpy(), rtol=1e-7,
                                   atol=1e-10, err_msg=name)


def test_assigning_a_plain_tensor_to_a_parameter_slot_is_an_error():
    layer = nn.Linear(2, 3)
    with pytest.raises(TypeError, match="cannot assign a Tensor as parameter 'weight'"):
        layer.weight = tg.zeros(3, 2)


def test_zero_grad_without_set_to_none_zeroes_in_place():
    layer = nn.Linear(2, 3)
    layer(tg.ones(1, 2)).sum().backward()
    grad = layer.weight.grad
    layer.zero_grad(set_to_none=False)
    assert layer.weight.grad is grad and not grad.numpy().any()


def test_state_dict_keep_vars_and_deepcopy():
    import copy
    layer = nn.Linear(2, 3)
    assert layer.state_dict(keep_vars=True)["weight"] is layer.weight
    clone = copy.deepcopy(layer)
    assert isinstance(clone.weight, nn.Parameter) and clone.weight is not layer.weight
    np.testing.assert_array_equal(clone.weight.detach().numpy(), layer.weight.detach().numpy())


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel, dilation", [((3, 3), 1), ((2, 3), 1), ((2, 2), 2)])
def test_conv2d_string_padding_matches_pytorch(padding, kernel, dilation):
    torch = torch_api()
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3) + kernel)
    ours = nn.functional.conv2d(tg.tensor(x), tg.tensor(w), padding=padding, dilation=dilation)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # PyTorch warns about the uneven 'same' padding
        theirs = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=padding,
                                            dilation=dilation)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        nn.functional.conv2d(tg.tensor(x), tg.tensor(w), padding="same", stride=2)


def test_batchnorm_cumulative_average_with_momentum_none():
    bn = nn.BatchNorm1d(2, momentum=None).double()
    batches = [tg.randn(5, 2, dtype=tg.float64) for _ in range(3)]
    for x in batches:
        bn(x)
    means = np.stack([x.numpy().mean(0) for x in batches])
    np.testing.assert_allclose(bn.running_mean.numpy(), means.mean(0), rtol=1e-12)


def test_token_model_matches_pytorch():
    """Embedding -> LayerNorm -> GELU -> Linear -> cross-entropy over (B, V, T) logits,
    the shape of a language model's step; weights copied through the state dict."""
    torch = torch_api()

    class TokenModel:
        def __init__(self, lib):
            self.net = lib.ModuleDict({"embed": lib.Embedding(7, 4, padding_idx=0),
                                       "norm": lib.LayerNorm(4), "act": lib.GELU("tanh"),
                                       "head": lib.Linear(4, 7)})

        def __call__(self, ids):
            h = self.net["act"](self.net["norm"](self.net["embed"](ids)))
            return self.net["head"](h).transpose(1, 2)           # (B, V, T)

    ours, theirs = TokenModel(nn), TokenModel(torch.nn)
    ours.net.double()
    theirs.net.double()
    theirs.net.load_state_dict({k: torch.tensor(v.numpy()) for k, v in
                                ours.net.state_dict().items()})
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    targets[0, 0] = -100
    kwargs = dict(label_smoothing=0.1)
    nn.functional.cross_entropy(ours(tg.tensor(ids)), tg.tensor(targets), **kwargs).backward()
    torch.nn.functional.cross_entropy(theirs(torch.tensor(ids)), torch.tensor(targets),
                                      **kwargs).backward()
    their_params = dict(theirs.net.named_parameters())
    for name, p in ours.net.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), their_params[name].grad.numpy(), rtol=1e-7,
                                   atol=1e-10, err_msg=name)


CONV_KINDS = ["conv", "conv_stride", "conv_groups", "relu", "batchnorm", "maxpool", "avgpool",
              "silu"]


@hypothesis_settings(10)
@given(st.lists(st.sampled_from(CONV_KINDS), min_size=1, max_size=4), st.integers(1, 3),
       st.integers(5, 9), st.integers(0, 2**32 - 1))
def test_random_conv_stacks_match_pytorch(kinds, batch, size, seed):
    """Random image stacks (conv, pooling, batch norm), the same weights in both
    libraries: same loss, same gradient for every parameter and for the input."""
    torch = torch_api()
    channels = 2

    def make(lib):
        layers, side = [], size
        for kind in kinds:
            if kind in ("maxpool", "avgpool"):
                if side < 2:
                    continue
                layers.append((lib.MaxPool2d if kind == "maxpool" else lib.AvgPool2d)(2))
                side //= 2
            elif kind == "conv":
                layers.append(lib.Conv2d(channels, channels, 3, padding=1))
            elif kind == "conv_stride":
                layers.append(lib.Conv2d(channels, channels, 3, stride=2, padding=1))
                side = (side - 1) // 2 + 1
            elif kind == "conv_groups":
                layers.append(lib.Conv2d(channels, channels, 1, groups=2, bias=False))
            else:
                layers.append({"relu": lib.ReLU, "silu": lib.SiLU,
                               "batchnorm": lambda: lib.BatchNorm2d(channels)}[kind]())
        return lib.Sequential(*layers, lib.Flatten(), lib.Linear(channels * side * side, 3))

    tg.manual_seed(seed % 1000)
    ours = make(nn).to(tg.float64)
    theirs = make(torch.nn).double()
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(seed).standard_normal((batch + 1, channels, size, size))
    target = np.arange(batch + 1) % 3
    ours_x, theirs_x = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    our_loss = nn.functional.cross_entropy(ours(ours_x), tg.tensor(target))
    their_loss = torch.nn.functional.cross_entropy(theirs(theirs_x), torch.tensor(target))
    our_loss.backward()
    their_loss.backward()
    np.testing.assert_allclose(our_loss.item(), their_loss.item(), rtol=1e-10)
    np.testing.assert_allclose(ours_x.grad.numpy(), theirs_x.grad.numpy(), rtol=1e-7, atol=1e-10)
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), their_params[name].grad.numpy(), rtol=1e-7,
                                   atol=1e-10, err_msg=name)


def _conv_net(channels=4):
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                         nn.Flatten(), nn.Linear(channels * 16, 3))


def test_state_dict_round_trips_through_save_and_load_bit_for_bit(tmp_path):
    tg.manual_seed(0)
    model = _conv_net()
    model(tg.randn(5, 1, 4, 4))               # training mode: BatchNorm's running stats move
    tg.save(model.state_dict(), tmp_path / "model.npz")
    tg.manual_seed(1)
    copy = _conv_net()
    copy.load_state_dict(tg.load(tmp_path / "model.npz"))
    for (name, a), b in zip(model.state_dict().items(), copy.state_dict().values()):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    model.eval(), copy.eval()
    x = tg.randn(2, 1, 4, 4)
    np.testing.assert_array_equal(model(x).detach().numpy(), copy(x).detach().numpy())


def test_a_saved_state_dict_of_another_shape_names_every_offending_key(tmp_path):
    tg.save(_conv_net(4).state_dict(), tmp_path / "model.npz")
    with pytest.raises(RuntimeError) as error:
        _conv_net(6).load_state_dict(tg.load(tmp_path / "model.npz"))
    for key in ("0.weight", "1.running_mean", "4.weight"):
        assert key in str(error.value)

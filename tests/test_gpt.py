"""The GPT model, its generation, checkpoints and the command line."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from tinygrad_zh import gpt as cli
from tinygrad_zh.models.gpt import GPT, GPTConfig, KVCache

SMALL = settings(max_examples=6, deadline=None, derandomize=True, database=None)


def tiny_model(seed=0, **overrides):
    tg.manual_seed(seed)
    sizes = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return GPT(GPTConfig(**{**sizes, **overrides}))


def ids(array):
    return tg.tensor(np.asarray(array, dtype=np.int64))


# ------------------------------------------------------------------ the model
@given(batch=st.integers(1, 3), T=st.integers(2, 8), cut=st.integers(1, 7), seed=st.integers(0, 99))
@SMALL
def test_changing_future_tokens_changes_no_earlier_logits(batch, T, cut, seed):
    cut = min(cut, T - 1)
    model = tiny_model()
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 11, (batch, T))
    b = a.copy()
    b[:, cut:] = (b[:, cut:] + 1 + rng.integers(0, 10, b[:, cut:].shape)) % 11
    la, _ = model(ids(a))
    lb, _ = model(ids(b))
    np.testing.assert_allclose(la.detach().numpy()[:, :cut], lb.detach().numpy()[:, :cut],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(la.detach().numpy()[:, cut:], lb.detach().numpy()[:, cut:])


def test_parameter_count_by_hand():
    V, T, L, C = 11, 8, 2, 8
    model = tiny_model()
    per_block = 2 * C + 3 * C * C + C * C + 4 * C * C + 4 * C * C  # 2 LayerNorms, attn, MLP
    assert model.num_parameters() == V * C + T * C + L * per_block + C
    assert model.num_parameters(non_embedding=True) == model.num_parameters() - T * C
    with_bias = tiny_model(bias=True)
    biases = L * (2 * C + 3 * C + C + 4 * C + C) + C
    assert with_bias.num_parameters() == model.num_parameters() + biases


def test_weight_tying_shares_one_matrix_and_its_gradient():
    model = tiny_model()
    assert model.lm_head.weight is model.wte.weight
    names = [n for n, _ in model.named_parameters()]
    assert "wte.weight" in names and "lm_head.weight" not in names
    _, loss = model(ids([[1, 2, 3]]), ids([[2, 3, 4]]))
    loss.backward()
    grad = model.wte.weight.grad.numpy()
    # tokens 1-3 are looked up (embedding) and every token is scored (head): all rows move
    assert np.all(np.abs(grad).sum(1) > 0)


def test_gpt2_initialisation():
    tg.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=64, n_layer=4, n_head=4, n_embd=128))
    std = {n: float(p.detach().numpy().std()) for n, p in model.named_parameters()}
    assert abs(std["h.0.attn.c_attn.weight"] - 0.02) < 0.002
    assert abs(std["h.3.mlp.c_proj.weight"] - 0.02 / math.sqrt(8)) < 0.001
    assert abs(std["h.1.attn.c_proj.weight"] - 0.02 / math.sqrt(8)) < 0.001
    assert model.ln_f.weight.detach().numpy().tolist() == [1.0] * 128


def test_loss_at_initialisation_is_about_log_vocab_and_ignores_padding():
    model = tiny_model()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (3, 8)), rng.integers(0, 11, (3, 8))
    logits, loss = model(ids(x), ids(y))
    assert abs(loss.item() - math.log(11)) < 0.1
    padded = y.copy()
    padded[:, 5:] = -100
    _, masked = model(ids(x), ids(padded))
    logp = logits.detach().numpy() - np.log(np.exp(logits.detach().numpy()).sum(-1, keepdims=True))
    expected = -np.mean([logp[b, t, y[b, t]] for b in range(3) for t in range(5)])
    assert abs(masked.item() - expected) < 1e-5


def test_configure_optimizers_decays_matrices_only():
    model = tiny_model(bias=True)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-4)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(p) for p in model.parameters() if p.ndim == 2}
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) == 2 + 4 * 2   # embeddings + 4 matrices per block
    assert len(no_decay["params"]) == 2 * (2 * 2 + 4) + 2   # norms (w, b) and Linear biases
    assert type(opt).__name__ == "AdamW" and opt.param_groups[0]["lr"] == 3e-4


def test_matches_a_pytorch_gpt_with_the_same_weights():
    torch = pytest.importorskip("torch")
    model = tiny_model(bias=True)
    model.double()
    w = {k: torch.tensor(v.numpy(), requires_grad=True) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 11, (2, 7)), rng.integers(0, 11, (2, 7))
    F = torch.nn.functional

    def torch_gpt(idx):
        B, T = idx.shape
        h = w["wte.weight"][idx] + w["wpe.weight"][torch.arange(T)]
        for i in range(2):
            p = f"h.{i}."
            a = F.layer_norm(h, (8,), w[p + "ln_1.weight"], w[p + "ln_1.bias"])
            qkv = F.linear(a, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])
            q, k, v = qkv.split(8, 2)
            q, k, v = (t.reshape(B, T, 2, 4).transpose(1, 2) for t in (q, k, v))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            att = att.transpose(1, 2).reshape(B, T, 8)
            h = h + F.linear(att, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"])
            m = F.layer_norm(h, (8,), w[p + "ln_2.weight"], w[p + "ln_2.bias"])
            m = F.gelu(F.linear(m, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"]))
            h = h + F.linear(m, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])
        h = F.layer_norm(h, (8,), w["ln_f.weight"], w["ln_f.bias"])
        return h @ w["wte.weight"].T

    t_logits = torch_gpt(torch.tensor(x))
    t_loss = F.cross_entropy(t_logits.reshape(-1, 11), torch.tensor(y).reshape(-1))
    t_loss.backward()
    logits, loss = model(ids(x), ids(y))
    loss.backward()
    np.testing.assert_allclose(logits.detach().numpy(), t_logits.detach().numpy(), rtol=1e-9)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), w[name].grad.numpy(), rtol=1e-7, atol=1e-12,
                                   err_msg=name)


def test_bad_inputs_are_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 11\).*tokenizer"):
        model(ids([[1, 11]]))
    with pytest.raises(TypeError, match="integer tensor of shape"):
        model(tg.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="9 positions.*block_size is 8"):
        model(ids([list(range(9))]))
    with pytest.raises(ValueError, match="targets have shape"):
        model(ids([[1, 2]]), ids([[1, 2, 3]]))
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=10, n_head=4)
    with pytest.raises(TypeError, match="expected a GPTConfig"):
        GPT({"vocab_size": 3})


# ------------------------------------------------------------------ generation
@pytest.mark.parametrize("prompt_len, new", [(1, 12), (3, 4), (8, 3)])
def test_cached_and_uncached_generation_agree_step_by_step(prompt_len, new):
    model = tiny_model()
    prompt = ids(np.random.default_rng(0).integers(0, 11, (2, prompt_len)))
    with_cache = list(model.stream(prompt, new, generator=5, use_cache=True))
    without = list(model.stream(prompt, new, generator=5, use_cache=False))
    for (t1, l1), (t2, l2) in zip(with_cache, without):
        assert t1.tolist() == t2.tolist()
        np.testing.assert_allclose(l1.numpy(), l2.numpy(), rtol=1e-4, atol=1e-5)
    assert len(with_cache) == new
    out = model.generate(prompt, new, generator=5)
    assert out.shape == (2, prompt_len + new)  # the context went past block_size = 8 too
    assert out.tolist() == model.generate(prompt, new, generator=5, use_cache=False).tolist()


def test_the_kv_cache_continues_the_positions():
    model = tiny_model()
    model.eval()
    x = ids([[1, 2, 3, 4, 5]])
    full, _ = model(x)
    cache = KVCache(model.config.n_layer)
    first, _ = model(x[:, :3], cache=cache)
    rest, _ = model(x[:, 3:], cache=cache)   # two new tokens at once, after three cached
    assert cache.length == 5
    np.testing.assert_allclose(np.concatenate([first.detach().numpy(), rest.detach().numpy()], 1),
                               full.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_temperature_zero_and_top_k_one_are_greedy():
    model = tiny_model()
    prompt = ids([[3, 1]])
    greedy = model.generate(prompt, 6, temperature=0)
    context = prompt
    for _ in range(6):
        logits, _ = model(context)
        context = tg.cat([context, ids([[int(logits.detach().numpy()[0, -1].argmax())]])], dim=1)
    assert greedy.tolist() == context.tolist()
    assert model.generate(prompt, 6, top_k=1, generator=0).tolist() == greedy.tolist()
    assert model.generate(prompt, 6, top_p=1e-9, generator=1).tolist() == greedy.tolist()


def test_top_k_and_top_p_only_sample_allowed_tokens():
    from tinygrad_zh.models.gpt import _sample
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    draws = {int(_sample(logits, 1.0, 2, None, rng, 0)[0, 0]) for _ in range(300)}
    assert draws == {0, 1}
    draws = {int(_sample(logits, 1.0, None, 0.7, rng, 0)[0, 0]) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 < 0.7 so token 1 is needed; 0.8 >= 0.7 so not token 2
    counts = np.bincount([int(_sample(logits, 1.0, None, None, rng, 0)[0, 0])
                          for _ in range(4000)], minlength=4) / 4000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.03)


def test_non_finite_logits_are_a_clear_error():
    model = tiny_model()
    with tg.no_grad():
        model.ln_f.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite logits.*step 0"):
        model.generate(ids([[1]]), 3)


def test_generate_argument_errors_and_mode_restored():
    model = tiny_model()
    for kwargs, message in (({"temperature": -1}, "temperature"), ({"top_k": 0}, "top_k"),
                            ({"top_p": 1.5}, "top_p")):
        with pytest.raises(ValueError, match=message):
            model.generate(ids([[1]]), 2, **kwargs)
    model.generate(ids([[1]]), 2)
    assert model.training


# ------------------------------------------------------------------ checkpoints
def make_run(tmp_path, text="abcdefgh" * 20, **overrides):
    args = cli._parser().parse_args(
        ["train", "--text", write(tmp_path / "corpus.txt", text), "--out", str(tmp_path / "run"),
         "--n-layer", "1", "--n-head", "2", "--n-embd", "8", "--block-size", "8",
         "--batch-size", "4", "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "2",
         "--warmup", "2"] + [str(a) for kv in overrides.items() for a in kv])
    return args


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_checkpoint_round_trip(tmp_path):
    args = make_run(tmp_path)
    run = cli.new_run(args)
    cli.train(run, args)
    model, tokenizer, state = cli.load_checkpoint(tmp_path / "run")
    assert state["step"] == 4 and len(state["history"]["loss"]) == 4
    assert tokenizer.to_dict() == run.tokenizer.to_dict()
    assert model.config == run.model.config
    x = ids([[0, 1, 2]])
    np.testing.assert_array_equal(model(x)[0].detach().numpy(), run.model(x)[0].detach().numpy())
    assert set(state["optimizer"]["state"]) == set(range(len(list(model.parameters()))))


def test_a_file_that_is_not_a_gpt_checkpoint_is_refused(tmp_path):
    tg.save({"weights": tg.zeros(3)}, tmp_path / "other.npz")
    with pytest.raises(ValueError, match="other.npz is not a tinygrad_zh GPT checkpoint"):
        cli.load_checkpoint(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz is not a tinygrad_zh GPT checkpoint"):
        cli.load_checkpoint(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        cli.load_checkpoint(tmp_path / "nowhere")


# ------------------------------------------------------------------ the command line
def test_cli_train_resume_sample(tmp_path, capsys):
    text = "to be or not to be, that is the question.\n" * 30
    corpus = write(tmp_path / "c.txt", text)
    common = ["--text", corpus, "--out", str(tmp_path / "run"), "--n-layer", "1", "--n-head",
              "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "8",
              "--eval-interval", "20", "--eval-iters", "4", "--warmup", "5", "--lr", "1e-2"]
    cli.main(["train", *common, "--max-iters", "20", "--grad-accum", "2"])
    cli.main(["train", *common, "--max-iters", "40", "--resume"])
    out = capsys.readouterr().out
    assert (tmp_path / "run" / "ckpt.npz").is_file() and (tmp_path / "run" / "loss.png").is_file()
    _, _, state = cli.load_checkpoint(tmp_path / "run" / "ckpt.npz")
    assert state["step"] == 40 and state["history"]["eval_step"] == [20, 40]
    first, last = state["history"]["val_loss"]
    assert last < first < math.log(len(set(text)))   # it learns
    cli.main(["sample", "--ckpt", str(tmp_path / "run"), "--prompt", "to be", "--seed", "0",
              "--max-new-tokens", "20", "--num-samples", "2"])
    samples = capsys.readouterr().out.split("-" * 40 + "\n")
    assert len(samples) == 3 and all(s.startswith("to be") for s in samples[:2])


@pytest.mark.parametrize("content, message", [
    ("abc", r"has 2 tokens, too few for block_size 8"),
    ("", r"is empty"),
    (b"ok\xff", r"is not UTF-8 text: byte 0xff at byte offset 2"),
])
def test_cli_corpus_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--text", str(path), "--out", str(tmp_path), "--block-size", "8"])
    assert e.value.code.startswith("error: ") and "bad.txt" in e.value.code
    assert pytest.importorskip("re").search(message, e.value.code), e.value.code


def test_cli_sample_errors(tmp_path):
    args = make_run(tmp_path)
    cli.train(cli.new_run(args), args)
    with pytest.raises(SystemExit, match="error: CharTokenizer.encode: 1 character.*'z'"):
        cli.main(["sample", "--ckpt", str(tmp_path / "run"), "--prompt", "abz"])
    tg.save({"x": 1}, tmp_path / "x.npz")
    with pytest.raises(SystemExit, match="not a tinygrad_zh GPT checkpoint"):
        cli.main(["sample", "--ckpt", str(tmp_path / "x.npz")])


def test_learning_rate_schedule():
    lrs = [cli.learning_rate(s, 1e-3, 1e-4, 100, 2000) for s in range(2001)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))  # decays monotonically
    assert lrs[1050] == pytest.approx(5.5e-4)  # half way down the cosine

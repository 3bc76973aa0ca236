"""The GPT command line: ``python -m tinygrad_zh.gpt train | sample | demo``.

    python -m tinygrad_zh.gpt train --text input.txt --out runs/shakespeare
    python -m tinygrad_zh.gpt train --corpus tang300 --data-root ../shared/data --out runs/tang
    python -m tinygrad_zh.gpt sample --ckpt runs/shakespeare --prompt "ROMEO:"
    python -m tinygrad_zh.gpt demo          # about two minutes, offline
    python -m tinygrad_zh.gpt train --device cuda ...   # on a GPU (needs CuPy)

The model itself is ``tinygrad_zh/models/gpt.py``; this file is the training
loop around it: AdamW with linear warm-up and cosine decay, gradient
clipping, gradient accumulation, periodic train/val loss, a loss-curve PNG,
and one checkpoint file that holds everything needed to continue or to
sample — weights, GPTConfig, optimizer state, step, loss history and the
tokenizer (so a model can never be paired with the wrong vocabulary).
"""
import argparse
import contextlib
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import autograd, backend, distributed, nn
from .creation import manual_seed
from .datasets.text import CORPORA, TextBlocks, load_corpus, train_val_split
from .models.gpt import GPT, GPTConfig
from .serialization import load, save
from .tensor import Tensor
from .tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, tokenizer_from_dict
from .train.trainer import model_device

CHECKPOINT_NAME = "ckpt.npz"
CHECKPOINT_KIND = "tinygrad_zh.gpt"


def main(argv=None):
    """Entry point of ``python -m tinygrad_zh.gpt`` and the ``tinygrad-zh-gpt`` script."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        # A user mistake (wrong file, unknown character...): the message, not a traceback.
        sys.exit(f"error: {e}")


# ------------------------------------------------------------------ commands
def train_command(args):
    out = Path(args.out)
    distributed.init_from_launcher()  # under `mpiexec -n N`: data-parallel on N ranks
    say = print if distributed.is_main_process() else _silent
    run = resume_run(out / CHECKPOINT_NAME, args) if args.resume else new_run(args)
    say(f"model: {run.model.num_parameters():,} parameters, {run.model.config}")
    say(f"tokenizer: {run.tokenizer!r}; tokens: {len(run.train.ids):,} train, "
        f"{len(run.val.ids):,} val")
    train(run, args)
    ckpt = out / CHECKPOINT_NAME
    say(f"checkpoint: {ckpt}\nloss curve: {out / 'loss.png'}")
    return run


def sample_command(args):
    model, tokenizer, _ = load_checkpoint(args.ckpt, args.device)
    for text in sample_texts(model, tokenizer, args.prompt, args.max_new_tokens,
                             args.num_samples, args.temperature, args.top_k, args.top_p,
                             args.seed):
        print(text)
        print("-" * 40)


def demo_command(args):
    out = Path(args.out)
    print("Tiny GPT demo: a character-level GPT learns to write like Shakespeare, offline,\n"
          f"on the corpus shipped inside the package (~{args.minutes:g} minutes).\n")
    args = argparse.Namespace(**{**vars(_parser().parse_args(["train"])), **dict(
        out=str(out), corpus="default", max_iters=args.max_iters, max_minutes=args.minutes,
        eval_interval=args.eval_interval, seed=args.seed, device=args.device)})
    run = new_run(args)
    print(f"model: {run.model.num_parameters():,} parameters; corpus: "
          f"{len(run.train.ids) + len(run.val.ids):,} characters of Tiny Shakespeare\n")
    prompt = "ROMEO:"
    print("sample before training:\n" + _before_after_sample(run, prompt, args.seed) + "\n")
    train(run, args)
    print("\nsample after training:\n" + _before_after_sample(run, prompt, args.seed) + "\n")
    ckpt = out / CHECKPOINT_NAME
    print(f"checkpoint: {ckpt}\nloss curve: {out / 'loss.png'}\n")
    print("Next steps:\n"
          f"  python -m tinygrad_zh.gpt sample --ckpt {out} --prompt \"JULIET:\"\n"
          "  Tiny Shakespeare (all 1.1 MB): python -m tinygrad_zh.gpt train --corpus "
          "shakespeare --data-root DIR --out runs/shakespeare\n"
          "  Chinese poems (apt install fortunes-zh, or a folder with tang300/): "
          "python -m tinygrad_zh.gpt train --corpus tang300 --out runs/tang300\n"
          "  Any UTF-8 file: python -m tinygrad_zh.gpt train --text FILE --out DIR\n"
          "  The lessons: python lessons/01_tensors_and_graphs.py ... lessons/12_generation.py")


# ------------------------------------------------------------------ a training run
@dataclasses.dataclass
class Run:
    """Everything a training run holds; the checkpoint stores all of it."""
    model: GPT
    optimizer: object
    tokenizer: object
    train: TextBlocks
    val: TextBlocks
    step: int = 0
    history: dict = dataclasses.field(default_factory=lambda: {
        "step": [], "loss": [], "eval_step": [], "train_loss": [], "val_loss": []})


def new_run(args):
    """A fresh model, optimizer and tokenizer for the corpus named in ``args``."""
    manual_seed(args.seed)
    name = args.text or args.corpus
    text = load_corpus(name, args.data_root)
    cut = int(len(text) * (1 - args.val_fraction))
    tokenizer = make_tokenizer(args.tokenizer, text, text[:cut], args.vocab_size)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=args.block_size,
                       n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                       dropout=args.dropout, bias=args.bias)
    model = GPT(config).to(args.device)  # the same initial weights on every device
    optimizer = model.configure_optimizers(args.weight_decay, args.lr, (args.beta1, args.beta2))
    return Run(model, optimizer, tokenizer, *_blocks(tokenizer, text, name, args, config))


def resume_run(path, args):
    """Continue a run from its checkpoint: weights, optimizer state, step, history;
    the text is encoded again with the checkpoint's own tokenizer."""
    model, tokenizer, state = load_checkpoint(path, args.device)
    optimizer = model.configure_optimizers(args.weight_decay, args.lr, (args.beta1, args.beta2))
    optimizer.load_state_dict(state["optimizer"])
    name = args.text or args.corpus
    text = load_corpus(name, args.data_root)
    return Run(model, optimizer, tokenizer, *_blocks(tokenizer, text, name, args, model.config),
               step=int(state["step"]), history=state["history"])


def _blocks(tokenizer, text, name, args, config):
    train_ids, val_ids = train_val_split(np.array(tokenizer.encode(text)), args.val_fraction)
    return (TextBlocks(train_ids, config.block_size, f"the training part of {name}"),
            TextBlocks(val_ids, config.block_size, f"the validation part of {name} "
                                                   f"(--val-fraction {args.val_fraction})"))


def make_tokenizer(kind, text, train_text, vocab_size):
    """A char tokenizer sees the whole text (val too: an unknown val character would
    crash evaluation); BPE learns its merges from the training part only."""
    if kind == "char":
        return CharTokenizer(text)
    if kind == "byte":
        return ByteTokenizer()
    return BPETokenizer.train(train_text, vocab_size)


def train(run, args):
    """Train ``run`` until ``args.max_iters`` steps (or ``args.max_minutes``);
    evaluate, checkpoint and plot every ``args.eval_interval`` steps and at the end.

    Under ``mpiexec -n N`` each rank trains on its own batches through
    DistributedDataParallel (the ranks stay identical), and only rank 0 draws
    the progress bar and writes the checkpoint and the plot.
    """
    model, optimizer = run.model, run.optimizer
    world, rank = distributed.init_from_launcher(), _rank()
    main = rank == 0
    step_model = distributed.DistributedDataParallel(model) if world > 1 else model
    # A resumed run draws fresh batches; each rank draws its own (rank 0 as a single process).
    rng = np.random.default_rng(args.seed + run.step + 1_000_003 * rank)
    out = Path(args.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"batch: {args.batch_size} sequences x {args.grad_accum} accumulation x {world} "
              f"rank(s) = {args.batch_size * args.grad_accum * world} sequences per step")
    deadline = time.monotonic() + 60 * args.max_minutes if args.max_minutes else math.inf
    model.train()
    bar = tqdm(total=args.max_iters, initial=run.step, desc="train", unit="step",
               dynamic_ncols=True, mininterval=0.5, disable=not main)
    while run.step < args.max_iters and not _time_is_up(deadline, world):
        lr = learning_rate(run.step, args.lr, args.min_lr, args.warmup, args.max_iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(step_model, optimizer, run.train, args.batch_size, args.grad_accum,
                          args.grad_clip, rng)
        if world > 1:
            loss = _mean_over_ranks(loss)
        run.step += 1
        run.history["step"].append(run.step)
        run.history["loss"].append(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
        if run.step % args.eval_interval == 0:
            evaluate(run, args, bar)
            if main:
                save_checkpoint(out / CHECKPOINT_NAME, run)
    bar.close()
    if not run.history["eval_step"] or run.history["eval_step"][-1] != run.step:
        evaluate(run, args, None)
    if main:
        save_checkpoint(out / CHECKPOINT_NAME, run)
        plot_losses(run.history, out / "loss.png")
    return run


def _rank():
    return distributed.get_rank() if distributed.is_initialized() else 0


def _time_is_up(deadline, world):
    """``--max-minutes``: rank 0's clock decides, so that every rank stops at the same step."""
    up = time.monotonic() >= deadline
    if world > 1 and deadline != math.inf:
        flag = Tensor._make(np.array(float(up)))
        distributed.broadcast(flag, src=0)
        up = bool(flag.item())
    return up


def _mean_over_ranks(value):
    t = Tensor._make(np.array(value, dtype=np.float64))
    distributed.all_reduce(t, op=distributed.ReduceOp.AVG)
    return t.item()


def _silent(*args, **kwargs):
    pass


def train_step(model, optimizer, blocks, batch_size, grad_accum, grad_clip, rng):
    """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss.

    Each micro-batch's loss is divided by ``grad_accum`` so that the summed
    gradients are those of the mean over the whole (accumulated) batch.
    """
    total = 0.0
    device = model_device(model)
    for i in range(grad_accum):
        x, y = (t.to(device) for t in blocks.sample(batch_size, rng))
        # Under DistributedDataParallel the ranks talk once per step, on the last micro-batch.
        quiet = i < grad_accum - 1 and hasattr(model, "no_sync")
        with model.no_sync() if quiet else contextlib.nullcontext():
            _, loss = model(x, y)
            (loss / grad_accum).backward()
        total += loss.item() / grad_accum
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def learning_rate(step, lr, min_lr, warmup, max_iters):
    """Linear warm-up to ``lr`` over ``warmup`` steps, then a cosine down to ``min_lr``.

    Warm-up: Adam's first updates are large (its second-moment estimate starts
    near 0), so the step size starts small. Cosine: big steps while far from a
    minimum, small ones to settle into it.

        >>> [round(learning_rate(s, 1.0, 0.1, 10, 110), 3) for s in (0, 9, 10, 60, 110)]
        [0.1, 1.0, 1.0, 0.55, 0.1]
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= max_iters:
        return min_lr
    progress = (step - warmup) / max(1, max_iters - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def estimate_loss(model, blocks, batch_size, iters, seed=0):
    """The mean loss over ``iters`` random batches, in eval mode, without gradients.

    One batch is noisy (a few hundred tokens); the mean of many is the number
    to compare between steps and between runs. The same ``seed`` gives the
    same batches, so two models are compared on the same text.
    """
    rng = np.random.default_rng(seed)
    device = model_device(model)
    was_training = model.training
    model.eval()
    with autograd.no_grad():
        losses = [model(*(t.to(device) for t in blocks.sample(batch_size, rng)))[1].item()
                  for _ in range(iters)]
    model.train(was_training)
    return float(np.mean(losses))


def evaluate(run, args, bar):
    train_loss = estimate_loss(run.model, run.train, args.batch_size, args.eval_iters)
    val_loss = estimate_loss(run.model, run.val, args.batch_size, args.eval_iters)
    h = run.history
    h["eval_step"].append(run.step)
    h["train_loss"].append(train_loss)
    h["val_loss"].append(val_loss)
    message = f"step {run.step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}"
    if distributed.is_main_process():
        (bar.write if bar is not None else print)(message)


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path, run):
    """Write one file holding the whole run; atomically (a crash never leaves half a file)."""
    state = {
        "kind": CHECKPOINT_KIND,
        "config": dataclasses.asdict(run.model.config),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "history": run.history,
        "tokenizer": run.tokenizer.to_dict(),
    }
    save(state, path)


def load_checkpoint(path, device="cpu"):
    """``(model, tokenizer, state)`` from a file written by ``save_checkpoint``
    (or the folder holding it), every tensor on ``device`` whatever device it
    was saved from; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with "
                                "`python -m tinygrad_zh.gpt train --out DIR`")
    try:
        state = load(path, map_location=device)
    except Exception as e:  # whatever the file is, say what was expected
        raise ValueError(f"{path} is not a tinygrad_zh GPT checkpoint (cannot be read: {e})") \
            from e
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path} is not a tinygrad_zh GPT checkpoint (it has no "
                         f"kind={CHECKPOINT_KIND!r} entry); was it written by "
                         "`python -m tinygrad_zh.gpt train`?")
    model = GPT(GPTConfig(**state["config"])).to(device)
    model.load_state_dict(state["model"])
    return model, tokenizer_from_dict(state["tokenizer"]), state


# ------------------------------------------------------------------ sampling
def sample_texts(model, tokenizer, prompt, max_new_tokens, num_samples=1, temperature=1.0,
                 top_k=None, top_p=None, seed=None):
    """``num_samples`` continuations of ``prompt`` as strings (prompt included).

    An empty prompt starts from token 0 (a newline in the character
    vocabularies of these corpora, whose sorted characters begin with it).
    """
    ids = tokenizer.encode(prompt) if prompt else [0]
    if not ids:
        raise ValueError("sample: the prompt encodes to no tokens; give a non-empty prompt")
    idx = Tensor(np.array([ids] * num_samples, dtype=np.int64), device=model_device(model))
    out = model.generate(idx, max_new_tokens, temperature, top_k, top_p, generator=seed)
    return [tokenizer.decode(row) for row in out.tolist()]


def _before_after_sample(run, prompt, seed):
    return sample_texts(run.model, run.tokenizer, prompt, 200, seed=seed)[0]


# ------------------------------------------------------------------ the loss curve
def plot_losses(history, path):
    """Training loss per step (and its running mean), train/val estimates as points."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, losses = np.array(history["step"]), np.array(history["loss"])
    if len(losses):
        ax.plot(steps, losses, color="0.8", lw=0.8, label="batch loss")
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window} steps")
    ax.plot(history["eval_step"], history["train_loss"], "o-", label="train (estimate)")
    ax.plot(history["eval_step"], history["val_loss"], "s-", label="val (estimate)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats per token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# ------------------------------------------------------------------ arguments
def _parser():
    p = argparse.ArgumentParser(prog="python -m tinygrad_zh.gpt",
                                description="Train a tiny GPT and sample from it.")
    commands = p.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="pretrain a GPT on a text corpus")
    t.set_defaults(run=train_command)
    source = t.add_mutually_exclusive_group()
    source.add_argument("--text", help="any UTF-8 text file")
    source.add_argument("--corpus", default="default", choices=CORPORA,
                        help="a known corpus (default: the embedded Shakespeare)")
    t.add_argument("--data-root", help="folder holding tinyshakespeare/ and tang300/ "
                                       "(default: $TINYGRAD_ZH_DATA)")
    t.add_argument("--out", default="gpt_out", help="folder for the checkpoint and plots")
    t.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.npz")
    t.add_argument("--tokenizer", default="char", choices=("char", "byte", "bpe"))
    t.add_argument("--vocab-size", type=int, default=512, help="for --tokenizer bpe")
    t.add_argument("--val-fraction", type=float, default=0.1)
    for name, default in (("n-layer", 4), ("n-head", 4), ("n-embd", 128), ("block-size", 64),
                          ("batch-size", 12), ("grad-accum", 1), ("max-iters", 2000),
                          ("warmup", 100), ("eval-interval", 250), ("eval-iters", 20),
                          ("seed", 1337)):
        t.add_argument(f"--{name}", type=int, default=default)
    for name, default in (("dropout", 0.0), ("lr", 1e-3), ("min-lr", 1e-4),
                          ("weight-decay", 0.1), ("beta1", 0.9), ("beta2", 0.99),
                          ("grad-clip", 1.0), ("max-minutes", 0.0)):
        t.add_argument(f"--{name}", type=float, default=default)
    t.add_argument("--bias", action="store_true", help="biases in Linear and LayerNorm")
    t.add_argument("--device", type=_device, default="cpu", help=_DEVICE_HELP)

    s = commands.add_parser("sample", help="generate text from a checkpoint")
    s.set_defaults(run=sample_command)
    s.add_argument("--ckpt", required=True, help="a checkpoint file or the folder holding it")
    s.add_argument("--prompt", default="")
    s.add_argument("--max-new-tokens", type=int, default=300)
    s.add_argument("--num-samples", type=int, default=1)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int)
    s.add_argument("--top-p", type=float)
    s.add_argument("--seed", type=int)
    s.add_argument("--device", type=_device, default="cpu", help=_DEVICE_HELP)

    d = commands.add_parser("demo", help="train on the embedded corpus for ~2 minutes")
    d.set_defaults(run=demo_command)
    d.add_argument("--out", default="gpt_demo")
    d.add_argument("--minutes", type=float, default=2.0)
    d.add_argument("--max-iters", type=int, default=2000)
    d.add_argument("--eval-interval", type=int, default=200)
    d.add_argument("--seed", type=int, default=1337)
    d.add_argument("--device", type=_device, default="cpu", help=_DEVICE_HELP)
    return p


_DEVICE_HELP = "cpu (default), cuda or cuda:N (a GPU needs CuPy: pip install 'tinygrad_zh[gpu]')"


def _device(name):
    """``--device``: a device name that can be used here, or a usage error that says why not."""
    try:
        device = backend.parse_device(name)
        if device != "cpu":
            backend.cupy()  # fails now, with the install hint, rather than after loading data
    except (ValueError, RuntimeError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return device


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The well-known CPU recipe for a character-level GPT on Tiny Shakespeare, ours vs PyTorch.

The recipe (nanoGPT's shakespeare_char, shrunk for a CPU): n_layer 4, n_head 4,
n_embd 128, block_size 64, batch 12, 2000 iterations, AdamW lr 1e-3 with 100
warm-up steps and cosine decay to 1e-4, beta2 0.99, weight decay 0.1, gradient
clipping at 1.0, dropout 0, no biases; a 90/10 split of
``../shared/data/tinyshakespeare/input.txt``; the val loss is the mean over 200
random val batches. The published figure is a val loss of about 1.88.

Each library trains in its own process (their thread pools would slow each
other down in one process). The same recipe is written twice: ours through
``tinygrad_zh.gpt`` (the code the CLI runs), PyTorch's as a plain nanoGPT-style
model in this file, with the same initialisation, schedule and batches (drawn
from the same NumPy generator).

Then ``--rounds`` short timing runs per library, alternating (ours, torch,
ours, ...), give the step time: the median step of each run, and the median
of those over the rounds. ``--profile`` adds where our step's time goes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/gpt_shakespeare.py
    ... benchmarks/gpt_shakespeare.py --quick          # 40 iterations, to see it run
    ... benchmarks/gpt_shakespeare.py --iters 300 --libs tinygrad_zh --profile
    ... benchmarks/gpt_shakespeare.py --plot gpt.png --json gpt.json
"""
import argparse
import cProfile
import importlib.util
import json
import math
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, iters=2000,
              lr=1e-3, min_lr=1e-4, warmup=100, beta1=0.9, beta2=0.99, weight_decay=0.1,
              grad_clip=1.0, val_batches=200, seed=1337)
PUBLISHED_VAL_LOSS = 1.88


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--iters", type=int, default=RECIPE["iters"])
    p.add_argument("--rounds", type=int, default=3, help="timing runs per library")
    p.add_argument("--timing-steps", type=int, default=30)
    p.add_argument("--val-batches", type=int, default=RECIPE["val_batches"])
    p.add_argument("--seed", type=int, default=RECIPE["seed"],
                   help="initialisation and batch order (the val batches stay fixed)")
    p.add_argument("--threads", type=int, help="BLAS / PyTorch threads per worker "
                                               "(default: the library's own choice)")
    p.add_argument("--libs", default="tinygrad_zh,torch")
    p.add_argument("--quick", action="store_true", help="40 iterations, 1 timing round")
    p.add_argument("--profile", action="store_true", help="where our step's time goes")
    p.add_argument("--plot", help="PNG of both loss curves")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = WORKERS[args.worker](args)
        print(json.dumps(result))
        return
    if args.quick:
        args.iters, args.rounds, args.timing_steps, args.val_batches = 40, 1, 10, 10
    if not Path(args.data).is_file():
        sys.exit(f"no Tiny Shakespeare at {args.data}; pass --data PATH/input.txt")
    libs = [lib for lib in args.libs.split(",") if lib == "tinygrad_zh" or _have(lib)]
    skipped = sorted(set(args.libs.split(",")) - set(libs))
    runs = {lib: _spawn(lib, args, "train") for lib in libs}
    timings = {lib: [] for lib in libs}
    for _ in range(args.rounds):
        for lib in libs:  # alternate, so that the machine's drift hits both alike
            timings[lib].append(_spawn(lib, args, "time")["median_step_ms"])
    report(args, runs, timings, skipped)
    if args.profile:
        print(_spawn("tinygrad_zh", args, "profile")["profile"])


# ------------------------------------------------------------------ data, shared by both workers
def load_data(path):
    text = Path(path).read_text(encoding="utf-8")
    chars = sorted(set(text))  # a character-level vocabulary, as CharTokenizer builds it
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.array([lookup[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(ids))
    return len(chars), ids[:n], ids[n:]


def batches(ids, block, batch, rng):
    """Random windows, exactly as tinygrad_zh.datasets.text.TextBlocks draws them."""
    windows = np.lib.stride_tricks.sliding_window_view(ids, block + 1)
    rows = windows[rng.integers(0, len(windows), size=batch)]
    return rows[:, :-1].copy(), rows[:, 1:].copy()


def lr_at(step):
    r = RECIPE
    if step < r["warmup"]:
        return r["lr"] * (step + 1) / r["warmup"]
    progress = (step - r["warmup"]) / max(1, r["iters"] - r["warmup"])
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return r["min_lr"] + cosine * (r["lr"] - r["min_lr"])


# ------------------------------------------------------------------ our worker
def worker_tinygrad_zh(args):
    sys.path.insert(0, str(REPO_ROOT))
    import tinygrad_zh as tg
    from tinygrad_zh.models.gpt import GPT, GPTConfig
    vocab, train_ids, val_ids = load_data(args.data)
    r = RECIPE
    tg.manual_seed(args.seed)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=r["block_size"], n_layer=r["n_layer"],
                          n_head=r["n_head"], n_embd=r["n_embd"], dropout=0.0, bias=False))
    opt = model.configure_optimizers(r["weight_decay"], r["lr"], (r["beta1"], r["beta2"]))
    rng = np.random.default_rng(args.seed)

    def step(i):
        for group in opt.param_groups:
            group["lr"] = lr_at(i)
        x, y = batches(train_ids, r["block_size"], r["batch_size"], rng)
        _, loss = model(tg.tensor(x), tg.tensor(y))
        loss.backward()
        tg.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    def val_losses():
        vrng = np.random.default_rng(0)
        model.eval()
        with tg.no_grad():
            losses = [model(*(tg.tensor(a) for a in batches(val_ids, r["block_size"],
                                                             r["batch_size"], vrng)))[1].item()
                      for _ in range(args.val_batches)]
        model.train()
        return losses

    return _run(args, step, val_losses, tg.__version__)


# ------------------------------------------------------------------ PyTorch's worker
def worker_torch(args):
    import torch
    from torch import nn
    from torch.nn import functional as F
    vocab, train_ids, val_ids = load_data(args.data)
    r = RECIPE
    torch.manual_seed(args.seed)
    C, H, L = r["n_embd"], r["n_head"], r["n_layer"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
            self.c_attn = nn.Linear(C, 3 * C, bias=False)
            self.attn_proj = nn.Linear(C, C, bias=False)
            self.c_fc = nn.Linear(C, 4 * C, bias=False)
            self.mlp_proj = nn.Linear(4 * C, C, bias=False)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, C), nn.Embedding(r["block_size"], C)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C, bias=False)
            self.lm_head = nn.Linear(C, vocab, bias=False)
            self.lm_head.weight = self.wte.weight
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    model = GPT()
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2],
                              "weight_decay": r["weight_decay"]},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=r["lr"], betas=(r["beta1"], r["beta2"]))
    rng = np.random.default_rng(args.seed)

    def step(i):
        for group in opt.param_groups:
            group["lr"] = lr_at(i)
        x, y = batches(train_ids, r["block_size"], r["batch_size"], rng)
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    def val_losses():
        vrng = np.random.default_rng(0)
        model.eval()
        with torch.no_grad():
            losses = [model(*(torch.from_numpy(a) for a in batches(
                val_ids, r["block_size"], r["batch_size"], vrng))).item()
                for _ in range(args.val_batches)]
        model.train()
        return losses

    return _run(args, step, val_losses, torch.__version__ + f" ({torch.get_num_threads()} threads)")


WORKERS = {"tinygrad_zh": worker_tinygrad_zh, "torch": worker_torch}


def _run(args, step, val_losses, version):
    """The worker's job: train (curve, val loss, wall time), time, or profile."""
    if args.mode == "time":
        times = []
        for i in range(args.timing_steps + 3):
            started = time.perf_counter()
            step(i)
            times.append(time.perf_counter() - started)
        return {"median_step_ms": 1000 * statistics.median(times[3:])}  # 3 warm-up steps
    if args.mode == "profile":
        for i in range(3):
            step(i)
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(args.timing_steps):
            step(i)
        profiler.disable()
        return {"profile": _profile_table(profiler, args.timing_steps)}
    started = time.perf_counter()
    losses = [step(i) for i in range(args.iters)]
    train_s = time.perf_counter() - started
    val = val_losses()
    return {"version": version, "losses": losses, "train_s": train_s, "val_losses": val,
            "val_loss": float(np.mean(val)), "wall_s": time.perf_counter() - started}


# Where our time goes: each profiled function's own time, by the file it is in.
CATEGORIES = [
    ("matmul (Linear, q@k, w@v)", ("ops/matmul.py", "ops/linear.py")),
    ("softmax / attention", ("ops/attention.py", "ops/activation.py",
                             "kernels/numba_cpu/attention")),
    ("layer norm", ("ops/norm.py",)),
    ("cross-entropy", ("ops/loss.py",)),
    ("optimizer (AdamW, clipping)", ("optim/", "kernels/numba_cpu/adam", "nn/utils.py")),
    ("other ops (elementwise, movement, indexing)", ("ops/",)),
    ("Python overhead (autograd, Tensor, Module)", ("autograd.py", "tensor.py", "nn/", "models/")),
]


def _profile_table(profiler, steps):
    totals = {name: 0.0 for name, _ in CATEGORIES}
    totals["NumPy / other"] = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in pstats.Stats(profiler).stats.items():
        path = filename.replace(os.sep, "/")
        for name, patterns in CATEGORIES:
            if "tinygrad_zh" in path or "/kernels/" in path:
                if any(p in path for p in patterns):
                    totals[name] += tottime
                    break
        else:
            totals["NumPy / other"] += tottime
    total = sum(totals.values())
    lines = [f"\nWhere a tinygrad_zh training step's time goes (cProfile, {steps} steps; "
             "each function's own time; profiling inflates the Python share):"]
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<46} {1000 * t / steps:7.1f} ms/step  {100 * t / total:5.1f}%")
    return "\n".join(lines)


def _val_loss_spread(losses, few=20):
    """How sure the val loss is: its standard error, and the range of means over
    ``few`` batches (nanoGPT's README command estimates with --eval_iters=20)."""
    losses = np.asarray(losses)
    text = f"val loss {losses.mean():.4f} +- {losses.std(ddof=1) / np.sqrt(len(losses)):.4f} (s.e.)"
    if len(losses) >= 2 * few:
        means = losses[:len(losses) // few * few].reshape(-1, few).mean(1)
        text += (f"; {len(means)} estimates from {few} batches each range "
                 f"{means.min():.3f}..{means.max():.3f}")
    return text


# ------------------------------------------------------------------ the parent
def _have(lib):
    if importlib.util.find_spec(lib) is None:
        print(f"({lib} is not installed: its column is skipped)")
        return False
    return True


def _spawn(lib, args, mode):
    command = [sys.executable, str(SCRIPT), "--worker", lib, "--mode", mode, "--data", args.data,
               "--iters", str(args.iters), "--timing-steps", str(args.timing_steps),
               "--val-batches", str(args.val_batches), "--seed", str(args.seed)]
    env = dict(os.environ)
    if args.threads:  # read by OpenBLAS, OpenMP and Numba when the worker starts, and by torch
        env.update(OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
                   NUMBA_NUM_THREADS=str(args.threads))
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        sys.exit(f"{lib} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(args, runs, timings, skipped):
    print(f"\nGPT on Tiny Shakespeare: {args.iters} iterations, batch {RECIPE['batch_size']}, "
          f"block {RECIPE['block_size']}, {RECIPE['n_layer']} layers x {RECIPE['n_embd']}; "
          f"val loss = mean of {args.val_batches} val batches")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    steps = {lib: statistics.median(t) for lib, t in timings.items()}
    base = "torch" if "torch" in runs else None
    print(f"\n{'library':<12} {'version':<28} {'val loss':>9} {'step ms':>8} {'ratio':>6} "
          f"{'train s':>8} {'ratio':>6}")
    for lib, run in runs.items():
        step_ratio = f"{steps[lib] / steps[base]:.2f}x" if base else "-"
        wall_ratio = f"{run['train_s'] / runs[base]['train_s']:.2f}x" if base else "-"
        print(f"{lib:<12} {run['version']:<28} {run['val_loss']:9.4f} {steps[lib]:8.1f} "
              f"{step_ratio:>6} {run['train_s']:8.1f} {wall_ratio:>6}")
    print(f"(step ms: median over {args.rounds} alternating runs of the median of "
          f"{args.timing_steps} steps; train s: the whole {args.iters}-iteration run; "
          f"published val loss for 2000 iterations: about {PUBLISHED_VAL_LOSS})")
    for lib, run in runs.items():
        print(f"{lib}: {_val_loss_spread(run['val_losses'])}")
    if skipped:
        print(f"skipped: {', '.join(skipped)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "step_ms": steps}, indent=1))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for lib, run in runs.items():
            losses = np.array(run["losses"])
            window = max(1, len(losses) // 40)
            ax.plot(np.convolve(losses, np.ones(window) / window, "valid"),
                    label=f"{lib} (val {run['val_loss']:.3f})")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"train loss (mean of {window} steps)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()

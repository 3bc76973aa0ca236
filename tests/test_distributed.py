"""tinygrad_zh.distributed: collectives, DistributedDataParallel, DistributedSampler.

Two kinds of tests:

- in this process (world size 1, or no MPI at all, in a subprocess): the API,
  the error messages, the sampler's arithmetic, the autograd hook timing that
  lets DDP overlap;
- 2 ranks under ``mpiexec``: ``tests/mpi/ddp_worker.py`` runs every scenario
  in one launch (starting MPI jobs is the slow part) and rank 0 prints the
  results, which the tests below check one by one; ``tests/mpi/raise_worker.py``
  and ``tests/mpi/exit_worker.py`` check that a failing or leaving rank ends the
  job;
- the GPU transport (NCCL): here, without a GPU, its CPU-side parts (the
  choice of transport, the dtype table, the errors). The same 2-rank scenarios
  run once more with every rank's tensors on its own GPU (``--device cuda``),
  and one process runs every collective on a CUDA tensor: these skip with the
  reason ("needs CuPy, NCCL and a CUDA GPU") where there is none.

The MPI tests are skipped, with the reason, when mpi4py or mpiexec is missing
(``pip install 'tinygrad_zh[dist]'``, also part of the dev extra, brings both).
"""
import gc
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
import tinygrad_zh.distributed as dist
from tinygrad_zh.distributed import collectives

ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "mpi"
RANKS = 2
MPI_TIMEOUT = 120  # seconds for a whole launch: a hang must fail the test, not block CI
FLOAT32_TOL = 1e-5

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)


@pytest.fixture(scope="module", autouse=True)
def process_group():
    if not dist.is_initialized():
        dist.init_process_group()


# ------------------------------------------------------------------ launching MPI jobs
def find_mpiexec():
    """mpiexec next to this Python (pip's mpich puts it in the venv), else on PATH."""
    beside = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    return beside or shutil.which("mpiexec")


def mpi_skip_reason():
    try:
        from mpi4py import MPI  # noqa: F401
    except (ImportError, RuntimeError) as e:
        return f"mpi4py/MPI is not usable ({e}); {dist.INSTALL_HINT}"
    if find_mpiexec() is None:
        return f"mpiexec was found neither next to {sys.executable} nor on PATH; " \
               f"{dist.INSTALL_HINT}"
    return None


def run_mpi(script, *args, timeout=MPI_TIMEOUT, **env):
    reason = mpi_skip_reason()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", **env}
    # `script` is a path, or "-m" with the module name as the first of `args`
    return subprocess.run([find_mpiexec(), "-n", str(RANKS), sys.executable, str(script), *args],
                          cwd=ROOT, env=env, capture_output=True, encoding="utf-8",
                          timeout=timeout)


def gpu_skip_reason(gpus=1):
    """Why the GPU transport cannot run here, or None."""
    try:
        import cupy
        from cupy.cuda import nccl
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 -- no CuPy, no driver, no GPU
        return f"needs CuPy, NCCL and a CUDA GPU ({type(e).__name__}: {e})"
    if not getattr(nccl, "available", False):
        return "needs CuPy, NCCL and a CUDA GPU (this CuPy has no NCCL)"
    if count < gpus:
        return f"needs CuPy, NCCL and a CUDA GPU per rank ({gpus}); found {count}"
    return None


@pytest.fixture(scope="module", params=["cpu", "cuda"])
def mpi(request, tmp_path_factory):
    """Every scenario of ddp_worker.py, run once on 2 ranks: {name: [rank 0's, rank 1's]};
    for "cuda" with each rank's models and tensors on its own GPU, through NCCL."""
    device_args = []
    if request.param == "cuda":
        reason = gpu_skip_reason(gpus=RANKS)
        if reason:
            pytest.skip(reason)
        device_args = ["--device", "cuda"]
    result = run_mpi(WORKERS / "ddp_worker.py", *device_args,
                     DDP_WORKER_TMP=str(tmp_path_factory.mktemp("ddp_worker")))
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert result.returncode == 0 and lines, \
        f"the MPI job failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    results = json.loads(lines[0][len("RESULTS "):])
    for name, per_rank in results.items():
        for rank, r in enumerate(per_rank):
            assert set(r) != {"error", "traceback"}, f"{name} raised on rank {rank}:\n{r}"
    return results


# ------------------------------------------------------------------ DDP on 2 ranks
def test_ddp_matches_one_process_on_the_union_of_batches(mpi):
    for r in mpi["ddp_matches_single_process"]:
        assert r["buckets"] > 1  # the run really used several buckets
        assert r["identical_across_ranks"]
        assert r["max_diff_to_single_process"] < FLOAT32_TOL
        assert r["moved"] > 0.01  # training changed the parameters: not a trivial match


def test_rank0_parameters_and_buffers_win_at_wrap(mpi):
    for r in mpi["ddp_matches_single_process"]:
        assert r["rank0_init_wins"] and r["buffer_from_rank0"]


def test_bucketed_overlapped_equals_one_allreduce_per_tensor(mpi):
    for r in mpi["buckets_match_per_tensor_allreduce"]:
        assert r["buckets"] == [4, 1]
        assert r["max_diff_small_buckets"] == 0 and r["max_diff_one_bucket"] == 0
        assert r["grads_differ_from_local"]  # the ranks' local gradients really differed


def test_a_bucket_starts_before_backward_reaches_the_first_layer(mpi):
    for r in mpi["buckets_match_per_tensor_allreduce"]:
        assert r["started_before_first_layer"][0] >= 1


def test_no_sync_accumulates_then_averages_the_sum(mpi):
    for r in mpi["no_sync_accumulates"]:
        assert r["no_sync_left_local_grads"] and r["local_grads_differ_across_ranks"]
        assert r["max_diff_to_accumulated_average"] < FLOAT32_TOL


def test_unused_parameters_zeros_or_an_error_naming_them(mpi):
    for r in mpi["unused_parameters"]:
        assert r["max_diff_extra"] < FLOAT32_TOL
        assert r["strict_error"] and "['extra']" in r["strict_error"]
        assert "find_unused_parameters=True" in r["strict_error"]


def test_different_models_are_an_error_at_wrap_time(mpi):
    for r in mpi["shape_mismatch"]:
        assert "fc1.weight" in r["error"] and "(5, 3)" in r["error"] and "(6, 3)" in r["error"]
        assert "rank 1" in r["error"]


def test_zero_shards_the_optimizer_state_and_takes_the_same_steps(mpi):
    per_rank = mpi["zero_matches_unsharded"]
    for r in per_rank:
        assert r["max_diff"] == 0 and r["identical_across_ranks"]
    full = per_rank[0]["state_bytes_full"]
    shards = [r["state_bytes_sharded"] for r in per_rank]
    assert sum(shards) == full and max(shards) < 0.75 * full, (shards, full)


def test_a_checkpoint_saved_by_rank0_loads_on_any_number_of_ranks(mpi):
    per_rank = mpi["checkpoint_from_rank0_loads_anywhere"]
    for r in per_rank:
        assert r["loaded_equals_saved"]
        assert r["keys"] == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight", "running_mean"]
    loaded = tg.load(per_rank[0]["path"], map_location="cpu")  # and in this single process
    for name, values in per_rank[0]["saved"].items():
        np.testing.assert_array_equal(loaded[name].numpy(), np.array(values, dtype=np.float32))


def test_collectives_on_two_ranks(mpi):
    for rank, r in enumerate(mpi["collectives"]):
        assert r["sum"] == [3.0, 6.0] and r["avg"] == [1.5, 3.0]
        assert r["max"] == [1.0, 0.0] and r["async_min"] == [0.0] * 3
        assert r["broadcast_from_last"] == [20.0]
        assert r["all_gather"] == [[0, 0], [1, 10]]
        assert r["all_gather_into_tensor"] == [0.0, 0.5, 1.0, 1.5]
        # input_list[rank] summed over ranks: rank r sends [r', 100 * sender] to r'
        assert r["reduce_scatter"] == [RANKS * rank, 100.0 * sum(range(RANKS))]
        assert r["reduce_scatter_tensor_avg"] == [rank * 1.5]


def test_all_reduce_random_data_matches_numpy(mpi):
    for r in mpi["random_all_reduce"]:
        assert r["max_relative_error"] < 1e-6


def test_sampler_under_mpi_takes_rank_and_world_size_from_the_group(mpi):
    shards = [r["sampler"] for r in mpi["collectives"]]
    assert [(s[1], s[2]) for s in shards] == [(RANKS, 0), (RANKS, 1)]
    assert set(shards[0][0] + shards[1][0]) == set(range(11))
    assert [s[0] for s in shards] == [_shard(11, rank, epoch=1) for rank in range(RANKS)]


def _shard(n, rank, epoch):
    sampler = dist.DistributedSampler(range(n), num_replicas=RANKS, rank=rank, seed=3)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_a_raising_rank_aborts_the_job_within_seconds():
    start = time.perf_counter()
    result = run_mpi(WORKERS / "raise_worker.py", timeout=60)
    elapsed = time.perf_counter() - start
    output = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode != 0, output
    assert "rank 0 passed the barrier" not in result.stdout, output
    assert "rank 1 of 2: uncaught ValueError: a deliberate failure on rank 1" in result.stderr, \
        output
    assert elapsed < 20, f"the job took {elapsed:.1f} s to end"


def test_a_rank_calling_sys_exit_mid_training_ends_the_job_within_seconds():
    """sys.exit(3) on rank 1 while rank 0 waits for it in an all_reduce: no hook sees a
    SystemExit, so the end-of-job handshake must notice and abort."""
    start = time.perf_counter()
    result = run_mpi(WORKERS / "exit_worker.py", "1", timeout=60)
    elapsed = time.perf_counter() - start
    output = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode != 0, output
    assert "rank 1 calls sys.exit(3)" in result.stdout, output
    assert "finished training" not in result.stdout, output
    assert "rank 1 of 2: its script has ended" in result.stderr, output
    assert "rank(s) 0 did not end within exit_timeout=1 s" in result.stderr, output
    assert elapsed < 15, f"the job took {elapsed:.1f} s to end"


def test_ranks_ending_apart_within_the_timeout_end_cleanly():
    result = run_mpi(WORKERS / "exit_worker.py", "10", "--uneven", timeout=60)
    output = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0 and "aborting" not in result.stderr, output
    assert result.stdout.count("finished training") == RANKS, output


def test_lesson_17_runs_on_two_ranks():
    result = run_mpi(ROOT / "lessons" / "17_distributed.py", "--quick")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "world size = 2" in result.stdout and "全部检查通过" in result.stdout
    assert "实测" in result.stdout  # the measured section runs only with several ranks


def test_gpt_training_cli_under_mpiexec(tmp_path):
    """`python -m tinygrad_zh.gpt train` unchanged on 2 ranks: one rank prints and saves,
    the effective batch is reported, and the checkpoint resumes in a single process."""
    from tinygrad_zh import gpt as cli
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be, that is the question.\n" * 30, encoding="utf-8")
    common = ["train", "--text", str(corpus), "--out", str(tmp_path / "run"), "--n-layer", "1",
              "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "8",
              "--eval-interval", "2", "--eval-iters", "2", "--warmup", "1"]
    result = run_mpi("-m", "tinygrad_zh.gpt", *common, "--max-iters", "4", "--grad-accum", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("model: ") == 1 and result.stdout.count("checkpoint: ") == 1
    assert "batch: 8 sequences x 2 accumulation x 2 rank(s) = 32 sequences per step" \
        in result.stdout
    assert result.stdout.count("step 4: train loss") == 1
    _, _, state = cli.load_checkpoint(tmp_path / "run")
    assert state["step"] == 4 and state["history"]["eval_step"] == [2, 4]
    cli.main(common + ["--max-iters", "6", "--resume"])  # one process goes on from it
    assert cli.load_checkpoint(tmp_path / "run")[2]["step"] == 6


def test_trainer_under_mpiexec(tmp_path):
    """The Trainer unchanged on 2 ranks: each rank trains on its share, the ranks stay
    identical, rank 0 alone draws the bar and writes the log and the checkpoints."""
    from tinygrad_zh.models.mlp import MLP
    result = run_mpi(WORKERS / "trainer_worker.py", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    r = json.loads(lines[0][len("RESULTS "):])
    assert r["identical"] and r["global_step"] == 6  # 96 samples / 2 ranks / 8 / 2 accumulation * 2
    assert result.stdout.count("effective batch size = 8 per rank x 2 accumulation x 2 ranks "
                               "= 32") == 1
    assert result.stderr.count("epoch 1/2:   0%") <= 1  # one progress bar (tqdm writes stderr)
    history = (tmp_path / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(history) == r["log_entries"] == 8  # 6 losses + 2 evaluations, written once
    assert {p.name for p in tmp_path.glob("checkpoint-*.npz")} == {"checkpoint-3.npz",
                                                                   "checkpoint-6.npz"}
    model = MLP(4, [16], 2)  # the 2-rank checkpoint loads into a model in this process
    model.load_state_dict(tg.load(tmp_path / "checkpoint-6.npz")["model"])


# ------------------------------------------------------------------ one process
def test_collectives_with_one_rank_leave_the_data():
    assert dist.get_world_size() == 1 and dist.get_rank() == 0
    t = tg.tensor([1.0, -2.0])
    for op in dist.ReduceOp:
        dist.all_reduce(t, op=op)
    assert t.tolist() == [1.0, -2.0]
    out = [tg.zeros(2)]
    dist.all_gather(out, t)
    assert out[0].tolist() == [1.0, -2.0]
    piece = tg.zeros(2)
    dist.reduce_scatter(piece, [t])
    assert piece.tolist() == [1.0, -2.0]
    assert dist.all_reduce(t, async_op=True).wait()


def test_collective_writes_bump_the_version_and_respect_grad_mode():
    w = tg.tensor([1.0], requires_grad=True)
    y = w * w  # saves w for backward
    with pytest.raises(RuntimeError, match="all_reduce: in-place change of a tensor that requires"):
        dist.all_reduce(w)
    with tg.no_grad():
        dist.all_reduce(w)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


@pytest.mark.parametrize("call, message", [
    (lambda: dist.all_reduce(tg.ones(2, 3).T), "all_reduce: the tensor of shape (3, 2) is not "
                                               "contiguous"),
    (lambda: dist.all_reduce(tg.ones(1, 3).expand(1, 3)), "read-only view"),
    (lambda: dist.all_reduce(tg.tensor([1, 2]), op=dist.ReduceOp.AVG), "AVG needs a floating"),
    (lambda: dist.all_reduce(tg.tensor([True])), "all_reduce: cannot reduce a bool tensor"),
    (lambda: dist.all_gather_into_tensor(tg.zeros(1, dtype=tg.float64), tg.zeros(1)),
     "the tensors have different dtypes (output_tensor: float64, input_tensor: float32)"),
    (lambda: dist.init_process_group(exit_timeout=0), "exit_timeout must be > 0 seconds, got 0"),
    (lambda: dist.all_reduce(tg.ones(2), op="sum"), "op must be a ReduceOp"),
    (lambda: dist.all_reduce(np.ones(2)), "expected a tinygrad_zh Tensor, got ndarray"),
    (lambda: dist.broadcast(tg.ones(2), src=1), "src=1 is not a rank of this job"),
    (lambda: dist.all_gather([tg.ones(2)] * 2, tg.ones(2)), "tensor_list has 2 tensors; "
                                                          "expected one per rank (1)"),
    (lambda: dist.all_gather([tg.ones(3)], tg.ones(2)), r"tensor_list\[0\] has shape \(3,\)"),
    (lambda: dist.all_gather_into_tensor(tg.ones(3), tg.ones(2)), "must have shape (2,)"),
    (lambda: dist.DistributedDataParallel(Line(), bucket_cap_mb=0), "bucket_cap_mb must be > 0"),
    (lambda: dist.DistributedSampler(range(4), num_replicas=2, rank=2), "rank 2 is not in"),
    (lambda: dist.init_process_group(), "already initialized"),
    (lambda: dist.init_process_group(backend="nccl"), "unknown backend 'nccl'"),
    (lambda: dist.ZeroRedundancyOptimizer([], object), "got an empty parameter list"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=_literal(message)):
        call()


def _literal(message):
    return message if "\\" in message else re.escape(message)


def test_a_collective_before_init_says_how_to_start(monkeypatch):
    monkeypatch.setattr(collectives, "_group", None)
    with pytest.raises(RuntimeError, match=r"get_rank: the process group is not initialized; "
                                           r"call tinygrad_zh.distributed.init_process_group"):
        dist.get_rank()


class Line:
    """The smallest model with the Module interface DDP uses."""

    def __init__(self):
        self.w = tg.tensor([2.0, -1.0], requires_grad=True)
        self.frozen = tg.tensor([5.0])

    def named_parameters(self):
        return [("w", self.w)]

    def named_buffers(self):
        return [("frozen", self.frozen)]

    def __call__(self, x):
        return x * self.w


def test_ddp_with_one_rank_is_plain_training():
    model = Line()
    ddp = dist.DistributedDataParallel(model)
    for _ in range(2):  # twice: the buckets are ready again after each backward
        model.w.grad = None
        (ddp(tg.tensor([3.0, 4.0])) ** 2).sum().backward()
        assert model.w.grad.tolist() == [2 * 3.0 * 3.0 * 2.0, 2 * 4.0 * 4.0 * -1.0]
    assert ddp.named_buffers() == model.named_buffers()  # the module's attributes show through


def test_zero_partition_balances_bytes_and_keeps_the_model_order():
    from tinygrad_zh.distributed.zero import _partition
    params = [tg.zeros(n, requires_grad=True) for n in (5, 1, 4, 3, 3)]
    shards = _partition(params, 2)
    assert [[p.numel() for p in shard] for shard in shards] == [[5, 3], [1, 4, 3]]
    assert _partition(params[:1], 3)[1:] == [[], []]  # more ranks than tensors: some idle


def test_autograd_hands_a_leaf_its_gradient_before_earlier_layers_run():
    """What makes overlap possible: the last layer's weight is final (its hook
    runs) before backward reaches the first layer."""
    events = []
    w1 = tg.tensor([[0.5, -1.0]], requires_grad=True)
    w2 = tg.tensor([2.0], requires_grad=True)
    w2.register_post_accumulate_grad_hook(lambda t: events.append("w2 final"))
    h = tg.tensor([[1.0], [3.0]]) @ w1
    h.register_hook(lambda g: events.append("first layer backward"))
    (h.tanh() * w2 * w2).sum().backward()  # w2 used twice: its hook runs once, with the total
    assert events == ["w2 final", "first layer backward"]
    expected = 2 * 2.0 * np.tanh(np.array([[0.5, -1], [1.5, -3]])).sum()
    assert w2.grad.item() == pytest.approx(expected)


# ------------------------------------------------------------------ no MPI installed
def run_python(code, **env):
    """Run ``code`` in a fresh interpreter where ``import mpi4py`` fails."""
    prelude = "import sys; sys.modules['mpi4py'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_importing_the_package_never_imports_mpi4py():
    result = subprocess.run([sys.executable, "-c", "import sys, tinygrad_zh, "
                             "tinygrad_zh.distributed; print('mpi4py' in sys.modules)"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_without_mpi4py_a_plain_run_is_one_rank():
    result = run_python("""
        import tinygrad_zh as tg, tinygrad_zh.distributed as dist
        dist.init_process_group()
        t = tg.tensor([1.0, 2.0])
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
        print(dist.get_backend(), dist.get_world_size(), t.tolist())
    """, PMI_SIZE="1")
    assert result.stdout.split() == ["single", "1", "[1.0,", "2.0]"], result.stderr


@pytest.mark.parametrize("backend, env", [("None", {"PMI_SIZE": "2"}), ("'mpi'", {})])
def test_without_mpi4py_asking_for_mpi_says_how_to_install_it(backend, env):
    result = run_python(f"""
        import tinygrad_zh.distributed as dist
        dist.init_process_group(backend={backend})
    """, **env)
    assert result.returncode != 0
    assert "ImportError: init_process_group: MPI is not available" in result.stderr
    assert "pip install 'tinygrad_zh[dist]'" in result.stderr
    if env:
        assert "started by a launcher for 2 ranks" in result.stderr


# ------------------------------------------------------------------ DistributedSampler
@SETTINGS
@given(n=st.integers(0, 40), replicas=st.integers(1, 5), shuffle=st.booleans(),
       drop_last=st.booleans(), epoch=st.integers(0, 3))
def test_sampler_shards_are_equal_disjoint_and_cover_the_data(n, replicas, shuffle, drop_last,
                                                              epoch):
    shards = []
    for rank in range(replicas):
        sampler = dist.DistributedSampler(range(n), replicas, rank, shuffle=shuffle,
                                          drop_last=drop_last)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps
    every = [i for s in shards for i in s]
    if drop_last:
        assert len(set(every)) == len(every) == n // replicas * replicas  # disjoint, tail dropped
    else:
        assert set(every) == set(range(n))  # covering
        assert len(every) - len(set(every)) == len(every) - n  # only the padding repeats
        assert len(every) < n + replicas


def test_sampler_set_epoch_reshuffles_the_same_way_on_every_rank():
    def order(epoch, rank):
        sampler = dist.DistributedSampler(range(20), num_replicas=2, rank=rank, seed=1)
        sampler.set_epoch(epoch)
        return list(sampler)
    assert order(0, 0) == order(0, 0) and order(0, 0) != order(1, 0)
    assert sorted(order(1, 0) + order(1, 1)) == list(range(20))


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (2, 5, False),
                                                   (9, 3, False), (0, 2, False)])
def test_sampler_matches_pytorch_without_shuffle(n, replicas, drop_last):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: comparison skipped")
    from torch.utils.data.distributed import DistributedSampler as TorchSampler
    for rank in range(replicas):
        ours = dist.DistributedSampler(range(n), replicas, rank, shuffle=False,
                                       drop_last=drop_last)
        theirs = TorchSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs), torch.__version__


def test_ddp_counts_a_shared_parameter_once_and_a_dropped_wrapper_stays_quiet():
    class Recording(dist.DistributedDataParallel):
        calls = []

        def _gradient_ready(self, param):
            Recording.calls.append(param)
            super()._gradient_ready(param)

    model = Line()
    model.named_parameters = lambda: [("w", model.w), ("tied", model.w)]
    first = Recording(model)
    assert [b.params for b in first._buckets] == [[model.w]]
    del first
    gc.collect()
    second = dist.DistributedDataParallel(model)  # wrapped again: only this one may act
    second(tg.tensor([1.0, 1.0])).sum().backward()
    assert Recording.calls == [] and model.w.grad.tolist() == [1.0, 1.0]


class TwoHeads(tg.nn.Module):
    """Two linear heads; ``use`` names the ones forward uses."""

    def __init__(self):
        super().__init__()
        self.a, self.b = tg.nn.Linear(2, 1), tg.nn.Linear(2, 1)
        self.use = ("a", "b")

    def forward(self, x):
        return sum(getattr(self, name)(x) for name in self.use)


def test_unused_parameters_with_one_rank():
    model = TwoHeads()
    found = dist.DistributedDataParallel(model, find_unused_parameters=True)
    model.use = ("a",)
    found(tg.ones(1, 2)).sum().backward()
    assert model.a.weight.grad.tolist() == [[1.0, 1.0]]
    assert model.b.weight.grad.tolist() == [[0.0, 0.0]] and model.b.bias.grad.tolist() == [0.0]

    strict_model = TwoHeads()
    strict = dist.DistributedDataParallel(strict_model)
    strict_model.use = ("b",)
    strict(tg.ones(1, 2)).sum().backward()
    with pytest.raises(RuntimeError, match=r"did not give a gradient to parameters "
                                           r"\['a.weight', 'a.bias'\]"):
        strict(tg.ones(1, 2))


# ------------------------------------------------------------------ the GPU transport (NCCL)
def test_nccl_dtype_table_agrees_with_each_dtype_and_refuses_what_nccl_lacks():
    """Each NCCL name states its kind and width (NCCL_FLOAT32, NCCL_UINT8): they must be
    the dtype's; the dtypes NCCL has no type for get an error that lists the ones it has."""
    kinds = {"FLOAT": "f", "INT": "i", "UINT": "u"}  # NCCL_<kind><bits>
    has_nccl_type = ["int8", "uint8", "int32", "uint32", "int64", "uint64", "float16",
                     "float32", "float64"]
    for name in has_nccl_type + ["int16", "uint16", "bool"]:
        dtype = np.dtype(name)
        if name not in has_nccl_type:
            with pytest.raises(TypeError, match=f"all_gather: NCCL, which moves GPU tensors, "
                                                f"has no type for {name}; it has int8, uint8"):
                collectives.nccl_dtype_name(dtype, "all_gather")
            continue
        kind, bits = re.fullmatch(r"NCCL_([A-Z]+)(\d+)",
                                  collectives.nccl_dtype_name(dtype, "all_gather")).groups()
        assert (kinds[kind], int(bits)) == (dtype.kind, 8 * dtype.itemsize), name
    assert {op: collectives.NCCL_OPS[op] for op in dist.ReduceOp} == {
        dist.ReduceOp.SUM: "NCCL_SUM", dist.ReduceOp.AVG: "NCCL_SUM",  # then / world size
        dist.ReduceOp.MAX: "NCCL_MAX", dist.ReduceOp.MIN: "NCCL_MIN"}


def test_nccl_names_are_constants_of_cupy_nccl():
    reason = gpu_skip_reason(gpus=0)
    if reason:
        pytest.skip(reason)
    from cupy.cuda import nccl
    for name in list(collectives.NCCL_DTYPES.values()) + list(collectives.NCCL_OPS.values()):
        assert isinstance(getattr(nccl, name), int), name


def test_the_transport_is_chosen_by_device(monkeypatch):
    group = collectives._group
    assert collectives._transport("all_reduce", tensor=tg.ones(2)) is group
    assert collectives._transport_for("broadcast", "cpu", np.dtype("int64")) is group
    single = collectives._SingleProcessGroup()  # a job of one process moves nothing, anywhere
    monkeypatch.setattr(collectives, "_group", single)
    assert collectives._transport_for("all_reduce", "cuda:0", np.dtype("float32")) is single


def test_a_gpu_dtype_nccl_lacks_is_refused_before_cupy_is_looked_for():
    if dist.get_backend() != "mpi":
        pytest.skip(f"needs mpi4py (without MPI nothing travels by NCCL); {dist.INSTALL_HINT}")
    with pytest.raises(TypeError, match="broadcast: NCCL, which moves GPU tensors, has no type "
                                        "for int16"):
        collectives._transport_for("broadcast", "cuda:0", np.dtype("int16"))


def test_a_gpu_tensor_without_cupy_says_what_to_install():
    """With MPI, a GPU device means the NCCL transport; without CuPy it cannot exist."""
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: the GPU tests cover this path")
    if dist.get_backend() != "mpi":
        pytest.skip(f"needs mpi4py: {dist.INSTALL_HINT}")
    with pytest.raises(RuntimeError, match=r"all_reduce: tensors on cuda:1 travel by NCCL, "
                                           r"which needs CuPy \(.*CuPy is not installed.*\); "
                                           r"install CuPy \(pip install 'tinygrad_zh\[gpu\]'\) "
                                           r"and NCCL"):
        collectives._transport_for("all_reduce", "cuda:1", np.dtype("float32"))
    assert collectives._group.gpu_transports == {}  # nothing half-made is kept
    assert dist.local_device() == "cpu"


def test_tensors_on_different_devices_are_refused():
    devices = [("tensor", "cuda:0"), ("tensor_list[0]", "cuda:0"), ("tensor_list[1]", "cpu")]
    with pytest.raises(ValueError, match=_literal(
            "all_gather: the tensors are on different devices (tensor on cuda:0, "
            "tensor_list[0] on cuda:0, tensor_list[1] on cpu); a collective moves the "
            "tensors of one device")):
        collectives._one_device("all_gather", devices)
    assert collectives._one_device("all_gather", devices[:2]) == "cuda:0"


def test_two_ranks_on_one_gpu_are_named():
    placements = [("node-a", "cuda:0"), ("node-a", "cuda:1"), ("node-b", "cuda:0"),
                  ("node-a", "cuda:1")]
    assert collectives._shared_gpus(placements) == \
        "ranks 1 and 3 both use cuda:1 on host node-a"
    assert collectives._shared_gpus(placements[:3]) == ""


def test_every_collective_on_cuda_tensors_through_nccl_in_one_process():
    """One rank (a 1-rank NCCL communicator): every collective, sync and async, on a
    CUDA tensor, and DDP on a CUDA model, against the same on the CPU."""
    reason = gpu_skip_reason(gpus=1)
    if reason:
        pytest.skip(reason)
    if dist.get_backend() != "mpi":
        pytest.skip(f"the NCCL transport runs under MPI; {dist.INSTALL_HINT}")
    device = dist.local_device()
    for dtype in (tg.float32, tg.float64, tg.int64, tg.uint8):
        ops = [op for op in dist.ReduceOp if dtype.kind == "f" or op is not dist.ReduceOp.AVG]
        for op in ops:
            t = tg.tensor(np.arange(6) % 4, dtype=dtype, device=device)
            dist.all_reduce(t, op=op)
            np.testing.assert_array_equal(t.cpu().numpy(), np.arange(6) % 4)
    t = tg.tensor([1.0, 2.0], device=device)
    work = dist.all_reduce(t, op=dist.ReduceOp.AVG, async_op=True)
    work.wait()
    assert t.tolist() == [1.0, 2.0]
    dist.broadcast(t, src=0)
    out = [tg.zeros(2, device=device)]
    dist.all_gather(out, t)
    whole = tg.zeros(2, device=device)
    dist.all_gather_into_tensor(whole, t)
    piece = tg.zeros(2, device=device)
    dist.reduce_scatter(piece, [t])
    scattered = tg.zeros(2, device=device)
    dist.reduce_scatter_tensor(scattered, t)
    assert [x.tolist() for x in (out[0], whole, piece, scattered)] == [[1.0, 2.0]] * 4
    assert list(collectives._group.gpu_transports) == [device]  # one communicator, reused
    grads = {}
    for where in ("cpu", device):
        tg.manual_seed(0)
        model = tg.nn.Linear(3, 2).to(where)
        ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-5)  # one bucket per tensor
        ddp(tg.ones(4, 3, device=where)).pow(2).sum().backward()
        grads[where] = model.weight.grad.cpu().numpy()
    np.testing.assert_allclose(grads[device], grads["cpu"], rtol=FLOAT32_TOL)

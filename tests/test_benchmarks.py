"""Smoke test of the benchmarks: they run and print numbers that make sense.

The timings themselves are not checked (they depend on the machine); this only
catches a benchmark broken by a change in the engine or in the script.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBS = ["numpy", "tinygrad_zh"]  # not torch: the tests must pass without it


def test_op_overhead_quick_run_prints_the_table():
    proc = subprocess.run(
        [sys.executable, "benchmarks/op_overhead.py", "--quick", "--libs", ",".join(LIBS)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

    # Table rows start with "op mode", e.g. "add  fwd  0.51  2.77  5.41x".
    rows = {tuple(line.split()[:2]): line.split() for line in proc.stdout.splitlines()}
    assert ("op", "mode") in rows and ("add", "fwd") in rows, proc.stdout
    cells = dict(zip(rows["op", "mode"], rows["add", "fwd"]))
    for lib in LIBS:
        assert float(cells[lib]) > 0, f"{lib}: {cells.get(lib)!r} in {rows['add', 'fwd']}"
    assert "Verdict" in proc.stdout


def test_ddp_scaling_quick_run_prints_the_tables():
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or \
        shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found: pip install 'tinygrad_zh[dist]'")
    proc = subprocess.run([sys.executable, "benchmarks/ddp_scaling.py", "--quick", "--rounds", "1",
                           "--models", "mlp"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["ranks"])
    step_ms = {row.split()[0]: float(row.split()[1]) for row in lines[header + 1:header + 3]}
    assert step_ms.keys() == {"1", "2"} and min(step_ms.values()) > 0, proc.stdout
    assert "Estimate" in proc.stdout and "B*" in proc.stdout
def test_optim_step_quick_run_prints_the_table():
    libs = ["tinygrad_zh", "tinygrad_zh-ref"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/optim_step.py", "--quick", "--libs", ",".join(libs)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # Rows look like "mlp    Adam    88.1    261.8": two names, then one number per library.
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("mlp", "many"))]
    assert len(rows) == 6, proc.stdout
    assert all(float(cell) > 0 for row in rows for cell in row[-len(libs):]), proc.stdout


def test_nn_layers_quick_run_times_every_case():
    proc = subprocess.run(
        [sys.executable, "benchmarks/nn_layers.py", "--quick", "--libs", "tinygrad_zh"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line}
    for case in ("linear", "conv1", "conv2", "max_pool2d", "cross_entropy", "cnn_step"):
        assert float(rows[case][0]) > 0, proc.stdout

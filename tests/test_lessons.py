"""Smoke test: every lesson runs with --quick, exits 0 and prints its key lines.

Each lesson checks its own numbers and exits non-zero when one is wrong, so
this test fails whenever a lesson's claim stops being true.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))

# Every lesson ends with this line once all of its checks have passed.
ALL_CHECKS_PASSED = "全部检查通过"
# Lines that show a lesson reached its main point (checked where listed).
KEY_LINES = {
    "01_tensors_and_graphs.py": ["backward() 是累加", "f 只有一个节点，但有两条边通向 f * f"],
    "02_forward_backward.py": ["三种方法算出的梯度一致", "两种布局的权重梯度互为转置"],
    "03_activations.py": ["sigmoid 的导数最大是 0.25（在 x = 0 处）"],
    "04_losses.py": ["梯度就是 softmax - one_hot，与手算一致"],
    "05_optimizers.py": ["手算的 w、m、v 与 optim.Adam 一致", "保存并恢复优化器状态后，结果逐位相同"],
    "06_regularization.py": ["SGD：L2 惩罚与权重衰减得到相同的系数"],
    "07_mlp_mnist.py": ["手工读出的图像与 tinygrad_zh.datasets.MNIST 读出的完全一致"],
    "08_cnn_mnist.py": ["手算的 im2col 结果与 F.conv2d 一致"],
    "09_evaluation.py": ["载回的模型在验证集上的准确率等于记录里最好的那次"],
    "10_attention.py": ["不缩放：平均最大权重超过 0.9，softmax 饱和了"],
    "11_gpt_pretraining.py": ["手算的参数个数与 num_parameters() 一致"],
    "12_generation.py": ["用不用缓存，生成的 token 完全相同"],
    "14_kernels.py": ["三种写法的 Adam 三步之后结果一致", "逐块的 online softmax 与直接计算的结果一致"],
    "16_higher_order_and_graphs.py": ["HVP 与数值微分一致", "顺序不对，梯度就错了"],
    "17_distributed.py": ["两半梯度的平均 = 整批的梯度", "数据并行训练 = 单进程在合起来的批次上训练"],
}


def run_lesson(path, *args):
    # UTF-8 regardless of the platform's locale, so the Chinese text round-trips.
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, str(path), *args], cwd=ROOT, env=env,
                          capture_output=True, encoding="utf-8", timeout=120)


def test_the_first_lessons_exist():
    names = [p.name for p in LESSONS]
    assert set(KEY_LINES) <= set(names), f"missing lessons; found {names}"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_runs_quick(path):
    result = run_lesson(path, "--quick")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{path.name} exited with {result.returncode}:\n{output[-3000:]}"
    for line in [ALL_CHECKS_PASSED] + KEY_LINES.get(path.name, []):
        assert line in result.stdout, f"{path.name}: {line!r} not in its output"
    # Learners on Windows with a Chinese locale get GBK when output is piped:
    # keep printed text to characters GBK can encode (no ², ᵀ, ∂, ∇, ✓).
    try:
        result.stdout.encode("gbk")
    except UnicodeEncodeError as e:
        pytest.fail(f"{path.name} prints {result.stdout[e.start:e.end]!r}, which GBK cannot "
                    f"encode: {result.stdout[max(e.start - 40, 0):e.end + 10]!r}")

"""第 7-9 课共用：找到 MNIST；找不到时生成一个小小的"替身"数据集。

找数据的顺序：命令行的 --data 目录、环境变量 TINYGRAD_ZH_DATA、仓库旁边的
../shared/data。都没有时，用 7 段数码管样式画出 0-9 的 28x28 灰度图（随机粗细、
旋转、平移、噪声），让课程离线也能在几秒内跑完，并打印获取真实数据的方法。
"""
import os
from pathlib import Path

import numpy as np

from tinygrad_zh.datasets import MNIST
from tinygrad_zh.datasets.mnist import write_idx
from tinygrad_zh.transforms import RandomAffine

REPO = Path(__file__).resolve().parents[1]
HOW_TO_GET = """\
  获取真实 MNIST 的三种办法（任选其一）：
    1. 联网时：MNIST(root="data/mnist", download=True)，会依次尝试 PyTorch、
       PaddlePaddle（北京，国内可直连）和 Google 的镜像，并校验 md5；
    2. 把四个文件 train-images-idx3-ubyte.gz、train-labels-idx1-ubyte.gz、
       t10k-images-idx3-ubyte.gz、t10k-labels-idx1-ubyte.gz 放进某个目录的 mnist/
       子目录，再设置环境变量 TINYGRAD_ZH_DATA=那个目录；
    3. 运行课程时加参数 --data 放着这四个文件的目录。"""

# 7 段数码管：每个数字点亮哪几段。a 上横, b 右上竖, c 右下竖, d 下横, e 左下竖, f 左上竖, g 中横
SEGMENTS = {0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg",
            5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg", 9: "abcdfg"}
# 每一段的起点和终点 (行, 列)
STROKES = {"a": ((5, 9), (5, 18)), "b": ((5, 18), (14, 18)), "c": ((14, 18), (23, 18)),
           "d": ((23, 9), (23, 18)), "e": ((14, 9), (23, 9)), "f": ((5, 9), (14, 9)),
           "g": ((14, 9), (14, 18))}


def find_mnist_folder(data_arg=None):
    """含有四个 MNIST 文件的目录；找不到时返回 None。"""
    candidates = [data_arg, os.environ.get("TINYGRAD_ZH_DATA"), REPO.parent / "shared" / "data"]
    for base in candidates:
        if not base:
            continue
        try:
            return MNIST(base, train=False).root
        except (FileNotFoundError, ValueError):
            continue
    return None


def load_mnist(data_arg, n_train, n_test, out_dir):
    """(训练图像, 训练标签, 测试图像, 测试标签, IDX 文件所在目录, 是否真实数据)。

    图像是 uint8 (N, 28, 28)。真实数据取前 n_train / n_test 张；替身数据会先
    写成 IDX 文件，好让第 7 课照样"手工读 IDX"。
    """
    folder = find_mnist_folder(data_arg)
    if folder is not None:
        train, test = MNIST(folder), MNIST(folder, train=False)
        print(f"使用真实 MNIST：{folder}（训练集取前 {n_train} 张，测试集取前 {n_test} 张）")
        return (train.data[:n_train], train.targets[:n_train], test.data[:n_test],
                test.targets[:n_test], folder, True)
    print("没有找到 MNIST 数据，改用生成的替身数据（7 段数码管样式的 0-9）。")
    print(HOW_TO_GET)
    folder = Path(out_dir) / "standin_mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = standin_digits(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    train, test = MNIST(folder), MNIST(folder, train=False)
    return train.data, train.targets, test.data, test.targets, folder, False


def standin_digits(n, seed):
    """n 张 28x28 的"数码管数字"：随机粗细、旋转 ±8 度、平移 ±1 像素、加噪声。"""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), dtype=np.float64)
    for image, label, width in zip(images, labels, rng.integers(1, 3, n)):
        for segment in SEGMENTS[int(label)]:
            (r0, c0), (r1, c1) = STROKES[segment]
            image[r0 - width + 1:r1 + width, c0 - width + 1:c1 + width] = 1.0
    images *= rng.uniform(0.6, 1.0, (n, 1, 1))
    images = RandomAffine(8, translate=(0.04, 0.04), generator=rng)(images)
    images += rng.normal(0, 0.08, images.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels

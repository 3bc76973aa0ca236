"""第 7 课：用多层感知机（MLP）识别手写数字 —— 从原始字节到测试准确率

在仓库根目录运行：

    python lessons/07_mlp_mnist.py                   # 完整版：约 2 万张训练图，几十秒
    python lessons/07_mlp_mnist.py --quick           # 精简版（冒烟测试用），几秒
    python lessons/07_mlp_mnist.py --data 目录       # 指定 MNIST 四个文件所在的目录

这一课把前几课的零件拼成一次完整的训练：

  1. 亲手读 IDX 文件：文件头的每个字节是什么意思；
  2. 归一化：为什么把像素变成均值 0、标准差 1；
  3. 手写训练循环：DataLoader 打乱分批，前向、反向、Adam 更新；
  4. 在从没见过的测试集上评估准确率。

找不到 MNIST 时，课程用生成的替身数据，并告诉你怎样获取真实数据。
"""
import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import nn, optim  # noqa: E402
from tinygrad_zh.datasets import MNIST  # noqa: E402
from tinygrad_zh.models import MLP  # noqa: E402
from tinygrad_zh.train.plots import plot_training_curves  # noqa: E402
from tinygrad_zh.utils.data import DataLoader, TensorDataset  # noqa: E402
from common import check, section  # noqa: E402
from mnist_data import load_mnist  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="第 7 课：MLP 识别手写数字")
    parser.add_argument("--quick", action="store_true", help="少量数据、一个 epoch（冒烟测试用）")
    parser.add_argument("--data", help="放着 MNIST 四个 IDX 文件的目录")
    parser.add_argument("--out", default="lesson_output/07", help="图片输出目录")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    n_train, n_test, epochs = (2560, 500, 1) if args.quick else (22000, 10000, 5)
    train_x, train_y, test_x, test_y, folder, real = load_mnist(args.data, n_train, n_test, out)
    read_idx_by_hand(folder)
    mean, std = normalisation(train_x)
    model, losses = train(train_x, train_y, mean, std, epochs)
    accuracy = evaluate(model, test_x, test_y, mean, std, real, args.quick)
    path = plot_training_curves(losses, out / "loss.png", title="MLP on MNIST: training loss")
    print(f"\n测试准确率 {accuracy:.2%}。图片保存在 {path.parent}/")
    print("全部检查通过")


def read_idx_by_hand(folder):
    section("1. 亲手读 IDX 文件")
    path = next(p for p in (Path(folder, "t10k-images-idx3-ubyte.gz"),
                            Path(folder, "t10k-images-idx3-ubyte")) if p.exists())
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    header = raw[:16]
    print(f"文件 {path.name} 的前 16 个字节（十六进制）：")
    print("  " + " ".join(f"{b:02x}" for b in header))
    magic = int.from_bytes(header[0:4], "big")
    count, rows, cols = (int.from_bytes(header[i:i + 4], "big") for i in (4, 8, 12))
    print(f"  字节 0-1  = 00 00   固定为 0")
    print(f"  字节 2    = {header[2]:02x}      元素类型：0x08 表示无符号字节（uint8）")
    print(f"  字节 3    = {header[3]:02x}      维数：3（图像张数、行、列）")
    print(f"  字节 4-7  = {count:<6}  图像张数（大端序：高位字节在前）")
    print(f"  字节 8-11 = {rows:<6}  行数")
    print(f"  字节12-15 = {cols:<6}  列数")
    print(f"之后是 {count} x {rows} x {cols} = {count * rows * cols} 个像素字节，"
          f"文件解压后共 {len(raw)} 字节。")
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    check(magic == 0x00000803, "魔数是 0x00000803：uint8、3 维")
    check(len(raw) == 16 + count * rows * cols, "文件大小 = 16 字节文件头 + 全部像素")
    check(np.array_equal(images, MNIST(folder, train=False).data),
          "手工读出的图像与 tinygrad_zh.datasets.MNIST 读出的完全一致")
    print("\n第一张测试图（一个字符一个像素，字符越密，像素越亮）：")
    shades = " .:-=+*#%@"
    for row in images[0][2:26]:
        print("  " + "".join(shades[int(v) * len(shades) // 256] for v in row))


def normalisation(train_x):
    section("2. 归一化")
    pixels = train_x.astype(np.float32) / 255
    mean, std = float(pixels.mean()), float(pixels.std())
    print(f"像素先除以 255 变到 [0, 1]；训练集像素的均值 {mean:.4f}，标准差 {std:.4f}。")
    print("（完整 MNIST 训练集常用的数是 0.1307 和 0.3081。）")
    print("再做 (x - 均值) / 标准差：输入以 0 为中心、尺度约为 1，第一层的")
    print("x @ W 不会一开始就很大，各个权重的梯度尺度也相近，Adam/SGD 更好调。")
    normed = (pixels - mean) / std
    print(f"归一化后：均值 {normed.mean():.2e}，标准差 {normed.std():.4f}")
    check(abs(normed.mean()) < 1e-3 and abs(normed.std() - 1) < 1e-3,
          "归一化后训练像素的均值约为 0、标准差约为 1")
    print("注意：测试集用的也是训练集的均值和标准差 —— 测试数据不能参与任何统计。")
    return mean, std


def to_tensors(images, labels, mean, std):
    x = (images.astype(np.float32) / 255 - mean) / std
    return tg.tensor(x.reshape(len(x), -1)), tg.tensor(labels.astype(np.int64))


def train(train_x, train_y, mean, std, epochs):
    section("3. 手写训练循环")
    tg.manual_seed(0)
    model = MLP(784, [256, 128], 10)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(*to_tensors(train_x, train_y, mean, std)),
                        batch_size=64, shuffle=True)
    print(model)
    print(f"\n每个 epoch 把 {len(train_x)} 张图打乱，切成 {len(loader)} 批，每批 64 张：")
    print("    for x, y in loader:")
    print("        loss = F.cross_entropy(model(x), y)   # 前向：10 个分数 -> 交叉熵")
    print("        optimizer.zero_grad()")
    print("        loss.backward()                       # 反向：每个参数的梯度")
    print("        optimizer.step()                      # Adam 更新参数")
    history, step = [], 0
    for epoch in range(epochs):
        start, epoch_losses = time.perf_counter(), []
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            epoch_losses.append(loss.item())
            if step % 20 == 0:
                history.append({"step": step, "loss": float(np.mean(epoch_losses[-20:]))})
        print(f"  epoch {epoch + 1}: 平均损失 {np.mean(epoch_losses):.4f}，"
              f"用时 {time.perf_counter() - start:.1f} 秒")
    first, last = history[0]["loss"], history[-1]["loss"]
    check(last < first / 2, f"训练损失从 {first:.3f} 降到 {last:.3f}，不到开始时的一半")
    return model, history


def evaluate(model, test_x, test_y, mean, std, real, quick):
    section("4. 在测试集上评估")
    x, y = to_tensors(test_x, test_y, mean, std)
    model.eval()  # 评估模式（本模型没有 Dropout，但养成习惯）
    with tg.no_grad():  # 评估不需要计算图：更快、更省内存
        predictions = model(x).argmax(dim=1)
    correct = int((predictions == y).sum().item())
    accuracy = correct / len(y)
    print(f"测试集 {len(y)} 张图，预测对 {correct} 张：准确率 {accuracy:.2%}")
    print("前 12 张的预测：", predictions[:12].tolist())
    print("    真实的标签：", y[:12].tolist())
    target = 0.80 if quick else (0.96 if real else 0.95)
    check(accuracy > target, f"测试准确率高于 {target:.0%}")
    return accuracy


if __name__ == "__main__":
    main()

"""第 8 课：卷积神经网络（CNN）—— im2col、池化、数据增强

在仓库根目录运行：

    python lessons/08_cnn_mnist.py                   # 完整版：几分钟
    python lessons/08_cnn_mnist.py --quick           # 精简版（冒烟测试用），几秒
    python lessons/08_cnn_mnist.py --data 目录       # 指定 MNIST 四个文件所在的目录

第 7 课的 MLP 把 28x28 的图拉成 784 个数：它不知道哪些像素相邻，图像平移一个
像素，对它来说就是另一组输入。卷积层用同一个小卷积核扫过整张图：

  1. 卷积怎么算：im2col 把每个窗口摊成一行，卷积就变成一次矩阵乘法；
  2. 池化：每个 2x2 窗口只留最大值，图缩小一半；
  3. CNN：卷积-ReLU-池化两次，再接两个全连接层；
  4. 数据增强：训练时随机旋转、平移图像，看它对测试准确率（尤其是平移过的
     测试图）的影响。
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import nn, optim  # noqa: E402
from tinygrad_zh import transforms as T  # noqa: E402
from tinygrad_zh.datasets import MNIST  # noqa: E402
from tinygrad_zh.metrics import accuracy  # noqa: E402
from tinygrad_zh.models import CNN, MLP  # noqa: E402
from tinygrad_zh.utils.data import DataLoader, Subset  # noqa: E402
from common import check, section, show  # noqa: E402
from mnist_data import load_mnist  # noqa: E402

F = nn.functional


def main():
    parser = argparse.ArgumentParser(description="第 8 课：卷积神经网络")
    parser.add_argument("--quick", action="store_true", help="小网络、少量数据（冒烟测试用）")
    parser.add_argument("--data", help="放着 MNIST 四个 IDX 文件的目录")
    parser.add_argument("--out", default="lesson_output/08", help="图片输出目录")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    im2col_by_hand()
    pooling_by_hand()
    if args.quick:
        sizes = dict(n_train=2048, n_test=500, epochs=1, channels=(8, 16), hidden=64,
                     batch_size=32, lr=3e-3)
    else:
        sizes = dict(n_train=22000, n_test=10000, epochs=3, channels=(32, 64), hidden=128,
                     batch_size=64, lr=1e-3)
    *_, folder, _ = load_mnist(args.data, sizes["n_train"], sizes["n_test"], out)
    cnn_versus_mlp(sizes)
    augmentation(folder, sizes, out)
    print("全部检查通过")


def im2col_by_hand():
    section("1. 卷积 = im2col + 矩阵乘法")
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    kernel = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=np.float32)  # 竖直边缘
    show("image  (4x4)", image)
    show("kernel (3x3，检测竖直边缘：右边减左边)", kernel)
    print("3x3 的核在 4x4 的图上有 2x2 = 4 个位置。im2col 把每个位置下的 9 个像素")
    print("按行摊平，排成 4 行 9 列的矩阵：")
    windows = [image[i:i + 3, j:j + 3].ravel() for i in range(2) for j in range(2)]
    cols = np.stack(windows)
    show("cols   (4 个窗口 x 9 个像素)", cols)
    print("卷积就是 cols @ kernel 摊平后的 9 个数，再把 4 个结果排回 2x2：")
    by_hand = (cols @ kernel.ravel()).reshape(2, 2)
    show("cols @ kernel.ravel()  ->  2x2", by_hand)
    engine = F.conv2d(tg.tensor(image).reshape(1, 1, 4, 4), tg.tensor(kernel).reshape(1, 1, 3, 3))
    show("F.conv2d(image, kernel)", engine.numpy()[0, 0])
    check(np.allclose(by_hand, engine.numpy()[0, 0]), "手算的 im2col 结果与 F.conv2d 一致")
    check(np.all(by_hand == 6), "图像从左到右每格加 1，所以竖直边缘核在每个位置都给出 3 x 2 = 6")
    print("真实的第一层：输入 (N, 1, 28, 28)，3x3 核、padding=1，每张图有 28x28 = 784 个")
    print("窗口，cols 是 (N*784, 9) 的矩阵，32 个卷积核就是一次 (N*784, 9) @ (9, 32) 的矩阵乘法。")
    print("反向时 col2im 把 cols 的梯度加回各自的像素（窗口重叠处的梯度相加）。")


def pooling_by_hand():
    section("2. 最大池化")
    x = np.array([[1, 3, 2, 0], [4, 2, 1, 5], [0, 1, 7, 2], [3, 2, 1, 0]], dtype=np.float32)
    show("x (4x4)", x)
    pooled = x.reshape(2, 2, 2, 2).max(axis=(1, 3))  # 把 4x4 切成 4 个 2x2 块，各取最大
    show("每个 2x2 块的最大值 (2x2)", pooled)
    t = tg.tensor(x, requires_grad=True)
    y = F.max_pool2d(t.reshape(1, 1, 4, 4), 2)
    y.sum().backward()
    show("F.max_pool2d(x, 2)", y.detach().numpy()[0, 0])
    show("x.grad：梯度只流向每块的最大值", t.grad.numpy())
    check(np.array_equal(pooled, y.detach().numpy()[0, 0]), "手算的池化与 F.max_pool2d 一致")
    expected = np.zeros_like(x)
    for bi in range(2):
        for bj in range(2):
            i, j = np.unravel_index(x[2 * bi:2 * bi + 2, 2 * bj:2 * bj + 2].argmax(), (2, 2))
            expected[2 * bi + i, 2 * bj + j] = 1
    check(np.array_equal(t.grad.numpy(), expected), "梯度 1 恰好落在每块最大值的位置，其余为 0")


def cnn_versus_mlp(sizes):
    section("3. CNN 与 MLP：参数从哪里来")
    cnn = CNN(channels=sizes["channels"], hidden=sizes["hidden"])
    mlp = MLP(784, [256, 128], 10)
    print(cnn)
    conv_params = sum(p.numel() for p in cnn.features.parameters())
    total = sum(p.numel() for p in cnn.parameters())
    print(f"两层卷积只有 {conv_params} 个参数（同一个 3x3 核扫过整张图：权重共享），")
    print(f"全连接部分有 {total - conv_params} 个；第 7 课的 MLP 有 "
          f"{sum(p.numel() for p in mlp.parameters())} 个。")
    c1, c2 = sizes["channels"]
    check(conv_params == (1 * 9 + 1) * c1 + (c1 * 9 + 1) * c2,
          "卷积层参数 = (输入通道 x 3 x 3 + 1) x 输出通道，与图像大小无关")


def augmentation(folder, sizes, out):
    section("4. 数据增强：训练时随机旋转、平移")
    normalize = [T.ToTensor(), T.Normalize((0.1307,), (0.3081,))]
    plain = T.Compose(normalize)
    augmented = T.Compose([T.RandomAffine(10, translate=(0.1, 0.1)), *normalize])
    print("增强：每个 batch 的每张图各自随机旋转 ±10 度、平移最多 28 x 10% = 2.8 像素（取整到 ±3）。")
    print("模型每个 epoch 看到的都是略有不同的图，学到的是'数字的样子'而不是像素的位置。")
    test = MNIST(folder, train=False, transform=plain)
    test_x = Subset(test, range(min(sizes["n_test"], len(test))))
    shift = T.RandomAffine(0, translate=(3 / 28, 3 / 28), generator=np.random.default_rng(1))
    shifted = T.Compose([shift, *normalize])
    test_shifted = Subset(MNIST(folder, train=False, transform=shifted), test_x.indices)
    results = {}
    for name, transform in (("不增强", plain), ("增强", augmented)):
        train = MNIST(folder, transform=transform)
        train = Subset(train, range(min(sizes["n_train"], len(train))))
        model, seconds = train_cnn(train, sizes)
        results[name] = (evaluate(model, test_x), evaluate(model, test_shifted), seconds)
    print(f"\n{'':8}{'测试集':>10}{'平移 ±3 像素的测试集':>22}{'训练用时':>10}")
    for name, (acc, acc_shifted, seconds) in results.items():
        print(f"{name:8}{acc:>11.2%}{acc_shifted:>20.2%}{seconds:>11.1f} 秒")
    gain = results["增强"][1] - results["不增强"][1]
    print(f"\n在平移过的测试图上，增强让准确率变化了 {gain:+.2%}。")
    check(gain > 0, "在平移过的测试集上，用增强训练的 CNN 更准")
    check(results["增强"][0] > 0.8, "用增强训练的 CNN 在原测试集上准确率高于 80%")
    sample = next(iter(DataLoader(Subset(MNIST(folder, transform=augmented), range(8)), 8)))[0]
    save_examples(sample.numpy(), out / "augmented.png")


def train_cnn(train, sizes):
    tg.manual_seed(0)
    model = CNN(channels=sizes["channels"], hidden=sizes["hidden"])
    optimizer = optim.Adam(model.parameters(), lr=sizes["lr"])
    loader = DataLoader(train, batch_size=sizes["batch_size"], shuffle=True)
    start = time.perf_counter()
    for epoch in range(sizes["epochs"]):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model, time.perf_counter() - start


def evaluate(model, dataset):
    model.eval()
    with tg.no_grad():
        scores = [(model(x).numpy(), y.numpy()) for x, y in DataLoader(dataset, 250)]
    model.train()
    return accuracy(np.concatenate([s for s, _ in scores]), np.concatenate([y for _, y in scores]))


def save_examples(images, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(images), figsize=(1.5 * len(images), 1.8))
    for ax, image in zip(axes, images):
        ax.imshow(image[0], cmap="gray")
        ax.axis("off")
    fig.suptitle("augmented training images")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"增强后的训练图保存在 {path}")


if __name__ == "__main__":
    main()

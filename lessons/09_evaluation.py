"""第 9 课：评估模型 —— Trainer、验证集、精确率/召回率/F1、混淆矩阵、交叉验证、早停

在仓库根目录运行：

    python lessons/09_evaluation.py                  # 完整版：一两分钟
    python lessons/09_evaluation.py --quick          # 精简版（冒烟测试用），几秒
    python lessons/09_evaluation.py --data 目录      # 指定 MNIST 四个文件所在的目录

"准确率 98%"这句话要可信，得回答：在哪些数据上量的？调参时偷看过它吗？哪些
类别错得多？这一课：

  1. 验证集：从训练数据里分出一块，调参、挑模型只看它，测试集留到最后；
  2. Trainer：把第 7 课的手写循环加上评估、保存最好的模型、进度条、日志；
  3. 精确率、召回率、F1 和混淆矩阵：准确率之外，看清每一类；
  4. k 折交叉验证：数据少时，让每个样本都轮流当一次验证数据；
  5. 早停：验证损失不再下降时停下来，防止过拟合。
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import transforms as T  # noqa: E402
from tinygrad_zh.datasets import MNIST  # noqa: E402
from tinygrad_zh.metrics import (accuracy, classification_report, confusion_matrix,  # noqa: E402
                                 precision_recall_f1)
from tinygrad_zh.models import MLP  # noqa: E402
from tinygrad_zh.train import Trainer, TrainingArguments  # noqa: E402
from tinygrad_zh.train.plots import plot_confusion_matrix, plot_misclassified  # noqa: E402
from tinygrad_zh.utils.data import Subset, random_split  # noqa: E402
from common import check, section  # noqa: E402
from mnist_data import load_mnist  # noqa: E402

TO_INPUT = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])


def main():
    parser = argparse.ArgumentParser(description="第 9 课：评估模型")
    parser.add_argument("--quick", action="store_true", help="少量数据（冒烟测试用）")
    parser.add_argument("--data", help="放着 MNIST 四个 IDX 文件的目录")
    parser.add_argument("--out", default="lesson_output/09", help="图片与 Trainer 输出目录")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        sizes = dict(n_train=1024, n_test=500, epochs=2, hidden=[32], folds=3, fold_pool=300,
                     small=256)
    else:
        sizes = dict(n_train=22000, n_test=10000, epochs=8, hidden=[256, 128], folds=5,
                     fold_pool=3000, small=1000)
    *_, folder, _ = load_mnist(args.data, sizes["n_train"], sizes["n_test"], out)
    train_full = MNIST(folder, transform=TO_INPUT)
    test = MNIST(folder, train=False, transform=TO_INPUT)
    test = Subset(test, range(min(sizes["n_test"], len(test))))
    pool = Subset(train_full, range(min(sizes["n_train"], len(train_full))))

    train_set, val_set = validation_split(pool)
    trainer = train_with_trainer(train_set, val_set, sizes, out, args.quick)
    per_class_metrics(trainer, test, out)
    cross_validation(Subset(train_full, range(sizes["fold_pool"])), sizes, out)
    early_stopping(Subset(train_full, range(sizes["small"])), val_set, sizes, out)
    print(f"\n图片和 Trainer 的输出（history.jsonl、loss_curve.png、checkpoint）在 {out}/")
    print("全部检查通过")


def validation_split(pool):
    section("1. 验证集")
    n_val = len(pool) // 10
    train_set, val_set = random_split(pool, [len(pool) - n_val, n_val],
                                      generator=np.random.default_rng(0))
    print(f"{len(pool)} 张训练图随机分成 {len(train_set)} 张训练 + {len(val_set)} 张验证。")
    print("挑学习率、挑 epoch、挑模型都只看验证集；测试集只在最后量一次，")
    print("否则我们会不知不觉地把模型'调'得适合测试集，报出的准确率就偏高了。")
    check(not set(train_set.indices) & set(val_set.indices), "训练集和验证集没有共同的样本")
    return train_set, val_set


def compute_metrics(prediction):
    """Trainer 每次评估时调用：输入所有验证样本的输出分数和标签，返回要记录的数。"""
    _, _, f1 = precision_recall_f1(prediction.label_ids, prediction.predictions.argmax(1),
                                   num_classes=10, average="macro")
    return {"accuracy": accuracy(prediction.predictions, prediction.label_ids), "macro_f1": f1}


def train_with_trainer(train_set, val_set, sizes, out, quick):
    section("2. Trainer：训练循环 + 评估 + 保存最好的模型")
    tg.manual_seed(0)
    model = MLP(784, sizes["hidden"], 10, dropout=0.1)
    args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=sizes["epochs"],
        per_device_train_batch_size=64, per_device_eval_batch_size=500, learning_rate=1e-3,
        lr_scheduler_type="cosine", warmup_ratio=0.05, weight_decay=0.01,
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=1, logging_steps=10,
        load_best_model_at_end=True, metric_for_best_model="accuracy", disable_tqdm=quick)
    print("TrainingArguments 的名字和 Hugging Face transformers 的一样：")
    for name in ("num_train_epochs", "per_device_train_batch_size", "learning_rate",
                 "lr_scheduler_type", "warmup_ratio", "weight_decay", "eval_strategy",
                 "load_best_model_at_end", "metric_for_best_model"):
        print(f"  {name} = {getattr(args, name)!r}")
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=val_set,
                      compute_metrics=compute_metrics)
    trainer.train()
    evals = [h for h in trainer.state["log_history"] if "eval_accuracy" in h]
    print("\n每个 epoch 结束时在验证集上的结果：")
    for h in evals:
        print(f"  epoch {h['epoch']:.0f}: 验证损失 {h['eval_loss']:.4f}，"
              f"准确率 {h['eval_accuracy']:.2%}，宏平均 F1 {h['eval_macro_f1']:.4f}")
    best = max(evals, key=lambda h: h["eval_accuracy"])
    again = trainer.evaluate()
    print(f"最好的是第 {best['epoch']:.0f} 个 epoch；训练结束时 Trainer 从 "
          f"{Path(trainer.state['best_model_checkpoint']).name} 载回了它。")
    check(again["eval_accuracy"] == best["eval_accuracy"],
          "载回的模型在验证集上的准确率等于记录里最好的那次")
    history = (out / "trainer" / "history.jsonl").read_text().splitlines()
    check(len(history) == len(trainer.state["log_history"]) and json.loads(history[0])["step"] > 0,
          "history.jsonl 里每行一条日志（JSON）")
    return trainer


def per_class_metrics(trainer, test, out):
    section("3. 精确率、召回率、F1、混淆矩阵（测试集，最后才看）")
    prediction = trainer.predict(test)
    y_true, y_pred = prediction.label_ids, prediction.predictions.argmax(1)
    print(f"测试准确率 {prediction.metrics['test_accuracy']:.2%}。每一类：")
    print(classification_report(y_true, y_pred, num_classes=10))
    print("精确率 = 说它是 k 的样本里，真是 k 的比例；召回率 = 真是 k 的样本里，被认出来的比例；")
    print("F1 = 2 TP / (2 TP + FP + FN)，两者的调和平均。从来没被预测过的类，精确率是 0/0，")
    print("按 scikit-learn 的约定记为 0（zero_division=0）。")
    cm = confusion_matrix(y_true, y_pred, num_classes=10)
    print("混淆矩阵（行：真实类别，列：预测类别）：")
    print(cm)
    tp = np.diag(cm)
    f1_from_cm = 2 * tp / np.maximum(cm.sum(0) + cm.sum(1), 1)
    _, _, f1 = precision_recall_f1(y_true, y_pred, num_classes=10)
    check(np.allclose(f1, f1_from_cm), "由混淆矩阵手算的每类 F1 与 precision_recall_f1 一致")
    check(cm.sum() == len(y_true) and np.isclose(np.trace(cm) / cm.sum(),
                                                 prediction.metrics["test_accuracy"]),
          "混淆矩阵对角线之和 / 总数 = 准确率")
    worst = int(np.argmin(f1))
    wrong = np.where(np.arange(10) == worst, -1, cm[worst])  # the row without the diagonal
    confused = int(np.argmax(wrong))
    print(f"F1 最低的是数字 {worst}，它最常被认成 {confused}。")
    plot_confusion_matrix(cm, out / "confusion_matrix.png")
    plot_misclassified(test.dataset.data[test.indices], y_true, y_pred, out / "misclassified.png")
    print(f"混淆矩阵和认错的图：{out / 'confusion_matrix.png'}、{out / 'misclassified.png'}")


def cross_validation(pool, sizes, out):
    section(f"4. {sizes['folds']} 折交叉验证")
    k, n = sizes["folds"], len(pool)
    order = np.random.default_rng(1).permutation(n)
    folds = np.array_split(order, k)
    print(f"{n} 个样本随机分成 {k} 份；每次拿一份做验证、其余 {k - 1} 份训练，共训练 {k} 次。")
    scores = []
    for i, held_out in enumerate(folds):
        rest = np.concatenate([f for j, f in enumerate(folds) if j != i])
        tg.manual_seed(0)
        args = TrainingArguments(output_dir=str(out / "cv"), num_train_epochs=2,
                                 per_device_train_batch_size=32, per_device_eval_batch_size=500,
                                 learning_rate=3e-3, lr_scheduler_type="constant",
                                 save_strategy="no", logging_steps=1000,
                                 disable_tqdm=True)
        trainer = Trainer(MLP(784, sizes["hidden"], 10), args,
                          train_dataset=Subset(pool, rest), compute_metrics=compute_metrics)
        trainer.train()
        scores.append(trainer.evaluate(Subset(pool, held_out))["eval_accuracy"])
        print(f"  第 {i + 1} 折：训练 {len(rest)}，验证 {len(held_out)}，准确率 {scores[-1]:.2%}")
    print(f"平均 {np.mean(scores):.2%}，标准差 {np.std(scores):.2%}：这个标准差告诉我们，")
    print("只用一次划分得到的准确率，本身会随划分而上下浮动多少。")
    check(sorted(np.concatenate(folds).tolist()) == list(range(n)),
          f"{k} 份恰好覆盖每个样本一次")


def early_stopping(small_train, val_set, sizes, out):
    section("5. 早停")
    patience, max_epochs = 2, 30
    print(f"只用 {len(small_train)} 张图训练、最多 {max_epochs} 个 epoch。模型很快就学到了这点数据能")
    print("教给它的东西，之后验证准确率不再上升，只是上下波动（再练下去就是过拟合）。")
    print(f"early_stopping_patience={patience}：连续 {patience} 次评估都没有超过最好的一次，就停下来。")
    tg.manual_seed(0)
    args = TrainingArguments(output_dir=str(out / "early_stopping"), num_train_epochs=max_epochs,
                             per_device_train_batch_size=32, per_device_eval_batch_size=500,
                             learning_rate=3e-3, lr_scheduler_type="constant",
                             eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
                             load_best_model_at_end=True, metric_for_best_model="accuracy",
                             early_stopping_patience=patience, logging_steps=1000,
                             disable_tqdm=True)
    trainer = Trainer(MLP(784, sizes["hidden"], 10), args, train_dataset=small_train,
                      eval_dataset=val_set, compute_metrics=compute_metrics)
    trainer.train()
    scores = [h["eval_accuracy"] for h in trainer.state["log_history"] if "eval_accuracy" in h]
    print("每个 epoch 的验证准确率：", " ".join(f"{v:.1%}" for v in scores))
    best_epoch = int(np.argmax(scores)) + 1  # the first of equal maxima, as the Trainer keeps it
    print(f"最好的是第 {best_epoch} 个 epoch，训练在第 {len(scores)} 个 epoch 后停下，"
          f"并载回了第 {best_epoch} 个 epoch 的模型。")
    check(len(scores) < max_epochs, f"早停生效：{len(scores)} 个 epoch 就停了，没有跑满 {max_epochs} 个")
    check(len(scores) == best_epoch + patience,
          f"停下时恰好是最好的一次之后又评估了 {patience} 次")


if __name__ == "__main__":
    main()

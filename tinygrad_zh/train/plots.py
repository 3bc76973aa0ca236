"""Pictures of a training run, saved as PNG: curves, the confusion matrix, the mistakes.

matplotlib draws off-screen (the "Agg" backend), so these work on a server and
in tests. Each function writes one file and returns its path.

    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> path = plot_confusion_matrix(np.array([[5, 1], [0, 4]]), Path(tempfile.mkdtemp(), "cm.png"))
    >>> path.stat().st_size > 0
    True
"""
from pathlib import Path

import numpy as np

from ..metrics import _array

__all__ = ["plot_training_curves", "plot_confusion_matrix", "plot_misclassified"]


def plot_training_curves(history, path, title="training curves"):
    """Loss (and accuracy, when logged) against the step: training vs validation.

    ``history`` is a list of dicts as the Trainer writes them: each has a
    ``step`` and some of ``loss``, ``eval_loss``, ``eval_accuracy``, ``accuracy``.
    """
    plt = _pyplot()
    has_accuracy = any("accuracy" in key for row in history for key in row)
    fig, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(11 if has_accuracy else 6, 4),
                             squeeze=False)
    panels = [("loss", "eval_loss", "loss")]
    if has_accuracy:
        panels.append(("accuracy", "eval_accuracy", "accuracy"))
    for ax, (train_key, eval_key, label) in zip(axes[0], panels):
        for key, name in ((train_key, "train"), (eval_key, "validation")):
            points = [(row["step"], row[key]) for row in history if key in row]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o" if len(points) < 30 else None, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def plot_confusion_matrix(cm, path, class_names=None, title="confusion matrix"):
    """The matrix as a heat map, rows = true class, columns = predicted, counts written in."""
    plt = _pyplot()
    cm = np.asarray(cm)
    n = len(cm)
    names = class_names or [str(k) for k in range(n)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def plot_misclassified(images, targets, preds, path, class_names=None, max_images=25):
    """A grid of the images the model got wrong, each titled "true -> predicted".

    ``images``: ``(N, H, W)`` or ``(N, 1, H, W)``; only samples with
    ``targets != preds`` are drawn, at most ``max_images`` of them.
    """
    plt = _pyplot()
    images, targets, preds = (_array(a) for a in (images, targets, preds))  # GPU ones too
    wrong = np.flatnonzero(targets != preds)[:max_images]
    names = class_names or [str(k) for k in range(int(max(targets.max(), preds.max())) + 1)]
    cols = max(1, min(5, len(wrong)))
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(images[i].reshape(images.shape[-2:]), cmap="gray")
        ax.set_title(f"{names[targets[i]]} -> {names[preds[i]]}", fontsize=8)
    fig.suptitle(f"{len(wrong)} misclassified (true -> predicted)")
    return _save(fig, path)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path

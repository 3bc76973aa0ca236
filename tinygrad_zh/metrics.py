"""Classification metrics: accuracy, precision / recall / F1, confusion matrix, top-k.

Everything starts from the confusion matrix ``C``: ``C[i, j]`` counts the samples
of true class i that the model called j (rows: truth, columns: prediction, as in
scikit-learn). For one class k:

    TP = C[k, k]          FP = column k minus TP          FN = row k minus TP
    precision = TP / (TP + FP)   "when the model says k, how often is it right?"
    recall    = TP / (TP + FN)   "of all the real k, how many did it find?"
    F1        = 2 TP / (2 TP + FP + FN)   (the harmonic mean of the two)

A class the model never predicts has TP + FP = 0: its precision is 0/0. As in
scikit-learn, that value is ``zero_division`` (default 0; scikit-learn's default
"warn" also gives 0, with a warning). The classes are ``0 .. num_classes-1``
(scikit-learn's ``labels=range(num_classes)``), so a class missing from both
the truth and the predictions still counts in the macro average.

    >>> y_true = [0, 0, 1, 1, 2]
    >>> y_pred = [0, 1, 1, 1, 1]                  # class 2 is never predicted
    >>> confusion_matrix(y_true, y_pred)
    array([[1, 1, 0],
           [0, 2, 0],
           [0, 1, 0]])
    >>> precision_recall_f1(y_true, y_pred)[0]    # per class; class 2: 0/0 -> 0
    array([1. , 0.5, 0. ])

Inputs may be Tensors, NumPy arrays or lists; predictions may be class ids or
scores ``(N, C)`` (then the arg-max is taken). The plots live in
``tinygrad_zh.train.plots``.
"""
import numpy as np

from .tensor import Tensor

__all__ = ["accuracy", "top_k_accuracy", "confusion_matrix", "precision_recall_f1",
           "classification_report"]


def accuracy(pred, target):
    """The fraction of samples whose predicted class equals the target.

        >>> accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 0, 0])
        0.6666666666666666
    """
    pred, target = _labels(pred, target, "accuracy")
    return float(np.mean(pred == target)) if len(target) else 0.0


def top_k_accuracy(scores, target, k=5):
    """The fraction of samples whose target is among the ``k`` highest scores.

        >>> top_k_accuracy([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]], [1, 0], k=2)
        0.5
    """
    scores, target = _array(scores), _array(target)
    if scores.ndim != 2 or len(scores) != len(target) or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"top_k_accuracy: expects scores (N, C) and targets (N,) with "
                         f"1 <= k <= C; got shapes {scores.shape}, {target.shape} and k={k}")
    top_k = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top_k == target[:, None], axis=1))) if len(target) else 0.0


def confusion_matrix(target, pred, num_classes=None):
    """``C[i, j]`` = number of samples of true class i predicted as class j."""
    pred, target = _labels(pred, target, "confusion_matrix")
    n = _num_classes(num_classes, target, pred)
    return np.bincount(target * n + pred, minlength=n * n).reshape(n, n)


def precision_recall_f1(target, pred, num_classes=None, average=None, zero_division=0.0):
    """Precision, recall and F1 per class, or averaged.

    ``average``: None (one value per class), ``'macro'`` (plain mean over the
    classes), ``'weighted'`` (mean weighted by each class's number of true
    samples) or ``'micro'`` (from the summed counts; equals accuracy for
    single-label data). ``zero_division``: the value of a 0/0 (see the module
    docstring).

        >>> p, r, f = precision_recall_f1([0, 0, 1, 1, 2], [0, 1, 1, 1, 1], average="macro")
        >>> round(p, 4), round(r, 4), round(f, 4)
        (0.5, 0.5, 0.4444)
    """
    cm = confusion_matrix(target, pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    if average == "micro":
        tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
    precision = _divide(tp, tp + fp, zero_division)
    recall = _divide(tp, tp + fn, zero_division)
    f1 = _divide(2 * tp, 2 * tp + fp + fn, zero_division)
    if average is None:
        return precision, recall, f1
    if average in ("macro", "micro"):
        weights = np.ones_like(tp)
    elif average == "weighted":
        weights = cm.sum(axis=1).astype(np.float64)
    else:
        raise ValueError(f"precision_recall_f1: average must be None, 'macro', 'weighted' "
                         f"or 'micro', got {average!r}")
    if weights.sum() == 0:
        return (float(zero_division),) * 3
    return tuple(float(np.average(m, weights=weights)) for m in (precision, recall, f1))


def classification_report(target, pred, class_names=None, num_classes=None):
    """A text table: precision, recall, F1 and support per class, then the averages.

        >>> print(classification_report([0, 1, 1], [0, 1, 0], class_names=["cat", "dog"]))
                      precision  recall      f1  support
        cat               0.500   1.000   0.667        1
        dog               1.000   0.500   0.667        2
        accuracy                          0.667        3
        macro avg         0.750   0.750   0.667        3
        weighted avg      0.833   0.667   0.667        3
    """
    cm = confusion_matrix(target, pred, num_classes)
    names = class_names or [str(k) for k in range(len(cm))]
    support = cm.sum(axis=1)
    lines = [f"{'':12}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}"]
    for name, p, r, f, s in zip(names, *precision_recall_f1(target, pred, len(cm)), support):
        lines.append(f"{name:12}  {p:9.3f}  {r:6.3f}  {f:6.3f}  {s:7d}")
    lines.append(f"{'accuracy':12}  {'':9}  {'':6}  {accuracy(pred, target):6.3f}  "
                 f"{support.sum():7d}")
    for average in ("macro", "weighted"):
        p, r, f = precision_recall_f1(target, pred, len(cm), average=average)
        lines.append(f"{average + ' avg':12}  {p:9.3f}  {r:6.3f}  {f:6.3f}  {support.sum():7d}")
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _array(x):
    if isinstance(x, Tensor):
        x = x.detach().cpu().data
    return np.asarray(x)


def _labels(pred, target, name):
    """Integer class ids for both; scores ``(N, C)`` become their arg-max."""
    pred, target = _array(pred), _array(target)
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(axis=-1)
    if pred.shape != target.shape:
        raise ValueError(f"{name}: predictions of shape {pred.shape} do not match targets of "
                         f"shape {target.shape} (give class ids (N,) or scores (N, C))")
    for what, a in (("predictions", pred), ("targets", target)):
        if a.dtype.kind not in "iub" or (a.size and a.min() < 0):
            raise ValueError(f"{name}: {what} must be non-negative class ids, got dtype "
                             f"{a.dtype}" + (f" with minimum {a.min()}" if a.size else ""))
    return pred.astype(np.int64).ravel(), target.astype(np.int64).ravel()


def _num_classes(num_classes, *labels):
    seen = max((int(a.max()) + 1 for a in labels if a.size), default=0)
    if num_classes is None:
        return seen
    if seen > num_classes:
        raise ValueError(f"class id {seen - 1} is out of range for num_classes={num_classes}")
    return num_classes


def _divide(numerator, denominator, zero_division):
    safe = np.where(denominator == 0, 1, denominator)
    return np.where(denominator == 0, float(zero_division), numerator / safe)

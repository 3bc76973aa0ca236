"""metrics: hand-computed values (incl. a class never predicted), and a randomized
comparison with an independent per-class loop written from the definitions."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from tinygrad_zh.metrics import (accuracy, classification_report, confusion_matrix,
                                 precision_recall_f1, top_k_accuracy)

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)

# Truth and predictions for 3 classes; class 2 is never predicted, class 1 is
# predicted for a class-0 and a class-2 sample.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 1, 0]


def test_confusion_matrix_by_hand():
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED),
                                  [[2, 1, 0], [0, 2, 0], [1, 1, 0]])
    assert confusion_matrix([1], [1], num_classes=4).shape == (4, 4)


def test_per_class_values_by_hand():
    p, r, f = precision_recall_f1(Y_TRUE, Y_PRED)
    # class 0: TP 2, FP 1, FN 1 | class 1: TP 2, FP 2, FN 0 | class 2: TP 0, FP 0, FN 2
    np.testing.assert_allclose(p, [2 / 3, 2 / 4, 0.0])  # class 2: 0/0 -> zero_division
    np.testing.assert_allclose(r, [2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(f, [2 * 2 / (4 + 1 + 1), 2 * 2 / (4 + 2), 0.0])
    p1, _, _ = precision_recall_f1(Y_TRUE, Y_PRED, zero_division=1)
    assert p1[2] == 1.0  # the 0/0 of a never-predicted class, as scikit-learn's zero_division=1


def test_averages_by_hand():
    p, r, f = precision_recall_f1(Y_TRUE, Y_PRED, average="macro")
    assert p == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert r == pytest.approx((2 / 3 + 1 + 0) / 3)
    p, r, f = precision_recall_f1(Y_TRUE, Y_PRED, average="weighted")  # supports 3, 2, 2
    assert p == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 2 * 0) / 7)
    assert r == pytest.approx((3 * 2 / 3 + 2 * 1 + 0) / 7)
    p, r, f = precision_recall_f1(Y_TRUE, Y_PRED, average="micro")
    assert p == r == f == pytest.approx(4 / 7) == accuracy(Y_PRED, Y_TRUE)


def test_a_class_absent_everywhere_counts_in_the_macro_average():
    p, r, f = precision_recall_f1([0, 1], [0, 1], num_classes=3, average="macro")
    assert (p, r, f) == pytest.approx((2 / 3, 2 / 3, 2 / 3))  # class 2: 0/0 -> 0 each


def test_accuracy_and_top_k_by_hand():
    scores = tg.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    target = tg.tensor([2, 0, 1, 2])
    assert accuracy(scores, target) == 0.25  # argmax of each row: 1, 0, 2, 0
    assert top_k_accuracy(scores, target, k=1) == 0.25
    assert top_k_accuracy(scores, target, k=2) == 0.75
    assert top_k_accuracy(scores, target, k=3) == 1.0


def test_classification_report_lists_every_class():
    report = classification_report(Y_TRUE, Y_PRED, class_names=["a", "b", "c"])
    assert report.splitlines()[3].split() == ["c", "0.000", "0.000", "0.000", "2"]
    assert "accuracy" in report and "weighted avg" in report


@pytest.mark.parametrize("call, message", [
    (lambda: accuracy([0, 1], [0, 1, 1]), r"predictions of shape \(2,\) do not match targets"),
    (lambda: confusion_matrix([0, -1], [0, 1]), "targets must be non-negative class ids"),
    (lambda: confusion_matrix([0.5], [0]), "targets must be non-negative class ids, got dtype"),
    (lambda: confusion_matrix([0, 3], [0, 1], num_classes=3), "class id 3 is out of range"),
    (lambda: precision_recall_f1([0], [0], average="mean"), "average must be None, 'macro'"),
    (lambda: top_k_accuracy([[0.1, 0.9]], [0], k=3), "1 <= k <= C"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def reference_metrics(y_true, y_pred, n):
    """Precision, recall, F1 per class from the definitions, one class at a time."""
    rows = []
    for k in range(n):
        tp = sum(t == k and p == k for t, p in zip(y_true, y_pred))
        predicted = sum(p == k for p in y_pred)
        actual = sum(t == k for t in y_true)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * tp / (predicted + actual) if predicted + actual else 0.0
        rows.append((precision, recall, f1, actual))
    return np.array(rows)


@FAST
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                         min_size=1, max_size=30))))
def test_matches_a_per_class_reference(case):
    n, pairs = case
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    ref = reference_metrics(y_true, y_pred, n)
    per_class = precision_recall_f1(y_true, y_pred, num_classes=n)
    np.testing.assert_allclose(np.stack(per_class, axis=1), ref[:, :3])
    np.testing.assert_allclose(precision_recall_f1(y_true, y_pred, n, average="macro"),
                               ref[:, :3].mean(axis=0))
    np.testing.assert_allclose(precision_recall_f1(y_true, y_pred, n, average="weighted"),
                               (ref[:, :3] * ref[:, 3:]).sum(axis=0) / ref[:, 3].sum())
    cm = confusion_matrix(y_true, y_pred, n)
    assert cm.sum() == len(pairs) and np.trace(cm) == sum(t == p for t, p in pairs)

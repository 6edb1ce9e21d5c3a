"""recognize_me.evaluation.metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recognize_me.evaluation.metrics import binarize, majority_predictions, per_attribute_metrics, summarize

# Column A: tp=1 fn=2 fp=1 tn=4.   Column B: tp=3 fn=1 fp=1 tn=3.
Y_TRUE = np.array([[1, 0], [1, 1], [1, 0], [0, 1], [0, 0], [0, 0], [0, 1], [0, 1]])
Y_PRED = np.array([[1, 1], [0, 1], [0, 0], [1, 1], [0, 0], [0, 0], [0, 1], [0, 0]])


def test_hand_computed_metrics() -> None:
    table = per_attribute_metrics(Y_TRUE, Y_PRED, ["A", "B"])
    assert table["attribute"].tolist() == ["A", "B"]
    a, b = table.iloc[0], table.iloc[1]
    assert a["accuracy"] == pytest.approx(5 / 8)
    assert a["balanced_accuracy"] == pytest.approx((1 / 3 + 4 / 5) / 2)
    assert a["precision"] == pytest.approx(1 / 2)
    assert a["recall"] == pytest.approx(1 / 3)
    assert a["f1"] == pytest.approx(2 / 5)
    assert a["prevalence"] == pytest.approx(3 / 8)
    assert b["accuracy"] == pytest.approx(6 / 8)
    assert b["balanced_accuracy"] == pytest.approx(3 / 4)
    assert b["precision"] == pytest.approx(3 / 4)
    assert b["recall"] == pytest.approx(3 / 4)
    assert b["f1"] == pytest.approx(3 / 4)
    assert b["prevalence"] == pytest.approx(1 / 2)


def test_summarize_means() -> None:
    s = summarize(per_attribute_metrics(Y_TRUE, Y_PRED, ["A", "B"]))
    assert s["mean_accuracy"] == pytest.approx((5 / 8 + 6 / 8) / 2)
    assert s["mean_balanced_accuracy"] == pytest.approx(((1 / 3 + 4 / 5) / 2 + 3 / 4) / 2)
    assert s["mean_f1"] == pytest.approx((2 / 5 + 3 / 4) / 2)
    assert all(isinstance(v, float) for v in s.values())


def test_perfect_prediction() -> None:
    table = per_attribute_metrics(Y_TRUE, Y_TRUE, ["A", "B"])
    for column in ("accuracy", "balanced_accuracy", "precision", "recall", "f1"):
        assert table[column].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("constant", [0, 1])
def test_constant_predictor_has_balanced_accuracy_one_half(constant: int) -> None:
    table = per_attribute_metrics(Y_TRUE, np.full_like(Y_TRUE, constant), ["A", "B"])
    assert table["balanced_accuracy"].tolist() == [0.5, 0.5]
    expected_accuracy = [3 / 8, 4 / 8] if constant else [5 / 8, 4 / 8]
    assert table["accuracy"].tolist() == pytest.approx(expected_accuracy)
    if constant == 0:  # nothing predicted positive: precision, recall and F1 are 0 (no division by zero)
        assert table["precision"].tolist() == [0.0, 0.0] and table["f1"].tolist() == [0.0, 0.0]


def test_class_absent_from_truth() -> None:
    y_true = np.ones((4, 1), int)
    table = per_attribute_metrics(y_true, np.ones((4, 1), int), ["A"])
    assert table["balanced_accuracy"].iloc[0] == 1.0  # the absent class counts as recalled
    table = per_attribute_metrics(y_true, np.array([[1], [1], [0], [0]]), ["A"])
    assert table["balanced_accuracy"].iloc[0] == pytest.approx((0.5 + 1.0) / 2)


def test_majority_baseline() -> None:
    y_train = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]])  # means 0.75, 0.25, 0.5
    pred = majority_predictions(y_train, 5)
    assert pred.shape == (5, 3) and pred.dtype == np.int8
    assert (pred == np.array([1, 0, 1])).all()  # a tie goes to the positive class
    table = per_attribute_metrics(np.array([[1, 0, 0], [0, 1, 1]]), majority_predictions(y_train, 2), "xyz")
    assert table["accuracy"].tolist() == [0.5, 0.5, 0.5]
    assert table["balanced_accuracy"].tolist() == [0.5, 0.5, 0.5]


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        per_attribute_metrics(Y_TRUE, Y_PRED[:, :1], ["A", "B"])
    with pytest.raises(ValueError, match="shapes differ"):
        per_attribute_metrics(Y_TRUE, Y_PRED[:-1], ["A", "B"])
    with pytest.raises(ValueError, match="3 names"):
        per_attribute_metrics(Y_TRUE, Y_PRED, ["A", "B", "C"])


def test_binarize_with_scalar_and_per_attribute_thresholds() -> None:
    scores = np.array([[0.2, 0.6], [0.5, 0.4]])
    assert binarize(scores).tolist() == [[0, 1], [1, 0]]
    assert binarize(scores, np.array([0.1, 0.7])).tolist() == [[1, 0], [1, 0]]
    assert binarize(scores).dtype == np.int8

"""recognize_me.evaluation.metrics: rank-based ROC AUC, the ROC curve and the binary confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recognize_me.evaluation.metrics import binary_confusion, roc_auc, roc_curve


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(equal), by brute force."""
    pos, neg = s[y > 0], s[y <= 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_perfect_reversed_and_tied_scores() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])) == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.3])) == 0.0
    assert roc_auc(y, np.full(6, 0.4)) == 0.5


def test_partial_ties_count_half() -> None:
    # pos {0.5, 0.9}, neg {0.5, 0.1}: pairs (0.5,0.5) tie=0.5, (0.5,0.1)=1, (0.9,*)=1 each -> 3.5/4
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.5, 0.9, 0.5, 0.1])) == pytest.approx(0.875)


def test_matches_brute_force_on_random_scores_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 40)
        y[:2] = [0, 1]  # both classes present
        s = rng.integers(0, 8, 40) / 8.0  # many ties
        assert roc_auc(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)


def test_accepts_column_arrays_and_minus_one_labels() -> None:
    y = np.array([[-1], [1], [-1], [1]])
    s = np.array([[0.2], [0.6], [0.4], [0.3]])
    assert roc_auc(y, s) == pytest.approx(0.75)


def test_single_class_is_nan_and_bad_input_raises() -> None:
    assert math.isnan(roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))
    assert math.isnan(roc_auc(np.zeros(3), np.array([0.1, 0.2, 0.3])))
    with pytest.raises(ValueError, match="NaN"):
        roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="values"):
        roc_auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))


def test_roc_curve_shape_and_area() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.random(50), 1)
    fpr, tpr, thresholds = roc_curve(y, s)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and thresholds[0] == np.inf
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thresholds) < 0)
    assert len(thresholds) == len(np.unique(s)) + 1
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc(y, s), abs=1e-12)


def test_roc_curve_points_are_rates_at_each_threshold() -> None:
    y = np.array([1, 0, 1, 0])
    fpr, tpr, thresholds = roc_curve(y, np.array([0.9, 0.8, 0.4, 0.1]))
    assert thresholds[1:].tolist() == [0.9, 0.8, 0.4, 0.1]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]


def test_binary_confusion_layout() -> None:
    cm = binary_confusion(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 1, 1, 0]))
    assert cm.tolist() == [[1, 2], [1, 1]]  # [[tn, fp], [fn, tp]]
    assert cm.sum() == 5

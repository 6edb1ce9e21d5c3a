"""Per-attribute threshold choice on validation scores."""

from __future__ import annotations

import numpy as np
import pytest

from recognize_me.training.thresholds import DEFAULT_GRID, choose_thresholds


def _metric(y: np.ndarray, pred: np.ndarray, metric: str) -> float:
    tp = np.sum(pred & y)
    tn = np.sum(~pred & ~y)
    fp = np.sum(pred & ~y)
    fn = np.sum(~pred & y)
    if metric == "accuracy":
        return (tp + tn) / y.size
    if metric == "balanced_accuracy":
        return (tp / max(tp + fn, 1) + tn / max(tn + fp, 1)) / 2
    return 2 * tp / max(2 * tp + fp + fn, 1)


def _reference(y_true: np.ndarray, scores: np.ndarray, grid: np.ndarray, metric: str) -> np.ndarray:
    """Column-by-column, threshold-by-threshold brute force with the documented tie rule."""
    out = []
    for k in range(y_true.shape[1]):
        y = y_true[:, k] > 0
        if y.all() or not y.any():
            out.append(0.5)
            continue
        values = np.array([_metric(y, scores[:, k] >= t, metric) for t in grid])
        best = [t for t, v in zip(grid, values, strict=True) if np.isclose(v, values.max(), rtol=1e-12, atol=1e-12)]
        out.append(min(best, key=lambda t: (abs(t - 0.5), t)))
    return np.array(out)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1"])
def test_separable_scores_threshold_between_classes(metric):
    # positives at 0.3, negatives at 0.1: the threshold must separate them
    y = np.array([1, 1, 1, 0, 0, 0, 0])[:, None]
    s = np.array([0.3, 0.3, 0.3, 0.1, 0.1, 0.1, 0.1])[:, None]
    (t,) = choose_thresholds(y, s, metric=metric)
    assert 0.1 < t <= 0.3
    assert np.array_equal(s[:, 0] >= t, y[:, 0] == 1)
    # ties go to the candidate closest to 0.5 inside the separating interval
    assert t == pytest.approx(0.3)


def test_ties_prefer_half():
    y = np.array([1, 0, 1, 0])[:, None]
    s = np.array([0.9, 0.1, 0.95, 0.05])[:, None]
    assert choose_thresholds(y, s)[0] == pytest.approx(0.5)


def test_single_class_columns_get_half():
    y = np.array([[0, 1, 1], [0, 1, 0], [0, 1, 1], [0, 1, 0]])
    s = np.array([[0.9, 0.2, 0.8], [0.7, 0.1, 0.2], [0.8, 0.3, 0.9], [0.6, 0.2, 0.1]])
    t = choose_thresholds(y, s)
    assert t[0] == 0.5  # no positives
    assert t[1] == 0.5  # no negatives
    assert 0.2 < t[2] <= 0.8


def test_metric_changes_the_choice_on_imbalanced_data():
    # 2 positives at 0.4; negatives: 5 at 0.1, 3 at 0.45
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])[:, None]
    s = np.array([0.4, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.45, 0.45, 0.45])[:, None]
    assert choose_thresholds(y, s, metric="accuracy")[0] == pytest.approx(0.5)  # predict all negative: 0.8
    assert choose_thresholds(y, s, metric="balanced_accuracy")[0] == pytest.approx(0.4)
    assert choose_thresholds(y, s, metric="f1")[0] == pytest.approx(0.4)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1"])
def test_vectorised_matches_per_column_brute_force(metric):
    rng = np.random.default_rng(0)
    n, k = 300, 6
    prevalence = np.array([0.05, 0.2, 0.5, 0.8, 0.0, 1.0])
    y = (rng.random((n, k)) < prevalence).astype(int)
    s = np.clip(0.35 * y + rng.normal(0.35, 0.2, (n, k)), 0, 1)
    got = choose_thresholds(y, s, metric=metric)
    assert got.shape == (k,)
    np.testing.assert_allclose(got, _reference(y, s, DEFAULT_GRID, metric))
    # each column's answer does not depend on the other columns
    for j in range(k):
        assert choose_thresholds(y[:, j:j + 1], s[:, j:j + 1], metric=metric)[0] == got[j]


def test_columns_get_their_own_thresholds_and_minus_one_labels_work():
    y = np.array([[1, -1], [1, 1], [-1, 1], [-1, -1]])
    s = np.array([[0.8, 0.1], [0.7, 0.25], [0.2, 0.3], [0.1, 0.05]])
    t = choose_thresholds(y, s)
    assert 0.2 < t[0] <= 0.7 and 0.1 < t[1] <= 0.25
    assert t[0] != t[1]


def test_custom_grid_and_one_dimensional_input():
    y = np.array([1, 1, 0, 0])
    s = np.array([0.8, 0.9, 0.3, 0.6])
    t = choose_thresholds(y, s, grid=np.array([0.2, 0.5, 0.7]))
    assert t.shape == (1,) and t[0] == pytest.approx(0.7)


def test_invalid_inputs_rejected():
    with pytest.raises(ValueError):
        choose_thresholds(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError):
        choose_thresholds(np.zeros((3, 2)), np.zeros((3, 2)), metric="auc")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        choose_thresholds(np.zeros((3, 2)), np.zeros((3, 2)), grid=np.array([]))


def test_evaluate_with_thresholds_accuracy_and_f1_tuned_separately():
    from recognize_me.training.thresholds import evaluate_with_thresholds

    # One rare attribute (20% positive) whose positives score 0.3-0.5 and negatives 0.0-0.45: the accuracy
    # threshold is high (few positives called), the F1 threshold lower (more positives called).
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.2).astype(int)
    s = np.where(y == 1, rng.uniform(0.3, 0.5, n), rng.uniform(0.0, 0.45, n))
    y2, s2 = y[:, None], s[:, None]
    table, summary = evaluate_with_thresholds(y2, s2, y2, s2, ["rare"], tune=True)
    t_acc, t_f1 = table["threshold"].iloc[0], table["threshold_f1"].iloc[0]
    assert t_f1 < t_acc
    assert summary["mean_accuracy"] == pytest.approx(((s >= t_acc) == (y == 1)).mean())
    assert summary["mean_f1"] == pytest.approx(table["f1_at_f1_threshold"].iloc[0])
    assert summary["mean_f1"] >= summary["at_accuracy_thresholds"]["mean_f1"]
    assert summary["mean_accuracy"] >= summary["at_f1_thresholds"]["mean_accuracy"]
    assert summary["mean_accuracy"] >= summary["at_threshold_0_5"]["mean_accuracy"]

    table, summary = evaluate_with_thresholds(y2, s2, y2, s2, ["rare"], tune=False)
    assert table["threshold"].iloc[0] == table["threshold_f1"].iloc[0] == 0.5
    assert summary["at_threshold_0_5"] == summary["at_accuracy_thresholds"] == summary["at_f1_thresholds"]

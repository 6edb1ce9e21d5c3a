"""Per-attribute decision thresholds chosen on validation scores (pure numpy)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

ThresholdMetric = Literal["accuracy", "balanced_accuracy", "f1"]
DEFAULT_GRID = np.linspace(0.05, 0.95, 91)
NEUTRAL_THRESHOLD = 0.5


def choose_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    grid: np.ndarray | None = None,
    metric: ThresholdMetric = "accuracy",
) -> np.ndarray:
    """Per column, the threshold from ``grid`` maximising ``metric`` when predicting ``score >= t``.

    Args:
        y_true: (N, K) labels; values > 0 are positives (0/1 and -1/1 both work). A 1-D array is one column.
        scores: (N, K) predicted probabilities, same shape as ``y_true``.
        grid: candidate thresholds (default ``np.linspace(0.05, 0.95, 91)``).
        metric: ``"accuracy"``, ``"balanced_accuracy"`` or ``"f1"``.

    Returns:
        (K,) float array. Ties go to the candidate closest to 0.5 (then the lower one). A column with
        no positives (or no negatives) on validation carries no information and gets 0.5.
    """
    y, s, candidates = _checked(y_true, scores, grid, metric)
    positive = y > 0
    n_pos = positive.sum(axis=0)  # (K,)
    n_neg = y.shape[0] - n_pos
    tp, predicted_pos = _counts(positive, s, candidates)
    fp = predicted_pos - tp
    fn = n_pos[None, :] - tp
    tn = n_neg[None, :] - fp
    value = _metric_values(metric, tp, fp, fn, tn, n_pos, n_neg)
    chosen = _best_nearest_half(value, candidates)
    degenerate = (n_pos == 0) | (n_neg == 0)
    return np.where(degenerate, NEUTRAL_THRESHOLD, chosen).astype("float64")


def _checked(y_true: np.ndarray, scores: np.ndarray, grid: np.ndarray | None,
             metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K) labels, (N, K) float64 scores and the candidate thresholds; ``ValueError`` on bad input."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype="float64")
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} must have the same shape")
    if y.ndim == 1:
        y, s = y[:, None], s[:, None]
    if y.ndim != 2:
        raise ValueError(f"expected (N, K) arrays, got shape {y.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if metric not in ("accuracy", "balanced_accuracy", "f1"):
        raise ValueError(f"unknown metric {metric!r}; use accuracy, balanced_accuracy or f1")
    candidates = DEFAULT_GRID if grid is None else np.asarray(grid, dtype="float64").reshape(-1)
    if candidates.size == 0:
        raise ValueError("grid must hold at least one threshold")
    return y, s, candidates


def _counts(positive: np.ndarray, s: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G, K) true positives and predicted positives per candidate threshold."""
    # (G, N, K) would be large for a full validation split; loop over the grid, vectorised over N, K.
    tp = np.empty((candidates.size, positive.shape[1]), dtype="int64")
    predicted_pos = np.empty_like(tp)
    for g, t in enumerate(candidates):
        pred = s >= t
        tp[g] = (pred & positive).sum(axis=0)
        predicted_pos[g] = pred.sum(axis=0)
    return tp, predicted_pos


def _metric_values(metric: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray,
                   n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return (tp + tn).astype("float64")  # counts: exact ties
        if metric == "balanced_accuracy":
            tpr = np.where(n_pos > 0, tp / np.maximum(n_pos, 1), 0.0)
            tnr = np.where(n_neg > 0, tn / np.maximum(n_neg, 1), 0.0)
            return (tpr + tnr) / 2.0
        denom = 2 * tp + fp + fn
        return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)


def _best_nearest_half(value: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per column, the best candidate; among the best, the smallest distance to 0.5, then the lower one."""
    best = value.max(axis=0, keepdims=True)
    is_best = np.isclose(value, best, rtol=1e-12, atol=1e-12)
    order = np.lexsort((candidates, np.abs(candidates - NEUTRAL_THRESHOLD)))
    ranked_best = is_best[order]  # (G, K) rows in preference order
    return candidates[order][ranked_best.argmax(axis=0)]


def evaluate_with_thresholds(y_val: np.ndarray, val_scores: np.ndarray, y_test: np.ndarray,
                             test_scores: np.ndarray, names: list[str], tune: bool) -> tuple[Any, dict[str, Any]]:
    """Test metrics at thresholds chosen on validation: for accuracy, thresholds tuned for accuracy; for F1,
    thresholds tuned for F1 (both 0.5 when ``tune`` is False).

    Returns the per-attribute table (metrics at the accuracy thresholds, plus ``threshold``,
    ``threshold_f1`` and ``f1_at_f1_threshold``) and a summary: ``mean_accuracy`` and
    ``mean_balanced_accuracy`` at the accuracy thresholds, ``mean_f1`` at the F1 thresholds, and the full
    summaries ``at_threshold_0_5``, ``at_accuracy_thresholds``, ``at_f1_thresholds``.
    """
    from recognize_me.evaluation.metrics import binarize, per_attribute_metrics, summarize

    half = np.full(len(names), NEUTRAL_THRESHOLD)
    t_acc = choose_thresholds(y_val, val_scores, metric="accuracy") if tune else half
    t_f1 = choose_thresholds(y_val, val_scores, metric="f1") if tune else half
    at_half = per_attribute_metrics(y_test, binarize(test_scores, half), names)
    at_acc = per_attribute_metrics(y_test, binarize(test_scores, t_acc), names)
    at_f1 = per_attribute_metrics(y_test, binarize(test_scores, t_f1), names)
    table = at_acc.assign(threshold=t_acc, threshold_f1=t_f1, f1_at_f1_threshold=at_f1["f1"].to_numpy())
    acc_summary, f1_summary = summarize(at_acc), summarize(at_f1)
    summary = {"mean_accuracy": acc_summary["mean_accuracy"],
               "mean_balanced_accuracy": acc_summary["mean_balanced_accuracy"],
               "mean_f1": f1_summary["mean_f1"],
               "at_threshold_0_5": summarize(at_half), "at_accuracy_thresholds": acc_summary,
               "at_f1_thresholds": f1_summary}
    return table, summary

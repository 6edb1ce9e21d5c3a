"""Per-attribute decision thresholds chosen on validation scores (pure numpy)."""

from __future__ import annotations

from typing import Literal

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

    positive = y > 0
    n = y.shape[0]
    n_pos = positive.sum(axis=0)  # (K,)
    n_neg = n - n_pos

    # (G, N, K) would be large for a full validation split; loop over the grid, vectorised over N, K.
    tp = np.empty((candidates.size, y.shape[1]), dtype="int64")
    predicted_pos = np.empty_like(tp)
    for g, t in enumerate(candidates):
        pred = s >= t
        tp[g] = (pred & positive).sum(axis=0)
        predicted_pos[g] = pred.sum(axis=0)
    fp = predicted_pos - tp
    fn = n_pos[None, :] - tp
    tn = n_neg[None, :] - fp

    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            value = (tp + tn).astype("float64")  # counts: exact ties
        elif metric == "balanced_accuracy":
            tpr = np.where(n_pos > 0, tp / np.maximum(n_pos, 1), 0.0)
            tnr = np.where(n_neg > 0, tn / np.maximum(n_neg, 1), 0.0)
            value = (tpr + tnr) / 2.0
        else:
            denom = 2 * tp + fp + fn
            value = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)

    best = value.max(axis=0, keepdims=True)
    is_best = np.isclose(value, best, rtol=1e-12, atol=1e-12)
    # Among the best: smallest distance to 0.5, then the lower threshold (grid sorted for that).
    order = np.lexsort((candidates, np.abs(candidates - NEUTRAL_THRESHOLD)))
    ranked_best = is_best[order]  # (G, K) rows in preference order
    chosen = candidates[order][ranked_best.argmax(axis=0)]

    degenerate = (n_pos == 0) | (n_neg == 0)
    return np.where(degenerate, NEUTRAL_THRESHOLD, chosen).astype("float64")

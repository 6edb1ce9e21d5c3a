"""Per-attribute classification metrics and the majority-class baseline (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, ...]:
    t, p = y_true.astype(bool), y_pred.astype(bool)
    tp = (t & p).sum(0)
    tn = (~t & ~p).sum(0)
    fp = (~t & p).sum(0)
    fn = (t & ~p).sum(0)
    return tp, tn, fp, fn


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def per_attribute_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Accuracy, balanced accuracy, precision, recall, F1 and test prevalence per attribute column.

    Balanced accuracy is the mean of the recalls of both classes (0.5 for a constant predictor);
    for a class absent from ``y_true`` its recall counts as 1 when nothing was predicted wrong.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.shape[1] != len(names):
        raise ValueError(f"shapes differ: y_true {y_true.shape}, y_pred {y_pred.shape}, {len(names)} names")
    tp, tn, fp, fn = (c.astype(float) for c in _counts(y_true, y_pred))
    n = tp + tn + fp + fn
    pos, neg = tp + fn, tn + fp
    tpr = np.where(pos > 0, _safe_div(tp, pos), 1.0)
    tnr = np.where(neg > 0, _safe_div(tn, neg), 1.0)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, pos)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    return pd.DataFrame({
        "attribute": list(names),
        "accuracy": _safe_div(tp + tn, n),
        "balanced_accuracy": (tpr + tnr) / 2,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "prevalence": _safe_div(pos, n),
    })


def summarize(table: pd.DataFrame) -> dict[str, float]:
    return {
        "mean_accuracy": float(table["accuracy"].mean()),
        "mean_balanced_accuracy": float(table["balanced_accuracy"].mean()),
        "mean_f1": float(table["f1"].mean()),
    }


def majority_predictions(y_train: np.ndarray, n_rows: int) -> np.ndarray:
    """Each attribute's majority class in the training labels, repeated for ``n_rows`` rows."""
    majority = (np.asarray(y_train).mean(0) >= 0.5).astype(np.int8)
    return np.tile(majority, (n_rows, 1))


def binarize(scores: np.ndarray, thresholds: np.ndarray | float = 0.5) -> np.ndarray:
    return (np.asarray(scores) >= np.asarray(thresholds)).astype(np.int8)

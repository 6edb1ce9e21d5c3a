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


# --- binary scores: ROC --------------------------------------------------------------------------

def _binary_inputs(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y).reshape(-1) > 0
    s = np.asarray(scores, dtype="float64").reshape(-1)
    if t.shape != s.shape:
        raise ValueError(f"y has {t.size} values but scores has {s.size}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return t, s


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U): the probability that a random positive
    scores above a random negative, ties counting one half. Values > 0 in ``y`` are positives.

    NaN when ``y`` lacks positives or negatives (the area is undefined then).
    """
    t, s = _binary_inputs(y, scores)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = (ends - counts + 1 + ends) / 2.0  # 1-based ranks, averaged over each tie group
    rank_sum = average_rank[inverse][t].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) when predicting ``score >= threshold``, thresholds decreasing over the
    distinct scores, starting at (0, 0) with threshold ``inf``. The trapezoid area under it equals
    :func:`roc_auc`. A rate is NaN when its class is absent from ``y``."""
    t, s = _binary_inputs(y, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1] if s.size else np.array([], int)
    tp = np.cumsum(t_sorted)[last_of_group].astype("float64")
    fp = (last_of_group + 1 - tp).astype("float64")
    n_pos, n_neg = float(t.sum()), float(t.size - t.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.r_[0.0, tp] / n_pos if n_pos else np.full(tp.size + 1, np.nan)
        fpr = np.r_[0.0, fp] / n_neg if n_neg else np.full(fp.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s_sorted[last_of_group]]


def binary_confusion(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """2x2 int matrix [[tn, fp], [fn, tp]]: rows true class (0, 1), columns predicted class (0, 1)."""
    t = np.asarray(y).reshape(-1) > 0
    p = np.asarray(predicted).reshape(-1) > 0
    if t.shape != p.shape:
        raise ValueError(f"y has {t.size} values but predicted has {p.size}")
    return np.array([[int((~t & ~p).sum()), int((~t & p).sum())],
                     [int((t & ~p).sum()), int((t & p).sum())]], dtype=np.int64)

"""Scores of one "is this me?" classifier -> its metrics: threshold chosen on validation (max F1), test
metrics, recall at a false-accept rate, and the strangers score (the test "me" photos against people in no
training split, at the same threshold)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FAR_TARGET = 0.01  # recall is also reported at this false-accept rate
POSITIVE_LABEL = "me"
CM_LABELS: tuple[str, str] = ("other", "me")  # confusion matrix order: index 0 = other, 1 = me


def recall_at_far(y: np.ndarray, scores: np.ndarray, far: float = FAR_TARGET) -> float | None:
    """The highest recall of "me" reachable while accepting at most ``far`` of the others (None without
    both classes)."""
    from recognize_me.evaluation.metrics import roc_curve

    y = np.asarray(y).reshape(-1) > 0
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, np.asarray(scores, np.float64))
    return float(np.max(tpr[fpr <= far + 1e-12]))


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def evaluate_scores(data: dict, scores: dict[str, np.ndarray],
                    selection: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Threshold (max F1 on val), test metrics, recall at ``FAR_TARGET``, and the strangers score: the test
    "me" photos against the ``strangers`` photos (people in no training split), at the same threshold.

    ``selection`` (labels, held-out scores), e.g. the out-of-fold scores of train+val of a model refit on
    both, replaces the validation split for the threshold and the ``val_*`` metrics."""
    from recognize_me.evaluation.metrics import binary_confusion, roc_auc
    from recognize_me.training.thresholds import choose_thresholds

    y_val, val_scores = (data["val"][1].reshape(-1), scores["val"]) if selection is None else \
        (np.asarray(selection[0]).reshape(-1), np.asarray(selection[1], np.float64))
    y_test, test_scores = data["test"][1].reshape(-1), scores["test"]
    threshold = float(choose_thresholds(y_val[:, None], val_scores[:, None], metric="f1")[0]) \
        if len(y_val) else 0.5
    predicted = (test_scores >= threshold).astype(np.int8)
    test_metrics = _metrics_at(y_test, test_scores, threshold)
    counts = {split: {"me": int(y.sum()), "other": int(len(y) - y.sum())}
              for split, (_, y, _) in data.items() if split != "strangers" or len(y)}
    out: dict[str, Any] = {
        "threshold": threshold,
        "accuracy": float(test_metrics["accuracy"]),
        "balanced_accuracy": float(test_metrics["balanced_accuracy"]),
        "precision": float(test_metrics["precision"]), "recall": float(test_metrics["recall"]),
        "f1": float(test_metrics["f1"]), "roc_auc": _finite(roc_auc(y_test, test_scores)),
        "recall_at_1pct_far": recall_at_far(y_test, test_scores),
        "val_f1": float(_metrics_at(y_val, val_scores, threshold)["f1"]),
        "val_roc_auc": _finite(roc_auc(y_val, val_scores)),
        "confusion_matrix": binary_confusion(y_test, predicted).tolist(),
        "confusion_matrix_labels": list(CM_LABELS), "counts": counts, "test_photos": len(y_test),
        "strangers_photos": int(len(scores["strangers"])),
    }
    if len(scores["strangers"]):
        out.update(strangers_metrics(test_scores[y_test > 0], scores["strangers"], threshold))
    return out


def _metrics_at(y: np.ndarray, scores: np.ndarray, threshold: float) -> Any:
    """Accuracy, balanced accuracy, precision, recall and F1 of "me" at ``threshold`` (a pandas row)."""
    from recognize_me.evaluation.metrics import per_attribute_metrics

    predicted = (scores >= threshold)[:, None].astype(np.int8)
    return per_attribute_metrics(y[:, None], predicted, [POSITIVE_LABEL]).iloc[0]


def strangers_metrics(me_scores: np.ndarray, stranger_scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """The test "me" photos against the strangers: ROC AUC, accuracy and false accepts at ``threshold``,
    recall at ``FAR_TARGET``."""
    from recognize_me.evaluation.metrics import roc_auc

    y = np.r_[np.ones(len(me_scores)), np.zeros(len(stranger_scores))]
    s = np.r_[me_scores, stranger_scores]
    return {"strangers_roc_auc": _finite(roc_auc(y, s)),
            "strangers_accuracy": float(np.mean((s >= threshold) == (y > 0))),
            "strangers_false_accept": float(np.mean(stranger_scores >= threshold)),
            "strangers_recall_at_1pct_far": recall_at_far(y, s)}

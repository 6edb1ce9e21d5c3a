"""The logistic regression on frozen features shared by ``feature_extraction`` and ``reference_dlib``."""

from __future__ import annotations

from typing import Any

import numpy as np

LOGREG_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)


def fit_logistic(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 seed: int, cs: tuple[float, ...] = LOGREG_CS) -> tuple[Any, float]:
    """L2-regularised logistic regression (balanced class weights), C chosen by validation ROC AUC (ties:
    lower validation log loss, then the smaller C). Without usable validation data C = 1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from recognize_me.evaluation.metrics import roc_auc

    y_train = np.asarray(y_train).reshape(-1).astype(int)
    y_val = np.asarray(y_val).reshape(-1).astype(int)
    usable = len(y_val) and 0 < y_val.sum() < len(y_val)
    best: tuple[tuple[float, float, float], Any, float] | None = None
    for c in (cs if usable else (1.0,)):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
        clf.fit(x_train, y_train)
        if not usable:
            return clf, c
        p = clf.predict_proba(x_val)[:, 1]
        key = (float(roc_auc(y_val, p)), -float(log_loss(y_val, p, labels=[0, 1])), -c)
        if best is None or key > best[0]:
            best = (key, clf, c)
    assert best is not None
    return best[1], best[2]

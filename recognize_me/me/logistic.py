"""The logistic regression on frozen features shared by ``feature_extraction``, ``distilled`` and
``reference_dlib``.

:func:`fit_logistic_pooled` is what the strategies use: C is chosen by cross-validation over the train
and validation photos together (folds grouped by photo content, so the faces of one photo never sit on
both sides), the model is refit on all of them, and the out-of-fold scores are returned so that the
decision threshold is chosen on every held-out "me" photo rather than on the few of the validation split
alone. :func:`fit_logistic` (train on train, choose C on val) is the fallback when there are too few
photos to cross-validate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LOGREG_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
CV_FOLDS = 5


@dataclass(frozen=True)
class LogisticFit:
    """``model`` (scikit-learn, ``predict_proba``), its ``c``; ``selection``: (0/1 labels, held-out scores)
    the threshold is to be chosen on (None: choose on the validation split); ``folds``: 0 without
    cross-validation."""

    model: Any
    c: float
    selection: tuple[np.ndarray, np.ndarray] | None = None
    folds: int = 0

    def extra(self) -> dict[str, Any]:
        """The ``metrics.json`` entries that say how it was fitted."""
        if not self.folds:
            return {"logreg_C": self.c, "cv_folds": 0, "threshold_chosen_on": "validation split"}
        assert self.selection is not None
        y = self.selection[0]
        return {"logreg_C": self.c, "cv_folds": self.folds,
                "threshold_chosen_on": f"out-of-fold scores of train+val ({int(y.sum())} me, "
                                       f"{int(len(y) - y.sum())} other), model refit on train+val"}


def _new(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)


def _key(y: np.ndarray, p: np.ndarray, c: float) -> tuple[float, float, float]:
    """Higher is better: ROC AUC, then lower log loss, then the smaller C."""
    from sklearn.metrics import log_loss

    from recognize_me.evaluation.metrics import roc_auc

    return float(roc_auc(y, p)), -float(log_loss(y, p, labels=[0, 1])), -c


def fit_logistic(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 seed: int, cs: tuple[float, ...] = LOGREG_CS) -> tuple[Any, float]:
    """L2-regularised logistic regression (balanced class weights), C chosen by validation ROC AUC (ties:
    lower validation log loss, then the smaller C). Without usable validation data C = 1."""
    y_train = np.asarray(y_train).reshape(-1).astype(int)
    y_val = np.asarray(y_val).reshape(-1).astype(int)
    usable = len(y_val) and 0 < y_val.sum() < len(y_val)
    best: tuple[tuple[float, float, float], Any, float] | None = None
    for c in (cs if usable else (1.0,)):
        clf = _new(c, seed).fit(x_train, y_train)
        if not usable:
            return clf, c
        key = _key(y_val, clf.predict_proba(x_val)[:, 1], c)
        if best is None or key > best[0]:
            best = (key, clf, c)
    assert best is not None
    return best[1], best[2]


def cv_folds(y: np.ndarray, groups: Sequence[str], folds: int = CV_FOLDS) -> int:
    """How many folds a grouped, stratified split can have: at most ``folds``, at most the number of
    distinct groups of each class; 0 when fewer than 2."""
    y = np.asarray(y).reshape(-1) > 0
    g = np.asarray(groups)
    k = min(folds, len(set(g[y])), len(set(g[~y])))
    return k if k >= 2 else 0


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: Sequence[str], c: float, seed: int,
                folds: int) -> np.ndarray:
    """Each row's "me" probability from the model fitted on the other folds (StratifiedGroupKFold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    scores = np.zeros(len(y), dtype=np.float64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in splitter.split(x, y, groups):
        scores[held_rows] = _new(c, seed).fit(x[fit_rows], y[fit_rows]).predict_proba(x[held_rows])[:, 1]
    return scores


def fit_logistic_pooled(x_train: np.ndarray, y_train: np.ndarray, groups_train: Sequence[str],
                        x_val: np.ndarray, y_val: np.ndarray, groups_val: Sequence[str], seed: int,
                        cs: tuple[float, ...] = LOGREG_CS, folds: int = CV_FOLDS) -> LogisticFit:
    """C by out-of-fold ROC AUC over train+val (ties: log loss, then the smaller C), refit on train+val;
    ``selection`` = the chosen C's out-of-fold scores. Groups (photo content hashes) keep a photo's faces
    in one fold. Too few photos for 2 folds: :func:`fit_logistic` (train, C on val)."""
    x = np.concatenate([np.asarray(x_train), np.asarray(x_val)]) if len(x_val) else np.asarray(x_train)
    y = np.r_[np.asarray(y_train).reshape(-1), np.asarray(y_val).reshape(-1)].astype(int)
    groups = [*map(str, groups_train), *map(str, groups_val)]
    k = cv_folds(y, groups, folds)
    if not k:
        clf, c = fit_logistic(x_train, y_train, x_val, y_val, seed, cs)
        return LogisticFit(clf, c)
    scored = [(c, out_of_fold(x, y, groups, c, seed, k)) for c in cs]
    c, oof = max(scored, key=lambda item: _key(y, item[1], item[0]))
    return LogisticFit(_new(c, seed).fit(x, y), c, selection=(y, oof), folds=k)

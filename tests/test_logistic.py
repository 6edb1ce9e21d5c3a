"""The pooled logistic fit: C and threshold from out-of-fold scores of train+val, refit on both."""

from __future__ import annotations

import numpy as np
import pytest

from recognize_me.me.logistic import CV_FOLDS, cv_folds, fit_logistic_pooled, out_of_fold


def _separable(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    return x, (x[:, 0] + 0.3 * rng.normal(size=n) > 0.8).astype(int)


def test_cv_folds_is_capped_by_the_groups_of_each_class() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert cv_folds(y, [str(i) for i in range(10)]) == 3  # three "me" photos
    assert cv_folds(y, ["a", "a", "b", *map(str, range(7))]) == 2  # two "me" contents
    assert cv_folds(y, ["a", "a", "a", *map(str, range(7))]) == 0  # one "me" content: no folds
    assert cv_folds(np.r_[np.ones(20), np.zeros(20)], [str(i) for i in range(40)]) == CV_FOLDS


def test_out_of_fold_keeps_a_photos_faces_in_one_fold() -> None:
    """Twins (same group, same features) with random labels: a model that saw the twin would score the held
    row by memory (high AUC); grouped folds never let it, so the out-of-fold AUC stays near chance."""
    from recognize_me.evaluation.metrics import roc_auc

    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 300))
    labels = rng.integers(0, 2, size=40)
    x, y = np.repeat(base, 2, axis=0), np.repeat(labels, 2)
    grouped = out_of_fold(x, y, [str(i // 2) for i in range(80)], c=100.0, seed=0, folds=5)
    ungrouped = out_of_fold(x, y, [str(i) for i in range(80)], c=100.0, seed=0, folds=5)
    assert roc_auc(y, ungrouped) > 0.9
    assert roc_auc(y, grouped) < 0.75


def test_pooled_fit_refits_on_train_and_val_and_returns_out_of_fold_scores() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _separable(120)
    fit = fit_logistic_pooled(x[:80], y[:80], [f"t{i}" for i in range(80)], x[80:], y[80:],
                              [f"v{i}" for i in range(40)], seed=0)
    assert fit.folds == CV_FOLDS and fit.c in (0.1, 1.0, 10.0, 100.0)
    sel_y, sel_scores = fit.selection
    assert sel_y.tolist() == y.tolist() and sel_scores.shape == (120,)
    same = LogisticRegression(C=fit.c, class_weight="balanced", max_iter=5000, random_state=0).fit(x, y)
    np.testing.assert_allclose(fit.model.coef_, same.coef_)  # refit on all 120, not on the 80 of train
    in_sample = fit.model.predict_proba(x)[:, 1]
    assert not np.allclose(sel_scores, in_sample)  # the selection scores are held out, not in-sample
    assert "out-of-fold" in fit.extra()["threshold_chosen_on"] and fit.extra()["cv_folds"] == CV_FOLDS


def test_pooled_fit_falls_back_to_the_validation_split_with_one_me_photo() -> None:
    x, y = _separable(60)
    y[:] = 0
    y[3] = 1
    fit = fit_logistic_pooled(x[:40], y[:40], [str(i) for i in range(40)], x[40:], y[40:],
                              [str(i) for i in range(40, 60)], seed=0)
    assert fit.folds == 0 and fit.selection is None and fit.c == 1.0  # no "me" in val: C = 1
    assert fit.extra()["threshold_chosen_on"] == "validation split"


def test_threshold_is_chosen_on_the_selection_when_given() -> None:
    from recognize_me.me.evaluation import evaluate_scores

    def split(y: list[int]) -> tuple[list[str], np.ndarray, None]:
        return [f"p{i}" for i in range(len(y))], np.array(y, np.float32)[:, None], None

    data = {"val": split([1, 0]), "test": split([1, 1, 0, 0]), "strangers": split([])}
    scores = {"val": np.array([0.9, 0.1]), "test": np.array([0.9, 0.35, 0.3, 0.1]), "strangers": np.zeros(0)}
    on_val = evaluate_scores(data, scores)
    selection = (np.array([1, 1, 1, 0, 0, 0]), np.array([0.9, 0.5, 0.33, 0.32, 0.2, 0.1]))
    on_selection = evaluate_scores(data, scores, selection)
    assert on_val["threshold"] == pytest.approx(0.5)  # val separates anywhere in (0.1, 0.9]: nearest 0.5
    assert on_selection["threshold"] == pytest.approx(0.33)
    assert on_selection["recall"] == 1.0 and on_val["recall"] == 0.5
    assert on_selection["val_f1"] == 1.0

"""Teacher-student pieces: the relational cosine loss's values, the student's shape, a training step, round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from recognize_me.models.distill import RelationalCosineLoss, build_embedding_student
from recognize_me.models.identity import EMBEDDING_LAYER
from recognize_me.training.seeding import isolated_default_seeds

SHAPE = (32, 32, 3)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_loss_is_zero_for_the_teacher_itself_whatever_its_length():
    t = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
    assert float(RelationalCosineLoss(1.0)(t, 3.0 * t)) == pytest.approx(0.0, abs=1e-6)


def test_loss_terms_match_a_direct_computation():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(5, 4)).astype("float32"), rng.normal(size=(5, 4)).astype("float32")
    tu, su = _unit(t), _unit(s)
    direction = 1 - np.sum(tu * su, axis=1)
    relation = np.mean((su @ su.T - tu @ tu.T) ** 2, axis=1)
    assert float(RelationalCosineLoss(0.0)(t, s)) == pytest.approx(direction.mean(), rel=1e-5)
    assert float(RelationalCosineLoss(2.5)(t, s)) == pytest.approx((direction + 2.5 * relation).mean(), rel=1e-5)


def test_relation_term_counts_only_distances_between_people():
    """A rotated teacher keeps every distance (no relation loss); a shuffled one does not."""
    t = _unit(np.random.default_rng(2).normal(size=(6, 3)).astype("float32"))
    a = 0.7
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], "float32")
    rotated, shuffled = t @ rotation, t[[1, 0, 3, 2, 5, 4]]
    assert float(RelationalCosineLoss(1.0)(t, rotated)) == pytest.approx(float(RelationalCosineLoss(0.0)(t, rotated)),
                                                                          abs=1e-6)
    assert float(RelationalCosineLoss(1.0)(t, shuffled)) > float(RelationalCosineLoss(0.0)(t, shuffled)) + 1e-3


def test_negative_relation_weight_is_refused():
    with pytest.raises(ValueError, match="relation_weight"):
        RelationalCosineLoss(-0.1)


def test_student_embeds_unit_vectors_trains_a_step_and_round_trips(tmp_path):
    with isolated_default_seeds(0):
        student = build_embedding_student(SHAPE, dim=8)
        student.compile(keras.optimizers.Adam(1e-3), loss=RelationalCosineLoss(1.0))
        rng = np.random.default_rng(0)
        x, t = rng.random((8, *SHAPE), dtype=np.float32), rng.normal(size=(8, 8)).astype("float32")
        losses = student.fit(x, t, batch_size=8, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    emb = student.predict(x, verbose=0)
    assert {EMBEDDING_LAYER, "gap"} <= {layer.name for layer in student.layers}
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), emb, atol=1e-5)
    assert loaded.loss.relation_weight == 1.0


def test_student_refuses_a_grey_input():
    with pytest.raises(ValueError, match="height, width, 3"):
        build_embedding_student((32, 32, 1))

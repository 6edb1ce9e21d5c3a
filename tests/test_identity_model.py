"""Identity-aware rung: CosFace head and loss, .keras round trip, one training step, splits identity column."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from recognize_me.data.splits import with_identity
from recognize_me.models import BuildOptions, get_model_spec
from recognize_me.models.identity import (
    EMBEDDING_LAYER,
    CosFaceLoss,
    CosineClassifier,
    identity_indices,
    identity_training_model,
)
from recognize_me.models.losses import make_optimizer

SHAPE = (32, 32, 3)
OPTIONS = BuildOptions(learning_rate=1e-3, seed=0, embedding_dim=16)


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return get_model_spec("resnet_identity").build(SHAPE, 3, OPTIONS)


def test_output_is_attributes_and_embedding_is_unit_length():
    model = _model()
    x = np.random.default_rng(0).random((4, *SHAPE), dtype=np.float32)
    assert model.output_shape == (None, 3)
    emb = keras.Model(model.inputs, model.get_layer(EMBEDDING_LAYER).output).predict(x, verbose=0)
    assert emb.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_cosface_loss_margin_and_unknown_identities():
    cos = np.array([[0.5, 0.4], [0.2, 0.8], [0.5, 0.5]], "float32")
    y = np.array([0, 1, -1], "float32")
    no_margin = keras.ops.convert_to_numpy(CosFaceLoss(scale=30, margin=0.0).call(y, cos))
    margin = keras.ops.convert_to_numpy(CosFaceLoss(scale=30, margin=0.35).call(y, cos))
    assert margin[2] == no_margin[2] == 0.0  # unknown identity: no loss
    assert np.all(margin[:2] > no_margin[:2])  # the margin makes the true class harder
    expected = np.log1p(np.exp(30 * 0.4 - 30 * (0.5 - 0.35)))  # -log softmax of the true class
    assert margin[0] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError):
        CosFaceLoss(scale=0)


def test_cosine_classifier_outputs_cosines():
    layer = CosineClassifier(3)
    x = np.array([[3.0, 4.0]], "float32")
    out = keras.ops.convert_to_numpy(layer(x))
    w = keras.ops.convert_to_numpy(layer.kernel)
    expected = (x / 5.0) @ (w / np.linalg.norm(w, axis=0, keepdims=True))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert CosineClassifier.from_config(layer.get_config()).n_classes == 3


def test_trains_one_step_and_round_trips_safe_mode(tmp_path):
    model = _model()
    train = identity_training_model(model, 4, model.loss, make_optimizer(1e-3, 0.01))
    rng = np.random.default_rng(1)
    x = rng.random((8, *SHAPE), dtype=np.float32)
    y = {"attributes": rng.integers(0, 2, (8, 3)).astype("float32"),
         "identity": np.array([0, 1, 2, 3, 0, 1, -1, -1], "float32")}
    before = model.get_layer("embedding_dense").get_weights()[0].copy()
    history = train.fit(x, y, epochs=1, batch_size=8, verbose=0).history
    assert np.isfinite(history["identity_loss"][0]) and history["identity_loss"][0] > 0
    assert not np.allclose(before, model.get_layer("embedding_dense").get_weights()[0])  # shared layers trained
    for m, name in ((model, "inference"), (train, "training")):
        path = tmp_path / f"{name}.keras"
        m.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        np.testing.assert_allclose(_out(loaded, x), _out(m, x), rtol=1e-5, atol=1e-6)
    assert keras.models.load_model(tmp_path / "inference.keras", safe_mode=True).get_layer(EMBEDDING_LAYER)


def _out(model: keras.Model, x: np.ndarray) -> np.ndarray:
    y = model(x, training=False)
    y = y["attributes"] if isinstance(y, dict) else y
    return keras.ops.convert_to_numpy(y)


def test_training_model_needs_an_embedding_layer():
    plain = get_model_spec("resnet").build(SHAPE, 3, OPTIONS)
    with pytest.raises(ValueError, match="embedding"):
        identity_training_model(plain, 4, plain.loss, make_optimizer(1e-3))


def test_identity_indices_and_splits_column():
    idx, k = identity_indices(np.array([7, 3, 7, np.nan, 9]), 5)
    assert k == 3 and idx.tolist() == [1, 0, 1, -1, 2]
    idx, k = identity_indices(None, 2)
    assert k == 0 and idx.tolist() == [-1, -1]
    splits = pd.DataFrame({"image_id": ["a.jpg", "b.jpg", "c.jpg"], "split": ["train", "train", "val"]})
    ident = pd.DataFrame({"image_id": ["a.jpg", "c.jpg"], "identity": [5, 6]})
    out = with_identity(splits, ident)
    assert out["identity"].tolist()[0] == 5 and pd.isna(out["identity"].iloc[1]) and out["identity"].iloc[2] == 6
    assert with_identity(splits, None) is splits


@pytest.mark.slow
def test_train_one_trains_the_identity_rung_from_splits_csv(tmp_path):
    """splits.csv with an identity column -> a model folder like every rung's: model.keras (attribute
    sigmoids, with the "embedding" layer), history with the usual accuracy columns, both threshold sets."""
    import json

    from celeba_fixtures import JOB_ATTRIBUTES, write_training_job

    from recognize_me.training.train import TrainJob, train_one

    splits_csv, images_dir = write_training_job(tmp_path / "data", n=60)
    table = pd.read_csv(splits_csv)
    table["identity"] = np.arange(len(table)) // 3  # three images per person
    table.to_csv(splits_csv, index=False)
    job = TrainJob(model="resnet_identity", run_dir=tmp_path / "run", splits_csv=splits_csv,
                   images_dir=images_dir, attributes=tuple(JOB_ATTRIBUTES), image_size=(32, 32), epochs=2,
                   batch_size=16)
    summary = train_one(job)
    assert summary["epochs_run"] == 2 and "at_f1_thresholds" in summary
    history = pd.read_csv(job.out_dir / "history.csv")
    assert {"loss", "accuracy", "val_accuracy", "identity_loss"} <= set(history.columns)
    model = keras.models.load_model(job.out_dir / "model.keras", safe_mode=True)
    assert model.output_shape == (None, len(JOB_ATTRIBUTES)) and model.get_layer(EMBEDDING_LAYER)
    assert json.loads((job.out_dir / "metrics.json").read_text())["per_attribute"][0]["threshold_f1"] > 0

    table.drop(columns="identity").to_csv(splits_csv, index=False)
    with pytest.raises(ValueError, match="identity column"):
        train_one(TrainJob(**{**job.__dict__, "run_dir": tmp_path / "run2"}))

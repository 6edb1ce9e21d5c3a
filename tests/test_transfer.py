"""recognize_me.me.transfer, surgery, strategies, evaluation (feature extraction, fine tuning, from scratch,
reference) and recognize_me.me.report.

The CelebA base is an untrained ``baseline_cnn`` (32x32 inputs, 40 outputs) saved like a run's model
folder; the photos are demo_data's synthetic faces. Training is 2 epochs on ~24 images.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from recognize_me.demo.data import generate_demo_data
from recognize_me.me.photo_set import PhotoSources, prepare_photos
from recognize_me.me.surgery import (
    FEATURES_NAME,
    build_transfer_model,
    feature_extractor,
    flat_layers,
    set_base_trainable,
)
from recognize_me.me.transfer import TransferJob, base_input_settings, class_weights, train_transfer

SIZE = (32, 32)
METRIC_KEYS = {"strategy", "status", "threshold", "accuracy", "balanced_accuracy", "precision", "recall", "f1",
               "roc_auc", "val_f1", "val_roc_auc", "confusion_matrix", "confusion_matrix_labels", "counts",
               "test_photos", "class_weight", "unfrozen_layers", "epochs_run", "params", "train_time_s", "seed",
               "base_model", "image_size", "crop", "out_dir", "promotable", "recall_at_1pct_far",
               "strangers_photos"}
FEATURE_KEYS = {"logreg_C", "feature_dim", "features", "cv_folds", "threshold_chosen_on"}


def _save_base(folder: Path, name: str = "baseline_cnn") -> Path:
    from recognize_me.models import BuildOptions, get_model_spec

    keras.utils.set_random_seed(0)
    model = get_model_spec(name).build((*SIZE, 3), 40, BuildOptions())
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    (folder / "config.json").write_text(json.dumps({"model": name, "job": {"image_size": list(SIZE),
                                                                           "crop": "square"}}))
    return folder / "model.keras"


def _balanced_seed(me_dir: Path, others_dir: Path, fractions: tuple[float, float, float]) -> int:
    """The first seed giving >= 2 photos of each class in every split (so val and test metrics mean
    something), whatever the synthetic photos' bytes are."""
    from recognize_me.me.photos import scan_photos
    from recognize_me.me.splits import assign_splits

    photos = scan_photos(me_dir, "me")[0] + scan_photos(others_dir, "other")[0]
    for seed in range(200):
        counts = assign_splits(photos, seed=seed, fractions=fractions).groupby(["split", "label"]).size()
        if len(counts) == 6 and counts.min() >= 2:
            return seed
    raise AssertionError("no seed gives balanced splits")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transfer")
    demo = generate_demo_data(root / "demo", n_images=1, seed=1, n_me=12, n_others=12)
    fractions = (0.5, 0.25, 0.25)
    seed = _balanced_seed(demo.me_dir, demo.others_dir, fractions)
    photos = prepare_photos(PhotoSources(demo.me_dir, demo.others_dir), root / "photos", seed=seed,
                            fractions=fractions)
    counts = photos.counts()
    assert all(min(c.values()) >= 2 for c in counts.values()), counts  # MTCNN found the drawn faces
    return {"root": root, "photos_csv": root / "photos" / "photos.csv",
            "base": _save_base(root / "run" / "models" / "baseline_cnn")}


def _job(setup: dict[str, Path], strategy: str, out: str, **kw) -> TransferJob:
    return TransferJob(strategy=strategy, base_model_path=setup["base"], photos_csv=setup["photos_csv"],
                       out_dir=setup["root"] / "run" / "me" / out, image_size=SIZE, crop="square",
                       **{"epochs": 2, "batch_size": 8, **kw})


@pytest.fixture(scope="module")
def trained(setup: dict[str, Path]) -> dict[str, dict]:
    epochs_seen: dict[str, list] = {"feature_extraction": [], "fine_tuning": []}

    def hook(strategy: str, epoch: int, epochs: int, logs: dict) -> None:
        epochs_seen[strategy].append((epoch, epochs, "loss" in logs))

    fe = train_transfer(_job(setup, "feature_extraction", "feature_extraction"), on_epoch=hook)
    ft = train_transfer(_job(setup, "fine_tuning", "fine_tuning"), on_epoch=hook)
    return {"feature_extraction": fe, "fine_tuning": ft, "epochs_seen": epochs_seen}


def _layer_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in flat_layers(model)
            if layer.get_weights()}


def _load(path: Path) -> keras.Model:
    import recognize_me.models  # noqa: F401

    return keras.models.load_model(path, safe_mode=True, compile=False)


# --- fast: no training -------------------------------------------------------------------------

def test_class_weights_balance_the_classes() -> None:
    w = class_weights(np.array([1, 0, 0, 0]))
    assert w == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    assert 3 * w[0] == pytest.approx(1 * w[1] * 1.0)  # equal total weight per class
    with pytest.raises(ValueError, match="both"):
        class_weights(np.array([1, 1]))


def test_job_validation(tmp_path: Path) -> None:
    common = dict(base_model_path=tmp_path, photos_csv=tmp_path, out_dir=tmp_path, image_size=SIZE, crop="square")
    with pytest.raises(ValueError, match="strategy"):
        TransferJob(strategy="other", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs >= 2"):
        TransferJob(strategy="fine_tuning", epochs=1, **common)
    assert TransferJob(strategy="feature_extraction", epochs=1, **common).epochs == 1


def test_cut_needs_global_average_pooling() -> None:
    inputs = keras.Input((8, 8, 3))
    no_gap = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)), name="flat")
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        feature_extractor(no_gap)


def test_surgery_on_resnet_keeps_batch_norm_frozen(tmp_path: Path) -> None:
    base = _load(_save_base(tmp_path / "resnet", "resnet"))
    features = feature_extractor(base)
    assert features.output.shape[-1] == 256
    model = build_transfer_model(features, SIZE, seed=0)
    assert model.output.shape[-1] == 1 and model.get_layer(FEATURES_NAME) is features
    unfrozen = set_base_trainable(features, 1 / 3)
    layers = flat_layers(features)
    assert unfrozen == [layer.name for layer in layers[-4:] if layer.trainable_weights]
    assert not any(layer.trainable for layer in layers[:-4])
    bn_variables = set()
    for layer in layers:
        for sub in layer._flatten_layers(include_self=True, recursive=True):
            if isinstance(sub, keras.layers.BatchNormalization):
                assert not sub.trainable, sub.name
                bn_variables |= {id(w) for w in sub.weights}
    assert features.trainable_weights and bn_variables
    assert not any(id(w) in bn_variables for w in features.trainable_weights)


def test_base_input_settings(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"job": {"image_size": [48, 40], "crop": "face"}}))
    assert base_input_settings(tmp_path / "model.keras") == ((48, 40), "face")
    with pytest.raises(FileNotFoundError):
        base_input_settings(tmp_path / "nowhere" / "model.keras")


# --- slow: training -------------------------------------------------------------------------------

@pytest.mark.slow
def test_outputs_and_metrics(setup: dict[str, Path], trained: dict) -> None:
    table = pd.read_csv(setup["photos_csv"])
    for strategy in ("feature_extraction", "fine_tuning"):
        result = trained[strategy]
        out = Path(result["out_dir"])
        extra = FEATURE_KEYS if strategy == "feature_extraction" else set()
        assert set(result) == METRIC_KEYS | extra and result["strategy"] == strategy
        files = ["model.keras", "metrics.json", "config.json", "predictions_test.csv"]
        for name in files + (["history.csv"] if strategy == "fine_tuning" else []):
            assert (out / name).is_file(), name
        assert json.loads((out / "metrics.json").read_text())["f1"] == result["f1"]
        n_test = int((table["split"] == "test").sum())
        cm = np.array(result["confusion_matrix"])
        assert cm.shape == (2, 2) and cm.sum() == n_test == result["test_photos"]
        assert cm[1].sum() == result["counts"]["test"]["me"] == int(((table["split"] == "test")
                                                                      & (table["label"] == "me")).sum())
        assert 0.0 <= result["threshold"] <= 1.0 and 0.0 <= result["roc_auc"] <= 1.0
        for key in ("accuracy", "precision", "recall", "f1"):
            assert 0.0 <= result[key] <= 1.0
        assert result["accuracy"] == pytest.approx((cm[0, 0] + cm[1, 1]) / n_test)
        preds = pd.read_csv(out / "predictions_test.csv")
        assert list(preds.columns) == ["path", "crop_path", "label", "score", "predicted"]
        assert len(preds) == n_test
        assert ((preds["score"] >= result["threshold"]) == (preds["predicted"] == "me")).all()
        assert result["promotable"] and result["strangers_photos"] == 0
    history = pd.read_csv(Path(trained["fine_tuning"]["out_dir"]) / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and "val_loss" in history and history["phase"].tolist() == [1, 2]
    assert trained["fine_tuning"]["epochs_run"] == 2
    # feature extraction fits a logistic regression (no Keras epochs); C was chosen among the grid
    assert trained["epochs_seen"]["feature_extraction"] == [] and trained["feature_extraction"]["epochs_run"] == 0
    assert trained["feature_extraction"]["logreg_C"] in (0.1, 1.0, 10.0, 100.0)
    assert trained["epochs_seen"]["fine_tuning"] == [(1, 2, True), (2, 2, True)]


@pytest.mark.slow
def test_feature_extraction_leaves_the_base_unchanged(setup: dict[str, Path], trained: dict) -> None:
    base = _layer_weights(_load(setup["base"]))
    model = _load(Path(trained["feature_extraction"]["out_dir"]) / "model.keras")
    after = _layer_weights(model.get_layer(FEATURES_NAME))
    assert set(after) == {n for n in base if n != "attributes"}
    for name, weights in after.items():
        for a, b in zip(weights, base[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert trained["feature_extraction"]["unfrozen_layers"] == []
    dim = trained["feature_extraction"]["feature_dim"]  # auto without an embedding layer: the spatial map
    assert model.get_layer("is_me").get_weights()[0].shape == (dim, 1) and dim % 256 == 0 and dim > 256
    # the saved model scores a photo and its mirror image alike (flip averaging inside the model)
    x = np.random.default_rng(0).random((3, *SIZE, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x[:, :, ::-1], verbose=0), atol=1e-5)


@pytest.mark.slow
def test_fine_tuning_changes_only_the_top_layers(setup: dict[str, Path], trained: dict) -> None:
    base = _layer_weights(_load(setup["base"]))
    model = _load(Path(trained["fine_tuning"]["out_dir"]) / "model.keras")
    after = _layer_weights(model.get_layer(FEATURES_NAME))
    assert trained["fine_tuning"]["unfrozen_layers"] == ["block4_conv", "block4_conv2"]
    assert not np.array_equal(after["block4_conv"][0], base["block4_conv"][0])
    for name in ("block1_conv", "block2_conv", "block3_conv", "block3_conv2", "block1_bn", "block4_bn"):
        for a, b in zip(after[name], base[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)  # frozen, BN statistics included


@pytest.mark.slow
def test_same_seed_same_result(setup: dict[str, Path], trained: dict) -> None:
    again = train_transfer(_job(setup, "feature_extraction", "feature_extraction_again"))
    first = trained["feature_extraction"]
    volatile = {"train_time_s", "out_dir"}
    assert {k: v for k, v in again.items() if k not in volatile} == \
        {k: v for k, v in first.items() if k not in volatile}
    scores = [pd.read_csv(Path(r["out_dir"]) / "predictions_test.csv")["score"] for r in (first, again)]
    pd.testing.assert_series_equal(*scores)


@pytest.mark.slow
def test_me_report(setup: dict[str, Path], trained: dict) -> None:
    from recognize_me.me.report import build_me_report, selection_key

    run_dir = setup["root"] / "run"
    failed = {"strategy": "broken", "status": "failed", "error": "boom"}
    report = build_me_report(run_dir, [trained["feature_extraction"], trained["fine_tuning"], failed])
    assert report.html_path == run_dir / "me_report.html"
    text = report.html_path.read_text()
    assert "feature_extraction" in text and "fine_tuning" in text and "failed: boom" in text
    assert [r["strategy"] for r in report.rows][-1] == "broken"
    # ranked on validation (never test); the champion is the first promotable one
    keys = [selection_key(trained[r["strategy"]]) for r in report.rows[:2]]
    assert keys == sorted(keys, reverse=True)
    assert report.rows[0]["champion"] == "yes" and report.rows[1]["champion"] == ""
    assert "recall_at_1pct_far" in report.rows[0] and "strangers_roc_auc" in report.rows[0]
    assert "ROC curves (test)" in report.figures
    assert sum("confusion matrix" in t for t in report.figures) == 2
    for path in report.figures.values():
        assert path.is_file() and path.stat().st_size > 0 and f"src='{path.name}'" in text


@pytest.mark.slow
def test_from_scratch_baseline_starts_without_celeba_weights(setup: dict[str, Path]) -> None:
    result = train_transfer(_job(setup, "from_scratch", "from_scratch", epochs=1))
    base = _layer_weights(_load(setup["base"]))
    trained_features = _layer_weights(_load(Path(result["out_dir"]) / "model.keras").get_layer(FEATURES_NAME))
    conv = next(n for n in trained_features if "conv" in n)
    assert not np.allclose(trained_features[conv][0], base[conv][0])
    assert result["status"] == "completed" and result["strategy"] == "from_scratch"


# --- pieces of the feature-extraction and reference strategies -----------------------------------

def test_recall_at_far_and_logistic_choice_on_validation() -> None:
    from recognize_me.me.evaluation import recall_at_far
    from recognize_me.me.logistic import fit_logistic

    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.5, 0.2, 0.1, 0.1, 0.05, 0.0])
    assert recall_at_far(y, scores, far=0.0) == 0.5  # above the best "other" (0.5): 2 of 4
    assert recall_at_far(y, scores, far=0.2) == 1.0
    assert recall_at_far(np.ones(3), np.ones(3)) is None
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    labels = (x[:, 0] > 0).astype(int)
    clf, c = fit_logistic(x[:40], labels[:40], x[40:], labels[40:], seed=0)
    assert c in (0.1, 1.0, 10.0, 100.0) and (clf.predict(x[40:]) == labels[40:]).mean() >= 0.9
    _, c_default = fit_logistic(x[:40], labels[:40], x[40:41], labels[40:41], seed=0)  # one class in val
    assert c_default == 1.0


def test_features_come_from_embedding_or_gap_by_name() -> None:
    from recognize_me.me.surgery import named_feature_outputs

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    gap = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    emb = keras.layers.Dense(6, name="embedding")(gap)
    model = keras.Model(inputs, keras.layers.Dense(40, activation="sigmoid")(emb))
    assert [t.shape[-1] for t in named_feature_outputs(model, "auto")] == [6]
    assert [t.shape[-1] for t in named_feature_outputs(model, "gap")] == [4]
    assert [t.shape[-1] for t in named_feature_outputs(model, "concat")] == [6, 4]
    assert [t.shape[-1] for t in named_feature_outputs(model, "spatial")] == [6 * 6 * 4]
    plain = keras.Model(inputs, keras.layers.Dense(40)(gap))
    assert [t.shape[-1] for t in named_feature_outputs(plain, "auto")] == [6 * 6 * 4]  # spatial
    with pytest.raises(ValueError, match="embedding"):
        named_feature_outputs(plain, "embedding")


def test_reference_strategy_is_skipped_cleanly_when_face_recognition_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from recognize_me.config import PipelineConfig
    from recognize_me.me.plan import plan_transfer_jobs, skipped_strategies

    real_find_spec = importlib.util.find_spec

    def no_face_recognition(name, *args, **kwargs):
        return None if name.startswith("face_recognition") else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_face_recognition)
    from recognize_me.catalog import STRATEGIES

    config = PipelineConfig(celeba_dir=Path("celeba"), me_strategies=list(STRATEGIES.names()))  # distilled too
    skipped = skipped_strategies(config)
    # dlib is also the teacher, and face_recognition_models holds the weights dlib_resnet rebuilds
    assert [r["strategy"] for r in skipped] == ["distilled", "dlib_resnet", "reference_dlib"]
    assert all(r["status"] == "skipped" and "pip install" in r["error"] for r in skipped)
    assert "face_recognition, face_recognition_models" in skipped[2]["error"]
    assert skipped[1]["error"].startswith("dlib_resnet skipped: face_recognition_models")
    assert skipped[0]["error"].startswith("distilled skipped: its teacher needs face_recognition")
    given = config.model_copy(update={"me_student_model": Path("student/model.keras")})
    # a given student needs no teacher
    assert [r["strategy"] for r in skipped_strategies(given)] == ["dlib_resnet", "reference_dlib"]
    jobs = plan_transfer_jobs(config, Path("run"), Path("photos.csv"), Path("base.keras"), threads=1,
                              skip=tuple(r["strategy"] for r in skipped))
    assert [j.strategy for j in jobs] == ["feature_extraction", "fine_tuning", "from_scratch"]
    from recognize_me.me.report import best_transfer_dir

    reference = {"strategy": "reference_dlib", "status": "completed", "promotable": False, "out_dir": "r",
                 "val_roc_auc": 1.0, "val_f1": 1.0}
    ours = {"strategy": "feature_extraction", "status": "completed", "out_dir": "f", "val_roc_auc": 0.9,
            "val_f1": 0.8}
    assert best_transfer_dir([reference, ours, *skipped]) == Path("f")  # the reference is never promoted


def test_importing_face_recognition_keeps_pillow_strict_on_truncated_images(tmp_path, monkeypatch):
    """face_recognition sets ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` on import; after it, the inventory
    would accept truncated JPEGs. The reference strategy's import restores the flag (a stand-in module
    with the same side effect, so the test runs whether or not the real package is installed)."""
    import sys

    from PIL import ImageFile

    from recognize_me.me.reference import import_face_recognition

    (tmp_path / "face_recognition.py").write_text(
        "from PIL import ImageFile\nImageFile.LOAD_TRUNCATED_IMAGES = True\nMARK = 'stand-in'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "face_recognition", raising=False)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    module = import_face_recognition()
    assert module.MARK == "stand-in"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

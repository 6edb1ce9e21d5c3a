"""Model ladder: shapes, serialisation (safe_mode .keras round trips), losses, VGG weights handling."""

from __future__ import annotations

import json
import time

import keras
import numpy as np
import pytest

from recognize_me.catalog import MODELS
from recognize_me.models import (
    BuildOptions,
    ResidualUnit,
    VGGPreprocessing,
    WeightedBinaryCrossentropy,
    builders,
    get_model_spec,
    positive_weights,
    with_positive_weights,
)
from recognize_me.models import vgg as vgg_module
from recognize_me.models.builders import count_params
from recognize_me.training.budget import EpochPlan
from recognize_me.training.schedule import WarmupCosineSchedule

SHAPE = (32, 32, 3)
N_OUT = 3
OPTIONS = BuildOptions(learning_rate=1e-3, vgg_weights="none", dropout=0.3, seed=0)
NAMES = ["baseline_cnn", "cnn_scheduled", "cnn_thresholded", "resnet", "vgg16_finetune", "resnet_identity"]


def _images(n: int = 4, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def _build(name: str, seed: int = 0, options: BuildOptions = OPTIONS) -> keras.Model:
    """As training builds a model: Keras' default seeds come from a private ``random.Random`` (other tests'
    Prefect/Dask threads in this process draw from the global one)."""
    from recognize_me.training.seeding import isolated_default_seeds

    keras.utils.set_random_seed(seed)
    with isolated_default_seeds(seed):
        return get_model_spec(name).build(SHAPE, N_OUT, options)


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(_all_layers(layer))
    return layers


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def built() -> dict[str, keras.Model]:
    """One model per name, built once (tests that mutate a model build their own)."""
    return {name: _build(name) for name in NAMES}


# --- registry ---------------------------------------------------------------------------------


def test_registry_has_exactly_the_ladder_names_in_order():
    assert list(MODELS.names()) == NAMES
    for spec in MODELS:
        assert get_model_spec(spec.name) is spec
        assert spec.description.strip()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_model_spec("alexnet")
    for name in NAMES:
        assert name in str(err.value)


def test_spec_flags_and_callbacks():
    plan = EpochPlan(max_epochs=7)
    assert get_model_spec("baseline_cnn").callbacks(OPTIONS, plan) == []
    assert not any(spec.class_weighted_loss for spec in MODELS)  # plain BCE: thresholds do the rest
    assert not get_model_spec("cnn_scheduled").tune_thresholds
    assert get_model_spec("cnn_thresholded").tune_thresholds
    assert [s.name for s in MODELS if s.fine_tune is not None] == ["vgg16_finetune"]

    assert [s.name for s in MODELS if s.identity_loss_weight > 0] == ["resnet_identity"]

    for name in ("cnn_scheduled", "cnn_thresholded", "resnet", "vgg16_finetune", "resnet_identity"):
        callbacks = get_model_spec(name).callbacks(OPTIONS, plan)
        schedule = [c for c in callbacks if isinstance(c, WarmupCosineSchedule)]
        stop = [c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)]
        assert len(schedule) == 1 and len(stop) == 1, name
        assert schedule[0].plan is plan and schedule[0].base_lr == OPTIONS.learning_rate
        assert stop[0].monitor == "val_loss" and stop[0].patience == 3 and stop[0].restore_best_weights
    # VGG's second phase continues the schedule at a tenth of the rate
    phase2 = get_model_spec("vgg16_finetune").callbacks(OPTIONS, plan, 3)[0]
    assert phase2.base_lr == pytest.approx(OPTIONS.learning_rate / 10) and phase2.offset == 3
    # fresh callback objects per call (they hold state)
    spec = get_model_spec("cnn_scheduled")
    assert spec.callbacks(OPTIONS, plan)[0] is not spec.callbacks(OPTIONS, plan)[0]


def test_strided_stem_resnet_costs_about_the_plain_cnn(monkeypatch):
    """The stem halves H and W: the residual units run on a quarter of the positions (a quarter of the
    multiply-adds of a stride-1 stem), the trunk's output is as small as the plain CNN's, and the
    multiply-adds per image are at most ~2x the CNN's (seven two-conv units against four convs)."""
    keras.utils.set_random_seed(0)
    shape = (64, 64, 3)
    resnet = get_model_spec("resnet").build(shape, 40, OPTIONS)
    cnn = get_model_spec("cnn_thresholded").build(shape, 40, OPTIONS)
    assert resnet.get_layer("stem_conv").output.shape[1:3] == (32, 32)
    assert resnet.get_layer("gap").input.shape[1:3] == cnn.get_layer("gap").input.shape[1:3] == (4, 4)
    assert _conv_macs(resnet) <= 2.05 * _conv_macs(cnn)
    monkeypatch.setattr(builders, "RESNET_STEM_STRIDES", 1)
    unstrided = get_model_spec("resnet").build(shape, 40, OPTIONS)
    assert _conv_macs(resnet) < 0.27 * _conv_macs(unstrided)


def _conv_macs(model: keras.Model) -> int:
    """Multiply-adds of every Conv2D (also inside ResidualUnits) for one image: out H * W * kernel size."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, ResidualUnit):
            convs = [c for c in (layer.conv1, layer.conv2, layer.skip_conv) if c is not None]
        elif isinstance(layer, keras.layers.Conv2D):
            convs = [layer]
        else:
            continue
        _, h, w, _ = layer.output.shape  # every conv of a unit has the unit's output size
        total += sum(h * w * int(np.prod(c.kernel.shape)) for c in convs)
    return total


# --- every builder ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_range_and_compile(built, name):
    model = built[name]
    y = _predict(model, _images(5))
    assert y.shape == (5, N_OUT)
    assert np.all((y >= 0) & (y <= 1))
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    metrics = model.get_compile_config()["metrics"]
    assert [(m["class_name"], m["config"]["name"]) for m in metrics] == [("BinaryAccuracy", "accuracy")]
    kinds = {type(layer).__name__ for layer in _all_layers(model)}
    assert "Lambda" not in kinds and "Rescaling" not in kinds


def test_count_params(built):
    counts = {name: count_params(model) for name, model in built.items()}
    assert all(c > 0 for c in counts.values())
    assert counts["resnet"] != counts["vgg16_finetune"]
    assert counts["resnet"] != counts["baseline_cnn"]
    assert counts["baseline_cnn"] == counts["cnn_scheduled"] == counts["cnn_thresholded"]
    assert counts["vgg16_finetune"] > 14_000_000  # the VGG16 conv base alone is ~14.7 M


# An untrained model is saved before its optimizer is built; Keras then warns on load that it skips
# the (empty) optimizer state. Harmless here; trained models below save and restore it.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.parametrize("name", NAMES)
def test_keras_round_trip_safe_mode(built, tmp_path, name):
    model = built[name]
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = _images(3, seed=1)
    np.testing.assert_allclose(_predict(loaded, x), _predict(model, x), rtol=0, atol=1e-6)
    assert count_params(loaded) == count_params(model)
    assert [w.trainable for w in loaded.weights] == [w.trainable for w in model.weights]


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_resnet_round_trip_keeps_batchnorm_statistics(tmp_path):
    model = _build("resnet")
    x = _images(4)
    model(x, training=True)  # a training-mode forward pass moves the BN statistics (cheaper than fit)
    moving_mean = model.get_layer("res3").bn1.moving_mean
    assert np.abs(keras.ops.convert_to_numpy(moving_mean)).max() > 0
    path = tmp_path / "resnet_stats.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.get_layer("res3").projects_skip and not loaded.get_layer("res2").projects_skip
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.get_layer("res3").bn1.moving_mean), keras.ops.convert_to_numpy(moving_mean))
    np.testing.assert_allclose(_predict(loaded, x), _predict(model, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["baseline_cnn", "resnet", "vgg16_finetune"])
def test_builders_deterministic_given_global_seed(name):
    a, b, c = _build(name, seed=3), _build(name, seed=3), _build(name, seed=4)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc, strict=True))


def test_bad_shapes_rejected():
    with pytest.raises(ValueError):
        get_model_spec("baseline_cnn").build((32, 32), N_OUT, OPTIONS)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        get_model_spec("resnet").build(SHAPE, 0, OPTIONS)
    with pytest.raises(ValueError, match="32"):
        get_model_spec("vgg16_finetune").build((16, 16, 3), N_OUT, OPTIONS)


# --- ResidualUnit -----------------------------------------------------------------------------


def test_residual_unit_config_is_only_constructor_args():
    unit = ResidualUnit(16, strides=2, activation="elu", name="ru")
    unit.build((None, 8, 8, 4))
    config = unit.get_config()
    json.dumps(config)  # JSON-serialisable: no layer objects
    base_keys = set(keras.layers.Layer(name="x").get_config())
    assert set(config) - base_keys == {"filters", "strides", "activation"}
    assert (config["filters"], config["strides"], config["activation"]) == (16, 2, "elu")


def test_residual_unit_from_config_is_equivalent():
    x = _images(2, shape=(8, 8, 4))
    unit = ResidualUnit(8, strides=1, name="ru")
    y = keras.ops.convert_to_numpy(unit(x, training=False))
    clone = ResidualUnit.from_config(unit.get_config())
    clone.build((None, 8, 8, 4))
    clone.set_weights(unit.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x, training=False)), y, rtol=0, atol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(unit))
    assert isinstance(restored, ResidualUnit) and restored.filters == 8


def test_residual_unit_stride_two_halves_and_projects():
    x = _images(2, shape=(8, 8, 4))
    unit = ResidualUnit(6, strides=2)
    y = unit(x)
    assert tuple(y.shape) == (2, 4, 4, 6)
    assert unit.projects_skip
    assert unit.compute_output_shape((None, 8, 8, 4)) == (None, 4, 4, 6)


def test_residual_unit_identity_skip_only_when_shape_kept():
    x = _images(2, shape=(8, 8, 4))
    same = ResidualUnit(4, strides=1)
    assert tuple(same(x).shape) == (2, 8, 8, 4)
    assert not same.projects_skip
    wider = ResidualUnit(6, strides=1)
    assert tuple(wider(x).shape) == (2, 8, 8, 6)
    assert wider.projects_skip
    # the projection adds a 1x1 conv kernel and 4 BN vectors (gamma, beta, moving mean, variance)
    assert len(wider.weights) == len(same.weights) + 5


def test_residual_unit_output_is_nonnegative_after_relu():
    y = keras.ops.convert_to_numpy(ResidualUnit(4)(_images(2, shape=(8, 8, 4)) - 0.5))
    assert y.min() >= 0 and y.max() > 0


# --- weighted loss ----------------------------------------------------------------------------


def test_weighted_loss_penalises_missed_positive_more():
    y_true = np.array([[1.0, 0.0, 0.0]], dtype="float32")
    y_pred = np.array([[0.1, 0.1, 0.1]], dtype="float32")
    plain = float(keras.losses.BinaryCrossentropy()(y_true, y_pred))
    weighted = float(WeightedBinaryCrossentropy([4.0, 1.0, 1.0])(y_true, y_pred))
    ones = float(WeightedBinaryCrossentropy([1.0, 1.0, 1.0])(y_true, y_pred))
    assert weighted > plain
    assert ones == pytest.approx(plain, rel=1e-5)
    # the negative term is untouched: a false positive costs the same with or without weights
    y_neg = np.zeros((1, 3), dtype="float32")
    p_high = np.full((1, 3), 0.9, dtype="float32")
    assert float(WeightedBinaryCrossentropy([4.0, 4.0, 4.0])(y_neg, p_high)) == pytest.approx(
        float(keras.losses.BinaryCrossentropy()(y_neg, p_high)), rel=1e-5)


def test_weighted_loss_config_round_trip_and_validation():
    loss = WeightedBinaryCrossentropy([2.0, 3.5])
    config = loss.get_config()
    json.dumps(config)
    assert WeightedBinaryCrossentropy.from_config(config).pos_weight == [2.0, 3.5]
    with pytest.raises(ValueError):
        WeightedBinaryCrossentropy([1.0, -1.0])
    with pytest.raises(ValueError):
        WeightedBinaryCrossentropy([])


def test_positive_weights_from_labels():
    labels = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(positive_weights(labels), [3.0, 10.0, 1.0])
    np.testing.assert_allclose(positive_weights(labels * 2 - 1), [3.0, 10.0, 1.0])  # -1/1 labels


def test_with_positive_weights_round_trip(tmp_path):
    model = _build("cnn_thresholded")
    out = with_positive_weights(model, [1.0, 2.0, 5.0], learning_rate=5e-4)
    assert out is model
    assert isinstance(model.loss, WeightedBinaryCrossentropy) and model.loss.pos_weight == [1.0, 2.0, 5.0]
    x, y = _images(4), np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], dtype="float32")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "accuracy" in history.history
    path = tmp_path / "weighted.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.loss, WeightedBinaryCrossentropy)
    assert loaded.loss.pos_weight == [1.0, 2.0, 5.0]
    assert float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate)) == pytest.approx(5e-4)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 2  # optimizer state restored
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    np.testing.assert_allclose(_predict(loaded, x), _predict(model, x), rtol=0, atol=1e-6)
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)["loss"], rel=1e-5)


def test_with_positive_weights_rejects_wrong_length():
    with pytest.raises(ValueError, match="3 outputs"):
        with_positive_weights(_build("baseline_cnn"), [1.0, 2.0], learning_rate=1e-3)


# --- VGG16 ------------------------------------------------------------------------------------


def test_vgg_preprocessing_matches_keras_caffe_mode():
    x = _images(2, shape=(4, 4, 3))
    layer = VGGPreprocessing()
    expected = keras.applications.vgg16.preprocess_input(x * 255.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-3)
    red = np.zeros((1, 1, 1, 3), dtype="float32")
    red[..., 0] = 1.0  # pure red -> BGR (0, 0, 255) minus the mean
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(red)).ravel(),
                               [-103.939, -116.779, 255 - 123.68], atol=1e-3)


def test_vgg_head_only_trainable_before_fine_tune(built):
    model = built["vgg16_finetune"]
    assert not model.get_layer("vgg16").trainable
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head_dense", "attributes"}


def test_vgg_missing_local_weights_raise_file_not_found(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        get_model_spec("vgg16_finetune").build(SHAPE, N_OUT, BuildOptions(vgg_weights=str(missing)))


def test_vgg_local_weights_are_loaded(tmp_path):
    keras.utils.set_random_seed(7)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=SHAPE)
    path = tmp_path / "base.weights.h5"
    source.save_weights(path)
    model = _build("vgg16_finetune", seed=0, options=BuildOptions(vgg_weights=str(path)))
    base = model.get_layer("vgg16")
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), source.get_weights(), strict=True))


def test_vgg_imagenet_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(vgg_module, "network_available", lambda *a, **k: False)

    def no_download(*args, **kwargs):
        raise AssertionError("must not try to download when the probe fails")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    start = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        get_model_spec("vgg16_finetune").build(SHAPE, N_OUT, BuildOptions(vgg_weights="imagenet"))
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "vgg_weights" in message
    assert vgg_module.VGG16_NOTOP_URL in message
    assert str(tmp_path / "models" / vgg_module.VGG16_NOTOP_FILENAME) in message
    assert "--vgg-weights /path/to/" in message


def test_vgg_imagenet_download_failure_becomes_runtime_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(vgg_module, "network_available", lambda *a, **k: True)

    def failing_download(*args, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(keras.utils, "get_file", failing_download)
    with pytest.raises(RuntimeError, match="vgg_weights") as err:
        vgg_module.resolve_imagenet_weights()
    assert isinstance(err.value.__cause__, OSError)


def test_vgg_imagenet_cached_file_skips_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / vgg_module.VGG16_NOTOP_FILENAME
    cached.parent.mkdir()
    cached.write_bytes(b"placeholder")

    def no_probe(*args, **kwargs):
        raise AssertionError("cached weights must not probe the network")

    monkeypatch.setattr(vgg_module, "network_available", no_probe)
    assert vgg_module.resolve_imagenet_weights() == cached


def test_network_probe_returns_false_for_closed_port():
    # port 9 on localhost (discard) is closed in the test sandbox: connection refused, no waiting
    assert vgg_module.network_available("127.0.0.1", 9, timeout=1.0) is False


def test_fine_tune_unfreezes_only_block5_and_keeps_loss():
    spec = get_model_spec("vgg16_finetune")
    options = BuildOptions(learning_rate=1e-3)
    model = with_positive_weights(_build("vgg16_finetune"), [2.0, 1.0, 3.0], learning_rate=1e-3)
    tuned = spec.fine_tune(model, options)
    base = tuned.get_layer("vgg16")
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3"}
    frozen_weights = [w for layer in base.layers if not layer.name.startswith("block5_") for w in layer.weights]
    assert frozen_weights and not any(w.trainable for w in frozen_weights)
    owners = {w.path.split("/")[0] for w in tuned.trainable_weights}
    assert owners == {"block5_conv1", "block5_conv2", "block5_conv3", "head_dense", "attributes"}
    assert float(keras.ops.convert_to_numpy(tuned.optimizer.learning_rate)) == pytest.approx(1e-4)
    assert isinstance(tuned.loss, WeightedBinaryCrossentropy) and tuned.loss.pos_weight == [2.0, 1.0, 3.0]
    # one training step updates block5 but not block1
    x, y = _images(2), np.array([[1, 0, 1], [0, 1, 0]], dtype="float32")
    b1 = base.get_layer("block1_conv1").get_weights()[0].copy()
    b5 = base.get_layer("block5_conv1").get_weights()[0].copy()
    tuned.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.array_equal(base.get_layer("block1_conv1").get_weights()[0], b1)
    assert not np.array_equal(base.get_layer("block5_conv1").get_weights()[0], b5)

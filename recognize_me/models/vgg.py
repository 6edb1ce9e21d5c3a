"""VGG16 transfer learning: frozen convolutional base + new multi-label head, optional block5 fine-tune.

Nothing is downloaded unless ``vgg_weights="imagenet"`` and the weights are not yet in the Keras
cache; offline, that case fails fast (short socket probe) with a ``RuntimeError`` saying what to do.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import keras
from keras import ops

from recognize_me.models.losses import compile_multilabel
from recognize_me.models.options import BuildOptions

VGG16_NOTOP_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_NOTOP_FILENAME
)
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
_PROBE_HOST = "storage.googleapis.com"
_PROBE_PORT = 443
_PROBE_TIMEOUT_S = 3.0

BASE_NAME = "vgg16"  # name of the nested VGG16 model inside the built model
FINE_TUNE_PREFIX = "block5_"
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="recognize_me")
class VGGPreprocessing(keras.layers.Layer):
    """Map RGB floats in [0, 1] to VGG16's "caffe" input: ``x*255``, RGB->BGR, minus the BGR mean."""

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype) * 255.0
        x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=self.compute_dtype)
        return x - mean

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


def keras_cache_dir() -> Path:
    """Keras' cache root as ``keras.utils.get_file`` resolves it: ``$KERAS_HOME`` or ``~/.keras``
    (``/tmp/.keras`` when the home folder is not writable). Read at call time."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def vgg16_imagenet_weights_path() -> Path:
    """Where the ImageNet no-top VGG16 weights live in the Keras cache."""
    return keras_cache_dir() / "models" / VGG16_NOTOP_FILENAME


def network_available(host: str = _PROBE_HOST, port: int = _PROBE_PORT,
                      timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(target: Path, reason: str) -> str:
    return (
        f"Cannot get the ImageNet VGG16 weights ({reason}); the machine looks offline. To supply them: "
        f"download {VGG16_NOTOP_URL} on a machine that is online (MD5 {VGG16_NOTOP_MD5}) and either copy "
        f"it to {target} (then vgg_weights='imagenet' finds it), or pass its path: "
        f"--vgg-weights /path/to/{VGG16_NOTOP_FILENAME} (vgg_weights='/path/to/file.h5' in the config). "
        f"Or use vgg_weights='none': VGG16 then trains from scratch (slow and weaker; the report says so)."
    )


def resolve_imagenet_weights() -> Path:
    """Path to the cached ImageNet weights, downloading them if absent and the network is reachable.

    Raises:
        RuntimeError: offline (probe failed) or the download failed; the message names the cache
            path, the URL and the ``vgg_weights`` alternatives.
    """
    target = vgg16_imagenet_weights_path()
    if target.is_file():
        return target
    if not network_available():
        raise RuntimeError(_offline_message(target, f"{_PROBE_HOST}:{_PROBE_PORT} unreachable"))
    try:
        fetched = keras.utils.get_file(
            VGG16_NOTOP_FILENAME, VGG16_NOTOP_URL, cache_dir=str(keras_cache_dir()),
            cache_subdir="models", file_hash=VGG16_NOTOP_MD5)
    except Exception as exc:  # any network / hash failure becomes one actionable error
        raise RuntimeError(_offline_message(target, f"download failed: {exc}")) from exc
    return Path(fetched)


def _weights_file(vgg_weights: str) -> Path | None:
    """``None`` for random init, else the local file to load into the base."""
    choice = vgg_weights.strip()
    if choice.lower() == "none":
        return None
    if choice.lower() == "imagenet":
        return resolve_imagenet_weights()
    path = Path(choice).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"vgg_weights={vgg_weights!r}: no such weights file. Give 'imagenet', 'none' or the path "
            f"to an existing VGG16 (include_top=False) .h5 / .weights.h5 file.")
    return path


def build_vgg16_finetune(input_shape: tuple[int, int, int], n_outputs: int,
                         options: BuildOptions) -> keras.Model:
    """Frozen VGG16 base (nested model named ``vgg16``) + GAP, Dense(256, relu), Dropout, Dense sigmoid.

    Inputs are RGB floats in [0, 1]; a ``VGGPreprocessing`` layer converts them. Needs H, W >= 32.
    """
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"vgg16_finetune needs (H, W, 3) inputs, got {input_shape}")
    if min(input_shape[0], input_shape[1]) < 32:
        raise ValueError(f"VGG16 needs height and width >= 32, got {input_shape}")
    weights_path = _weights_file(options.vgg_weights)

    base = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=tuple(input_shape), name=BASE_NAME)
    if weights_path is not None:
        base.load_weights(str(weights_path))
    base.trainable = False

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = VGGPreprocessing(name="vgg_preprocessing")(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(256, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(options.dropout, seed=options.seed, name="head_dropout")(x)
    outputs = keras.layers.Dense(n_outputs, activation="sigmoid", name="attributes", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="vgg16_finetune")
    return compile_multilabel(model, options.learning_rate, weight_decay=options.weight_decay)


def fine_tune_vgg16(model: keras.Model, options: BuildOptions) -> keras.Model:
    """Phase 2: unfreeze the base's ``block5_*`` layers only, recompile (in place) at
    ``learning_rate / 10`` keeping the model's current loss (e.g. the weighted one)."""
    base = model.get_layer(BASE_NAME)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith(FINE_TUNE_PREFIX)
    loss = getattr(model, "loss", None)
    return compile_multilabel(model, options.learning_rate / 10.0, loss=loss, weight_decay=options.weight_decay)

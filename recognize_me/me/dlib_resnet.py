"""dlib's face-recognition ResNet as a Keras model: dlib's own weights, run by TensorFlow, no dlib needed.

dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (shipped inside the ``face_recognition_models``
package, which ``make install`` brings) is read here directly: :func:`read_dlib_resnet` parses dlib's
serialisation of the network (the 29 ``con_4`` layers, each followed by an ``affine_`` layer, and the final
``fc_2``) and :func:`build_dlib_resnet` rebuilds the same graph in Keras: the affine layers folded into
their convolutions, the input normalisation folded into the first one, dlib's ``add_prev`` (zero padding to
the larger tensor) as explicit padding. On the same 150x150 chip it gives dlib's 128-d descriptor (equal
to float32 round-off; ``tests/test_dlib_resnet.py``), at about 4 ms per face in batches instead of dlib's
~75 ms on this machine.

The chip: dlib cuts it from the photo with its own 5-point landmarks. The pipeline's photos are already
aligned onto CelebA's 178x218 template, so the chip is a fixed box of that frame (``CHIP_BOX``: where
dlib's landmarks put it on CelebA's aligned images, median of 600), cropped and resized to 150x150 inside
the model. The model therefore takes the pipeline's aligned frames ([0, 1] floats, crop ``none``) like any
other base, and its output layer is named ``embedding`` (what ``feature_extraction`` reads).

Pure core: no Prefect. Keras is imported when a model is built.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recognize_me.fileio import write_json, write_with

if TYPE_CHECKING:
    import keras

WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
WEIGHTS_PACKAGE = "face_recognition_models"
FRAME_HW = (218, 178)  # the pipeline's aligned frame (CelebA's template)
CHIP_SIDE = 150
#: (top, left, bottom, right), exclusive: where dlib's 5-point landmarks put its 150x150 chip (padding
#: 0.25) on CelebA's aligned images, median over 600 of them (interquartile range about 4 px per side)
CHIP_BOX = (79, 35, 187, 143)
#: the residual stages, input side first: (filters, residual units, whether the first one downsamples)
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
N_CONV = 1 + 2 * sum(units for _, units, _ in STAGES)
EMBEDDING_DIM = 128
INSTALL_HINT = "pip install --no-deps face-recognition-models (make install brings it)"


@dataclass(frozen=True)
class DlibResNet:
    """dlib's network, read: per convolution (HWIO kernel, bias, stride, Keras padding) with its affine layer
    folded in, the input's per-channel means (0..255, subtracted then divided by 256 by dlib) and the
    (256, 128) fully connected layer."""

    convs: tuple[tuple[np.ndarray, np.ndarray, int, str], ...]
    input_means: tuple[float, float, float]
    fc: np.ndarray


class DlibFormatError(ValueError):
    """The weights file is not the dlib network this module rebuilds."""


class _Reader:
    """dlib's serialisation: integers as a length byte (low nibble; 0x80 = negative) then little-endian
    bytes; a layer's name as a length then its bytes; floats as (mantissa, exponent) integers; tensors as version 2,
    four dimensions, then little-endian float32 values."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.path}: {what} at byte {self.pos}; not dlib's face-recognition ResNet "
                               f"({WEIGHTS_FILE}), or a truncated copy")

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends while reading {n} bytes")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        head = self._take(1)[0]
        value = int.from_bytes(self._take(head & 0x0F), "little")
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        return float(mantissa * 2.0 ** self.int())

    def tensor(self) -> np.ndarray:
        if (version := self.int()) != 2:
            raise self.fail(f"tensor version {version}, expected 2")
        shape = [self.int() for _ in range(4)]
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def seek_layer(self, name: str) -> None:
        """Move past the next serialised layer name ``name`` (what sits between layers is skipped)."""
        token = bytes([0x01, len(name)]) + name.encode()
        found = self.data.find(token, self.pos)
        if found < 0:
            raise self.fail(f"no further layer {name!r}")
        self.pos = found + len(token)


def read_dlib_resnet(path: Path) -> DlibResNet:
    """Parse ``path`` (dlib's ``dlib_face_recognition_resnet_model_v1.dat``); :class:`DlibFormatError`
    names the file and the byte when it is not that network."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), path)
    reader.seek_layer("input_rgb_image_sized")
    means = (reader.float(), reader.float(), reader.float())
    convs = []
    for _ in range(N_CONV):
        reader.seek_layer("con_4")
        params = reader.tensor().reshape(-1)
        filters, rows, cols, stride, stride_x, pad, pad_x = (reader.int() for _ in range(7))
        padding = {0: "valid", rows // 2: "same" if stride == 1 else None}.get(pad)
        if (stride_x, pad_x, cols) != (stride, pad, rows) or padding is None:
            raise reader.fail(f"a {rows}x{cols} convolution with strides {stride},{stride_x} and padding "
                               f"{pad},{pad_x}, which this rebuild does not handle")
        in_channels = (params.size - filters) // (filters * rows * cols)
        if in_channels * filters * rows * cols + filters != params.size:
            raise reader.fail(f"a convolution of {params.size} parameters does not fit {filters} {rows}x{cols} filters")
        kernel = params[:-filters].reshape(filters, in_channels, rows, cols).transpose(2, 3, 1, 0)
        reader.seek_layer("affine_")
        gamma_beta = reader.tensor().reshape(2, filters)
        convs.append((kernel * gamma_beta[0], params[-filters:] * gamma_beta[0] + gamma_beta[1], stride, padding))
    reader.seek_layer("fc_2")
    outputs, inputs = reader.int(), reader.int()
    fc = reader.tensor().reshape(-1)
    if (outputs, inputs, fc.size) != (EMBEDDING_DIM, 256, 256 * EMBEDDING_DIM):
        raise reader.fail(f"a final layer of {inputs} -> {outputs} ({fc.size} weights), expected 256 -> 128")
    return DlibResNet(tuple(convs), means, fc.reshape(inputs, outputs))


def build_dlib_resnet(net: DlibResNet, chip_input: bool = False) -> keras.Model:
    """aligned 178x218 frames, float [0, 1] -> dlib's 128-d descriptor (layer ``embedding``), frozen.
    ``chip_input``: the model takes dlib's own 150x150 chips ([0, 1]) instead (what tests compare)."""
    import keras
    from keras import layers

    convs = iter(net.convs)

    def conv(x, relu: bool, scale: float = 1.0, shift: np.ndarray | None = None):
        kernel, bias, stride, padding = next(convs)
        if shift is not None:  # dlib subtracts the input means first; with "valid" padding that is a bias
            bias = bias - np.einsum("hwio,i->o", kernel, shift)
        layer = layers.Conv2D(kernel.shape[-1], kernel.shape[:2], strides=stride, padding=padding,
                              activation="relu" if relu else None)
        out = layer(x)
        layer.set_weights([kernel * scale, bias])
        return out

    def unit(x, downsample: bool):
        y = conv(conv(x, relu=True), relu=False)
        if not downsample:
            return layers.ReLU()(layers.Add()([y, x]))
        skip = layers.AveragePooling2D(2, 2)(x)
        grow = layers.Conv2D(y.shape[-1], 1, use_bias=False)  # dlib's add_prev pads the channels with zeros
        widened = grow(skip)
        grow.set_weights([np.eye(skip.shape[-1], y.shape[-1], dtype=np.float32)[None, None]])
        pad_h, pad_w = skip.shape[1] - y.shape[1], skip.shape[2] - y.shape[2]  # and the rows, bottom-right
        y = layers.ZeroPadding2D(((0, pad_h), (0, pad_w)))(y) if pad_h or pad_w else y
        return layers.ReLU()(layers.Add()([y, widened]))

    top, left, bottom, right = CHIP_BOX
    frames = keras.Input(shape=(CHIP_SIDE, CHIP_SIDE, 3) if chip_input else (*FRAME_HW, 3), name="frame")
    chip = frames
    if not chip_input:
        chip = layers.Cropping2D(((top, FRAME_HW[0] - bottom), (left, FRAME_HW[1] - right)), name="chip")(chip)
        chip = layers.Resizing(CHIP_SIDE, CHIP_SIDE, interpolation="bilinear", name="chip_150")(chip)
    means = np.asarray(net.input_means, dtype=np.float32)
    x = conv(chip, relu=True, scale=255.0 / 256.0, shift=means / 256.0)  # [0, 1] -> dlib's (v - mean) / 256
    x = layers.MaxPooling2D(3, 2)(x)
    for _, units, downsample in STAGES:
        for i in range(units):
            x = unit(x, downsample and i == 0)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    fc = layers.Dense(EMBEDDING_DIM, use_bias=False, name="embedding")
    model = keras.Model(frames, fc(x), name="dlib_resnet")
    fc.set_weights([net.fc])
    model.trainable = False
    return model


def weights_path() -> Path | None:
    """The installed ``face_recognition_models``' copy of the weights (looked up, not imported), or None."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    return path if path.is_file() else None


def dlib_resnet_missing() -> str | None:
    """None when dlib's weights are installed, else why the ``dlib_resnet`` strategy is skipped."""
    if weights_path() is None:
        return f"dlib_resnet skipped: {WEIGHTS_PACKAGE} ({WEIGHTS_FILE}) not installed; {INSTALL_HINT}"
    return None


def convert_dlib_resnet(cache_dir: Path, weights: Path | None = None) -> Path:
    """The Keras model of ``weights`` (default: the installed file) as ``<cache_dir>/dlib_resnet/<digest>/
    model.keras`` with its ``config.json`` (input size and crop, like every base), converted once per
    weights file and written atomically; returns the model's path."""
    from recognize_me.runs import file_digest

    weights = Path(weights) if weights is not None else weights_path()
    if weights is None:
        raise FileNotFoundError(dlib_resnet_missing())
    key = hashlib.sha256(f"{file_digest(weights)}\0{CHIP_BOX}".encode()).hexdigest()[:16]
    out = Path(cache_dir) / "dlib_resnet" / key
    model_path = out / "model.keras"
    if not model_path.is_file():
        model = build_dlib_resnet(read_dlib_resnet(weights))
        write_json(out / "config.json", {"job": {"image_size": list(FRAME_HW), "crop": "none"},
                                         "source": str(weights), "chip_box": list(CHIP_BOX)})
        write_with(model_path, model.save, suffix=".keras")
    return model_path

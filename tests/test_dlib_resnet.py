"""dlib's face-recognition ResNet rebuilt in Keras (``me.dlib_resnet``): the same descriptor as dlib on dlib's own
chips, the fixed chip box of the aligned frame, clear errors for a wrong file, one conversion per weights file.

The weights come from the installed ``face_recognition_models`` (``make install``); without it these tests skip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recognize_me.me.dlib_resnet import (
    CHIP_BOX,
    DlibFormatError,
    build_dlib_resnet,
    convert_dlib_resnet,
    read_dlib_resnet,
    weights_path,
)
from tests.conftest import SHARED_DATA

WEIGHTS = weights_path()
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason="face_recognition_models is not installed")


@pytest.fixture(scope="module")
def net():
    if WEIGHTS is None:
        pytest.skip("face_recognition_models is not installed")
    return read_dlib_resnet(WEIGHTS)


def _textures(n: int, side: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour images (uint8): the network's arithmetic is checked, no face is needed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, 12, 12, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((side, side), Image.Resampling.BICUBIC)) for s in small])


def test_the_rebuilt_network_gives_dlibs_descriptor_on_dlibs_chips(net):
    dlib = pytest.importorskip("dlib")
    from recognize_me.training.seeding import isolated_default_seeds

    chips = _textures(6, 150)
    reference = dlib.face_recognition_model_v1(str(WEIGHTS))
    expected = np.stack([np.asarray(reference.compute_face_descriptor(c)) for c in chips])
    with isolated_default_seeds(0):
        model = build_dlib_resnet(net, chip_input=True)
    got = model.predict(chips.astype(np.float32) / 255.0, verbose=0)
    assert got.shape == (6, 128)
    assert np.abs(got - expected).max() < 1e-4  # float32 round-off; the descriptors differ by ~0.5 between images
    assert np.linalg.norm(expected[0] - expected[1]) > 0.05


def test_the_parsed_network_has_dlibs_shape(net):
    assert len(net.convs) == 29
    assert [c[0].shape for c in net.convs[:2]] == [(7, 7, 3, 32), (3, 3, 32, 32)]
    assert [(c[2], c[3]) for c in net.convs[:2]] == [(2, "valid"), (1, "same")]
    assert net.fc.shape == (256, 128)
    assert net.input_means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)


def test_a_wrong_or_truncated_weights_file_is_named(tmp_path):
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"not a network at all")
    with pytest.raises(DlibFormatError, match=r"garbage\.dat: no further layer 'input_rgb_image_sized'"):
        read_dlib_resnet(garbage)
    if WEIGHTS is None:
        return
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(WEIGHTS.read_bytes()[:400_000])
    with pytest.raises(DlibFormatError, match=r"truncated\.dat: .* at byte \d+; not dlib's face-recognition ResNet"):
        read_dlib_resnet(truncated)


@needs_weights
def test_conversion_writes_a_servable_base_once_per_weights_file(tmp_path):
    from recognize_me.me.surgery import load_base, named_feature_outputs
    from recognize_me.me.transfer import base_input_settings

    path = convert_dlib_resnet(tmp_path)
    assert path.name == "model.keras" and path.parent.parent == tmp_path / "dlib_resnet"
    assert base_input_settings(path) == ((218, 178), "none")
    assert json.loads((path.parent / "config.json").read_text())["chip_box"] == list(CHIP_BOX)
    before = path.stat().st_mtime_ns
    assert convert_dlib_resnet(tmp_path) == path and path.stat().st_mtime_ns == before  # not converted again
    base = load_base(path, (218, 178))  # safe mode: standard Keras layers only
    assert [t.shape[-1] for t in named_feature_outputs(base)] == [128]  # "auto" reads the embedding
    frames = _textures(2, 218)[:, :, 20:198] / 255.0
    assert np.isfinite(base.predict(frames, verbose=0)).all()
    assert list(tmp_path.rglob("*.tmp*")) == []


@pytest.mark.real_data
@pytest.mark.slow
def test_the_fixed_chip_box_is_where_dlibs_landmarks_put_it_on_celeba(net):
    """On aligned CelebA images (the template every photo is aligned to): dlib's own chip box is CHIP_BOX to a
    few pixels, and the frame model's descriptor stays close to dlib's landmark-cut one (dlib calls < 0.6 the
    same person)."""
    dlib = pytest.importorskip("dlib")
    from recognize_me.me.align import FACE_BOX
    from recognize_me.me.teacher import filled_frame
    from recognize_me.training.seeding import isolated_default_seeds

    images = sorted((SHARED_DATA / "celeba" / "img_align_celeba").glob("*.jpg"))[:60]
    if not images:
        pytest.skip("no CelebA images in ../shared/data")
    models = Path(WEIGHTS).parent
    landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    reference = dlib.face_recognition_model_v1(str(WEIGHTS))
    frames = np.stack([filled_frame(p) for p in images])
    boxes, expected = [], []
    for frame in frames:
        shape = landmarks(frame, dlib.rectangle(*FACE_BOX))
        rect = dlib.get_face_chip_details(shape, 150, 0.25).rect
        boxes.append((rect.top(), rect.left(), rect.bottom() + 1, rect.right() + 1))
        expected.append(np.asarray(reference.compute_face_descriptor(dlib.get_face_chip(frame, shape, 150, 0.25))))
    assert np.abs(np.median(boxes, axis=0) - np.asarray(CHIP_BOX)).max() <= 2
    with isolated_default_seeds(0):
        got = build_dlib_resnet(net).predict(frames.astype(np.float32) / 255.0, verbose=0)
    distance = np.linalg.norm(got - np.stack(expected), axis=1)
    assert np.median(distance) < 0.25

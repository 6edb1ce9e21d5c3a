"""recognize_me.data.dataset: the tf.data input pipeline on tiny synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from recognize_me.data.dataset import make_dataset  # noqa: E402

SIZE = (16, 12)  # (height, width) fed to the model: small and not square, to catch swapped axes


def _solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (178, 218)) -> str:
    img = Image.new("RGB", size, colour)
    img.save(path, format="PNG" if path.suffix == ".png" else "JPEG", quality=95)
    return str(path)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[list[str], np.ndarray]:
    """10 solid-colour images whose red/green channels encode two 0/1 labels, blue the index."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(10, 2)).astype(np.int64)
    labels[0], labels[1] = (0, 0), (1, 1)
    paths = [_solid(folder / f"{k:06d}.jpg", (int(255 * a), int(255 * b), 20 * k)) for k, (a, b) in enumerate(labels)]
    return paths, labels


def _decode_labels(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, index) recovered from solid-colour batches."""
    mean = images.mean(axis=(1, 2))  # (B, 3) in [0, 1]
    return np.round(mean[:, :2]), np.round(mean[:, 2] * 255 / 20).astype(int)


def _epoch(ds) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.asarray(t) for t in (batch if isinstance(batch, tuple) else (batch,))) for batch in ds]


@pytest.mark.parametrize("crop", ["none", "square", "face"])
def test_batches_have_configured_size_dtype_and_range(labelled, crop: str) -> None:
    paths, labels = labelled
    batches = _epoch(make_dataset(paths, labels, image_size=SIZE, crop=crop, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    for images, y in batches:
        assert images.shape[1:] == (*SIZE, 3)
        assert images.dtype == np.float32 and y.dtype == np.float32
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert y.shape[1] == 2
    assert max(b[0].max() for b in batches) > 0.9  # scaled to [0, 1], not left in [0, 255] or squashed


def test_labels_stay_aligned_with_images_when_shuffled_and_flipped(labelled) -> None:
    paths, labels = labelled
    ds = make_dataset(paths, labels, image_size=SIZE, batch_size=3, shuffle=True, augment_flip=True, seed=3)
    for _ in range(2):  # two epochs: cached images and reshuffled order stay paired with their labels
        seen = []
        for images, y in _epoch(ds):
            decoded, index = _decode_labels(images)
            np.testing.assert_array_equal(decoded, y)
            np.testing.assert_array_equal(y, labels[index].astype(np.float32))
            seen += index.tolist()
        assert sorted(seen) == list(range(len(paths)))


def test_without_labels_yields_images_only(labelled) -> None:
    paths, _ = labelled
    batches = list(make_dataset(paths, None, image_size=SIZE, batch_size=10))
    assert len(batches) == 1
    assert not isinstance(batches[0], tuple) and batches[0].shape == (10, *SIZE, 3)
    _, index = _decode_labels(batches[0].numpy())
    assert index.tolist() == list(range(10))  # no shuffle: file order


def test_png_input(tmp_path: Path) -> None:
    paths = [_solid(tmp_path / "a.png", (255, 0, 0)), _solid(tmp_path / "b.png", (0, 0, 255), size=(60, 80))]
    images, y = next(iter(make_dataset(paths, np.array([[1.0], [0.0]]), image_size=SIZE, batch_size=2)))
    np.testing.assert_allclose(images.numpy()[0].mean(axis=(0, 1)), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(images.numpy()[1].mean(axis=(0, 1)), [0, 0, 1], atol=1e-6)
    assert y.numpy().tolist() == [[1.0], [0.0]]


def test_crop_boxes_select_the_expected_region(tmp_path: Path) -> None:
    """Red band in rows 0-19 (outside square and face), green band in cols 0-14 (outside face only)."""
    arr = np.zeros((218, 178, 3), np.uint8)
    arr[..., 2] = 255
    arr[:, :15] = (0, 255, 0)
    arr[:20] = (255, 0, 0)
    path = tmp_path / "bands.png"
    Image.fromarray(arr).save(path)

    def first(crop: str) -> np.ndarray:
        return next(iter(make_dataset([str(path)], None, image_size=(32, 32), crop=crop, batch_size=1))).numpy()[0]

    none, square, face = first("none"), first("square"), first("face")
    assert none[0, :, 0].max() > 0.9 and none[-1, 0, 1] > 0.9
    assert square[..., 0].max() < 0.05 and square[16, 0, 1] > 0.9
    assert face[..., 0].max() < 0.05 and face[..., 1].max() < 0.05
    np.testing.assert_allclose(face[..., 2], 1.0, atol=1e-6)


@pytest.fixture(scope="module")
def asymmetric(tmp_path_factory) -> list[str]:
    """One small image repeated: white left half, black right half (a flip is visible)."""
    arr = np.zeros((109, 89, 3), np.uint8)
    arr[:, :44] = 255
    path = tmp_path_factory.mktemp("asym") / "half.png"
    Image.fromarray(arr).save(path)
    return [str(path)] * 120


def _flip_mask(images: np.ndarray) -> np.ndarray:
    left, right = images[:, :, : SIZE[1] // 2].mean(axis=(1, 2, 3)), images[:, :, SIZE[1] // 2:].mean(axis=(1, 2, 3))
    assert np.all(np.abs(left - right) > 0.9)  # every image is either original or mirrored
    return left < right


def _flipped(ds) -> np.ndarray:
    """Which images of one epoch came out mirrored."""
    return _flip_mask(np.concatenate([np.asarray(b[0]) for b in ds]))


def test_flip_is_applied_to_about_half(asymmetric) -> None:
    labels = np.arange(len(asymmetric), dtype=np.float32)[:, None]
    flipped = _flipped(make_dataset(asymmetric, labels, image_size=SIZE, batch_size=40, augment_flip=True, seed=1))
    assert 0.35 < flipped.mean() < 0.65
    unflipped = _flipped(make_dataset(asymmetric, labels, image_size=SIZE, batch_size=40, augment_flip=False))
    assert not unflipped.any()


def test_flips_are_redrawn_each_epoch(asymmetric) -> None:
    labels = np.zeros((len(asymmetric), 1), np.float32)
    ds = make_dataset(asymmetric, labels, image_size=SIZE, batch_size=40, augment_flip=True, seed=1)
    assert not np.array_equal(_flipped(ds), _flipped(ds))


def _order_and_flips(paths: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Element order (from the labels) and flip pattern of the first epoch of a fresh dataset."""
    labels = np.arange(len(paths), dtype=np.float32)[:, None]
    ds = make_dataset(paths, labels, image_size=SIZE, batch_size=32, shuffle=True, augment_flip=True, seed=seed)
    batches = _epoch(ds)
    order = np.concatenate([y[:, 0] for _, y in batches])
    return order, _flip_mask(np.concatenate([x for x, _ in batches]))


def test_same_seed_same_first_epoch_different_seed_differs(asymmetric) -> None:
    order_a, flips_a = _order_and_flips(asymmetric, seed=5)
    order_b, flips_b = _order_and_flips(asymmetric, seed=5)
    np.testing.assert_array_equal(order_a, order_b)
    np.testing.assert_array_equal(flips_a, flips_b)
    order_c, flips_c = _order_and_flips(asymmetric, seed=6)
    assert not np.array_equal(order_a, order_c)
    assert not np.array_equal(flips_a, flips_c)
    assert sorted(order_a.tolist()) == list(range(len(asymmetric)))


def test_same_seed_gives_identical_batches(labelled) -> None:
    paths, labels = labelled
    a, b = (_epoch(make_dataset(paths, labels, image_size=SIZE, batch_size=4, shuffle=True, augment_flip=True,
                                seed=8)) for _ in range(2))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_shuffle_changes_between_epochs(asymmetric) -> None:
    labels = np.arange(len(asymmetric), dtype=np.float32)[:, None]
    ds = make_dataset(asymmetric, labels, image_size=SIZE, batch_size=64, shuffle=True, seed=2)
    first = np.concatenate([b[1].numpy()[:, 0] for b in ds])
    second = np.concatenate([b[1].numpy()[:, 0] for b in ds])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(len(asymmetric)))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, np.arange(len(asymmetric)))  # actually shuffled


def test_no_shuffle_keeps_file_order(asymmetric) -> None:
    labels = np.arange(len(asymmetric), dtype=np.float32)[:, None]
    ds = make_dataset(asymmetric, labels, image_size=SIZE, batch_size=64)
    order = np.concatenate([b[1].numpy()[:, 0] for b in ds])
    np.testing.assert_array_equal(order, np.arange(len(asymmetric)))

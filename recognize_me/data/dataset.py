"""tf.data input pipeline: parallel read and decode, crop, resize, cache, seeded shuffle, flip, batch, prefetch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np
import tensorflow as tf

Crop = Literal["none", "square", "face", "face_box"]

# Boxes (top, left, height, width) inside the 218x178 aligned CelebA frame.
# "face" is the 148x148 box most CelebA papers crop (rows 40-188, cols 15-163); "face_box" is the aligned
# photos' face box (``me.align.FACE_BOX``) with a few pixels of its filled border: what the distilled
# "is this me?" student (``me.student``) sees.
CROP_BOXES: dict[str, tuple[int, int, int, int]] = {
    "square": (20, 0, 178, 178), "face": (40, 15, 148, 148), "face_box": (57, 33, 111, 109)}
ALIGNED_HW = (218, 178)


def decode_and_resize(path: tf.Tensor, image_size: tuple[int, int], crop: Crop) -> tf.Tensor:
    """One file -> uint8 (H, W, 3). JPEG and PNG, any mode (converted to 3 channels)."""
    data = tf.io.read_file(path)
    return crop_and_resize(tf.io.decode_image(data, channels=3, expand_animations=False), image_size, crop)


def crop_and_resize(img: tf.Tensor, image_size: tuple[int, int], crop: Crop) -> tf.Tensor:
    """uint8 (h, w, 3) in CelebA's aligned framing -> uint8 (H, W, 3); the crop box scales with the size."""
    if crop not in ("none", *CROP_BOXES):
        raise ValueError(f"unknown crop {crop!r}; use none, {', '.join(CROP_BOXES)}")
    if crop != "none":
        top, left, h, w = CROP_BOXES[crop]
        shape = tf.shape(img)
        sy = tf.cast(shape[0], tf.float32) / ALIGNED_HW[0]
        sx = tf.cast(shape[1], tf.float32) / ALIGNED_HW[1]
        img = tf.image.crop_to_bounding_box(
            img, tf.cast(top * sy, tf.int32), tf.cast(left * sx, tf.int32),
            tf.cast(h * sy, tf.int32), tf.cast(w * sx, tf.int32))
    img = tf.image.resize(img, image_size, method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def make_dataset(paths: Sequence[str], labels: np.ndarray | None, *, image_size: tuple[int, int],
                 crop: Crop = "square", batch_size: int = 64, shuffle: bool = False,
                 augment_flip: bool = False, seed: int = 0, cache: bool = True,
                 epoch: tf.Variable | None = None) -> tf.data.Dataset:
    """Batches of float32 images in [0, 1] (and float32 labels when given).

    Decoded, resized uint8 images are cached in memory, so only the first epoch reads files.
    Shuffling and flipping are seeded and re-drawn every epoch; with the same seed, the same
    sequence of batches comes out (deterministic map order).

    ``epoch``: an int64 ``tf.Variable`` the caller sets to the epoch number before each epoch's
    iteration starts (``training_callbacks.EpochSeeds``). The order and flips are then a pure function
    of (``seed``, epoch), so a run resumed at epoch k sees the batches an uninterrupted run sees at
    epoch k. Without it they come from a per-iteration seed stream that restarts with the process.
    """
    ds = tf.data.Dataset.from_tensor_slices(list(map(str, paths)))
    ds = ds.map(lambda p: decode_and_resize(p, image_size, crop), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    if labels is not None:
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(labels.astype(np.float32)))
    else:
        ds = ds.map(lambda x: (x,))
    if cache:
        ds = ds.cache()
    return _ordered_batches(ds, len(paths), batch_size=batch_size, shuffle=shuffle, augment_flip=augment_flip,
                            seed=seed, epoch=epoch)


def make_array_dataset(images: np.ndarray, rows: np.ndarray, labels: np.ndarray | None, *, batch_size: int = 64,
                       shuffle: bool = False, augment_flip: bool = False, seed: int = 0,
                       epoch: tf.Variable | None = None, gather: int = 256) -> tf.data.Dataset:
    """``make_dataset`` over already decoded images: ``images[rows]`` (``images`` a uint8 (N, H, W, 3)
    array, typically ``decoded_cache.DecodedImages.images``, memory-mapped).

    The row numbers are shuffled, then gathered from the array ``gather`` at a time (only those rows are
    copied), then flipped: the same order and flips as ``make_dataset`` with the same seed and epoch, so the
    batches equal the JPEG path's batch for batch.
    """
    rows = np.asarray(rows, dtype=np.int64)
    shape = tuple(int(d) for d in images.shape[1:])

    def load(ds: tf.data.Dataset) -> tf.data.Dataset:
        def take(idx: tf.Tensor, *rest: tf.Tensor) -> tuple:
            img = tf.numpy_function(lambda i: np.asarray(images[i]), [idx], tf.uint8, stateful=False)
            return (tf.ensure_shape(img, (None, *shape)), *rest)

        return ds.batch(gather).map(take, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()

    ds = tf.data.Dataset.from_tensor_slices(rows)
    if labels is not None:
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(labels.astype(np.float32)))
    else:
        ds = ds.map(lambda x: (x,))
    return _ordered_batches(ds, len(rows), batch_size=batch_size, shuffle=shuffle, augment_flip=augment_flip,
                            seed=seed, epoch=epoch, load=load)


def _ordered_batches(ds: tf.data.Dataset, n: int, *, batch_size: int, shuffle: bool, augment_flip: bool, seed: int,
                     epoch: tf.Variable | None, load=None) -> tf.data.Dataset:
    """Shuffle, ``load`` (items -> images, when the items are not images yet), flip, scale, batch."""
    load = load or (lambda d: d)
    if epoch is not None and (shuffle or augment_flip):
        ds = _per_epoch(ds, epoch, n, shuffle=shuffle, augment_flip=augment_flip, seed=seed, load=load)
    else:
        ds = _reshuffled(ds, n, shuffle=shuffle, augment_flip=augment_flip, seed=seed, load=load)
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _per_epoch(ds: tf.data.Dataset, epoch: tf.Variable, n: int, *, shuffle: bool, augment_flip: bool,
               seed: int, load) -> tf.data.Dataset:
    """Order and flips drawn from (seed, epoch), the variable read when an iteration starts."""

    def one_epoch(e: tf.Tensor) -> tf.data.Dataset:
        d = ds
        if shuffle:
            # Inside this traced function set_seed fixes only this function graph's seed (the process-wide
            # seed is untouched): the order depends on (seed, epoch) alone, and a tensor op seed never meets
            # random_seed.get_seed's `seeds == (0, 0)` test, which fails on a graph tensor when the
            # process-wide seed is 0.
            tf.random.set_seed(1)
            d = d.shuffle(n, seed=seed * 1_000_003 + e, reshuffle_each_iteration=False)
        d = load(d)
        if augment_flip:
            d = d.enumerate().map(lambda i, item: _flip(item, e * (n + 1) + i, seed),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return d

    def read_epoch(_: tf.Tensor) -> tf.Tensor:
        return tf.cast(epoch.read_value(), tf.int64)

    out = tf.data.Dataset.range(1).map(read_epoch).flat_map(one_epoch)
    return out.apply(tf.data.experimental.assert_cardinality(n))


def _reshuffled(ds: tf.data.Dataset, n: int, *, shuffle: bool, augment_flip: bool, seed: int,
                load) -> tf.data.Dataset:
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = load(ds).apply(tf.data.experimental.assert_cardinality(n))
    if augment_flip:
        noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, noise).map(lambda item, r: _flip(item, r), num_parallel_calls=tf.data.AUTOTUNE,
                                                deterministic=True)
    return ds


def _flip(item: tuple, r: tf.Tensor, seed: int = 0) -> tuple:
    key = tf.stack([tf.cast(r, tf.int64), tf.constant(seed, tf.int64)])
    img = tf.image.stateless_random_flip_left_right(item[0], seed=key)
    return (img, *item[1:])


def _to_float(*item: tf.Tensor) -> tuple | tf.Tensor:
    img = tf.cast(item[0], tf.float32) / 255.0
    return (img, *item[1:]) if len(item) > 1 else img


# --- the training stream: sub-epochs of a seeded, resumable sequence of batches ---------------------------

Loader = Callable[[tf.data.Dataset, int], tf.data.Dataset]


def jpeg_loader(paths: Sequence[str], image_size: tuple[int, int], crop: Crop = "square") -> Loader:
    """Loads split positions (int64) as batches of (uint8 images, positions), reading and decoding the files
    (nothing cached: memory stays flat whatever the number of images)."""
    table = tf.constant(list(map(str, paths)))

    def load(positions: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
        def one(i: tf.Tensor) -> tuple:
            return decode_and_resize(tf.gather(table, i), image_size, crop), i

        return positions.map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)

    return load


class RowSource(Protocol):
    """Rows of a (N, H, W, 3) uint8 array by a first-axis int index: an array or ``decoded_cache.RowFile``."""

    shape: tuple[int, ...]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray: ...


def array_loader(images: RowSource, rows: np.ndarray) -> Loader:
    """Loads split positions as batches of (``images[rows[positions]]``, positions): one gather per batch from
    the decoded array (an array, or a ``decoded_cache.RowFile`` that reads just those rows of the file)."""
    rows = np.asarray(rows, dtype=np.int64)
    shape = tuple(int(d) for d in images.shape[1:])

    def gather(idx: np.ndarray) -> np.ndarray:
        return np.asarray(images[rows[idx]])

    def load(positions: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
        def take(idx: tf.Tensor) -> tuple:
            img = tf.numpy_function(gather, [idx], tf.uint8, stateful=False)
            return tf.ensure_shape(img, (None, *shape)), idx

        return positions.batch(batch_size).map(take, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return load


def make_train_stream(load: Loader, labels: np.ndarray, *, batch_size: int, sub_epoch_steps: int,
                      max_epochs: int, start: tf.Variable, seed: int = 0, shuffle: bool = True,
                      augment_flip: bool = True) -> tf.data.Dataset:
    """The whole training as one sequence of float32 batches, from optimizer step ``start * sub_epoch_steps``
    (``start`` an int64 ``tf.Variable`` read when an iteration begins: the sub-epoch a fit starts at) to the
    end of real epoch ``max_epochs``.

    Real epoch ``e`` is the split in the order of a stateless shuffle seeded by (``seed``, ``e``), cut into
    ``ceil(n / batch_size)`` batches (the last one partial, as an epoch always ends); batch ``b``'s images are
    flipped by a key of (``seed``, ``e``, ``b``). Every batch is therefore a pure function of its step number,
    and a run resumed at sub-epoch ``k`` starts where an uninterrupted run's sub-epoch ``k`` starts: only the
    positions are skipped, no image before the start is loaded. Feed it to ``fit(steps_per_epoch=
    sub_epoch_steps)``: Keras keeps one iterator across its epochs.
    """
    n = len(labels)
    per_epoch = -(-n // batch_size)
    label_table = tf.constant(np.asarray(labels, dtype=np.float32))

    def one_epoch(first_step: tf.Tensor, e: tf.Tensor) -> tf.data.Dataset:
        skip = tf.maximum(first_step - e * per_epoch, 0)  # batches of this epoch already trained
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.constant(seed, tf.int64), e]))
        positions = tf.data.Dataset.from_tensor_slices(order[skip * batch_size:])
        batches = tf.data.Dataset.zip(tf.data.Dataset.range(skip, per_epoch), load(positions, batch_size))

        def finish(b: tf.Tensor, loaded: tuple) -> tuple:
            images, idx = loaded
            if augment_flip:
                key = tf.stack([e * (per_epoch + 1) + b, tf.constant(seed, tf.int64)])
                images = tf.image.stateless_random_flip_left_right(images, seed=key)
            return tf.cast(images, tf.float32) / 255.0, tf.gather(label_table, idx)

        return batches.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def from_start(_: tf.Tensor) -> tf.data.Dataset:
        first_step = tf.cast(start.read_value(), tf.int64) * sub_epoch_steps
        epochs = tf.data.Dataset.range(first_step // per_epoch, max_epochs)
        return epochs.flat_map(lambda e: one_epoch(first_step, e))

    return tf.data.Dataset.range(1).flat_map(from_start).prefetch(tf.data.AUTOTUNE)


def make_eval_batches(load: Loader, labels: np.ndarray, positions: np.ndarray | None = None, *,
                      batch_size: int = 64) -> tf.data.Dataset:
    """Float32 batches (images, labels) of the split's ``positions`` (all, in order, when None), unshuffled and
    unflipped, loaded as they are needed (nothing cached)."""
    positions = np.arange(len(labels)) if positions is None else np.asarray(positions)
    label_table = tf.constant(np.asarray(labels, dtype=np.float32))
    ds = load(tf.data.Dataset.from_tensor_slices(positions.astype(np.int64)), batch_size)
    ds = ds.map(lambda img, idx: (tf.cast(img, tf.float32) / 255.0, tf.gather(label_table, idx)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` distinct positions spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(1, k)).round().astype(np.int64))

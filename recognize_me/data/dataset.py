"""tf.data input pipeline: parallel read and decode, crop, resize, cache, seeded shuffle, flip, batch, prefetch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import tensorflow as tf

Crop = Literal["none", "square", "face"]

# Boxes (top, left, height, width) inside the 218x178 aligned CelebA frame.
# "face" is the 148x148 box most CelebA papers crop (rows 40-188, cols 15-163).
CROP_BOXES: dict[str, tuple[int, int, int, int]] = {"square": (20, 0, 178, 178), "face": (40, 15, 148, 148)}
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

"""The decoded array is used when it fits in memory, else training streams the JPEGs: chosen automatically
from the available memory, and forced here with an artificially low ``memory_limit_mb``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from celeba_fixtures import write_training_job

pytest.importorskip("tensorflow")


def test_a_low_memory_limit_makes_training_stream_the_jpegs_with_one_log_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recognize_me.config import PipelineConfig
    from recognize_me.data.decoded_cache import DecodedCacheDoesNotFit, decode_splits
    from tasks.data import decode_images

    splits_csv, images = write_training_job(tmp_path / "job", n=30, size=(16, 16))
    config = PipelineConfig(celeba_dir=tmp_path, output_root=tmp_path / "out", image_size=(16, 16),
                            memory_limit_mb=1)
    with pytest.raises(DecodedCacheDoesNotFit, match=r"streams the JPEGs.*caching nothing"):
        decode_splits(splits_csv, tmp_path / "cache", "fp", images, (16, 16), "none", memory_limit=2**20)
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test.memory_limit")  # stands in for the task run's logger
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    monkeypatch.setattr("tasks.data.get_run_logger", lambda: logger)
    try:
        assert decode_images.fn(config, splits_csv, images, "fp") is None
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "training streams the JPEGs" in warnings[0] and "MiB" in warnings[0]
    roomy = config.model_copy(update={"memory_limit_mb": 64 * 1024})
    folder = decode_images.fn(roomy, splits_csv, images, "fp")
    assert folder is not None and (folder / "images.npy").is_file()
    # once built, the same array is refused again under the low limit (it would not fit now either)
    with pytest.raises(DecodedCacheDoesNotFit):
        decode_splits(splits_csv, tmp_path / "out" / "cache" / "decoded", "fp", images, (16, 16), "square",
                      memory_limit=2**20)


def test_the_jpeg_stream_caches_nothing(tmp_path: Path) -> None:
    """Two passes over the stream read every file twice: nothing decoded is kept between epochs."""
    import numpy as np
    import tensorflow as tf

    from recognize_me.data import dataset

    splits_csv, images = write_training_job(tmp_path / "job", n=12, size=(16, 16))
    paths = sorted(str(p) for p in images.iterdir())
    reads: list[str] = []
    real = dataset.decode_and_resize

    def counting(path, image_size, crop):
        tf.py_function(lambda p: reads.append(p.numpy().decode()), [path], [])
        return real(path, image_size, crop)

    load = dataset.jpeg_loader(paths, (8, 8), "none")
    original, dataset.decode_and_resize = dataset.decode_and_resize, counting
    try:
        stream = dataset.make_train_stream(load, np.zeros((12, 1), np.float32), batch_size=4, sub_epoch_steps=3,
                                           max_epochs=2, start=tf.Variable(0, dtype=tf.int64))
        assert len(list(stream)) == 6
    finally:
        dataset.decode_and_resize = original
    assert sorted(reads) == sorted(paths * 2)

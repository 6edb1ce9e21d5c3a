"""Model building that the same seed reproduces in any process, whatever its other threads do.

Keras (3.15) gives every initializer and seed generator created without an explicit seed a seed drawn
from Python's process-wide ``random`` (``keras.src.random.seed_generator.make_default_seed``).
``keras.utils.set_random_seed`` seeds that stream, but in a Dask worker other threads (Prefect's log and
event workers, Dask's own) draw from the same ``random`` while a model is being built, so the same seed
built different initial weights depending on timing: two runs of the same config trained different
models once a worker was busy enough (more models than workers). Inside ``isolated_default_seeds`` those
default seeds come from a private ``random.Random(seed)`` instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def isolated_default_seeds(seed: int) -> Iterator[None]:
    """Keras' default seeds drawn from ``random.Random(seed)`` for the duration (not thread-safe with a
    second model being built in another thread of the same process, which Keras does not support)."""
    from keras.src.random import seed_generator

    if not callable(getattr(seed_generator, "make_default_seed", None)) or not hasattr(seed_generator,
                                                                                     "python_random"):
        raise RuntimeError("keras.src.random.seed_generator changed: isolated_default_seeds needs updating")
    original = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = original

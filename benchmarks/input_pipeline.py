"""Images/s of the input pipeline over the real 178x218 CelebA JPEGs.

(a) raw limit: read_file + decode_jpeg in a tf.data map (AUTOTUNE), batched, same cores.
(b) the project's ``make_dataset(..., image_size=(64, 64), crop="square", shuffle=True, augment_flip=True)``.
(c) seed-style loader: tf-keras ``ImageDataGenerator.flow_from_dataframe`` with rotation/zoom/flip.
Epoch 1 reads and decodes the files (tf.data cache empty); epoch 2 is served from the tf.data cache where
the pipeline has one. The OS page cache is warmed first for every variant, so disk speed is not measured.
Unless ``--no-diagnose``, single steps of (b)'s map and candidate changes are timed too ("diag" rows).

    python -m benchmarks.input_pipeline [--n 4000] [--repeats 5] [--no-diagnose] [--wait-idle 20:15]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchmarks.common import Bench, common_args, median, require_celeba, timer, wait_for_idle

BATCH = 64


def list_images(n: int) -> list[str]:
    folder = require_celeba("img_align_celeba")
    names = sorted(p for p in (x.name for x in folder.iterdir()) if p.endswith(".jpg"))[:n]
    if len(names) < n:
        print(f"note: only {len(names)} images in {folder}")
    return [str(folder / name) for name in names]


def warm_page_cache(paths: list[str]) -> None:
    for p in paths:
        Path(p).read_bytes()


def time_epochs(make, epochs: int = 2) -> list[float]:
    """Seconds per full pass over ``make()``'s dataset; the same dataset object for every epoch."""
    ds = make()
    out = []
    for _ in range(epochs):
        with timer() as t:
            for _batch in ds:
                pass
        out.append(t["s"])
    return out


def raw(paths: list[str], cache: bool):
    import tensorflow as tf

    def make():
        ds = tf.data.Dataset.from_tensor_slices(paths)
        ds = ds.map(lambda p: tf.io.decode_jpeg(tf.io.read_file(p), channels=3), num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            ds = ds.cache()
        return ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)
    return make


def project(paths: list[str]):
    import numpy as np

    from recognize_me.data.dataset import make_dataset

    labels = np.zeros((len(paths), 40), np.float32)
    return lambda: make_dataset(paths, labels, image_size=(64, 64), crop="square", batch_size=BATCH,
                                shuffle=True, augment_flip=True, seed=0)


def seed_style(paths: list[str]):
    """A typical notebook loader: the whole 178x218 frame resized to 64x64, rotation/zoom/flip per image."""
    import pandas as pd
    from tf_keras.preprocessing.image import ImageDataGenerator

    frame = pd.DataFrame({"filename": [Path(p).name for p in paths]})
    attrs = [f"a{i}" for i in range(40)]
    frame[attrs] = 0.0
    gen = ImageDataGenerator(rescale=1 / 255, rotation_range=10, zoom_range=0.1, horizontal_flip=True)
    steps = math.ceil(len(paths) / BATCH)

    class Epochs:
        def __init__(self) -> None:
            self.it = gen.flow_from_dataframe(frame, directory=str(Path(paths[0]).parent), x_col="filename",
                                              y_col=attrs, class_mode="raw", target_size=(64, 64),
                                              batch_size=BATCH, shuffle=True, seed=0)

        def __iter__(self):
            return (next(self.it) for _ in range(steps))
    return Epochs


def diagnose_variants(paths: list[str]) -> dict[str, object]:
    """Single steps of (b)'s per-image map (no cache, shuffle, flip; batched), then full-pipeline candidates."""
    import numpy as np
    import tensorflow as tf

    from recognize_me.data import dataset

    def crop(img):
        return tf.image.crop_to_bounding_box(img, 20, 0, 178, 178)

    def to_uint8(img):
        return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)

    def jpeg(p, ratio=1):
        return tf.io.decode_jpeg(tf.io.read_file(p), channels=3, ratio=ratio)

    def area(img):
        return tf.image.resize(img, (64, 64), method="area")
    steps = {
        "1 read+decode_jpeg": jpeg,
        "2 read+decode_image": lambda p: tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False),
        "3 decode_jpeg+crop": lambda p: crop(jpeg(p)),
        "4 decode_and_crop_jpeg": lambda p: tf.io.decode_and_crop_jpeg(tf.io.read_file(p), [20, 0, 178, 178],
                                                                        channels=3),
        "5 decode_jpeg+crop+area, float out": lambda p: area(crop(jpeg(p))),
        "6 = project decode_and_resize (area, uint8)": lambda p: dataset.decode_and_resize(p, (64, 64), "square"),
        "7 decode_jpeg+crop+bilinear antialias, uint8": lambda p: to_uint8(
            tf.image.resize(crop(jpeg(p)), (64, 64), antialias=True)),
        "8 decode_jpeg ratio=2+crop+area, uint8 (other numerics)": lambda p: to_uint8(
            area(tf.image.crop_to_bounding_box(jpeg(p, 2), 10, 0, 89, 89))),
    }

    def make(fn, deterministic=None):
        return lambda: (tf.data.Dataset.from_tensor_slices(paths)
                        .map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
                        .batch(BATCH).prefetch(tf.data.AUTOTUNE))
    out = {name: make(fn) for name, fn in steps.items()}
    out["6b = 6 with deterministic=True"] = make(steps["6 = project decode_and_resize (area, uint8)"], True)

    def candidate():
        """make_dataset's default path (shuffle, flip), with the float conversion after batching."""
        labels = np.zeros((len(paths), 40), np.float32)
        ds = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda p: dataset.decode_and_resize(p, (64, 64), "square"), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(labels)).cache()
        ds = ds.shuffle(len(paths), seed=0, reshuffle_each_iteration=True)
        noise = tf.data.Dataset.random(seed=0, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, noise).map(lambda item, r: dataset._flip(item, r),
                                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(BATCH).map(dataset._to_float, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=True).prefetch(tf.data.AUTOTUNE)
    out["9 (b) with float conversion after batch (2 epochs)"] = candidate
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="number of images (first N by name)")
    parser.add_argument("--repeats", type=int, default=5, help="fresh datasets per variant; the median counts")
    parser.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                        help="skip timing the single steps of (b)'s map")
    common_args(parser)
    args = parser.parse_args()
    paths = list_images(args.n)
    if args.wait_idle:
        wait_for_idle(deadline_utc=args.wait_idle)
    import tensorflow as tf

    n = len(paths)
    bench = Bench("input_pipeline", {"n_images": n, "repeats": args.repeats, "batch_size": BATCH,
                                     "tf_threads": "TF defaults (all cores)"})
    warm_page_cache(paths)
    time_epochs(raw(paths[:256], cache=False), epochs=1)  # TF start-up, not measured

    # (a): epoch 1 from a pipeline without .cache() (filling a cache of full-size decoded frames, ~116 KB
    # each, is a cost of its own: row (a')), epoch 2 from the cached pipeline's second pass.
    # Every variant is a fresh dataset per repeat; repeats go round-robin over the variants, so load that
    # comes and goes hits all of them alike. (c) is slow and runs in the first round only.
    A, B, C = "(a) raw read+decode_jpeg", "(b) make_dataset 64x64 square shuffle flip", \
        "(c) tf_keras ImageDataGenerator rot/zoom/flip"
    variants: dict[str, tuple] = {A: (raw(paths, cache=False), raw(paths, cache=True)),
                                  "(a') raw read+decode_jpeg + .cache() of full frames": (raw(paths, cache=True), None),
                                  B: (project(paths), None)}
    try:
        import tf_keras  # noqa: F401

        variants[C] = (seed_style(paths), None)
    except ImportError:
        bench.notes.append("tf-keras not installed: (c) skipped (pip install --no-deps tf-keras==2.21.*)")
    if args.diagnose:
        variants |= {f"  diag {k}": (make, None) for k, make in diagnose_variants(paths).items()}
    time_epochs(project(paths[:256]), epochs=1)
    runs: dict[str, list[tuple[float, float | None]]] = {k: [] for k in variants}
    for r in range(args.repeats):
        for name, (make, make_cached) in variants.items():
            if name == C and r > 0:
                continue
            epochs = 2 if name in (B, C) or "2 epochs" in name or name.startswith("(a')") else 1
            t = time_epochs(make, epochs=epochs)
            runs[name].append((t[0], time_epochs(make_cached)[1] if make_cached else (t[1] if epochs == 2 else None)))
        print(f"  round {r + 1}/{args.repeats} done", flush=True)
    speeds: dict[str, tuple[float, float | None]] = {}
    for name, rs in runs.items():
        e1 = median([x[0] for x in rs])
        e2 = median([x[1] for x in rs]) if rs[0][1] is not None else None
        speeds[name] = (n / e1, n / e2 if e2 else None)
        bench.row(variant=name, epoch1_img_s=n / e1, epoch2_img_s=n / e2 if e2 else None, epoch1_s=e1, epoch2_s=e2,
                  epoch1_spread=f"{min(x[0] for x in rs):.3f}-{max(x[0] for x in rs):.3f}", repeats=len(rs))

    a, b = speeds[A], speeds[B]
    bench.ratio("(b)/(a) epoch 1 (uncached)", b[0] / a[0], ">= 0.9", b[0] / a[0] >= 0.9)
    bench.ratio("(b)/(a) epoch 2 (cached)", b[1] / a[1], "info", True)
    if C in speeds:
        c = speeds[C]
        bench.ratio("(b)/(c) epoch 1", b[0] / c[0], ">= 10", b[0] / c[0] >= 10)
        bench.ratio("(b)/(c) epoch 2", b[1] / c[1], ">= 10", b[1] / c[1] >= 10)
    bench.notes.append(f"TF intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()} "
                       "(0 = all cores); OS page cache warmed before timing")
    bench.finish(["variant", "epoch1_img_s", "epoch2_img_s", "epoch1_s", "epoch2_s", "epoch1_spread", "repeats",
                  "load_1min"])


if __name__ == "__main__":
    main()

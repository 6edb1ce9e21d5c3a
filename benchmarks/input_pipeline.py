"""Images/s of the input pipeline over the real 178x218 CelebA JPEGs.

(a) raw limit: read_file + decode_jpeg in a tf.data map (AUTOTUNE), batched, same cores.
(b) the project's ``make_dataset(..., image_size=(64, 64), crop="square", shuffle=True, augment_flip=True)``.
(c) seed-style loader: tf-keras ``ImageDataGenerator.flow_from_dataframe`` with rotation/zoom/flip.
Epoch 1 reads and decodes the files (tf.data cache empty); epoch 2 is served from the tf.data cache where
the pipeline has one. The OS page cache is warmed first for every variant, so disk speed is not measured.
``--diagnose`` (automatic when (b)/(a) < 0.9) times single-step variants of (b)'s map to find the cost.

    python -m benchmarks.input_pipeline [--n 4000] [--repeats 3] [--diagnose] [--wait-idle 20:15]
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

    from recognize_me.dataset import make_dataset

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
    """Each builds only the per-image map (no cache, shuffle, flip) to isolate one step's cost."""
    import tensorflow as tf

    from recognize_me.dataset import decode_and_resize

    def crop(img):
        return tf.image.crop_to_bounding_box(img, 20, 0, 178, 178)

    def rnd(img):
        return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)

    def jpeg(p):
        return tf.io.decode_jpeg(tf.io.read_file(p), channels=3)

    steps = {
        "decode_jpeg": jpeg,
        "decode_image": lambda p: tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False),
        "decode_jpeg+crop": lambda p: crop(jpeg(p)),
        "decode_and_crop_jpeg": lambda p: tf.io.decode_and_crop_jpeg(tf.io.read_file(p), [20, 0, 178, 178],
                                                                      channels=3),
        "+area resize (project, to uint8)": lambda p: decode_and_resize(p, (64, 64), "square"),
        "+area resize, float out": lambda p: tf.image.resize(crop(jpeg(p)), (64, 64), method="area"),
        "+bilinear antialias, uint8": lambda p: rnd(tf.image.resize(crop(jpeg(p)), (64, 64), antialias=True)),
        "+bilinear no antialias, uint8": lambda p: rnd(tf.image.resize(crop(jpeg(p)), (64, 64))),
        "decode_and_crop+area, uint8": lambda p: rnd(tf.image.resize(
            tf.io.decode_and_crop_jpeg(tf.io.read_file(p), [20, 0, 178, 178], channels=3), (64, 64),
            method="area")),
    }

    def make(fn, deterministic):
        return lambda: (tf.data.Dataset.from_tensor_slices(paths)
                        .map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
                        .batch(BATCH).prefetch(tf.data.AUTOTUNE))
    out = {f"{name} (det=None)": make(fn, None) for name, fn in steps.items()}
    out["+area resize (project), det=True"] = make(steps["+area resize (project, to uint8)"], True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="number of images (first N by name)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh datasets per variant; the median counts")
    parser.add_argument("--diagnose", action="store_true", help="also time the steps of (b)'s map")
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

    variants = {"(a) raw read+decode_jpeg": raw(paths, cache=True),
                "(b) make_dataset 64x64 square shuffle flip": project(paths)}
    try:
        import tf_keras  # noqa: F401

        variants["(c) tf_keras ImageDataGenerator rot/zoom/flip"] = seed_style(paths)
    except ImportError:
        bench.notes.append("tf-keras not installed: (c) skipped (pip install --no-deps tf-keras==2.21.*)")
    speeds: dict[str, tuple[float, float]] = {}
    for name, make in variants.items():
        repeats = 1 if name.startswith("(c)") else args.repeats
        runs = [time_epochs(make) for _ in range(repeats)]
        e1, e2 = median([r[0] for r in runs]), median([r[1] for r in runs])
        speeds[name] = (n / e1, n / e2)
        bench.row(variant=name, epoch1_img_s=n / e1, epoch2_img_s=n / e2, epoch1_s=e1, epoch2_s=e2,
                  repeats=repeats)
        print(f"  {name}: epoch 1 {n / e1:,.0f} img/s, epoch 2 {n / e2:,.0f} img/s", flush=True)

    a, b = speeds["(a) raw read+decode_jpeg"], speeds["(b) make_dataset 64x64 square shuffle flip"]
    bench.ratio("(b)/(a) epoch 1 (uncached)", b[0] / a[0], ">= 0.9", b[0] / a[0] >= 0.9)
    bench.ratio("(b)/(a) epoch 2 (cached)", b[1] / a[1], "info", True)
    c = next((v for k, v in speeds.items() if k.startswith("(c)")), None)
    if c is not None:
        bench.ratio("(b)/(c) epoch 1", b[0] / c[0], ">= 10", b[0] / c[0] >= 10)
        bench.ratio("(b)/(c) epoch 2", b[1] / c[1], ">= 10", b[1] / c[1] >= 10)

    if args.diagnose or b[0] / a[0] < 0.9:
        for name, make in diagnose_variants(paths).items():
            e1 = median([time_epochs(make, epochs=1)[0] for _ in range(args.repeats)])
            bench.row(variant=f"  diag: {name}", epoch1_img_s=n / e1, epoch1_s=e1, repeats=args.repeats)
            print(f"  diag {name}: {n / e1:,.0f} img/s", flush=True)
    bench.notes.append(f"TF intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()} "
                       "(0 = all cores); OS page cache warmed before timing")
    bench.finish(["variant", "epoch1_img_s", "epoch2_img_s", "epoch1_s", "epoch2_s", "repeats", "load_1min"])


if __name__ == "__main__":
    main()

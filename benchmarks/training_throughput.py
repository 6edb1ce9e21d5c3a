"""Training images/s of ``baseline_cnn`` at 64x64: ``train_one(TrainJob)`` against a plain ``model.fit``.

Both use the same model builder, the same ``make_dataset`` input (train shuffled + flipped, val) and the
same TF thread settings, each in a fresh subprocess. A timing callback (added to train_one's callback list
by the benchmark only) stamps epoch begin, validation begin/end and epoch end, so the *fit* part of each
epoch (training steps only) is timed apart from validation; train_one's per-epoch hook timestamps are
recorded as a cross-check. Epoch 1 reads and decodes the JPEGs; epoch 2 is served from the tf.data cache.
``plain+determinism`` is the plain script with ``tf.config.experimental.enable_op_determinism()``, which
train_one turns on; ``plain+epoch-seeded input`` passes ``make_dataset(epoch=<tf.Variable>)`` set before each
epoch, as train_one does for exact resumes (skipped when ``make_dataset`` has no ``epoch`` parameter).

    python -m benchmarks.training_throughput [--n 3000] [--epochs 2] [--repeats 3] [--wait-idle 20:15]

``--matrix``: train_one side by side in precision (float32, mixed_bfloat16) x input (the decoded array
cache, the JPEG files) x TF threads (1, 2): fit images/s per epoch, validation accuracy and test mean
accuracy at 0.5 of the same seeded training; written to ``results/training_matrix.json``.

    python -m benchmarks.training_throughput --matrix [--model baseline_cnn] [--n 3000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Bench, common_args, emit, median, require_celeba, run_child, wait_for_idle

MODEL, SIZE, BATCH, SEED = "baseline_cnn", (64, 64), 64, 42
VARIANTS = ("train_one", "plain", "plain+determinism", "plain+epoch-seeded input")
#: ``--diagnose``: which of train_one's differences costs time.
DIAG_VARIANTS = ("plain+determinism+epoch-seeded input", "train_one without backup")


def write_splits(out: Path, n_train: int, n_val: int, n_test: int) -> Path:
    """The first images present on disk, in name order: train, then val, then test, with 0/1 labels."""

    from recognize_me.data.celeba_files import read_attribute_file

    images = require_celeba("img_align_celeba")
    table = read_attribute_file(require_celeba("list_attr_celeba.txt")).frame
    present = set(os.listdir(images))
    rows = table[table["image_id"].isin(present)].sort_values("image_id").head(n_train + n_val + n_test).copy()
    if len(rows) < n_train + n_val + n_test:
        raise SystemExit(f"only {len(rows)} labelled images present in {images}")
    rows.insert(1, "split", ["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    path = out / "splits.csv"
    rows.to_csv(path, index=False)
    return path


def stamp_callback(stamps: list[tuple[str, int, float]]):
    import keras

    class Stamp(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            stamps.append(("epoch_begin", epoch, time.perf_counter()))

        def on_test_begin(self, logs=None):
            stamps.append(("val_begin", self.epoch, time.perf_counter()))

        def on_test_end(self, logs=None):
            stamps.append(("val_end", self.epoch, time.perf_counter()))

        def on_epoch_end(self, epoch, logs=None):
            stamps.append(("epoch_end", epoch, time.perf_counter()))
    return Stamp()


def op_determinism() -> bool | None:
    try:
        from tensorflow.python.framework import config  # no public getter in TF 2.21

        return bool(config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return None


def child(variant: str, splits_csv: Path, epochs: int, threads: int) -> None:
    t0 = time.perf_counter()
    import keras
    import tensorflow as tf

    from recognize_me.data.attributes import CELEBA_ATTRIBUTES
    from recognize_me.data.dataset import make_dataset
    from recognize_me.models import BuildOptions, get_model_spec

    images = require_celeba("img_align_celeba")
    import_s = time.perf_counter() - t0
    stamps: list[tuple[str, int, float]] = []
    hooks: list[float] = []
    start = time.perf_counter()
    out: dict[str, object] = {"variant": variant, "import_s": import_s}
    if variant.startswith("train_one"):
        from recognize_me.training.train import train as training

        if variant == "train_one without backup":
            import recognize_me.training.callbacks as tc

            class NoBackup(keras.callbacks.Callback):
                def __init__(self, *args, **kwargs) -> None:
                    super().__init__()
            tc.AtomicBackupAndRestore = NoBackup
            keras.callbacks.BackupAndRestore = NoBackup

        original = training._callbacks
        training._callbacks = lambda *a, **k: [*original(*a, **k), stamp_callback(stamps)]
        with tempfile.TemporaryDirectory() as run_dir:
            job = training.TrainJob(model=MODEL, run_dir=Path(run_dir), splits_csv=splits_csv, images_dir=images,
                                    attributes=tuple(CELEBA_ATTRIBUTES), image_size=SIZE, crop="square",
                                    epochs=epochs, batch_size=BATCH, seed=SEED, augment_flip=True, threads=threads)
            summary = training.train_one(job, on_epoch=lambda *_: hooks.append(time.perf_counter()))
        out["train_time_s"] = summary["train_time_s"]
    else:
        import pandas as pd

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        if "determinism" in variant:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(SEED)
        table = pd.read_csv(splits_csv, dtype={"image_id": str})
        attrs = list(CELEBA_ATTRIBUTES)

        def split(name):
            rows = table[table["split"] == name]
            return [str(images / i) for i in rows["image_id"]], rows[attrs].to_numpy("float32")
        common = dict(image_size=SIZE, crop="square", batch_size=BATCH)
        callbacks = [stamp_callback(stamps)]
        if "epoch-seeded" in variant:
            epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
            common["epoch"] = epoch_var
            callbacks.insert(0, keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: epoch_var.assign(e)))
        train_ds = make_dataset(*split("train"), shuffle=True, augment_flip=True, seed=SEED, **common)
        common.pop("epoch", None)
        val_ds = make_dataset(*split("val"), **common)
        model = get_model_spec(MODEL).build((*SIZE, 3), len(attrs), BuildOptions(learning_rate=1e-3, seed=SEED))
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=callbacks)
        out["train_time_s"] = time.perf_counter() - start
    at = {(kind, e): t for kind, e, t in stamps}
    out["fit_s"] = [at["val_begin", e] - at["epoch_begin", e] for e in range(epochs)]
    out["val_s"] = [at["val_end", e] - at["val_begin", e] for e in range(epochs)]
    out["epoch_wall_s"] = [at["epoch_end", e] - (at["epoch_end", e - 1] if e else start) for e in range(epochs)]
    out["hook_intervals_s"] = [b - a for a, b in zip([start, *hooks], hooks, strict=False)]
    out["determinism"] = op_determinism()
    out["intra_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    emit(out)


MATRIX = [(p, i, t) for p in ("float32", "mixed_bfloat16") for i in ("array", "jpeg") for t in (2, 1)]


def matrix_child(spec: str, splits_csv: Path, epochs: int, model: str, decoded: Path) -> None:
    """One train_one run: ``spec`` = precision:input:threads."""
    precision, source, threads = spec.split(":")
    from recognize_me.data.attributes import CELEBA_ATTRIBUTES
    from recognize_me.training import train as training

    images = require_celeba("img_align_celeba")
    stamps: list[tuple[str, int, float]] = []
    original = training._callbacks
    training._callbacks = lambda *a, **k: [*original(*a, **k), stamp_callback(stamps)]
    with tempfile.TemporaryDirectory() as run_dir:
        job = training.TrainJob(model=model, run_dir=Path(run_dir), splits_csv=splits_csv, images_dir=images,
                                attributes=tuple(CELEBA_ATTRIBUTES), image_size=SIZE, crop="square",
                                epochs=epochs, batch_size=BATCH, seed=SEED, augment_flip=True,
                                threads=int(threads), precision=precision,
                                decoded=decoded if source == "array" else None)
        summary = training.train_one(job)
        import pandas as pd

        history = pd.read_csv(Path(run_dir) / "models" / model / "history.csv")
    at = {(kind, e): t for kind, e, t in stamps}
    emit({"spec": spec, "fit_s": [at["val_begin", e] - at["epoch_begin", e] for e in range(epochs)],
          "val_accuracy": float(history["val_accuracy"].iloc[-1]), "val_loss": float(history["val_loss"].iloc[-1]),
          "test_mean_accuracy_0_5": summary["at_threshold_0_5"]["mean_accuracy"],
          "train_time_s": summary["train_time_s"], "precision": summary["precision"], "input": summary["input"]})


def run_matrix(args) -> None:
    from recognize_me.data.decoded_cache import decode_splits

    require_celeba("img_align_celeba")
    with tempfile.TemporaryDirectory() as tmp:
        splits = write_splits(Path(tmp), args.n, args.n_val, args.n_val)
        if args.wait_idle:
            wait_for_idle(deadline_utc=args.wait_idle)
        bench = Bench("training_matrix", {"model": args.model, "image_size": SIZE, "n_train": args.n,
                                          "n_val": args.n_val, "epochs": args.epochs, "batch_size": BATCH,
                                          "repeats": args.repeats})
        t0 = time.perf_counter()
        decoded, _ = decode_splits(splits, Path(tmp) / "cache", "benchmark", require_celeba("img_align_celeba"),
                                   SIZE, "square")
        decode_s = time.perf_counter() - t0
        bench.notes.append(f"decoding {args.n + 2 * args.n_val} images once into the array cache took "
                           f"{decode_s:.1f} s (TF import included)")
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            for precision, source, threads in MATRIX:
                spec = f"{precision}:{source}:{threads}"
                r = run_child("benchmarks.training_throughput", "--matrix-child", spec, "--splits", str(splits),
                              "--epochs", str(args.epochs), "--model", args.model, "--decoded", str(decoded))
                runs.setdefault(spec, []).append(r)
                print(f"  {spec}: fit s/epoch {[round(x, 1) for x in r['fit_s']]}, val acc "
                      f"{r['val_accuracy']:.4f}, load {r['load_1min']}", flush=True)
    rows = {}
    for spec, rs in runs.items():
        precision, source, threads = spec.split(":")
        row = {"precision": precision, "input": source, "threads": int(threads)}
        for e in range(args.epochs):
            row[f"fit_img_s_e{e + 1}"] = args.n / median([r["fit_s"][e] for r in rs])
        row |= {"val_accuracy": median([r["val_accuracy"] for r in rs]),
                "val_loss": median([r["val_loss"] for r in rs]),
                "test_acc_0_5": median([r["test_mean_accuracy_0_5"] for r in rs]),
                "train_time_s": median([r["train_time_s"] for r in rs]),
                "load_1min": max(r["load_1min"] for r in rs)}
        rows[spec] = bench.row(**row)
    last = f"fit_img_s_e{args.epochs}"
    for threads in (2, 1):
        for source in ("array", "jpeg"):
            f32, bf16 = rows[f"float32:{source}:{threads}"], rows[f"mixed_bfloat16:{source}:{threads}"]
            bench.ratio(f"bf16 / float32 fit img/s, {source}, {threads} threads, epoch {args.epochs}",
                        bf16[last] / f32[last], "info", True)
        for precision in ("float32", "mixed_bfloat16"):
            a, j = rows[f"{precision}:array:{threads}"], rows[f"{precision}:jpeg:{threads}"]
            bench.ratio(f"array / jpeg fit img/s epoch 1, {precision}, {threads} threads",
                        a["fit_img_s_e1"] / j["fit_img_s_e1"], "info", True)
    for precision in ("float32", "mixed_bfloat16"):
        bench.ratio(f"2 / 1 threads fit img/s, {precision}, array", rows[f"{precision}:array:2"][last]
                    / rows[f"{precision}:array:1"][last], "info", True)
    bench.params["runs"] = runs
    bench.notes.append("same seed, data and epochs in every cell: val_accuracy / test_acc_0_5 differences are "
                       "the precision's (array and jpeg give identical batches)")
    bench.finish(["precision", "input", "threads", *[f"fit_img_s_e{e + 1}" for e in range(args.epochs)],
                  "val_accuracy", "val_loss", "test_acc_0_5", "train_time_s", "load_1min"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="training images")
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="fresh subprocesses per variant (interleaved)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="TF intra-op threads")
    parser.add_argument("--diagnose", action="store_true", help=f"also run {', '.join(DIAG_VARIANTS)}")
    parser.add_argument("--variants", help=f"comma-separated subset of {', '.join(VARIANTS + DIAG_VARIANTS)}")
    parser.add_argument("--matrix", action="store_true", help="precision x input x threads side by side")
    parser.add_argument("--model", default=MODEL, help="--matrix: the model to train")
    parser.add_argument("--matrix-child", help=argparse.SUPPRESS)
    parser.add_argument("--decoded", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=VARIANTS + DIAG_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--splits", type=Path, help=argparse.SUPPRESS)
    common_args(parser)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.splits, args.epochs, args.threads)
    if args.matrix_child:
        return matrix_child(args.matrix_child, args.splits, args.epochs, args.model, args.decoded)
    if args.matrix:
        return run_matrix(args)
    require_celeba("img_align_celeba")
    with tempfile.TemporaryDirectory() as tmp:
        splits = write_splits(Path(tmp), args.n, args.n_val, args.n_val)
        if args.wait_idle:
            wait_for_idle(deadline_utc=args.wait_idle)
        bench = Bench("training_throughput", {"model": MODEL, "image_size": SIZE, "n_train": args.n,
                                              "n_val": args.n_val, "epochs": args.epochs, "batch_size": BATCH,
                                              "threads": args.threads, "repeats": args.repeats})
        import inspect

        from recognize_me.data.dataset import make_dataset

        chosen = args.variants.split(",") if args.variants else VARIANTS + (DIAG_VARIANTS if args.diagnose else ())
        if "train_one" not in chosen:
            chosen = ["train_one", *chosen]
        variants = [v for v in chosen if "epoch-seeded" not in v or "epoch" in inspect.signature(make_dataset).parameters]
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant in variants:
                r = run_child("benchmarks.training_throughput", "--child", variant, "--splits", str(splits),
                              "--epochs", str(args.epochs), "--threads", str(args.threads))
                runs[variant].append(r)
                print(f"  {variant}: fit s/epoch {[round(s, 2) for s in r['fit_s']]}", flush=True)
    speed: dict[str, list[float]] = {}
    for variant, rs in runs.items():
        fit = [median([r["fit_s"][e] for r in rs]) for e in range(args.epochs)]
        wall = [median([r["epoch_wall_s"][e] for r in rs]) for e in range(args.epochs)]
        speed[variant] = [args.n / s for s in fit]
        row = {"variant": variant, "determinism": rs[0]["determinism"], "threads": rs[0]["intra_threads"]}
        for e in range(args.epochs):
            row[f"fit_img_s_e{e + 1}"] = args.n / fit[e]
            row[f"epoch_wall_s_e{e + 1}"] = wall[e]
        row |= {"val_s_last": median([r["val_s"][-1] for r in rs]),
                "setup+fit_s": median([r["train_time_s"] for r in rs]),
                "peak_rss_mib": max(r["maxrss_mib"] for r in rs), "load_1min": max(r["load_1min"] for r in rs),
                f"fit_s_e{args.epochs}_each": [round(r["fit_s"][-1], 2) for r in rs],
                f"best_fit_img_s_e{args.epochs}": args.n / min(r["fit_s"][-1] for r in rs)}
        bench.row(**row)
        if variant == "train_one":
            bench.notes.append(f"train_one hook intervals (epoch walls incl. val + callbacks): "
                               f"{[[round(x, 2) for x in r['hook_intervals_s']] for r in rs]}")
    bench.params["runs"] = runs
    last = args.epochs - 1
    for ref in [v for v in runs if v != "train_one"]:
        for e in range(args.epochs):
            value = speed["train_one"][e] / speed[ref][e]
            primary = ref == "plain" and e == last
            bench.ratio(f"train_one / {ref}, fit img/s epoch {e + 1}", value, ">= 0.95" if primary else "info",
                        value >= 0.95 or not primary)
        best = (args.n / min(r["fit_s"][-1] for r in runs["train_one"])) / (args.n / min(r["fit_s"][-1] for r in runs[ref]))
        bench.ratio(f"train_one / {ref}, best-of-{args.repeats} fit img/s epoch {args.epochs}", best,
                    ">= 0.95" if ref == "plain" else "info", best >= 0.95 or ref != "plain")
    bench.notes.append(f"primary ratio: epoch {args.epochs} (cached input, steady state), median and best of the "
                       "repeats (the same variant's epoch time is bimodal on this VM, ~11 s or ~18 s, whatever the "
                       "variant); epoch 1 also decodes the JPEGs and traces the graphs")
    bench.finish(["variant", "determinism", "threads",
                  *[f"fit_img_s_e{e + 1}" for e in range(args.epochs)],
                  *[f"epoch_wall_s_e{e + 1}" for e in range(args.epochs)],
                  f"best_fit_img_s_e{args.epochs}", "val_s_last", "setup+fit_s", "peak_rss_mib",
                  f"fit_s_e{args.epochs}_each", "load_1min"])


if __name__ == "__main__":
    main()

"""Recognize me on real faces: every strategy and base side by side, as a learning curve over 10, 25 and all
"me" training photos, scored on the test split and against strangers.

    python -m benchmarks.recognize_me_curve --bases /work/scratch/bases/*/model.keras
    python -m benchmarks.recognize_me_curve --bases .../model.keras --fills face_box replicate reflect

Photos: "me" = ../shared/data/faces/me (tight 112x112 crops); "others" for train/val/test = a seeded sample
of CelebA's train partition; strangers (people in no training split) = the four people of
../shared/data/faces/others plus a sample of CelebA's test partition (identity-disjoint from train). Every
photo goes through the same ``FaceAligner`` (MTCNN landmarks onto CelebA's template, ``--fills``). Val,
test and strangers stay fixed; only the "me" photos of the train split are subsampled. The reference
strategy (dlib face-recognition embeddings) runs when ``face_recognition`` is installed.
Writes results/recognize_me_curve.json and results/recognize_me_curve.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.common import RESULTS, Bench, require_celeba

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
KERAS_STRATEGIES = ("feature_extraction", "fine_tuning", "from_scratch")
COLUMNS = ["fill", "base", "strategy", "features", "me_train", "accuracy", "f1", "auc", "recall_at_1pct_far",
           "strangers_auc", "strangers_accuracy", "strangers_false_accept", "val_auc", "train_s", "load_1min"]


def subsample_me(photos_csv: Path, n_me: int | None, seed: int, out: Path) -> Path:
    table = pd.read_csv(photos_csv)
    if n_me is not None:
        me_train = table[(table["split"] == "train") & (table["label"] == "me")]
        drop = me_train.sample(n=max(0, len(me_train) - n_me), random_state=seed).index
        table = table.drop(index=drop)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return out


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    frame = pd.DataFrame(rows)
    metrics = [("auc", "test ROC AUC"), ("strangers_auc", "strangers ROC AUC"), ("accuracy", "test accuracy")]
    fig = Figure(figsize=(6 * len(metrics), 4.5))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (metric, title) in zip(axes, metrics, strict=True):
        for key, part in frame.groupby(["fill", "base", "strategy", "features"], sort=True):
            part = part.sort_values("me_train")
            ax.plot(part["me_train"], part[metric], marker="o", label=" / ".join(map(str, key)))
        ax.set_title(title)
        ax.set_xlabel("'me' photos in train")
        ax.set_ylim(0.5, 1.005)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=6, loc="lower right")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _partition(name: str) -> pd.DataFrame:
    return pd.read_csv(require_celeba(name), sep=r"\s+", header=None, names=["image_id", "partition"],
                       dtype={"image_id": str})


def main(argv: list[str] | None = None) -> None:
    from recognize_me.catalog import FEATURES
    from recognize_me.me.align import FaceAligner
    from recognize_me.me.photo_set import PhotoSet, PhotoSources, load_photo_table, prepare_photos
    from recognize_me.me.reference import REFERENCE_STRATEGY, reference_missing
    from recognize_me.me.transfer import TransferJob, base_input_settings, train_transfer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", type=Path, nargs="+", required=True, help="trained CelebA model.keras files")
    parser.add_argument("--fills", nargs="+", default=["face_box"], help="FaceAligner fills to compare")
    parser.add_argument("--features", nargs="+", default=["auto"],
                        help="feature_extraction feature sets (auto, gap, embedding, concat); unusable ones skipped")
    parser.add_argument("--strategies", nargs="+", default=[*KERAS_STRATEGIES, REFERENCE_STRATEGY])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--celeba-others", type=int, default=400)
    parser.add_argument("--celeba-strangers", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rm-curve"), help="scratch folder (aligned crops)")
    parser.add_argument("--reuse", action="store_true", help="reuse <work>/<fill>/photos.csv when present")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 25, 0],
                        help="'me' train photos per point of the curve; 0 = all")
    parser.add_argument("--name", default="recognize_me_curve", help="results/<name>.json and .png")
    args = parser.parse_args(argv)
    if not FACES.is_dir():
        print(f"SKIPPED: {FACES} not found")
        return
    images = require_celeba("img_align_celeba")
    partition = _partition("list_eval_partition.txt")
    present = {p.name for p in images.glob("*.jpg")}
    pool = {k: [images / i for i in partition.loc[partition["partition"] == v, "image_id"] if i in present]
            for k, v in (("train", 0), ("test", 2))}
    missing_reference = reference_missing() if REFERENCE_STRATEGY in args.strategies else None
    bench = Bench(args.name, {**{k: (list(map(str, v)) if isinstance(v, list) else str(v)
                                               if isinstance(v, Path) else v) for k, v in vars(args).items()}})
    if missing_reference:
        bench.notes.append(missing_reference)
    aligner = FaceAligner()  # one detector for every fill
    for fill in args.fills:
        aligner.fill = fill
        out = args.work / fill
        if args.reuse and (out / "photos.csv").is_file():
            photos = PhotoSet(table=load_photo_table(out / "photos.csv"))
            rejected = pd.read_csv(out / "rejected.csv").to_dict("records")
        else:
            sources = PhotoSources(FACES / "me", None, celeba_images=pool["train"],
                                   celeba_others=args.celeba_others, strangers_dir=FACES / "others",
                                   stranger_images=pool["test"], n_strangers=args.celeba_strangers)
            photos = prepare_photos(sources, out, seed=args.seed, fractions=(0.6, 0.2, 0.2), cropper=aligner)
            rejected = [{"path": str(r.path), "reason": r.reason} for r in photos.rejected]
        counts = photos.counts()
        detectors = photos.table["detector"].value_counts().to_dict()
        bench.notes.append(f"{fill}: photos per split {counts}; detectors {detectors}; "
                           f"{len(rejected)} rejected: {[(Path(r['path']).name, r['reason']) for r in rejected]}")
        all_me = counts["train"]["me"]
        for n_me in sorted({min(n, all_me) if n > 0 else all_me for n in args.counts}):
            csv = subsample_me(out / "photos.csv", n_me, args.seed, out / f"n{n_me}.csv")
            runs: list[tuple[str, Path | None, str]] = []
            if REFERENCE_STRATEGY in args.strategies and not missing_reference:
                runs.append((REFERENCE_STRATEGY, None, "dlib"))
            for base in args.bases:
                for strategy in (s for s in args.strategies if s in KERAS_STRATEGIES):
                    feats = args.features if strategy == "feature_extraction" else ["-"]
                    runs += [(strategy, base, f) for f in feats]
            for strategy, base, features in runs:
                size, crop = base_input_settings(base) if base else ((64, 64), "face")
                name = base.parent.name if base else "-"
                job = TransferJob(strategy=strategy, base_model_path=base or Path("none"), photos_csv=csv,
                                  out_dir=out / f"n{n_me}" / name / f"{strategy}-{features}", image_size=size,
                                  crop=crop, epochs=args.epochs, seed=args.seed, threads=2,
                                  features=features if features in FEATURES else "auto")
                try:
                    m = train_transfer(job)
                except ValueError as exc:  # e.g. features="embedding" on a base without one
                    bench.notes.append(f"{fill} {name} {strategy} {features}: skipped ({exc})")
                    continue
                bench.row(fill=fill, base=name, strategy=strategy, features=features, me_train=n_me,
                          accuracy=m["accuracy"], f1=m["f1"], auc=m["roc_auc"],
                          recall_at_1pct_far=m["recall_at_1pct_far"], strangers_auc=m.get("strangers_roc_auc"),
                          strangers_accuracy=m.get("strangers_accuracy"),
                          strangers_false_accept=m.get("strangers_false_accept"), val_auc=m["val_roc_auc"],
                          val_f1=m.get("val_f1"),
                          train_s=m["train_time_s"])
                print(bench.rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(bench.rows, RESULTS / f"{args.name}.png")
    _targets(bench)
    bench.finish(COLUMNS)


def _targets(bench: Bench) -> None:
    """The issue's targets, checked on the rows. Against strangers, with <= 50 "me" photos: accuracy >= 0.98
    and ROC AUC >= 0.995 in the same row, the row being the one the pipeline would promote for that base and
    photo count (``selection_key``: validation AUC, then validation F1, the first of equals in run order;
    never test or strangers). And transfer beats from-scratch at every count (test AUC, best transfer row)."""
    from recognize_me.me.report import selection_key

    frame = pd.DataFrame(bench.rows)
    own = frame[frame["strategy"].isin(["feature_extraction", "fine_tuning"]) & (frame["me_train"] <= 50)]
    for (fill, base, n), part in own.groupby(["fill", "base", "me_train"], sort=True):
        pick = max(part.to_dict("records"),
                   key=lambda r: selection_key({"val_roc_auc": r["val_auc"], "val_f1": r.get("val_f1")}))
        label = f"{fill} {base} n={n}: val-chosen {pick['strategy']}/{pick['features']}"
        acc, auc = float(pick["strangers_accuracy"]), float(pick["strangers_auc"])
        bench.ratio(f"{label} strangers accuracy", acc, ">= 0.98", acc >= 0.98)
        bench.ratio(f"{label} strangers AUC", auc, ">= 0.995", auc >= 0.995)
    for (fill, base, n), part in frame.groupby(["fill", "base", "me_train"]):
        scratch = part.loc[part["strategy"] == "from_scratch", "auc"]
        transfer = part.loc[part["strategy"].isin(["feature_extraction", "fine_tuning"]), "auc"]
        if len(scratch) and len(transfer):
            margin = float(transfer.max() - scratch.max())
            bench.ratio(f"{fill} {base} n={n}: best transfer AUC - from-scratch AUC", margin, "> 0", margin > 0)


if __name__ == "__main__":
    main()

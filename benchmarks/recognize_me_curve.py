"""Recognize me on real faces: feature extraction and fine tuning vs a from-scratch baseline, as a learning
curve over 10, 25 and all "me" training photos, against two kinds of "others".

    python -m benchmarks.recognize_me_curve --base artifacts/<run>/models/cnn_scheduled/model.keras

Settings: me (../shared/data/faces/me) vs the four other people in faces/others, and me vs a sample of
CelebA images. Val and test photos stay fixed; only the "me" photos of the train split are subsampled.
Writes results/recognize_me_curve.json and results/recognize_me_curve.png.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import RESULTS, Bench, require_celeba

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
STRATEGIES = ("feature_extraction", "fine_tuning", "from_scratch")


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
    settings = sorted(frame["others"].unique())
    fig = Figure(figsize=(6 * len(settings), 4))
    axes = fig.subplots(1, len(settings), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for strategy in STRATEGIES:
            part = frame[(frame["others"] == setting) & (frame["strategy"] == strategy)]
            ax.plot(part["me_train"], part["f1"], marker="o", label=strategy)
        ax.set_title(f"me vs {setting}")
        ax.set_xlabel("'me' photos in train")
        ax.set_ylabel("test F1")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main(argv: list[str] | None = None) -> None:
    from recognize_me.me.photo_set import prepare_photos
    from recognize_me.me.transfer import TransferJob, base_input_settings, train_transfer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="a trained CelebA model.keras")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--celeba-others", type=int, default=400)
    args = parser.parse_args(argv)
    if not FACES.is_dir():
        print(f"SKIPPED: {FACES} not found")
        return
    images = sorted(require_celeba("img_align_celeba").glob("*.jpg"))
    size, crop = base_input_settings(args.base)
    bench = Bench("recognize_me_curve", {"base": str(args.base), "epochs": args.epochs, "seed": args.seed,
                                         "image_size": size, "crop": crop})
    work = Path(tempfile.mkdtemp(prefix="rm-curve-"))
    setups = {"four_people": FACES / "others", "celeba": None}
    for setting, others in setups.items():
        photos = prepare_photos(FACES / "me", others, work / setting, seed=args.seed, fractions=(0.6, 0.2, 0.2),
                                celeba_images=images, celeba_others=args.celeba_others)
        counts = photos.counts()
        all_me = counts["train"]["me"]
        bench.notes.append(f"{setting}: photos per split {counts}; {len(photos.rejected)} rejected")
        for n_me in sorted({min(10, all_me), min(25, all_me), all_me}):
            csv = subsample_me(work / setting / "photos.csv", n_me, args.seed, work / setting / f"n{n_me}.csv")
            for strategy in STRATEGIES:
                job = TransferJob(strategy=strategy, base_model_path=args.base, photos_csv=csv,
                                  out_dir=work / setting / f"n{n_me}" / strategy, image_size=size, crop=crop,
                                  epochs=args.epochs, seed=args.seed, threads=2)
                m = train_transfer(job)
                bench.row(others=setting, me_train=n_me, strategy=strategy, accuracy=m["accuracy"],
                          f1=m["f1"], auc=m["roc_auc"], test_photos=m["test_photos"],
                          train_s=m["train_time_s"])
                print(bench.rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(bench.rows, RESULTS / "recognize_me_curve.png")
    best = max((r for r in bench.rows if r["strategy"] != "from_scratch"), key=lambda r: r["f1"] or 0)
    scratch = [r["f1"] for r in bench.rows if r["strategy"] == "from_scratch"]
    bench.notes.append(f"best transfer F1 {best['f1']:.3f} ({best['strategy']}, {best['others']}, "
                       f"{best['me_train']} me); best from-scratch F1 {np.max(scratch):.3f}")
    bench.finish(["others", "me_train", "strategy", "accuracy", "f1", "auc", "test_photos", "train_s"])


if __name__ == "__main__":
    main()

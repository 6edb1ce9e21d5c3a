""""Is this me?" measured over many people: "me" rotated over the five shared people and over CelebA's test
identities, several draws each, feature extraction from each base beside the dlib reference on the same splits.

    python -m benchmarks.recognize_me_rotation --bases artifacts/<run>/models/resnet/model.keras ...
    python -m benchmarks.recognize_me_rotation --bases ... --reference-python /tmp/refvenv/bin/python

Every photo is aligned once (``FaceAligner``, the pipeline's own alignment) into ``--work``; each base's
features (the pipeline's ``flip_averaged_extractor``: L2-normalised, mirror-averaged) and the reference's
dlib embeddings (``<crop>.dlib128.npy``, as ``me/reference.py`` caches them; computed by
``--reference-python`` when face_recognition is not importable here) are computed once per photo. Each
cell then fits the pipeline's logistic regression (``fit_logistic``: C chosen on the cell's validation
fold) and its threshold (max F1 on validation), and is scored on test photos no choice saw.

Rotations:
- **shared**: "me" = each of the five shared people in turn (../shared/data/faces/me and others/*); per draw,
  a seeded 30% of "me" is test, 15% validation, and ``n`` (10 / 25 / 50, capped by what is left) train.
  Negatives: three of the other four people and a CelebA train-partition sample (split 60/20/20 by photo);
  strangers (people in no training split): the fourth other person and CelebA test-partition images.
- **celeba**: "me" = each of the CelebA test identities with 5 images present: 3 train, 2 test (few-shot);
  no validation fold is left, so C = 1 and the threshold 0.5 (balanced class weights), for both strategies;
  negatives: the CelebA train sample; strangers: other test identities.

Fine tuning is not rotated (one training per cell); ``benchmarks/recognize_me_curve.py`` compares it on one
"me". Writes results/<name>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Bench, require_celeba

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
COLUMNS = ["rotation", "strategy", "n_train", "cells", "accuracy", "accuracy_sd", "f1", "f1_sd", "auc", "auc_sd",
           "auc_min", "strangers_false_accept", "strangers_false_accept_sd"]


@dataclass(frozen=True)
class Cell:
    """One evaluation: row indices into the photo table for each fold; ``me`` names the person."""

    rotation: str
    me: str
    n_train: int
    draw: int
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    strangers: tuple[int, ...]


def _seeded(items: Sequence[int], key: str) -> list[int]:
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16))
    out = list(items)
    rng.shuffle(out)
    return out


def _split(items: Sequence[int], key: str, fractions: tuple[float, float]) -> tuple[list[int], list[int], list[int]]:
    """(train, val, test) of ``items``: test and val fractions taken first from a seeded shuffle."""
    shuffled = _seeded(items, key)
    n_test = max(1, round(fractions[1] * len(shuffled)))
    n_val = max(1, round(fractions[0] * len(shuffled)))
    return shuffled[n_test + n_val:], shuffled[n_test:n_test + n_val], shuffled[:n_test]


def shared_cells(table: pd.DataFrame, counts: Sequence[int], draws: int) -> list[Cell]:
    """The five-person rotation (see the module docstring); ``table`` has ``person`` and ``source``."""
    people = sorted(table.loc[table["source"] == "shared", "person"].unique())
    celeba = table.index[table["source"] == "celeba_train"].tolist()
    celeba_test = table.index[table["source"] == "celeba_test"].tolist()
    cells = []
    for i, me in enumerate(people):
        others = [p for p in people if p != me]
        stranger = others[i % len(others)]
        negatives = [j for p in others if p != stranger for j in table.index[table["person"] == p]] + celeba
        mine = table.index[table["person"] == me].tolist()
        strangers = tuple(table.index[table["person"] == stranger].tolist() + celeba_test)
        for draw in range(draws):
            me_train, me_val, me_test = _split(mine, f"{me}:{draw}", (0.15, 0.30))
            neg_train, neg_val, neg_test = _split(negatives, f"neg:{me}:{draw}", (0.2, 0.2))
            for n in counts:
                cells.append(Cell("shared", me, min(n, len(me_train)), draw, tuple(me_train[:n] + neg_train),
                                  tuple(me_val + neg_val), tuple(me_test + neg_test), strangers))
    return cells


def celeba_cells(table: pd.DataFrame, max_people: int | None = None) -> list[Cell]:
    """The few-shot rotation: every CelebA test identity with 5 photos, 3 train / 2 test."""
    test = table[table["source"] == "celeba_test"]
    groups = {p: g.index.tolist() for p, g in test.groupby("person") if len(g) == 5}
    people = sorted(groups)[:max_people]
    train_neg, _, test_neg = _split(table.index[table["source"] == "celeba_train"].tolist(), "celeba-neg", (0.0, 0.3))
    cells = []
    for me in people:
        mine = _seeded(groups[me], f"celeba:{me}")
        strangers = [j for p in _seeded([q for q in people if q != me], f"str:{me}")[:40] for j in groups[p]]
        cells.append(Cell("celeba", str(me), 3, 0, tuple(mine[:3] + train_neg), (), tuple(mine[3:] + test_neg),
                          tuple(strangers)))
    return cells


FITS = ("split", "pooled")


def score_cell(cell: Cell, x: np.ndarray, y: np.ndarray, seed: int = 0, fit: str = "split") -> dict[str, float | None]:
    """Fit the pipeline's logistic regression and score test and strangers. ``fit="split"``: on the cell's
    train fold, C and threshold on its validation fold (``fit_logistic``); ``"pooled"``: C and threshold on
    out-of-fold scores of train+val, refit on both (``fit_logistic_pooled``, what the pipeline does). Without
    a validation fold C = 1 and threshold 0.5."""
    from recognize_me.evaluation.metrics import roc_auc
    from recognize_me.me.logistic import fit_logistic, fit_logistic_pooled
    from recognize_me.training.thresholds import choose_thresholds

    tr, va, te, st = (list(ix) for ix in (cell.train, cell.val, cell.test, cell.strangers))
    selection = None
    if fit == "pooled" and va:
        pooled = fit_logistic_pooled(x[tr], y[tr], tr, x[va], y[va], va, seed)
        clf, selection = pooled.model, pooled.selection
    else:
        clf, _ = fit_logistic(x[tr], y[tr], x[va] if va else x[:0], y[va] if va else y[:0], seed)
    p = {k: clf.predict_proba(x[ix])[:, 1] if ix else np.zeros(0) for k, ix in (("val", va), ("test", te),
                                                                                 ("strangers", st))}
    y_sel, p_sel = selection if selection is not None else (y[va], p["val"])
    threshold = 0.5 if not va else \
        float(choose_thresholds(np.asarray(y_sel)[:, None], np.asarray(p_sel)[:, None], metric="f1")[0])
    yt, pred = y[te], p["test"] >= threshold
    tp = float(np.sum(pred & (yt > 0)))
    precision = tp / max(1.0, float(pred.sum()))
    recall = tp / max(1.0, float((yt > 0).sum()))
    return {"accuracy": float(np.mean(pred == (yt > 0))),
            "f1": 0.0 if tp == 0 else 2 * precision * recall / (precision + recall),
            "auc": float(roc_auc(yt, p["test"])),
            "strangers_false_accept": float(np.mean(p["strangers"] >= threshold)) if st else None}


def score_cells(cells: Sequence[Cell], table: pd.DataFrame, features: dict[str, np.ndarray],
                seed: int = 0, fits: Sequence[str] = ("split",)) -> pd.DataFrame:
    """One row per (cell, strategy, fit): ``score_cell`` on each strategy's features of ``table``'s photos;
    a fit other than ``split`` is named in the strategy column (``name [pooled]``)."""
    results = []
    for cell in cells:
        y = (table["person"] == cell.me).to_numpy().astype(int)
        for strategy, x in features.items():
            for fit in fits:
                name = strategy if fit == "split" else f"{strategy} [{fit}]"
                results.append({"rotation": cell.rotation, "me": cell.me, "draw": cell.draw,
                                "n_train": cell.n_train, "strategy": name, **score_cell(cell, x, y, seed, fit)})
    return pd.DataFrame(results, columns=["rotation", "me", "draw", "n_train", "strategy", "accuracy", "f1", "auc",
                                          "strangers_false_accept"])


def summarize(results: pd.DataFrame) -> list[dict]:
    """Mean and spread per (rotation, strategy, n_train) over people and draws."""
    rows = []
    for (rotation, strategy, n), part in results.groupby(["rotation", "strategy", "n_train"], sort=True):
        row = {"rotation": rotation, "strategy": strategy, "n_train": int(n), "cells": len(part)}
        for metric in ("accuracy", "f1", "auc", "strangers_false_accept"):
            values = part[metric].dropna().astype(float)
            row[metric] = round(float(values.mean()), 4) if len(values) else None
            row[f"{metric}_sd"] = round(float(values.std(ddof=0)), 4) if len(values) else None
        row["auc_min"] = round(float(part["auc"].min()), 4)
        rows.append(row)
    return rows


# --- photos, crops, features (run once, cached in --work) -------------------------------------------

def photo_table(work: Path, celeba_train: int, seed: int) -> pd.DataFrame:
    """Align every photo once; ``table.csv`` in ``work`` (path, crop, person, source, label-free)."""
    from recognize_me.me.align import FaceAligner
    from recognize_me.me.photos import load_rgb

    cached = work / "table.csv"
    if cached.is_file():
        return pd.read_csv(cached, dtype={"person": str})
    images = require_celeba("img_align_celeba")
    ids = pd.read_csv(require_celeba("identity_CelebA.txt"), sep=r"\s+", header=None, names=["image_id", "person"],
                      dtype=str)
    part = pd.read_csv(require_celeba("list_eval_partition.txt"), sep=r"\s+", header=None,
                       names=["image_id", "partition"], dtype={"image_id": str})
    present = {p.name for p in images.glob("*.jpg")}
    frame = ids.merge(part, on="image_id")
    frame = frame[frame["image_id"].isin(present)]
    rows = [{"path": str(p), "person": d.name, "source": "shared"}
            for d in [FACES / "me", *sorted((FACES / "others").iterdir())] for p in sorted(d.glob("*.png"))]
    train = frame[frame["partition"] == 0].sample(n=celeba_train, random_state=seed)
    rows += [{"path": str(images / i), "person": f"celeba_{p}", "source": "celeba_train"}
             for i, p in zip(train["image_id"], train["person"], strict=True)]
    rows += [{"path": str(images / i), "person": f"celeba_{p}", "source": "celeba_test"}
             for i, p in zip(*(frame.loc[frame["partition"] == 2, c] for c in ("image_id", "person")), strict=True)]
    aligner = FaceAligner()
    (work / "crops").mkdir(parents=True, exist_ok=True)
    kept = []
    for row in rows:
        crop = work / "crops" / (hashlib.sha256(row["path"].encode()).hexdigest()[:16] + ".png")
        if not crop.is_file():
            found = aligner.align(load_rgb(Path(row["path"])))
            if found.image is None:
                continue
            found.image.save(crop)
        kept.append({**row, "crop": str(crop)})
    table = pd.DataFrame(kept)
    table.to_csv(cached, index=False)
    return table


def base_features(base: Path, crops: Sequence[str], work: Path) -> np.ndarray:
    """The pipeline's feature-extraction features of every crop, cached per base file content."""
    import keras

    import recognize_me.models  # noqa: F401 - registers the custom layers a base may use
    from recognize_me.data.dataset import make_dataset
    from recognize_me.me.surgery import flip_averaged_extractor
    from recognize_me.me.transfer import base_input_settings

    key = hashlib.sha256(Path(base).read_bytes()).hexdigest()[:12]
    cached = work / f"features-{key}.npy"
    if cached.is_file():
        return np.load(cached)
    size, crop = base_input_settings(base)
    extractor = flip_averaged_extractor(keras.models.load_model(base, safe_mode=True, compile=False), size)
    x = extractor.predict(make_dataset(list(crops), None, image_size=size, crop=crop, batch_size=64), verbose=0)
    np.save(cached, x)
    return x


EMBED_SCRIPT = """
import sys, numpy as np, face_recognition
from PIL import Image
left, top, right, bottom = map(int, sys.argv[1].split(","))
for path in sys.stdin.read().split():
    rgb = np.asarray(Image.open(path).convert("RGB"))
    v = face_recognition.face_encodings(rgb, known_face_locations=[(top, right, bottom, left)])[0]
    np.save(path + ".dlib128.npy", v)
"""


def reference_features(crops: Sequence[str], python: str | None) -> np.ndarray | None:
    """dlib embeddings (``<crop>.dlib128.npy``): computed here, or by ``python`` (a venv with
    face_recognition) for the crops that have none; None when neither can."""
    from recognize_me.me.align import FACE_BOX
    from recognize_me.me.reference import dlib_embeddings, reference_missing

    todo = [c for c in crops if not Path(c + ".dlib128.npy").is_file()]
    if todo and reference_missing():
        if python is None:
            return None
        subprocess.run([python, "-c", EMBED_SCRIPT, ",".join(map(str, FACE_BOX))], input="\n".join(todo),
                       text=True, check=True)
    return dlib_embeddings(list(crops))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", type=Path, nargs="*", default=[], help="trained CelebA model.keras files")
    parser.add_argument("--reference-python", help="python of a venv with face_recognition (for dlib embeddings)")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--celeba-train", type=int, default=1000, help="CelebA train-partition negatives")
    parser.add_argument("--celeba-people", type=int, default=None, help="at most this many few-shot identities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rm-rotation"))
    parser.add_argument("--name", default="recognize_me_rotation")
    args = parser.parse_args(argv)
    if not FACES.is_dir():
        print(f"SKIPPED: {FACES} not found")
        return
    bench = Bench(args.name, {k: [str(b) for b in v] if k == "bases" else str(v) for k, v in vars(args).items()})
    table = photo_table(args.work, args.celeba_train, args.seed)
    bench.notes.append(f"photos aligned: {table.groupby('source').size().to_dict()}; "
                       f"per shared person {table[table['source'] == 'shared'].groupby('person').size().to_dict()}")
    features = {f"fe:{b.parent.name}": base_features(b, table["crop"], args.work) for b in args.bases}
    reference = reference_features(table["crop"].tolist(), args.reference_python)
    if reference is None:
        bench.notes.append("reference skipped: face_recognition not importable and no --reference-python")
    else:
        features["reference_dlib"] = reference
    cells = shared_cells(table, args.counts, args.draws) + celeba_cells(table, args.celeba_people)
    frame = score_cells(cells, table, features, args.seed)
    (args.work / f"{args.name}-cells.csv").write_text(frame.to_csv(index=False))
    for row in summarize(frame):
        bench.row(**row)
    bench.notes.append(f"per-cell results: {args.work / (args.name + '-cells.csv')}")
    issue_goals(bench, frame)
    bench.finish(COLUMNS)


def issue_goals(bench: Bench, frame: pd.DataFrame) -> None:
    """Issue 19's goals on the shared rotation: at 50 photos mean F1 >= 0.95 and mean AUC >= 0.995; at 25
    photos within 0.005 AUC of the reference (same cells)."""
    shared = frame[frame["rotation"] == "shared"]
    ours = [s for s in shared["strategy"].unique() if not s.startswith("reference_dlib")]
    top = shared["n_train"].max() if len(shared) else None
    for strategy in ours:
        part = shared[(shared["strategy"] == strategy) & (shared["n_train"] == top)]
        if len(part):
            bench.ratio(f"{strategy} n={top}: mean F1", float(part["f1"].mean()), ">= 0.95", part["f1"].mean() >= 0.95)
            bench.ratio(f"{strategy} n={top}: mean AUC", float(part["auc"].mean()), ">= 0.995",
                        part["auc"].mean() >= 0.995)
        mine = shared[(shared["strategy"] == strategy) & (shared["n_train"] == 25)]
        fit = strategy[strategy.index(" ["):] if " [" in strategy else ""  # compare with the same fit
        ref = shared[(shared["strategy"] == f"reference_dlib{fit}") & (shared["n_train"] == 25)]
        if len(mine) and len(ref):
            gap = float(ref["auc"].mean() - mine["auc"].mean())
            bench.ratio(f"{strategy} n=25: reference AUC - ours", gap, "<= 0.005", gap <= 0.005)


if __name__ == "__main__":
    main()

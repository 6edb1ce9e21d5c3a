"""Which embedding limits the group photos: the pipeline's distilled student or its teacher, dlib's own ResNet?

For each case (a ``find_speed`` photo set and the run trained for its "me"): every face of its group photos is
detected and aligned exactly as ``recognize-me find`` does (``predict.detect_photo``, cached in
``SET/embedding_faces``); then the run's own training photos (its ``photos.csv`` splits) fit the pipeline's
logistic regression (``fit_logistic_pooled``: C and the max-F1 threshold on out-of-fold scores) on

- ``student``: the run's ``distilled`` features (the student find uses; its accuracy equals find's);
- ``dlib``: dlib's 128-d embedding of the same aligned crops (``reference.dlib_embeddings``), about
  85 ms per face on this machine, so find does not use it;
- ``mean``: the mean of the two probabilities (both fits see the same rows and folds), threshold on the mean
  of their out-of-fold scores;
- ``cascade``: the student first; dlib judges only the faces the student scores at or above the cut that
  ``CASCADE_OTHERS_SHARE`` of the out-of-fold "other" photos reach (the rest are rejected without dlib), its
  threshold chosen on the out-of-fold scores treated the same way. ``dlib_share`` is the share of the
  photos' faces dlib had to embed: what the cascade would cost.

Printed side by side: group-photo accuracy at each one's own threshold, the best accuracy any threshold
reaches in hindsight (``ceiling``: a bound, never a result), the face-level AUC (the person's faces vs the
strangers' faces of those photos), the person's faces found and strangers' faces judged "me".

    python -m benchmarks.find_embeddings --case Keanu_Reeves=/tmp/fm/Keanu/set_200_80_18=/tmp/fs/artifacts/k ...
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import find_scoring as fs
from benchmarks.common import Bench

EMBEDDINGS = ("student", "dlib", "mean", "cascade")
#: cascade: dlib judges only the faces the student scores at or above the score that this share of the
#: out-of-fold "other" photos reach; every other face is rejected (score 0) without dlib
CASCADE_OTHERS_SHARE = 0.10
_ALIGNER: Any = None


def _detect(photo: str, dest: str) -> list[dict[str, Any]]:
    """Every judged face of one photo: its crop (saved) and its box in the photo's pixels."""
    global _ALIGNER  # one detector per worker process
    from recognize_me.me.align import FaceAligner
    from recognize_me.me.predict import detect_photo

    _ALIGNER = _ALIGNER or FaceAligner()
    found = detect_photo(Path(photo), _ALIGNER)
    rows = []
    for i, face in enumerate(found.faces):
        if face.image is not None and face.box is not None:
            crop = Path(dest) / f"{Path(photo).stem}_{i}.png"
            face.image.save(crop)
            rows.append({"path": Path(photo).name, "crop": str(crop), "box": [v * found.scale for v in face.box]})
    return rows


def group_faces(set_dir: Path, truth: Sequence[dict[str, str]], workers: int) -> list[dict[str, Any]]:
    dest = set_dir / "embedding_faces"
    index = dest / "faces.json"
    if index.is_file():
        return json.loads(index.read_text())
    dest.mkdir(exist_ok=True)
    photos = sorted({str(set_dir / "photos" / r["path"]) for r in truth})
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = [r for rs in pool.map(_detect, photos, [str(dest)] * len(photos), chunksize=4) for r in rs]
    index.write_text(json.dumps(rows))
    return rows


def scored(run: Path) -> dict[str, Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """embedding -> (crops -> (out-of-fold labels, out-of-fold scores, the crops' probabilities))."""
    from recognize_me.data.dataset import make_dataset
    from recognize_me.me.logistic import fit_logistic_pooled
    from recognize_me.me.photo_set import load_photo_table
    from recognize_me.me.reference import dlib_embeddings
    from recognize_me.me.strategies import content_groups
    from recognize_me.me.surgery import flip_averaged_extractor, load_base
    from recognize_me.me.transfer import split_data

    job = json.loads((run / "me" / "distilled" / "config.json").read_text())["job"]
    size = tuple(job["image_size"])
    extractor = flip_averaged_extractor(load_base(job["base_model_path"], size), size)
    data = split_data(load_photo_table(job["photos_csv"]))

    def student(paths: Sequence[str]) -> np.ndarray:
        return extractor.predict(make_dataset(list(paths), None, image_size=size, crop=job["crop"], batch_size=64),
                                 verbose=0)

    def judge(embed: Callable[[Sequence[str]], np.ndarray]) -> Callable:
        fit = fit_logistic_pooled(embed(data["train"][0]), data["train"][1], content_groups(data, "train"),
                                  embed(data["val"][0]), data["val"][1], content_groups(data, "val"), job["seed"])
        return lambda crops: (*fit.selection, fit.model.predict_proba(embed(crops))[:, 1])

    return {"student": judge(student), "dlib": judge(dlib_embeddings)}


def rows_at(faces: Sequence[dict[str, Any]], p: np.ndarray, t: float) -> list[dict[str, Any]]:
    return [{"path": f["path"], "face": str(i), **dict(zip(("left", "top", "right", "bottom"), f["box"], strict=True)),
             "me_probability": float(pi), "is_me": str(pi >= t)} for i, (f, pi) in enumerate(zip(faces, p, strict=True))]


def one_row(case: str, name: str, faces: list, truth: list, y: np.ndarray, s: np.ndarray, p: np.ndarray
            ) -> dict[str, Any]:
    from recognize_me.training.thresholds import choose_thresholds

    t = float(choose_thresholds(y[:, None], s[:, None], metric="f1")[0])
    photos = fs.truth_by_photo(truth)

    def accuracy(threshold: float) -> float:
        return fs.score(fs.find_by_photo(rows_at(faces, p, threshold)), photos)["accuracy"]

    d = fs.face_diagnostics(rows_at(faces, p, t), truth)
    return {"me": case, "embedding": name, "threshold": round(t, 2), "group_accuracy": round(accuracy(t), 3),
            "ceiling": round(max(accuracy(x) for x in np.arange(0.05, 0.99, 0.01)), 3),
            "face_auc": round(fs.auc(d["me_probs"], d["stranger_probs"]), 4),
            "me_found": f"{d['me_judged_me']}/{d['me_faces']}",
            "strangers_judged_me": f"{d['stranger_judged_me']}/{d['stranger_faces']}"}


def run_case(case: str, set_dir: Path, run: Path, workers: int) -> list[dict[str, Any]]:
    truth = [r for r in csv.DictReader((set_dir / "truth.csv").open()) if r["kind"] in fs.GROUP_KINDS]
    faces = group_faces(set_dir, truth, workers)
    crops = [f["crop"] for f in faces]
    out = {name: judge(crops) for name, judge in scored(run).items()}
    (ys, ss, ps), (yd, sd, pd_) = out["student"], out["dlib"]
    assert (ys == yd).all(), "both fits must see the same rows"
    out["mean"] = (ys, (ss + sd) / 2, (ps + pd_) / 2)
    cut = cascade_cut(ys, ss)
    out["cascade"] = (ys, np.where(ss >= cut, sd, 0.0), np.where(ps >= cut, pd_, 0.0))
    rows = [one_row(case, name, faces, truth, *out[name]) for name in EMBEDDINGS]
    rows[-1] |= {"dlib_share": round(float(np.mean(ps >= cut)), 3),
                 "me_oof_below_cut": int(np.sum((ys == 1) & (ss < cut)))}
    return rows


def cascade_cut(y: np.ndarray, s: np.ndarray, others_share: float = CASCADE_OTHERS_SHARE) -> float:
    """The student score that ``others_share`` of the out-of-fold "other" rows reach."""
    return float(np.quantile(s[y == 0], 1.0 - others_share))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", required=True, metavar="ME=SET_DIR=RUN_DIR")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="find_embeddings", help="results/<name>.json")
    args = parser.parse_args()
    bench = Bench(args.name, {"cases": args.case})
    for spec in args.case:
        case, set_dir, run = spec.split("=")
        for row in run_case(case, Path(set_dir), Path(run), args.workers):
            print(bench.row(**row), flush=True)
    for name in EMBEDDINGS:
        mean = float(np.mean([r["group_accuracy"] for r in bench.rows if r["embedding"] == name]))
        bench.notes.append(f"{name}: mean group-photo accuracy {mean:.4f} over {len(args.case)} people")
    bench.finish(["me", "embedding", "threshold", "group_accuracy", "ceiling", "face_auc", "me_found",
                  "strangers_judged_me", "dlib_share", "me_oof_below_cut", "load_1min"])


if __name__ == "__main__":
    main()

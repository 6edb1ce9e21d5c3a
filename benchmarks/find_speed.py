"""``recognize-me find`` vs face_recognition's CLI on the same phone-size photos: photos/s and accuracy.

"me" is a person of ../shared/data/faces on whom no choice of the pipeline was tuned (default Jessica_Alba,
the test "me"): ``--n-train`` of their photos (seeded) are the training photos, the rest appear only in the
generated photos. Roles (``roles``): the first two of Keanu_Reeves, Daniel_Radcliffe, Jennifer_Lopez and
faces/me that are not "me" are the training "others"; the rest, and CelebA test-partition faces (their
148x148 face box), are strangers to training. Any other ``--me`` (``me`` = faces/me) is a development set:
choices are tried there (use another ``--root``), and Jessica_Alba appears nowhere in it.

Steps (each reused when its output exists):
1. ``ROOT/me_train``, ``ROOT/me_test``, ``ROOT/others_train``; without ``--run`` print the training command
   and stop.
2. ``ROOT/set_<n>_<group>_<seed>/photos``: ``n`` photos of 4032x3024 or 3024x4032 (JPEG quality 90, ~20% of
   them with an EXIF orientation tag, ~10% HEIC), ``--group`` group photos with "me" (not the largest face)
   and as many without, the rest 1-5 faces; ``truth.csv`` beside the folder, one row per face.
3. ``recognize-me find photos --run RUN --out SET/find_out_<run name>`` (emptied first: a full scan), then
   ``face_recognition --cpus 2 known/ reference_view/`` where ``known/`` holds the training photos padded by
   a quarter of their side (edge pixels replicated; dlib's HOG finds 34 of the 50 tight crops unpadded, 44
   padded) and ``reference_view/`` links to the JPEGs and holds JPEG copies (quality 95) of the HEIC photos,
   which the reference cannot read. ``--reuse-find`` / ``--reuse-reference`` rescore a saved run instead.

    python -m benchmarks.find_speed --run /tmp/fb/artifacts/<run> --n 200 --group 40
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import find_scoring as fs
from benchmarks.common import CELEBA, REPO, Bench, common_args, wait_for_idle
from benchmarks.phone_photos import (
    CELEBA_FACE_BOX,
    FaceSource,
    PhotoPlan,
    plan_photos,
    render_photo,
    truth_rows,
    write_photo,
    write_truth,
)

FACES = REPO.parent / "shared" / "data" / "faces"
#: face_recognition's CLI: $FACE_RECOGNITION_BIN, else the one `make install` puts beside this Python
REFERENCE_BIN = Path(os.environ.get("FACE_RECOGNITION_BIN", Path(sys.executable).with_name("face_recognition")))
#: The shared people other than the test "me", in the order roles are handed out: the first two that are not
#: "me" are the training "others", the rest strangers (faces/me appears as ``default_me``).
PEOPLE = ("Keanu_Reeves", "Daniel_Radcliffe", "Jennifer_Lopez", "me")


def split_me(person_dir: Path, n_train: int, seed: int) -> tuple[list[Path], list[Path]]:
    """The person's photos (sorted, then shuffled with ``random.Random(seed)``): first ``n_train`` train."""
    files = sorted(p for p in person_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    random.Random(seed).shuffle(files)
    if len(files) <= n_train:
        raise SystemExit(f"{person_dir} has {len(files)} photos: need more than --n-train {n_train}")
    return sorted(files[:n_train]), sorted(files[n_train:])


def copy_all(files: list[Path], dest: Path) -> None:
    if dest.exists() and len(list(dest.iterdir())) == len(files):
        return
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, dest / f.name)


DEV_ME = "me"  # faces/me: the development "me"; the test "me" never appears in the development set
TEST_ME = "Jessica_Alba"


def person_dir(me: str) -> Path:
    return FACES / "me" if me == DEV_ME else FACES / "others" / me


def roles(me: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training others, stranger people) for this "me": the test "me" (Jessica_Alba) is never a role, so a
    development "me" (any other shared person) never sees her."""
    rest = tuple(p for p in PEOPLE if p != me)
    return rest[:2], rest[2:]


def prepare_people(root: Path, me: str, n_train: int, seed: int) -> tuple[Path, Path, Path]:
    train, test = split_me(person_dir(me), n_train, seed)
    copy_all(train, root / "me_train")
    copy_all(test, root / "me_test")
    for person in roles(me)[0]:
        copy_all(sorted(person_dir(person).glob("*.png")), root / "others_train" / person)
    return root / "me_train", root / "me_test", root / "others_train"


def stranger_sources(n_celeba: int, seed: int, me: str = TEST_ME) -> list[FaceSource]:
    sources = [FaceSource(p, "default_me" if person == DEV_ME else person) for person in roles(me)[1]
               for p in sorted(person_dir(person).glob("*.png"))]
    images = CELEBA / "img_align_celeba"
    test_ids = [line.split()[0] for line in (CELEBA / "list_eval_partition.txt").read_text().splitlines()
                if line.strip().endswith(" 2")]
    present = [i for i in test_ids if (images / i).exists()]
    for name in random.Random(seed).sample(present, min(n_celeba, len(present))):
        sources.append(FaceSource(images / name, f"celeba_test:{name}", crop=CELEBA_FACE_BOX))
    return sources


def _render_one(plan: PhotoPlan, photos: Path) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    target = photos / plan.name
    if not target.exists():
        write_photo(plan, render_photo(plan), target)


def build_set(root: Path, me_test: Path, me: str, n: int, n_group: int, seed: int,
              workers: int) -> tuple[Path, list[dict[str, Any]]]:
    set_dir = root / f"set_{n}_{n_group}_{seed}"
    photos = set_dir / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    me_faces = [FaceSource(p, me, is_me=True) for p in sorted(me_test.glob("*.png"))]
    plans = plan_photos(n, me_faces, stranger_sources(300, seed, me), seed=seed, n_group=n_group,
                        p_heic=0.1, p_oriented=0.2)
    todo = [p for p in plans if not (photos / p.name).exists()]
    if todo:
        print(f"rendering {len(todo)} photos into {photos} with {workers} process(es)...", flush=True)
        start = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            for i, _ in enumerate(pool.map(_render_one, todo, [photos] * len(todo), chunksize=4), 1):
                if i % 25 == 0:
                    print(f"  {i}/{len(todo)} ({time.perf_counter() - start:.0f} s)", flush=True)
    rows = [row for plan in plans for row in truth_rows(plan)]
    write_truth(rows, set_dir / "truth.csv")
    return set_dir, rows


def reference_view(set_dir: Path, names: list[str]) -> tuple[Path, dict[str, str]]:
    """A folder the reference can read: links to the JPEGs, JPEG copies of the HEICs; basename -> photo."""
    import pillow_heif
    from PIL import Image, ImageOps

    pillow_heif.register_heif_opener()
    view = set_dir / "reference_view"
    view.mkdir(exist_ok=True)
    name_of = {}
    for name in names:
        src = set_dir / "photos" / name
        if name.lower().endswith(".heic"):
            dest = view / f"{name}.jpg"
            if not dest.exists():
                with Image.open(src) as im:
                    ImageOps.exif_transpose(im).convert("RGB").save(dest, format="JPEG", quality=95)
        else:
            dest = view / name
            if not dest.exists():
                dest.symlink_to(src)
        name_of[dest.name] = name
    return view, name_of


def padded_known(me_train: Path, dest: Path) -> Path:
    from PIL import Image

    if dest.exists() and len(list(dest.iterdir())) == len(list(me_train.iterdir())):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(me_train.iterdir()):
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"))
        pad = a.shape[1] // 4
        Image.fromarray(np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")).save(dest / f"me_{p.stem}.png")
    return dest


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Each 'is this me?' strategy of the run: threshold, test AUC and its own strangers' false-accept rate."""
    out = {}
    for metrics in sorted(Path(run_dir).glob("me/*/metrics.json")):
        m = json.loads(metrics.read_text())
        out[metrics.parent.name] = {k: m.get(k) for k in ("threshold", "roc_auc", "val_roc_auc", "val_f1",
                                                          "strangers_false_accept", "strangers_roc_auc")}
    return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def timed(cmd: list[str], log: Path, cwd: Path = REPO) -> dict[str, Any]:
    before = uptime()
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "returncode": proc.returncode, "uptime_before": before, "uptime_after": uptime(),
            "cmd": " ".join(cmd), "log": str(log)}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


SUBSETS = {"all photos": lambda r: True,
           "group photos": lambda r: r["kind"] in fs.GROUP_KINDS,
           "JPEG, no orientation tag": lambda r: r["format"] == "jpg" and int(r["orientation"]) == 1,
           "JPEG with EXIF orientation": lambda r: r["format"] == "jpg" and int(r["orientation"]) != 1,
           "HEIC": lambda r: r["format"] == "heic"}


def score_rows(tool: str, predicted: dict[str, bool], truth_rows_: list[dict[str, Any]], wall: float,
               n: int) -> list[dict[str, Any]]:
    rows = []
    for subset, keep in SUBSETS.items():
        truth = fs.truth_by_photo(r for r in truth_rows_ if keep(r))
        s = fs.score(predicted, truth)
        rows.append({"tool": tool, "subset": subset, "photos_per_s": n / wall if subset == "all photos" else None,
                     **s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run folder with a trained 'is this me?' model")
    parser.add_argument("--root", type=Path, default=Path("/tmp/find_speed"))
    parser.add_argument("--me", default=TEST_ME, help=f"a person of faces/others, or {DEV_ME!r} (faces/me)")
    parser.add_argument("--n-train", type=int, default=50)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--group", type=int, default=100, help="group photos with me (and as many without)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--workers", type=int, default=2, help="find's --workers and the render processes")
    parser.add_argument("--build-only", action="store_true", help="make the photos and stop")
    parser.add_argument("--skip-find", action="store_true")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--reuse-find", action="store_true",
                        help="score find's saved output (find_out/, find.log/.json) instead of rerunning it")
    parser.add_argument("--reuse-reference", action="store_true",
                        help="score the reference's saved output (reference.log/.json) instead of rerunning it")
    common_args(parser)
    args = parser.parse_args()

    me_train, me_test, others_train = prepare_people(args.root, args.me, args.n_train, args.seed)
    if args.run is None and not (args.build_only or args.skip_find):
        print("train first, then pass --run <output-root>/<run>:\n"
              f"  python -m recognize_me.cli train --celeba {CELEBA} --me-dir {me_train} --others-dir "
              f"{others_train} --models resnet --image-size 64 64 --time-budget-min 15 "
              f"--output-root {args.root / 'artifacts'}")
        return
    set_dir, truth = build_set(args.root, me_test, args.me, args.n, args.group, args.seed, args.workers)
    names = sorted({str(r["path"]) for r in truth})
    view, name_of = reference_view(set_dir, names)
    known = padded_known(me_train, args.root / "known")
    if args.build_only:
        print(f"{len(names)} photos in {set_dir / 'photos'}; truth in {set_dir / 'truth.csv'}")
        return
    if args.wait_idle:
        wait_for_idle(deadline_utc=args.wait_idle)

    params = {"n": args.n, "group": args.group, "seed": args.seed, "me": args.me, "n_train": args.n_train,
              "run": str(args.run), "workers": args.workers, "photos": str(set_dir / "photos"),
              "train_others": roles(args.me)[0], "strangers": [*roles(args.me)[1], "CelebA test partition"]}
    suffix = "" if args.run is None else f"_{args.run.name}"
    bench = Bench(("find_speed" if args.n == 1000 else f"find_speed_{args.n}") + suffix, params)
    predictions: dict[str, tuple[dict[str, bool], float]] = {}
    if not args.skip_find:
        out, tag = set_dir / f"find_out_{args.run.name}", f"find_{args.run.name}"
        cmd = [sys.executable, "-m", "recognize_me.cli", "find", str(set_dir / "photos"), "--run", str(args.run),
               "--out", str(out), "--workers", str(args.workers)]
        saved = set_dir / f"{tag}.json"
        if args.reuse_find and saved.exists():
            t = json.loads(saved.read_text())
            bench.notes.append("find: reused the saved run (--reuse-find)")
        else:
            shutil.rmtree(out, ignore_errors=True)
            t = timed(cmd, set_dir / f"{tag}.log")
            saved.write_text(json.dumps(t, indent=1) + "\n")
        bench.notes.append(f"find: {t}")
        if t["returncode"] != 0:
            raise SystemExit(f"find failed ({t['returncode']}); see {t['log']}")
        chosen = [ln for ln in (set_dir / f"{tag}.log").read_text().splitlines() if "is-me model:" in ln]
        bench.notes.append(f"find used: {chosen[-1].split(' - ', 1)[-1] if chosen else '?'}; run's strategies: "
                           f"{run_summary(args.run)}")
        matches = read_csv(out / "matches.csv")
        predictions["recognize-me find"] = (fs.find_by_photo(matches), t["wall_s"])
        diag = fs.face_diagnostics(matches, truth)
        probs_me, probs_st = diag.pop("me_probs"), diag.pop("stranger_probs")
        diag["face_auc"] = fs.auc(probs_me, probs_st)
        statuses: dict[str, int] = {}
        for row in matches:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        bench.notes.append(f"find per-face diagnostics (a detection matches a truth face at IoU >= 0.3 or with its centre inside): {diag}")
        bench.notes.append(f"find statuses per face row: {statuses}")
    if not args.skip_reference:
        saved = set_dir / "reference.json"
        if args.reuse_reference and saved.exists():
            t = json.loads(saved.read_text())
            bench.notes.append("reference: reused the saved run (--reuse-reference)")
        else:
            cmd = [str(REFERENCE_BIN), "--cpus", "2", str(known), str(view)]
            t = timed(cmd, set_dir / "reference.log")
            saved.write_text(json.dumps(t, indent=1) + "\n")
        bench.notes.append(f"reference: {t}")
        lines = (set_dir / "reference.log").read_text().splitlines()
        bench.notes.append(f"reference: {sum('No faces found' in ln for ln in lines)} of "
                           f"{len(list(known.iterdir()))} known photos without a face found")
        predictions["face_recognition CLI"] = (fs.reference_by_photo(lines, name_of), t["wall_s"])
    for tool, (predicted, wall) in predictions.items():
        for row in score_rows(tool, predicted, truth, wall, len(names)):
            bench.row(**row, wall_s=wall if row["subset"] == "all photos" else None)
    if len(predictions) == 2:
        (ours, our_wall), (ref, ref_wall) = predictions.values()
        speed = ref_wall / our_wall
        acc = {tool: fs.score(p, fs.truth_by_photo(truth))["accuracy"] for tool, (p, _) in predictions.items()}
        group = fs.score(ours, fs.truth_by_photo(r for r in truth if r["kind"] in fs.GROUP_KINDS))["accuracy"]
        bench.ratio("find photos/s / reference photos/s", speed, ">= 2", speed >= 2)
        bench.ratio("find accuracy - reference accuracy", acc["recognize-me find"] - acc["face_recognition CLI"],
                    ">= 0", acc["recognize-me find"] >= acc["face_recognition CLI"])
        bench.ratio("find any-face group-photo accuracy", group, ">= 0.95", group >= 0.95)
    bench.finish(["tool", "subset", "photos", "photos_per_s", "wall_s", "accuracy", "found", "with_me",
                  "false_alarms", "without_me", "unanswered", "load_1min"])


if __name__ == "__main__":
    main()

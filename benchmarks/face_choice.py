"""Which face of a multi-face "me" photo is the user: the CelebA base's ``gap`` features vs dlib_resnet's embedding.

    python -m benchmarks.face_choice --celeba-base <run>/models/resnet/model.keras [--people ...]

For each development person as "me" (Jessica_Alba, the test "me" of ``find_speed``, is left out): 15 of their
photos alone, 20 group photos made of two other people's faces (260 and 220 px) and theirs, the smallest
(150 px, on the right), and 20 photos of other people. ``prepare_photos`` aligns every face (MTCNN), then
``face_choice.resolve_photo_faces`` decides each group photo with the features of each base
(``face_choice.base_features``, as the ``choose-me-faces`` task calls it). Counted per base: the group photos
whose taken face is the user's (right), another face (wrong), or none (rejected: no face, or two, agree).
Generated under ``--work``, never in the repository.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from benchmarks.common import REPO, Bench

FACES = REPO.parent / "shared" / "data" / "faces"
DEV_PEOPLE = ("Keanu_Reeves", "Daniel_Radcliffe", "Jennifer_Lopez", "me")  # "me" = faces/me
TEST_ME = "Jessica_Alba"
SIZES = (260, 220, 150)  # the user is the last (smallest) face
USER_LEFT = 30 + 2 * 300  # where the user's face is pasted


def make_folders(root: Path, me: str, people: dict[str, Path], seed: int) -> tuple[Path, Path, int]:
    """The "me" folder (15 single-face photos, then up to 20 group photos), the others folder, and how many
    group photos were made."""
    from PIL import Image

    rng = random.Random(seed)
    mine = sorted(people[me].iterdir())
    rng.shuffle(mine)
    pool = [p for name, folder in people.items() if name not in (me, TEST_ME) for p in sorted(folder.iterdir())]
    me_dir, others_dir = root / "me", root / "others"
    me_dir.mkdir(parents=True, exist_ok=True)
    others_dir.mkdir(exist_ok=True)
    for p in mine[:15]:
        Image.open(p).convert("RGB").save(me_dir / f"{p.stem}.png")
    group = mine[15:35]
    for i, p in enumerate(group):
        canvas = Image.new("RGB", (900, 400), tuple(rng.randrange(40, 200) for _ in range(3)))
        for k, (face, size) in enumerate(zip([*rng.sample(pool, 2), p], SIZES, strict=True)):
            canvas.paste(Image.open(face).convert("RGB").resize((size, size)), (30 + k * 300, 60))
        canvas.save(me_dir / f"group_{i:02d}.png")
    for p in rng.sample(pool, 20):
        Image.open(p).convert("RGB").save(others_dir / f"{p.parent.name}_{p.stem}.png")
    return me_dir, others_dir, len(group)


def count(choices, n_group: int) -> dict[str, int]:
    groups = choices[choices["path"].str.contains("group_")]
    taken = groups[groups["taken"].astype(bool)]
    right = taken["box"].map(lambda b: int(str(b).split(",")[0]) >= USER_LEFT - 80)
    return {"group_photos": n_group, "right": int(right.sum()), "wrong": int((~right).sum()),
            "rejected": n_group - taken["path"].nunique()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--celeba-base", type=Path, required=True, help="a run's CelebA model.keras (config.json beside)")
    parser.add_argument("--people", nargs="+", default=list(DEV_PEOPLE))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/face_choice"))
    parser.add_argument("--name", default="face_choice")
    args = parser.parse_args()
    if not FACES.is_dir():
        print(f"SKIPPED: {FACES} not found")
        return
    from recognize_me.me.dlib_resnet import convert_dlib_resnet
    from recognize_me.me.face_choice import base_features, resolve_photo_faces
    from recognize_me.me.photo_set import PhotoSources, prepare_photos

    people = {"me": FACES / "me", **{p.name: p for p in sorted((FACES / "others").iterdir()) if p.is_dir()}}
    bases = {"celeba_gap": args.celeba_base, "dlib_resnet": convert_dlib_resnet(args.work / "cache")}
    bench = Bench(args.name, {k: str(v) for k, v in vars(args).items()})
    for me in args.people:
        root = args.work / me
        me_dir, others_dir, n_group = make_folders(root, me, people, args.seed)
        prepare_photos(PhotoSources(me_dir, others_dir), root / "out", seed=0, fractions=(0.6, 0.2, 0.2))
        for name, base in bases.items():
            _, choice = resolve_photo_faces(root / "out" / "photos.csv", root / f"chosen_{name}", base_features(base))
            bench.row(me=me, features=name, floor=round(choice.floor or 0, 3), **count(choice.choices, n_group))
    bench.finish(["me", "features", "floor", "group_photos", "right", "wrong", "rejected"])


if __name__ == "__main__":
    main()

"""Synthetic demo data in the exact official CelebA layout, so the demo and the tests need no download.

``generate_demo_data(out_dir)`` writes::

    out_dir/list_attr_celeba.txt      count line, 40 names (trailing space), "000001.jpg -1  1 ..." rows, CRLF
    out_dir/list_eval_partition.txt   "000001.jpg 0" rows (0 train, 1 val, 2 test), CRLF
    out_dir/identity_CelebA.txt       "000001.jpg 17" rows, CRLF
    out_dir/img_align_celeba/         000001.jpg ... 178x218 RGB JPEG
    out_dir/me/                       PNG photos of one fixed synthetic person
    out_dir/others/                   PNG photos of random synthetic people

The labels are drawn at CelebA's real prevalences with its obvious couplings (``sample_attributes``),
and each face is drawn by ``demo.faces.render_face`` so that every label is visible. Images of one
identity share sex, skin, hair colour, age and face shape; identities never straddle partitions, and
as in the real file the partitions are contiguous runs of file numbers (train, then val, then test).

Pure: no side effects at import, all randomness from ``numpy.random.default_rng(seed)``; the same
seed gives byte-identical files. No real face image is used or needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recognize_me.data.attributes import CELEBA_ATTRIBUTES
from recognize_me.demo.faces import Look, celeba_scene, photo_scene, random_look, render_face
from recognize_me.fileio import write_with

#: CelebA's positive rate per attribute (train+val+test), the targets ``sample_attributes`` aims at.
CELEBA_PREVALENCE: dict[str, float] = {
    "5_o_Clock_Shadow": .11, "Arched_Eyebrows": .27, "Attractive": .51, "Bags_Under_Eyes": .20,
    "Bald": .022, "Bangs": .15, "Big_Lips": .24, "Big_Nose": .23, "Black_Hair": .24, "Blond_Hair": .15,
    "Blurry": .05, "Brown_Hair": .21, "Bushy_Eyebrows": .14, "Chubby": .06, "Double_Chin": .05,
    "Eyeglasses": .065, "Goatee": .063, "Gray_Hair": .042, "Heavy_Makeup": .39, "High_Cheekbones": .45,
    "Male": .42, "Mouth_Slightly_Open": .48, "Mustache": .042, "Narrow_Eyes": .12, "No_Beard": .83,
    "Oval_Face": .28, "Pale_Skin": .043, "Pointy_Nose": .28, "Receding_Hairline": .08, "Rosy_Cheeks": .066,
    "Sideburns": .057, "Smiling": .48, "Straight_Hair": .21, "Wavy_Hair": .32, "Wearing_Earrings": .19,
    "Wearing_Hat": .048, "Wearing_Lipstick": .47, "Wearing_Necklace": .12, "Wearing_Necktie": .073,
    "Young": .77,
}

#: Labels that belong to the person, not the photo: equal on every image of one identity. The
#: face-shape judgements (Big_Nose, Pointy_Nose, Oval_Face, Big_Lips) are drawn per image instead:
#: CelebA's annotators disagree on them across photos of one person too, and per-image draws give
#: a small demo set enough independent examples to learn them from.
IDENTITY_ATTRIBUTES: tuple[str, ...] = (
    "Male", "Young", "Pale_Skin", "Bald", "Gray_Hair", "Black_Hair", "Blond_Hair", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Receding_Hairline",
)

JPEG_QUALITY = 90


@dataclass(frozen=True)
class DemoDataPaths:
    root: Path
    attr_file: Path
    partition_file: Path
    identity_file: Path
    images_dir: Path
    me_dir: Path
    others_dir: Path

    @classmethod
    def under(cls, root: Path) -> DemoDataPaths:
        return cls(root=root, attr_file=root / "list_attr_celeba.txt",
                   partition_file=root / "list_eval_partition.txt", identity_file=root / "identity_CelebA.txt",
                   images_dir=root / "img_align_celeba", me_dir=root / "me", others_dir=root / "others")


# --------------------------------------------------------------------------------------------- labels

def sample_attributes(n: int, rng: np.random.Generator, identities: np.ndarray | None = None) -> pd.DataFrame:
    """``n`` rows of the 40 CelebA labels as 0/1 (int8), columns in official order.

    ``identities`` (one id per row) makes ``IDENTITY_ATTRIBUTES`` constant per id; by default every
    row is its own person. Couplings: at most one hair colour; Bald excludes hair colour, bangs,
    hair texture and a receding hairline; beards, goatees, moustaches, sideburns and stubble only on
    men (Goatee and Mustache imply No_Beard = 0); lipstick, makeup, earrings, necklaces mostly on
    women, neckties mostly on men; gray hair, baldness and double chins mostly not Young;
    High_Cheekbones, Mouth_Slightly_Open and Narrow_Eyes go with Smiling.
    """
    ids = np.arange(n) if identities is None else np.asarray(identities)
    if ids.shape != (n,):
        raise ValueError(f"identities must have one entry per row ({n}), got shape {ids.shape}")
    _, person = np.unique(ids, return_inverse=True)
    k = int(person.max()) + 1 if n else 0

    def chance(p, size: int) -> np.ndarray:
        return rng.random(size) < p

    # --- the person -----------------------------------------------------------------------
    male = chance(.42, k)
    young = chance(np.where(male, .65, .86), k)
    pale = chance(np.where(male, .013, .065), k)
    bald = male & chance(np.where(young, .025, .08), k)
    gray = ~bald & chance(np.where(young, .008, .17), k)
    coloured = ~bald & ~gray
    blond_p = np.where(male, .03, .24)
    r = rng.random(k)
    black = coloured & (r < .27)
    blond = coloured & (r >= .27) & (r < .27 + blond_p)
    brown = coloured & (r >= .27 + blond_p) & (r < .495 + blond_p)
    chubby = chance(np.where(male, np.where(young, .06, .2), np.where(young, .02, .06)), k)
    person_labels = {
        "Male": male, "Young": young, "Pale_Skin": pale, "Bald": bald, "Gray_Hair": gray,
        "Black_Hair": black, "Blond_Hair": blond, "Brown_Hair": brown,
        "Bushy_Eyebrows": chance(np.where(male, .25, .06), k),
        "Chubby": chubby,
        "Double_Chin": chance(np.where(chubby, .45, np.where(young, .01, .08)), k),
        "Receding_Hairline": ~bald & chance(np.where(male, np.where(young, .08, .27), np.where(young, .03, .06)), k),
    }
    labels = {name: v[person] for name, v in person_labels.items()}

    # --- the photo ------------------------------------------------------------------------
    m, y = labels["Male"], labels["Young"]
    bald, receding = labels["Bald"], labels["Receding_Hairline"]
    smiling = chance(np.where(m, .38, .55), n)
    style = rng.random(n)
    wavy = ~bald & (style < np.where(m, .14, .45))
    straight = ~bald & ~wavy & (style < np.where(m, .38, .64))
    lipstick = chance(np.where(m, .01, .79), n)
    beard = m & chance(.405, n)
    labels.update({
        "Smiling": smiling,
        "Big_Nose": chance(np.where(m, .40, .10), n),
        "Pointy_Nose": chance(np.where(m, .17, .36), n),
        "Oval_Face": chance(np.where(m, .22, .32), n),
        "Big_Lips": chance(np.where(m, .185, .28), n),
        "Mouth_Slightly_Open": chance(np.where(smiling, .7, .27), n),
        "High_Cheekbones": chance(np.where(smiling, .75, .17), n),
        "Narrow_Eyes": chance(np.where(smiling, .17, .07), n),
        "Eyeglasses": chance(np.where(m, .10, .04), n),
        "Wearing_Hat": chance(.048, n),
        "Bangs": ~bald & ~receding & chance(np.where(m, .07, .22), n),
        "Wavy_Hair": wavy,
        "Straight_Hair": straight,
        "Wearing_Lipstick": lipstick,
        "Heavy_Makeup": chance(np.where(m, .005, np.where(lipstick, .82, .10)), n),
        "Arched_Eyebrows": chance(np.where(m, .06, .42), n),
        "Attractive": chance(np.where(m, np.where(y, .40, .12), np.where(y, .72, .30)), n),
        "Bags_Under_Eyes": chance(np.where(m, .30, .13) * np.where(y, .82, 1.6), n),
        "Rosy_Cheeks": chance(np.where(m, .018, .10), n),
        "Wearing_Earrings": chance(np.where(m, .02, .31), n),
        "Wearing_Necklace": chance(np.where(m, .01, .20), n),
        "Wearing_Necktie": chance(np.where(m, .17, .003), n),
        "Blurry": chance(.05, n),
        "No_Beard": ~beard,
        "Goatee": beard & chance(.37, n),
        "Mustache": beard & chance(.25, n),
        "Sideburns": m & chance(np.where(beard, .30, .03), n),
        "5_o_Clock_Shadow": m & chance(np.where(beard, .12, .36), n),
    })
    assert set(labels) == set(CELEBA_ATTRIBUTES)
    return pd.DataFrame({name: labels[name].astype(np.int8) for name in CELEBA_ATTRIBUTES})


def assign_identities(n: int, rng: np.random.Generator, min_size: int = 10, max_size: int = 20) -> np.ndarray:
    """Person index 0..k-1 per image, in contiguous runs of ``min_size``-``max_size`` images."""
    sizes: list[int] = []
    total = 0
    while total < n:
        sizes.append(int(rng.integers(min_size, max_size + 1)))
        total += sizes[-1]
    return np.repeat(np.arange(len(sizes)), sizes)[:n]


def assign_partitions(persons: np.ndarray, rng: np.random.Generator,
                      fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Partition (0 train, 1 val, 2 test) per image; every person lands in exactly one partition.

    Persons are dealt in random order to the partition furthest below its target; with three or
    more persons val and test each get at least one.
    """
    uniq, counts = np.unique(persons, return_counts=True)
    targets = np.asarray(fractions, dtype=float) * len(persons)
    filled = np.zeros(3)
    part_of: dict[int, int] = {}
    order = rng.permutation(len(uniq))
    for rank, i in enumerate(order):
        if len(uniq) >= 3 and rank < 2:
            part = 1 + rank                                 # seed val and test
        else:
            part = int(np.argmax((targets - filled) / np.maximum(targets, 1e-9)))
        part_of[int(uniq[i])] = part
        filled[part] += counts[i]
    return np.array([part_of[int(p)] for p in persons], dtype=np.int8)


# --------------------------------------------------------------------------------------------- "me"

#: The one person in ``me/``: a young man with shoulder-length wavy auburn hair, bushy brows, green
#: eyes, round dark glasses and a mole on his right cheek (image left) -- a combination the random
#: "others" practically never share (only 6 % of men have long hair, none has the mole).
ME_LOOK = Look(skin=(226, 176, 142), hair=(150, 62, 32), eyes=(60, 140, 80), long_hair=True, width=1.02,
               eye_spacing=0.41, round_glasses=True, mole=(-0.5, 0.42))
ME_ATTRIBUTES: dict[str, int] = {"Male": 1, "Young": 1, "Attractive": 1, "Eyeglasses": 1, "Wavy_Hair": 1,
                                 "Bushy_Eyebrows": 1, "No_Beard": 1, "Pointy_Nose": 1}


def me_attributes(rng: np.random.Generator) -> dict[str, int]:
    """ME_ATTRIBUTES plus what changes from photo to photo: expression, stubble, a hat, blur."""
    smiling = int(rng.random() < 0.5)
    return {**ME_ATTRIBUTES, "Smiling": smiling, "High_Cheekbones": smiling,
            "Mouth_Slightly_Open": int(rng.random() < (0.6 if smiling else 0.2)),
            "Narrow_Eyes": int(smiling and rng.random() < 0.2), "5_o_Clock_Shadow": int(rng.random() < 0.25),
            "Wearing_Hat": int(rng.random() < 0.15), "Blurry": int(rng.random() < 0.05)}


# --------------------------------------------------------------------------------------------- files

def _crlf(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def format_attr_file(filenames: list[str], attrs: pd.DataFrame) -> bytes:
    """``list_attr_celeba.txt`` bytes: count, names with a trailing space, then rows like the original:
    ``000001.jpg -1  1 ...`` / ``000007.jpg 1 -1 ...`` (the first value unpadded, the rest ``%2d``)."""
    signs = attrs[list(CELEBA_ATTRIBUTES)].to_numpy(dtype=np.int64) * 2 - 1
    rows = [f"{name} {row[0]}" + "".join(f" {v:>2d}" for v in row[1:])
            for name, row in zip(filenames, signs.tolist(), strict=True)]
    return _crlf([str(len(filenames)), " ".join(CELEBA_ATTRIBUTES) + " ", *rows])


def format_partition_file(filenames: list[str], partitions: np.ndarray) -> bytes:
    return _crlf([f"{name} {int(p)}" for name, p in zip(filenames, partitions, strict=True)])


def format_identity_file(filenames: list[str], identities: np.ndarray) -> bytes:
    return _crlf([f"{name} {int(i)}" for name, i in zip(filenames, identities, strict=True)])


def _write_bytes(target: Path, data: bytes) -> None:
    write_with(target, lambda tmp: tmp.write_bytes(data))


def _render_celeba_images(images_dir: Path, filenames: list[str], attrs: pd.DataFrame, persons: np.ndarray,
                          looks_rng: np.random.Generator, images_rng: np.random.Generator) -> None:
    rows = attrs.to_dict("records")
    first_row = {int(p): i for i, p in reversed(list(enumerate(persons)))}
    looks = {p: random_look(rows[i], looks_rng) for p, i in sorted(first_row.items())}
    for name, row, person, rng in zip(filenames, rows, persons, images_rng.spawn(len(filenames)), strict=True):
        img = render_face(row, looks[int(person)], celeba_scene(rng), rng)
        img.save(images_dir / name, "JPEG", quality=JPEG_QUALITY)


def _render_photos(folder: Path, prefix: str, people: list[tuple[Mapping[str, int], Look]],
                   rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, ((attrs, look), photo_rng) in enumerate(zip(people, rng.spawn(len(people)), strict=True), start=1):
        img = render_face(attrs, look, photo_scene(photo_rng), photo_rng)
        img.save(folder / f"{prefix}_{i:04d}.png", compress_level=1)  # noise compresses badly anyway


#: Images of ``recognize-me demo`` and of the ``train-all/demo`` deployment's generated data.
DEMO_IMAGES = 1600


def generate_demo_data(out_dir: Path, n_images: int = 2000, seed: int = 0, n_me: int = 40,
                       n_others: int = 80) -> DemoDataPaths:
    """Write a complete synthetic CelebA folder plus ``me/`` and ``others/`` under ``out_dir``.

    Images are written first and the three list files last (each atomically), so a folder with
    list files is complete. ``me/`` and ``others/`` do not depend on ``n_images``.
    """
    if n_images < 1 or n_me < 0 or n_others < 0:
        raise ValueError(f"need n_images >= 1 and n_me, n_others >= 0; got {n_images}, {n_me}, {n_others}")
    paths = DemoDataPaths.under(Path(out_dir))
    labels_rng, looks_rng, images_rng, me_rng, others_rng = np.random.default_rng(seed).spawn(5)

    persons = assign_identities(n_images, labels_rng)
    partitions = assign_partitions(persons, labels_rng)
    # as in CelebA: file numbers run through train, then val, then test, people interleaved
    order = np.concatenate([labels_rng.permutation(np.flatnonzero(partitions == p)) for p in (0, 1, 2)])
    persons, partitions = persons[order], partitions[order]
    attrs = sample_attributes(n_images, labels_rng, persons)
    celeb_ids = labels_rng.permutation(int(persons.max()) + 1) + 1
    filenames = [f"{i:06d}.jpg" for i in range(1, n_images + 1)]

    paths.images_dir.mkdir(parents=True, exist_ok=True)
    _render_celeba_images(paths.images_dir, filenames, attrs, persons, looks_rng, images_rng)

    me_people = [(me_attributes(me_rng), ME_LOOK) for _ in range(n_me)]
    _render_photos(paths.me_dir, "me", me_people, me_rng)
    other_rows = sample_attributes(n_others, others_rng).to_dict("records")
    _render_photos(paths.others_dir, "other", [(a, random_look(a, others_rng)) for a in other_rows], others_rng)

    _write_bytes(paths.identity_file, format_identity_file(filenames, celeb_ids[persons]))
    _write_bytes(paths.partition_file, format_partition_file(filenames, partitions))
    _write_bytes(paths.attr_file, format_attr_file(filenames, attrs))
    return paths

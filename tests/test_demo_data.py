"""The synthetic demo data: official CelebA file layout, determinism, label statistics, visibility."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recognize_me.data.attributes import CELEBA_ATTRIBUTES
from recognize_me.demo.data import (
    CELEBA_PREVALENCE,
    IDENTITY_ATTRIBUTES,
    DemoDataPaths,
    assign_identities,
    assign_partitions,
    format_attr_file,
    format_identity_file,
    format_partition_file,
    generate_demo_data,
    sample_attributes,
)
from recognize_me.demo.faces import HAIR_COLOURS, Look, celeba_scene, random_look, render_face

N = 60


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoDataPaths:
    return generate_demo_data(tmp_path_factory.mktemp("demo"), n_images=N, seed=3, n_me=5, n_others=7)


def _crlf_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    assert raw.endswith(b"\r\n"), f"{path.name} must end with CRLF"
    assert raw.count(b"\n") == raw.count(b"\r\n"), f"{path.name} has a bare LF"
    assert raw.count(b"\r") == raw.count(b"\r\n"), f"{path.name} has a bare CR"
    return raw.decode("ascii").split("\r\n")[:-1]


def _two_column(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=r"\s+", header=None, names=["image", "value"], dtype={"image": str})


# --------------------------------------------------------------------------------------------- layout

def test_paths_point_at_the_written_layout(demo: DemoDataPaths) -> None:
    assert demo.attr_file == demo.root / "list_attr_celeba.txt"
    assert demo.partition_file == demo.root / "list_eval_partition.txt"
    assert demo.identity_file == demo.root / "identity_CelebA.txt"
    assert demo.images_dir == demo.root / "img_align_celeba"
    for p in (demo.attr_file, demo.partition_file, demo.identity_file):
        assert p.is_file()
    for d in (demo.images_dir, demo.me_dir, demo.others_dir):
        assert d.is_dir()


def test_attr_file_matches_the_official_layout(demo: DemoDataPaths) -> None:
    lines = _crlf_lines(demo.attr_file)
    assert lines[0] == str(N)
    assert lines[1] == " ".join(CELEBA_ATTRIBUTES) + " "       # trailing space, as in the original
    rows = lines[2:]
    assert len(rows) == N
    row_re = re.compile(r"^(\d{6}\.jpg) (?:-1|1)(?: -1|  1){39}$")   # as the original: "-1"/" 1" after the first
    for i, row in enumerate(rows, start=1):
        m = row_re.match(row)
        assert m, f"malformed row {row!r}"
        assert m.group(1) == f"{i:06d}.jpg"
    # and it parses the way CelebA loaders read it
    df = pd.read_csv(demo.attr_file, sep=r"\s+", skiprows=1)
    assert list(df.columns) == list(CELEBA_ATTRIBUTES)
    assert df.shape == (N, 40)
    assert set(np.unique(df.to_numpy())) <= {-1, 1}


def test_partition_file_is_crlf_three_way_and_contiguous(demo: DemoDataPaths) -> None:
    lines = _crlf_lines(demo.partition_file)
    assert len(lines) == N
    assert all(re.fullmatch(r"\d{6}\.jpg [012]", line) for line in lines)
    parts = _two_column(demo.partition_file)["value"].to_numpy()
    assert set(parts) == {0, 1, 2}
    assert np.all(np.diff(parts) >= 0), "official order: train files, then val, then test"


def test_identities_never_straddle_partitions(demo: DemoDataPaths) -> None:
    lines = _crlf_lines(demo.identity_file)
    assert all(re.fullmatch(r"\d{6}\.jpg [1-9]\d*", line) for line in lines)
    ids = _two_column(demo.identity_file)
    parts = _two_column(demo.partition_file)
    assert list(ids["image"]) == list(parts["image"]) == [f"{i:06d}.jpg" for i in range(1, N + 1)]
    per_identity = pd.DataFrame({"id": ids["value"], "part": parts["value"]}).groupby("id")["part"].nunique()
    assert (per_identity == 1).all()
    assert ids["value"].nunique() >= 3


def test_identity_keeps_its_person_level_labels(demo: DemoDataPaths) -> None:
    attrs = pd.read_csv(demo.attr_file, sep=r"\s+", skiprows=1)
    ids = _two_column(demo.identity_file)["value"].to_numpy()
    sizes = pd.Series(ids).value_counts()
    assert sizes.max() <= 20
    assert (sizes >= 10).sum() >= len(sizes) - 1           # only the last, truncated person may be smaller
    varying = attrs[list(IDENTITY_ATTRIBUTES)].groupby(ids).nunique().max()
    assert (varying == 1).all(), varying[varying > 1]


def test_images_are_178x218_rgb_jpegs(demo: DemoDataPaths) -> None:
    files = sorted(demo.images_dir.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.jpg" for i in range(1, N + 1)]
    first = None
    for f in files:
        with Image.open(f) as im:
            assert im.format == "JPEG"
            assert im.mode == "RGB"
            assert im.size == (178, 218)
            pixels = np.asarray(im)                        # decodes fully
        assert pixels.std() > 10, f"{f.name} looks blank"
        first = pixels if first is None else first
    assert not np.array_equal(first, pixels)


def test_me_and_others_photos(demo: DemoDataPaths) -> None:
    me, others = sorted(demo.me_dir.glob("*.png")), sorted(demo.others_dir.glob("*.png"))
    assert len(me) == 5
    assert len(others) == 7
    for f in me + others:
        with Image.open(f) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            w, h = im.size
            assert 160 <= w <= 400 and 1.0 <= h / w <= 1.31


@pytest.mark.real_data
def test_writers_reproduce_the_official_files_byte_for_byte(shared_data: Path) -> None:
    """Formatting the first rows of the real files with our writers gives back their exact bytes."""
    celeba, k = shared_data / "celeba", 50

    def head(name: str, n_lines: int) -> bytes:
        with open(celeba / name, "rb") as f:
            return b"".join(f.readline() for _ in range(n_lines))

    attrs = pd.read_csv(celeba / "list_attr_celeba.txt", sep=r"\s+", skiprows=1, nrows=k)
    ours = format_attr_file(list(attrs.index), (attrs > 0).astype(int))
    assert ours.split(b"\r\n", 1)[1] == head("list_attr_celeba.txt", k + 2).split(b"\r\n", 1)[1]
    for name, writer in (("list_eval_partition.txt", format_partition_file),
                         ("identity_CelebA.txt", format_identity_file)):
        rows = pd.read_csv(celeba / name, sep=r"\s+", header=None, nrows=k)
        assert writer(list(rows[0]), rows[1].to_numpy()) == head(name, k), name


# --------------------------------------------------------------------------------------------- determinism

def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    def make(name: str, seed: int) -> DemoDataPaths:
        return generate_demo_data(tmp_path / name, n_images=25, seed=seed, n_me=2, n_others=2)

    a, b, c = make("a", 7), make("b", 7), make("c", 8)
    for attr in ("attr_file", "partition_file", "identity_file"):
        assert getattr(a, attr).read_bytes() == getattr(b, attr).read_bytes()
    for rel in ("img_align_celeba/000017.jpg", "me/me_0002.png", "others/other_0001.png"):
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    assert a.attr_file.read_bytes() != c.attr_file.read_bytes()
    assert (a.images_dir / "000017.jpg").read_bytes() != (c.images_dir / "000017.jpg").read_bytes()
    assert (a.me_dir / "me_0001.png").read_bytes() != (c.me_dir / "me_0001.png").read_bytes()


def test_bad_counts_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_images"):
        generate_demo_data(tmp_path, n_images=0)


# --------------------------------------------------------------------------------------------- labels

@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    return sample_attributes(4000, np.random.default_rng(0))   # independent people: tight estimates


def test_labels_are_0_1_in_official_column_order(labels: pd.DataFrame) -> None:
    assert list(labels.columns) == list(CELEBA_ATTRIBUTES)
    assert set(np.unique(labels.to_numpy())) == {0, 1}


def test_prevalence_is_close_to_celeba(labels: pd.DataFrame) -> None:
    rates = labels.mean()
    assert abs(rates["Male"] - 0.42) <= 0.05
    assert abs(rates["No_Beard"] - 0.83) <= 0.05
    off = {k: (round(rates[k], 3), p) for k, p in CELEBA_PREVALENCE.items() if abs(rates[k] - p) > 0.05}
    assert not off, off


def test_logical_couplings_hold(labels: pd.DataFrame) -> None:
    df = labels.astype(bool)
    assert (df[list(HAIR_COLOURS)].sum(axis=1) <= 1).all()
    bald = df["Bald"]
    for col in (*HAIR_COLOURS, "Bangs", "Wavy_Hair", "Straight_Hair", "Receding_Hairline"):
        assert not (bald & df[col]).any(), col
    assert not (df["Wavy_Hair"] & df["Straight_Hair"]).any()
    for col in ("5_o_Clock_Shadow", "Goatee", "Mustache", "Sideburns", "Bald"):
        assert df.loc[df[col], "Male"].all(), col
    assert df.loc[~df["No_Beard"], "Male"].all()
    assert not (df["Goatee"] & df["No_Beard"]).any()
    assert not (df["Mustache"] & df["No_Beard"]).any()
    assert df.loc[df["Wearing_Lipstick"], "Male"].mean() < 0.05
    assert df.loc[df["Heavy_Makeup"], "Male"].mean() < 0.05
    assert df.loc[df["Gray_Hair"], "Young"].mean() < 0.3
    assert df.loc[df["Smiling"], "High_Cheekbones"].mean() > df.loc[~df["Smiling"], "High_Cheekbones"].mean() + 0.3


def test_identity_attributes_are_constant_per_identity() -> None:
    rng = np.random.default_rng(1)
    ids = assign_identities(500, rng)
    df = sample_attributes(500, rng, ids)
    assert (df[list(IDENTITY_ATTRIBUTES)].groupby(ids).nunique() == 1).all().all()
    assert (df.drop(columns=list(IDENTITY_ATTRIBUTES)).groupby(ids).nunique() > 1).any().any()


def test_partitions_are_80_10_10_and_identity_disjoint() -> None:
    rng = np.random.default_rng(2)
    persons = assign_identities(2000, rng)
    sizes = np.bincount(persons)
    assert sizes[:-1].min() >= 10 and sizes.max() <= 20
    parts = assign_partitions(persons, rng)
    assert (pd.Series(parts).groupby(persons).nunique() == 1).all()
    fractions = np.bincount(parts, minlength=3) / len(parts)
    np.testing.assert_allclose(fractions, [0.8, 0.1, 0.1], atol=0.03)


# --------------------------------------------------------------------------------------------- rendering

_BASE = {"Young": 1, "Attractive": 1, "No_Beard": 1}
_LOOK = Look(skin=(225, 180, 150), hair=(95, 60, 35), eyes=(70, 110, 170), long_hair=True)
_LOOK_LEVEL = {*HAIR_COLOURS, "Pale_Skin"}                 # rendered through the Look, tested below


def _render_64(attrs: dict[str, int]) -> np.ndarray:
    scene = dataclasses.replace(celeba_scene(np.random.default_rng(0)), noise=0.0, soften=0.0, angle=0.0)
    img = render_face(attrs, _LOOK, scene, np.random.default_rng(1))
    square = img.crop((0, 20, 178, 198)).resize((64, 64), Image.Resampling.BILINEAR)
    return np.asarray(square, dtype=np.int16)


@pytest.mark.parametrize("name", [a for a in CELEBA_ATTRIBUTES if a not in _LOOK_LEVEL])
def test_every_attribute_is_visible_at_64px(name: str) -> None:
    flipped = {**_BASE, name: 0 if _BASE.get(name) else 1}
    changed = np.abs(_render_64(flipped) - _render_64(_BASE)).max(axis=2) > 25
    assert changed.sum() >= 5, f"{name} changes only {changed.sum()} pixels at 64x64"


def test_look_level_attributes_set_skin_and_hair() -> None:
    rng = np.random.default_rng(4)

    def look(**attrs: int) -> Look:
        return random_look(attrs, rng)

    pale = [look(Pale_Skin=1).skin for _ in range(20)]
    other = [look().skin for _ in range(200)]
    assert min(sum(c) for c in pale) > np.percentile([sum(c) for c in other], 95)
    black, blond = look(Black_Hair=1).hair, look(Blond_Hair=1).hair
    gray, brown = look(Gray_Hair=1).hair, look(Brown_Hair=1).hair
    assert sum(black) < 150 < sum(brown) < 300 < sum(blond)
    assert max(gray) - min(gray) < 15 < max(blond) - min(blond)

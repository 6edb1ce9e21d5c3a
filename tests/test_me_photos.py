"""recognize_me.me.photo_set.prepare_photos: scan, face-crop, hash and split the user's photo set.

Synthetic faces from ``demo_data`` (no real face is copied anywhere); the real-data test only reads
/work/shared/data/faces and writes crops into a temporary folder. Every test that runs the MTCNN face
detector is marked slow.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from recognize_me.demo.data import generate_demo_data
from recognize_me.me.align import REASON_NO_FACE, REASON_TOO_SMALL, FaceAligner
from recognize_me.me.photo_set import (
    MANIFEST_COLUMNS,
    PHOTO_COLUMNS,
    PhotoSources,
    load_photo_table,
    prepare_photos,
)
from recognize_me.me.photos import Photo
from recognize_me.me.splits import assign_splits, stable_split

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
FRACTIONS = (0.5, 0.25, 0.25)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo data plus, in me/: a copy of one photo, a blank picture (no face), a text file, a broken PNG."""
    root = tmp_path_factory.mktemp("me_photos")
    paths = generate_demo_data(root, n_images=20, seed=1, n_me=8, n_others=8)
    shutil.copyfile(paths.me_dir / "me_0001.png", paths.me_dir / "zz_copy_of_0001.png")
    Image.new("RGB", (200, 240), (128, 128, 128)).save(paths.me_dir / "blank.png")
    (paths.me_dir / "notes.txt").write_text("not a photo")
    (paths.me_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return root


@pytest.fixture(scope="module")
def prepared(demo: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("prepared")
    return prepare_photos(PhotoSources(demo / "me", demo / "others"), out, seed=3, fractions=FRACTIONS), out


@pytest.mark.slow  # MTCNN
def test_table_rows_columns_and_crops(demo: Path, prepared) -> None:
    photo_set, out = prepared
    table = photo_set.table
    assert list(table.columns) == list(PHOTO_COLUMNS)
    # 8 + the copy, less the drawn faces MTCNN misses (listed as rejected "no face found", or "face too small
    # to judge" when all it sees is a tiny false detection)
    missed = [r for r in photo_set.rejected if r.reason in (REASON_NO_FACE, REASON_TOO_SMALL)
              and r.path.name != "blank.png"]
    assert len(missed) <= 3
    assert (table["label"] == "me").sum() + sum(r.path.parent.name == "me" for r in missed) == 9
    assert (table["label"] == "other").sum() + sum(r.path.parent.name == "others" for r in missed) == 8
    assert set(table["detector"]) <= {"mtcnn", "mtcnn_padded"} and (table["confidence"] >= 0.8).all()
    assert table["decodable"].all()
    for row in table.itertuples():
        original = Path(row.path)
        assert row.sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
        crop = Path(row.crop_path)
        assert crop.parent == out / "crops" and crop.name == f"{row.sha256[:16]}.png"
        with Image.open(crop) as img:
            assert img.size == (178, 218) and img.format == "PNG"
        with Image.open(original) as img:
            assert (row.width, row.height) == img.size


@pytest.mark.slow  # MTCNN
def test_rejected_files_and_reasons(demo: Path, prepared) -> None:
    photo_set, out = prepared
    reasons = {r.path.name: r.reason for r in photo_set.rejected}
    assert reasons["blank.png"] == REASON_NO_FACE
    assert reasons["notes.txt"].startswith("unsupported format")
    assert reasons["broken.png"].startswith("cannot decode image")
    drawn_missed = {n for n in reasons if n.startswith(("me_", "other_", "zz_"))}
    assert all(reasons[n] in (REASON_NO_FACE, REASON_TOO_SMALL) for n in drawn_missed)
    assert len(reasons) == 3 + len(drawn_missed)
    assert not any(Path(p).name in reasons for p in photo_set.table["path"])
    on_disk = pd.read_csv(out / "rejected.csv")
    assert list(on_disk.columns) == ["path", "label", "reason"]
    assert sorted(on_disk["path"].map(lambda p: Path(p).name)) == sorted(reasons)
    assert set(on_disk["label"]) <= {"me", "other"}


@pytest.mark.slow  # MTCNN
def test_splits_follow_the_original_content_hash(prepared) -> None:
    photo_set, _ = prepared
    table = photo_set.table
    # exactly assign_splits on the originals' hashes (the copy shares its original's hash)
    photos = [Photo(Path(r.path), r.label, r.sha256, r.width, r.height) for r in table.itertuples()]
    expected = assign_splits(photos, seed=3, fractions=FRACTIONS)
    assert table["split"].tolist() == expected["split"].tolist()
    others = table[table["label"] == "other"]  # never moved by the small-set guarantee
    assert others["split"].tolist() == [stable_split(h, 3, FRACTIONS) for h in others["sha256"]]
    assert {"train", "test"} <= set(table.loc[table["label"] == "me", "split"])
    copies = table[table["sha256"] == table.loc[table["path"].str.endswith("me_0001.png"), "sha256"].item()]
    assert len(copies) == 2 and copies["split"].nunique() == 1 and copies["crop_path"].nunique() == 1
    assert photo_set.counts()["train"]["me"] == int(((table["split"] == "train") & (table["label"] == "me")).sum())


@pytest.mark.slow  # MTCNN
def test_csv_round_trip_and_rerun_is_identical(demo: Path, prepared, tmp_path: Path) -> None:
    photo_set, out = prepared
    pd.testing.assert_frame_equal(load_photo_table(out / "photos.csv"), photo_set.table, check_dtype=False)
    again = prepare_photos(PhotoSources(demo / "me", demo / "others"), tmp_path, seed=3, fractions=FRACTIONS)
    pd.testing.assert_frame_equal(again.table.drop(columns="crop_path"), photo_set.table.drop(columns="crop_path"))
    for a, b in zip(again.table["crop_path"], photo_set.table["crop_path"], strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()


@pytest.mark.slow
def test_manifest_passes_the_photo_checks(prepared) -> None:
    from recognize_me.data.checks import check_photos

    photo_set, _ = prepared
    manifest = photo_set.to_manifest()
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    report = check_photos(manifest, min_me=5)
    assert report.success, report.failures
    assert report.stats["me"] == (photo_set.table["label"] == "me").sum() >= 7
    assert report.stats["sha256_in_several_splits"] == 0
    assert not check_photos(manifest, min_me=50).success


@pytest.mark.slow  # MTCNN
def test_celeba_images_stand_in_for_others(demo: Path, tmp_path: Path) -> None:
    celeba = sorted((demo / "img_align_celeba").iterdir())
    me = tmp_path / "me"  # three own photos keep the four runs below quick
    me.mkdir()
    for name in ("me_0001.png", "me_0002.png", "me_0003.png"):
        shutil.copyfile(demo / "me" / name, me / name)
    aligner = FaceAligner()  # one detector for the four runs
    photo_set = prepare_photos(PhotoSources(me, None, celeba_images=celeba, celeba_others=10), tmp_path / "a",
                               seed=4, cropper=aligner)
    others = photo_set.table[photo_set.table["label"] == "other"]
    assert len(others) == 10
    # CelebA images go through the same aligner as the user's photos (identical framing and fill)
    assert all(Path(c).parent == tmp_path / "a" / "crops" for c in others["crop_path"])
    assert set(others["detector"]) <= {"mtcnn", "mtcnn_padded", "celeba_frame"}
    assert set(others["path"]).issubset({str(p) for p in celeba})
    assert (others["width"] == 178).all() and (others["height"] == 218).all()
    # seeded and independent of the order the candidates come in
    reordered = prepare_photos(PhotoSources(me, None, celeba_images=celeba[::-1], celeba_others=10),
                               tmp_path / "b", seed=4, cropper=aligner)
    assert reordered.table["path"].tolist() == photo_set.table["path"].tolist()
    reseeded = prepare_photos(PhotoSources(me, None, celeba_images=celeba, celeba_others=10), tmp_path / "c",
                              seed=5, cropper=aligner)
    assert set(reseeded.table.loc[reseeded.table["label"] == "other", "path"]) != set(others["path"])
    everything = prepare_photos(PhotoSources(me, None, celeba_images=celeba, celeba_others=1000),
                                tmp_path / "d", seed=4, cropper=aligner)
    assert (everything.table["label"] == "other").sum() == len(celeba)
    # beside an others folder too: a few people alone would teach "not them", not "not me"
    others_dir = tmp_path / "others"
    others_dir.mkdir()
    for photo in sorted((demo / "others").rglob("*.png"))[:2]:
        shutil.copyfile(photo, others_dir / photo.name)
    both = prepare_photos(PhotoSources(me, others_dir, celeba_images=celeba, celeba_others=10), tmp_path / "e",
                          seed=4, cropper=aligner)
    other_paths = both.table.loc[both.table["label"] == "other", "path"].map(Path)
    assert sum(p.parent == others_dir for p in other_paths) == 2 and set(other_paths) - {*others_dir.iterdir()} \
        == set(map(Path, others["path"]))  # the same seeded CelebA sample as without the folder


def test_no_other_photos_is_an_error(demo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="other"):
        prepare_photos(PhotoSources(demo / "me", None), tmp_path, seed=0)
    with pytest.raises(FileNotFoundError):
        prepare_photos(PhotoSources(tmp_path / "missing", demo / "others"), tmp_path, seed=0)


def _every_other_photo(faces: Path, dest: Path) -> tuple[Path, Path]:
    """Copies of every other photo of ``faces/me`` and of each ``faces/others/<name>``, as ``(me, others)``."""
    for folder in [faces / "me", *sorted((faces / "others").iterdir())]:
        target = dest / folder.relative_to(faces)
        target.mkdir(parents=True)
        for photo in sorted(folder.iterdir())[::2]:
            shutil.copy2(photo, target / photo.name)
    return dest / "me", dest / "others"


@pytest.mark.real_data
@pytest.mark.slow
def test_real_faces(tmp_path: Path) -> None:
    if not FACES.is_dir():
        pytest.skip(f"{FACES} is absent (real data is not shipped with the project)")
    me, others = _every_other_photo(FACES, tmp_path / "faces")  # half of each person, still 150+ faces
    photo_set = prepare_photos(PhotoSources(me, others), tmp_path, seed=42)
    table = photo_set.table
    n_me = len(list(me.iterdir()))
    n_others = sum(1 for p in others.rglob("*") if p.is_file())
    assert len(table) + len(photo_set.rejected) == n_me + n_others
    me = table[table["label"] == "me"]
    assert len(me) == n_me  # tight 112x112 crops: every face is found (MTCNN, padded retry for a few)
    assert not photo_set.rejected, [(r.path.name, r.reason) for r in photo_set.rejected]
    assert set(table["detector"]) <= {"mtcnn", "mtcnn_padded"} and table["confidence"].min() >= 0.8
    assert set(me["split"]) == {"train", "val", "test"}
    shares = table["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.06)
    assert shares["val"] == pytest.approx(0.15, abs=0.05) and shares["test"] == pytest.approx(0.15, abs=0.05)
    assert table.groupby("sha256")["split"].nunique().max() == 1
    assert len(list((tmp_path / "crops").glob("*.png"))) == table["sha256"].nunique()


@pytest.mark.slow  # MTCNN
def test_strangers_get_their_own_split_and_never_repeat_a_training_photo(demo: Path, tmp_path: Path) -> None:
    celeba = sorted((demo / "img_align_celeba").iterdir())
    me = tmp_path / "me"
    me.mkdir()
    for name in ("me_0001.png", "me_0002.png", "me_0003.png"):
        shutil.copyfile(demo / "me" / name, me / name)
    sources = PhotoSources(me, None, celeba_images=celeba[:6], celeba_others=6, stranger_images=celeba[4:10],
                           n_strangers=6, val_stranger_images=celeba[8:14], n_val_strangers=6)
    photo_set = prepare_photos(sources, tmp_path / "a", seed=4)
    table = photo_set.table
    strangers = table[table["split"] == "strangers"]
    assert set(strangers["label"]) == {"other"}
    # celeba[4:6] are already "others" in a training split: they are not strangers
    assert set(strangers["path"]) <= {str(p) for p in celeba[6:10]} and len(strangers) >= 3
    assert photo_set.counts()["strangers"]["other"] == len(strangers)
    assert table.groupby("sha256")["split"].nunique().max() == 1
    # validation strangers: all in val, none of them already a stranger or an "other" (celeba[8:10] are)
    val_only = {str(p) for p in celeba[10:14]}
    val_strangers = table[table["path"].isin(val_only)]
    assert len(val_strangers) >= 3 and set(val_strangers["split"]) == {"val"} and set(val_strangers["label"]) == {"other"}
    assert table["path"].value_counts().max() == 1  # celeba[8:10] are strangers once, never also in val

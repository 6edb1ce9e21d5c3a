"""Multi-face training photos: every face of an "other" photo is a row; in a "me" photo the face that agrees
with the single-face "me" photos is taken (recognize_me.me.face_choice), never simply the largest.

Tiny generated photos, a stub detector (MTCNN's interface: faces looked up by the photo's size) and a stub
feature function (the mean colour of the aligned face), so no model is involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recognize_me.data.checks import check_photos
from recognize_me.me.align import KEYPOINT_ORDER, TEMPLATE, FaceAligner
from recognize_me.me.face_choice import (
    DECISION_AGREED,
    DECISION_LARGEST,
    DECISION_REJECTED,
    FACE_CHOICE_CSV,
    agreement_floor,
    choose_faces,
    resolve_photo_faces,
)
from recognize_me.me.photo_set import (
    CHOICE_AGREED,
    CHOICE_CANDIDATE,
    CHOICE_EVERY,
    CHOICE_LARGEST,
    CHOICE_ONLY,
    PHOTO_COLUMNS,
    PhotoSources,
    load_photo_table,
    photo_counts,
    prepare_photos,
)
from recognize_me.me.splits import stable_split

ME = [(200, 40, 30), (190, 50, 35), (210, 35, 40), (195, 45, 25), (205, 30, 45)]
BLUE, GREEN, REDDISH = (30, 40, 200), (40, 190, 60), (198, 42, 33)
FRACTIONS = (1.0, 0.0, 0.0)


class _Detector:
    """MTCNN's interface: the faces of a photo, looked up by its (height, width)."""

    def __init__(self) -> None:
        self.faces: dict[tuple[int, int], list[dict]] = {}

    def detect_faces(self, rgb: np.ndarray) -> list[dict]:
        return self.faces.get(rgb.shape[:2], [])


def _photo(path: Path, detector: _Detector, size: tuple[int, int],
           faces: list[tuple[tuple[int, int], float, tuple[int, int, int]]]) -> None:
    """Write a grey ``size`` photo with one filled box per face (centre, scale, colour) and tell
    ``detector`` where the faces are (landmarks: CelebA's template scaled around the centre)."""
    img = np.full((size[1], size[0], 3), 128, np.uint8)
    answers = []
    for (cx, cy), scale, colour in faces:
        points = (TEMPLATE - [88.0, 130.0]) * scale + [cx, cy]
        left, top, width, height = cx - 45 * scale, cy - 60 * scale, 90 * scale, 110 * scale
        img[int(top):int(top + height), int(left):int(left + width)] = colour
        answers.append({"box": [left, top, width, height], "confidence": 0.99,
                        "keypoints": {k: list(p) for k, p in zip(KEYPOINT_ORDER, points, strict=True)}})
    Image.fromarray(img).save(path)
    detector.faces[(size[1], size[0])] = answers


def _mean_colour(paths) -> np.ndarray:
    """The stub feature function: the mean colour of the aligned face's middle."""
    out = []
    for p in paths:
        with Image.open(p) as img:
            out.append(np.asarray(img.convert("RGB"), np.float64)[100:150, 60:120].mean(axis=(0, 1)))
    return np.array(out)


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path, _Detector]:
    """me/: 5 single-face photos (reddish) and 3 group photos; others/: one single, one with 3 faces."""
    detector = _Detector()
    me, others = tmp_path / "me", tmp_path / "others"
    me.mkdir()
    others.mkdir()
    for i, colour in enumerate(ME):
        _photo(me / f"solo_{i}.png", detector, (300 + i, 260), [((150, 130), 1.0, colour)])
    # the user is the smallest of three faces
    _photo(me / "group_agree.png", detector, (520, 300),
           [((100, 150), 1.6, BLUE), ((270, 150), 1.3, GREEN), ((430, 150), 0.8, REDDISH)])
    _photo(me / "group_nobody.png", detector, (521, 300), [((120, 150), 1.4, BLUE), ((380, 150), 1.2, GREEN)])
    _photo(me / "group_twins.png", detector, (522, 300), [((120, 150), 1.4, ME[0]), ((380, 150), 1.2, ME[1])])
    _photo(others / "one.png", detector, (310, 270), [((150, 130), 1.0, GREEN)])
    _photo(others / "group.png", detector, (523, 300),
           [((100, 150), 1.6, BLUE), ((270, 150), 1.3, GREEN), ((430, 150), 0.8, (120, 120, 30))])
    return me, others, detector


def _prepare(folders, out: Path):
    me, others, detector = folders
    return prepare_photos(PhotoSources(me, others), out, seed=0, fractions=FRACTIONS,
                          cropper=FaceAligner(detector=detector))


def test_every_face_of_an_others_group_photo_is_an_other_row(folders, tmp_path: Path) -> None:
    table = _prepare(folders, tmp_path / "out").table
    assert list(table.columns) == list(PHOTO_COLUMNS)
    group = table[table["path"].str.endswith("group.png")]
    assert group["label"].tolist() == ["other"] * 3 and group["choice"].tolist() == [CHOICE_EVERY] * 3
    assert group["face"].tolist() == [0, 1, 2] and (group["n_faces"] == 3).all()
    assert group["crop_path"].nunique() == 3 and all(Path(c).is_file() for c in group["crop_path"])
    widths = [int(b.split(",")[2]) - int(b.split(",")[0]) for b in group["box"]]
    assert widths == sorted(widths, reverse=True)  # largest first
    one = table[table["path"].str.endswith("one.png")]
    assert one["choice"].tolist() == [CHOICE_ONLY] and one["n_faces"].tolist() == [1]


def test_group_photo_faces_share_the_split_of_the_file_hash(folders, tmp_path: Path) -> None:
    table = _prepare(folders, tmp_path / "out").table
    me, others, detector = folders
    prepare_photos(PhotoSources(me, others), tmp_path / "other_fractions", seed=5, fractions=(0.4, 0.3, 0.3),
                   cropper=FaceAligner(detector=detector))
    again = load_photo_table(tmp_path / "other_fractions" / "photos.csv")
    for path, rows in again.groupby("path"):
        assert rows["split"].nunique() == 1
        if Path(path).parent.name == "others":  # "me" photos may move for the small-set guarantee
            assert rows["split"].iloc[0] == stable_split(rows["sha256"].iloc[0], 5, (0.4, 0.3, 0.3))
    assert (table["split"] == "train").sum() >= len(table) - 1  # FRACTIONS: all train but one "me" for test


def test_multi_face_me_photos_are_candidates_and_count_once(folders, tmp_path: Path) -> None:
    photo_set = _prepare(folders, tmp_path / "out")
    table = photo_set.table
    candidates = table[table["choice"] == CHOICE_CANDIDATE]
    assert sorted(Path(p).name for p in candidates["path"].unique()) == \
        ["group_agree.png", "group_nobody.png", "group_twins.png"]
    assert len(candidates) == 3 + 2 + 2
    assert sum(c["me"] for c in photo_counts(table).values()) == 5 + 3
    report = check_photos(photo_set.to_manifest(), min_me=8)
    assert report.success, report.to_markdown()
    assert report.stats["me"] == 8 and report.stats["multi_face_photos"] == 4
    assert report.stats["me_photos_face_not_chosen"] == 3


def test_the_agreeing_face_is_taken_even_when_smallest_and_unclear_photos_are_rejected(
        folders, tmp_path: Path) -> None:
    prepared = _prepare(folders, tmp_path / "out")
    written, choice = resolve_photo_faces(tmp_path / "out" / "photos.csv", tmp_path / "chosen", _mean_colour)
    table = load_photo_table(written)
    assert written == tmp_path / "chosen" / "photos.csv" and (tmp_path / "chosen" / FACE_CHOICE_CSV).is_file()
    assert not (table["choice"] == CHOICE_CANDIDATE).any()
    taken = table[table["path"].str.endswith("group_agree.png")]
    assert taken["face"].tolist() == [2] and taken["choice"].tolist() == [CHOICE_AGREED]  # the smallest face
    assert taken["similarity"].iloc[0] >= choice.floor
    assert taken["crop_path"].iloc[0].endswith("_2.png") and taken["label"].iloc[0] == "me"
    rejected = dict(zip(choice.rejected["path"].map(lambda p: Path(p).name), choice.rejected["reason"],
                        strict=True))
    assert set(rejected) == {"group_nobody.png", "group_twins.png"}
    assert rejected["group_nobody.png"].startswith("no face agrees with the single-face 'me' photos")
    assert rejected["group_twins.png"].startswith("2 faces agree") and "cannot tell which is you" in rejected[
        "group_twins.png"]
    assert not table["path"].str.contains("group_nobody|group_twins").any()
    # nothing else moved: the single-face and "other" rows are the prepared ones
    others = prepared.table[prepared.table["choice"] != CHOICE_CANDIDATE].reset_index(drop=True)
    pd.testing.assert_frame_equal(table[table["choice"] != CHOICE_AGREED].reset_index(drop=True),
                                  load_photo_table(tmp_path / "out" / "photos.csv")
                                  .pipe(lambda t: t[t["choice"] != CHOICE_CANDIDATE]).reset_index(drop=True))
    assert len(others) == len(table) - 1
    faces = pd.read_csv(tmp_path / "chosen" / FACE_CHOICE_CSV)
    assert len(faces) == 7 and faces["taken"].sum() == 1
    assert set(faces["decision"]) == {DECISION_AGREED, DECISION_REJECTED}
    assert "3 multi-face 'me' photos: 1 taken, 2 rejected" in choice.summary()


def _table(rows: list[tuple[str, str, str, int, int]]) -> pd.DataFrame:
    """(path, split, choice, face, n_faces) -> a photo table whose crop_path is ``path#face``."""
    frame = pd.DataFrame([{c: None for c in PHOTO_COLUMNS} | {
        "path": p, "crop_path": f"{p}#{f}", "label": "me", "sha256": p, "split": s, "choice": c, "face": f,
        "n_faces": n, "box": f"{f},0,{f + 1},1"} for p, s, c, f, n in rows], columns=list(PHOTO_COLUMNS))
    return frame.astype({"similarity": "float64"})


def _features(vectors: dict[str, list[float]]):
    calls: list[list[str]] = []

    def features(paths):
        calls.append(list(paths))
        return np.array([vectors[p] for p in paths])

    return features, calls


def test_without_enough_single_face_photos_the_largest_face_is_taken_and_said_so() -> None:
    table = _table([("solo", "train", CHOICE_ONLY, 0, 1), ("solo_test", "test", CHOICE_ONLY, 0, 1),
                    ("group", "train", CHOICE_CANDIDATE, 0, 2), ("group", "train", CHOICE_CANDIDATE, 1, 2)])
    features, calls = _features({})
    choice = choose_faces(table, features)
    assert calls == [] and choice.floor is None and choice.n_reference == 1  # the test-split photo is no reference
    group = choice.table[choice.table["path"] == "group"]
    assert group["face"].tolist() == [0] and group["choice"].tolist() == [CHOICE_LARGEST]
    assert set(choice.choices["decision"]) == {DECISION_LARGEST}
    assert "the largest face was taken" in choice.choices["reason"].iloc[0]
    assert "the largest face was taken" in choice.summary()


def test_reference_is_train_and_val_single_faces_copies_counted_once() -> None:
    table = _table([("a", "train", CHOICE_ONLY, 0, 1), ("a_copy", "train", CHOICE_ONLY, 0, 1),
                    ("b", "val", CHOICE_ONLY, 0, 1), ("t", "test", CHOICE_ONLY, 0, 1),
                    ("g", "test", CHOICE_CANDIDATE, 0, 2), ("g", "test", CHOICE_CANDIDATE, 1, 2)])
    table.loc[1, "crop_path"] = "a#0"  # a copy of a: same crop
    vectors = {"a#0": [1.0, 0.0, 0.1], "b#0": [0.9, 0.1, 0.0], "g#0": [0.0, 1.0, 0.0], "g#1": [1.0, 0.05, 0.05]}
    features, calls = _features(vectors)
    choice = choose_faces(table, features)
    assert calls == [["a#0", "b#0", "g#0", "g#1"]] and choice.n_reference == 2
    _, floor = agreement_floor(np.array([vectors["a#0"], vectors["b#0"]]))
    assert choice.floor == pytest.approx(floor)
    assert choice.table.loc[choice.table["path"] == "g", "face"].tolist() == [1]
    assert len(choice.table) == 5  # the other candidate is gone, the test photo stays


def test_agreement_floor_is_a_low_quantile_of_leave_one_out_similarity() -> None:
    ref = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.6, 0.8]])
    centroid, floor = agreement_floor(ref, quantile=0.0)
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    rest = unit[:3].sum(axis=0)
    assert floor == pytest.approx(unit[3] @ (rest / np.linalg.norm(rest)))  # the outlier sets the minimum
    assert np.linalg.norm(centroid) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="need >= 2 reference photos"):
        agreement_floor(ref[:1])


def test_a_table_without_candidates_is_returned_unchanged_without_features() -> None:
    table = _table([("a", "train", CHOICE_ONLY, 0, 1), ("b", "val", CHOICE_ONLY, 0, 1)])
    features, calls = _features({})
    choice = choose_faces(table, features)
    assert calls == [] and choice.choices.empty
    pd.testing.assert_frame_equal(choice.table, table)


def test_photo_checks_and_me_report_show_the_face_taken_and_the_rejections(folders, tmp_path: Path) -> None:
    from recognize_me.me.face_choice import CHOSEN_DIR, choice_markdown
    from recognize_me.me.report import build_me_report

    _prepare(folders, tmp_path / "out")
    run_dir = tmp_path / "run"
    _, choice = resolve_photo_faces(tmp_path / "out" / "photos.csv", run_dir / CHOSEN_DIR, _mean_colour)
    markdown = choice_markdown(choice)
    agree = next(line for line in markdown.splitlines() if line.startswith("| group_agree.png"))
    box = choice.table.loc[choice.table["path"].str.endswith("group_agree.png"), "box"].iloc[0]
    assert f"| train | 3 | 2 | {box} |" in agree and DECISION_AGREED in agree
    assert "no face agrees" in markdown and "cannot tell which is you" in markdown
    report = build_me_report(run_dir, [])
    page = report.html_path.read_text()
    assert "<h2>Multi-face 'me' photos</h2>" in page and "group_twins.png" in page and box in page
    assert "cannot tell which is you" in page
    assert (run_dir / "me_face_choice.png").is_file()
    assert report.figures["Multi-face 'me' photos: the candidate faces"] == run_dir / "me_face_choice.png"


def test_base_features_are_the_bases_flip_averaged_gap_features_loaded_on_first_call(folders, tmp_path: Path) -> None:
    from test_transfer import _save_base

    from recognize_me.me.face_choice import base_features

    base_features(tmp_path / "missing" / "model.keras")  # nothing is read before the first call
    features = base_features(_save_base(tmp_path / "base"))
    crops = _prepare(folders, tmp_path / "out").table["crop_path"].tolist()[:5]
    first = features(crops)
    assert first.shape[0] == 5 and first.ndim == 2 and np.isfinite(first).all()
    assert np.all(np.linalg.norm(first, axis=1) <= 1 + 1e-5)  # the mean of two unit vectors
    np.testing.assert_allclose(features(crops[::-1]), first[::-1], rtol=1e-5, atol=1e-6)


def test_base_features_read_the_embedding_of_a_base_that_has_one(folders, tmp_path: Path) -> None:
    """An identity base (an ``embedding`` layer, as dlib_resnet's has) is compared in that embedding."""
    import keras
    from test_transfer import _save_base

    from recognize_me.me.face_choice import base_features

    path = _save_base(tmp_path / "base", "resnet_identity")
    embedding = keras.models.load_model(path, safe_mode=True, compile=False).get_layer("embedding")
    crops = _prepare(folders, tmp_path / "out").table["crop_path"].tolist()[:3]
    base = keras.models.load_model(path, safe_mode=True, compile=False)
    assert embedding.output.shape[-1] != base.get_layer("gap").output.shape[-1]  # the test can tell them apart
    assert base_features(path)(crops).shape == (3, embedding.output.shape[-1])


@pytest.mark.real_data
@pytest.mark.slow
def test_real_group_photos_give_a_candidate_or_other_row_per_face(tmp_path: Path) -> None:
    """Group photos pasted together (in tmp_path) from the shared faces, the user the smallest face; the real
    MTCNN aligner finds every face."""
    faces = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
    if not faces.is_dir():
        pytest.skip(f"{faces} is absent (real data is not shipped with the project)")
    mine = sorted((faces / "me").iterdir())[:4]
    people = sorted(p for p in (faces / "others").iterdir() if p.is_dir())[:2]
    strangers = [sorted(p.iterdir())[0] for p in people]
    me, others = tmp_path / "me", tmp_path / "others"
    me.mkdir()
    others.mkdir()
    for p in mine[:3]:
        with Image.open(p) as img:
            img.convert("RGB").save(me / f"{p.stem}.png")

    def group(path: Path, photos: list[Path]) -> None:
        canvas = Image.new("RGB", (900, 400), (90, 120, 150))
        for i, (p, size) in enumerate(zip(photos, (260, 220, 150), strict=True)):
            with Image.open(p) as img:
                canvas.paste(img.convert("RGB").resize((size, size)), (30 + i * 300, 60))
        canvas.save(path)

    group(me / "group.png", [*strangers, mine[3]])
    group(others / "group.png", [*strangers, sorted(people[1].iterdir())[1]])
    table = prepare_photos(PhotoSources(me, others), tmp_path / "out", seed=0, fractions=FRACTIONS).table
    me_group = table[table["path"] == str(me / "group.png")]
    assert me_group["choice"].tolist() == [CHOICE_CANDIDATE] * 3 and me_group["label"].eq("me").all()
    lefts = [int(b.split(",")[0]) for b in me_group["box"]]
    assert lefts[0] < lefts[1] < lefts[2]  # largest first: the pasted order, the user last
    others_group = table[table["path"] == str(others / "group.png")]
    assert others_group["choice"].tolist() == [CHOICE_EVERY] * 3 and others_group["face"].tolist() == [0, 1, 2]
    assert (table.loc[table["path"].str.contains("/me/") & (table["choice"] == CHOICE_ONLY)].shape[0]) == 3

"""The find_speed benchmark's pure helpers: photo planning/rendering and scoring, on tiny generated data."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageOps

from benchmarks import find_scoring as fs
from benchmarks.phone_photos import (
    FaceSource,
    plan_photos,
    render_photo,
    rotated_box,
    stored_image,
    truth_rows,
    write_photo,
)

ME = [FaceSource(Path(f"me{i}.png"), "me", is_me=True) for i in range(3)]
STRANGERS = [FaceSource(Path(f"s{i}.png"), f"s{i}") for i in range(6)]
COLORS = {"me": (255, 0, 0)}


def solid(source: FaceSource) -> Image.Image:
    """A face stand-in: red for "me", blue for anyone else."""
    return Image.new("RGB", (16, 16), COLORS.get(source.person, (0, 0, 255)))


def tiny_plans(n: int = 30, n_group: int = 8, seed: int = 3, **kw):
    return plan_photos(n, ME, STRANGERS, seed=seed, n_group=n_group, size=(160, 120), min_face=10, **kw)


def test_plans_are_seeded_and_have_the_asked_kinds():
    plans = tiny_plans()
    assert plans == tiny_plans()
    assert plans != tiny_plans(seed=4)
    kinds = [p.kind for p in plans]
    assert kinds.count("group_me") == 8 and kinds.count("group_none") == 8 and kinds.count("mixed") == 14
    assert len({p.name for p in plans}) == 30


def test_group_photos_put_me_among_others_and_never_largest():
    for plan in tiny_plans(n=40, n_group=20):
        sides = [f.box[2] - f.box[0] for f in plan.faces]
        mine = [s for f, s in zip(plan.faces, sides, strict=True) if f.source.is_me]
        others = [s for f, s in zip(plan.faces, sides, strict=True) if not f.source.is_me]
        assert min(sides) >= 10
        if plan.kind == "group_me":
            assert len(mine) == 1 and 1 <= len(others) <= 2 and mine[0] < max(others)
        elif plan.kind == "group_none":
            assert not mine and 2 <= len(others) <= 3
        else:
            assert 1 <= len(plan.faces) <= 5


def test_faces_do_not_overlap_and_stay_inside():
    for plan in tiny_plans():
        w, h = plan.size
        boxes = [f.box for f in plan.faces]
        for i, a in enumerate(boxes):
            assert 0 <= a[0] < a[2] <= w and 0 <= a[1] < a[3] <= h
            for b in boxes[i + 1:]:
                assert fs.iou(a, b) == 0


def test_formats_and_orientations_follow_the_probabilities():
    plans = plan_photos(200, ME, STRANGERS, seed=1, size=(160, 120), min_face=10, p_heic=0.3, p_oriented=0.5)
    heic = [p for p in plans if p.fmt == "heic"]
    assert 30 <= len(heic) <= 90 and all(p.orientation == 1 for p in heic)
    oriented = [p for p in plans if p.orientation != 1]
    assert oriented and all(p.orientation in (3, 6, 8) and p.name.endswith(".jpg") for p in oriented)
    assert {p.size for p in plans} == {(160, 120), (120, 160)}
    assert all(p.fmt == "jpg" and p.orientation == 1
               for p in plan_photos(20, ME, STRANGERS, seed=1, size=(160, 120), min_face=10, p_heic=0,
                                    p_oriented=0))


def test_plan_rejects_impossible_requests():
    with pytest.raises(ValueError, match="n_group"):
        plan_photos(10, ME, STRANGERS, seed=0, n_group=6)
    with pytest.raises(ValueError, match="'me' face"):
        plan_photos(10, [], STRANGERS, seed=0)


def test_render_pastes_each_face_at_its_truth_box():
    plan = next(p for p in tiny_plans() if p.kind == "group_me")
    img = render_photo(plan, load=solid)
    assert img.size == plan.size and img.mode == "RGB"
    for face, row in zip(plan.faces, truth_rows(plan), strict=True):
        cx, cy = (row["left"] + row["right"]) // 2, (row["top"] + row["bottom"]) // 2
        r, g, b = img.getpixel((cx, cy))
        assert (r > 200 and b < 60) if face.source.is_me else (b > 200 and r < 60)
        assert row["is_me"] == face.source.is_me


def test_rotated_box_grows_with_the_angle():
    assert rotated_box((10, 10, 30, 30), 0) == (10, 10, 30, 30)
    left, top, right, bottom = rotated_box((10, 10, 30, 30), 45)
    assert right - left == pytest.approx(20 * 2**0.5, abs=1) and (left + right) / 2 == 20


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_jpeg_with_an_orientation_tag_reads_back_upright(tmp_path, orientation):
    plan = next(p for p in tiny_plans(p_heic=0) if p.kind == "group_me")
    plan = type(plan)(**{**plan.__dict__, "orientation": orientation})
    upright = render_photo(plan, load=solid)
    path = tmp_path / "x.jpg"
    write_photo(plan, upright, path)
    with Image.open(path) as im:
        assert im.getexif().get(0x0112, 1) == orientation
        assert im.size == stored_image(upright, orientation).size
        shown = ImageOps.exif_transpose(im)
    assert shown.size == upright.size
    row = next(r for r in truth_rows(plan) if r["is_me"])
    r, _, b = shown.getpixel(((row["left"] + row["right"]) // 2, (row["top"] + row["bottom"]) // 2))
    assert r > 200 and b < 60


def test_heic_photos_are_written_and_read_back(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    plan = next(p for p in tiny_plans(p_heic=1.0) if p.fmt == "heic")
    write_photo(plan, render_photo(plan, load=solid), tmp_path / plan.name)
    with Image.open(tmp_path / plan.name) as im:
        assert im.format == "HEIF" and im.size == plan.size


TRUTH = [
    {"path": "a.jpg", "kind": "group_me", "is_me": "True", "left": 0, "top": 0, "right": 10, "bottom": 10},
    {"path": "a.jpg", "kind": "group_me", "is_me": "False", "left": 20, "top": 0, "right": 40, "bottom": 20},
    {"path": "b.jpg", "kind": "group_none", "is_me": "False", "left": 0, "top": 0, "right": 10, "bottom": 10},
    {"path": "c.heic", "kind": "mixed", "is_me": True, "left": 0, "top": 0, "right": 10, "bottom": 10},
    {"path": "d.jpg", "kind": "mixed", "is_me": False, "left": 0, "top": 0, "right": 10, "bottom": 10},
]


def test_truth_and_predictions_by_photo():
    truth = fs.truth_by_photo(TRUTH)
    assert truth == {"a.jpg": ("group_me", True), "b.jpg": ("group_none", False), "c.heic": ("mixed", True),
                     "d.jpg": ("mixed", False)}
    matches = [{"path": "a.jpg", "is_me": "False"}, {"path": "a.jpg", "is_me": "True"},
               {"path": "b.jpg", "is_me": ""}, {"path": "d.jpg", "is_me": "True"}]
    assert fs.find_by_photo(matches) == {"a.jpg": True, "b.jpg": False, "d.jpg": True}


def test_reference_lines_map_back_to_the_photos():
    lines = ["WARNING: No faces found in known/x.png. Ignoring file.", "view/a.jpg,unknown_person",
             "view/a.jpg,me_4901", "view/a.jpg,me_4902", "view/b.jpg,no_persons_found",
             "view/c.heic.jpg,unknown_person", "view/other.jpg,me_1"]
    got = fs.reference_by_photo(lines, {"a.jpg": "a.jpg", "b.jpg": "b.jpg", "c.heic.jpg": "c.heic"})
    assert got == {"a.jpg": True, "b.jpg": False, "c.heic": False}


def test_score_counts_and_group_subset():
    truth = fs.truth_by_photo(TRUTH)
    s = fs.score({"a.jpg": True, "b.jpg": False, "d.jpg": True}, truth)
    assert (s["photos"], s["found"], s["missed"], s["false_alarms"], s["unanswered"]) == (4, 1, 1, 1, 1)
    assert s["accuracy"] == 0.5
    g = fs.score({"a.jpg": True, "b.jpg": False}, truth, kinds=fs.GROUP_KINDS)
    assert g["photos"] == 2 and g["accuracy"] == 1.0


def test_face_diagnostics_match_boxes_by_iou():
    matches = [
        {"path": "a.jpg", "face": "0", "left": "1", "top": "0", "right": "10", "bottom": "10", "is_me": "True",
         "me_probability": "0.9", "status": "ok"},
        {"path": "a.jpg", "face": "1", "left": "100", "top": "100", "right": "120", "bottom": "120",
         "is_me": "True", "me_probability": "0.7", "status": "ok"},
        {"path": "b.jpg", "face": "0", "left": "0", "top": "0", "right": "10", "bottom": "10", "is_me": "True",
         "me_probability": "0.6", "status": "ok"},
        {"path": "d.jpg", "face": "-1", "left": "", "top": "", "right": "", "bottom": "", "is_me": "",
         "me_probability": "", "status": "no face found"},
    ]
    matches.append({"path": "c.heic", "face": "0", "left": "3", "top": "3", "right": "6", "bottom": "6",
                    "is_me": "False", "me_probability": "0.2", "status": "ok"})  # small box, centre inside
    d = fs.face_diagnostics(matches, TRUTH)
    assert (d["me_faces"], d["me_detected"], d["me_judged_me"]) == (2, 2, 1)
    assert (d["stranger_faces"], d["stranger_detected"], d["stranger_judged_me"]) == (3, 1, 1)
    assert (d["spurious"], d["spurious_judged_me"]) == (1, 1)
    assert d["me_probs"] == [0.9, 0.2] and d["stranger_probs"] == [0.6]
    assert d["by_person"] == {"me": [2, 2, 1], "stranger": [3, 1, 1]}


def test_iou_and_auc():
    assert fs.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert fs.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert fs.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0
    assert fs._centre_in((4, 4, 6, 6), (0, 0, 10, 10)) and not fs._centre_in((9, 9, 15, 15), (0, 0, 10, 10))
    assert fs.auc([0.9, 0.8], [0.1, 0.85]) == 0.75
    assert fs.auc([0.5], [0.5]) == 0.5


def test_find_speed_roles_keep_the_test_me_out_of_every_development_set() -> None:
    from benchmarks.find_speed import PEOPLE, TEST_ME, roles

    assert roles(TEST_ME) == (("Keanu_Reeves", "Daniel_Radcliffe"), ("Jennifer_Lopez", "me"))
    for me in PEOPLE:
        others, strangers = roles(me)
        assert len(others) == 2 and me not in others + strangers and TEST_ME not in others + strangers
        assert set(others + strangers) == set(PEOPLE) - {me}


def test_find_embeddings_scores_each_embedding_at_its_own_threshold_and_in_hindsight() -> None:
    import numpy as np

    from benchmarks.find_embeddings import one_row

    truth = [{"path": "a.jpg", "kind": "group_me", "is_me": "True", "person": "me",
              "left": 0, "top": 0, "right": 10, "bottom": 10},
             {"path": "a.jpg", "kind": "group_me", "is_me": "False", "person": "x", "left": 20, "top": 0,
              "right": 30, "bottom": 10},
             {"path": "b.jpg", "kind": "group_none", "is_me": "False", "person": "y", "left": 0, "top": 0,
              "right": 10, "bottom": 10}]
    faces = [{"path": "a.jpg", "box": [1, 1, 9, 9]}, {"path": "a.jpg", "box": [21, 1, 29, 9]},
             {"path": "b.jpg", "box": [1, 1, 9, 9]}]
    # out-of-fold scores put the threshold above 0.85; the "me" face scores 0.6, a stranger 0.3
    y, s = np.array([1, 1, 0, 0]), np.array([0.95, 0.92, 0.85, 0.1])
    row = one_row("me", "student", faces, truth, y, s, np.array([0.6, 0.1, 0.3]))
    assert 0.85 < row["threshold"] <= 0.92 and row["group_accuracy"] == 0.5  # the "me" face is missed
    assert row["ceiling"] == 1.0  # any threshold in (0.3, 0.6] finds her and rejects b.jpg
    assert row["face_auc"] == 1.0 and row["me_found"] == "0/1" and row["strangers_judged_me"] == "0/2"


def test_cascade_cut_lets_the_asked_share_of_others_through() -> None:
    import numpy as np

    from benchmarks.find_embeddings import cascade_cut

    y = np.array([1] * 5 + [0] * 100)
    s = np.r_[np.full(5, 0.9), np.linspace(0.0, 0.5, 100)]
    cut = cascade_cut(y, s, 0.10)
    assert np.mean(s[y == 0] >= cut) == 0.10 and (s[y == 1] >= cut).all()

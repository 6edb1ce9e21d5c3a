"""Library scan (``recognize-me find`` / the ``find-me`` flow): listing, content keys, incremental judging,
matches.csv and the contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from recognize_me.me import library
from recognize_me.me.contact_sheet import MATCH_COLUMNS, match_rows, summarize, write_contact_sheet
from recognize_me.me.library import (
    FindSpec,
    LibraryPhoto,
    Skipped,
    chunked,
    default_out_dir,
    hash_library,
    list_library,
    plan_scan,
    progress_line,
    split_known,
)
from recognize_me.me.photos import register_phone_formats


def _img(path: Path, colour=(120, 80, 60), size=(60, 40), **kw) -> Path:
    register_phone_formats()  # so Pillow can write .heic
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, **kw)
    return path


def test_list_library_is_recursive_and_says_why_files_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    _img(root / "b.jpg")
    _img(root / "2024" / "a.HEIC")
    _img(root / "2024" / "c.webp")
    (root / "clip.mov").write_bytes(b"\0" * 10)
    (root / "notes").write_text("x")
    _img(root / ".thumbnails" / "t.jpg")  # hidden: left out
    _img(root / "out" / "thumbs" / "x.jpg")  # the scan's own output: left out
    photos, skipped = list_library(root, exclude=[root / "out"])
    assert [p.relative_to(root).as_posix() for p in photos] == ["2024/a.HEIC", "2024/c.webp", "b.jpg"]
    assert skipped == [Skipped("clip.mov", "unsupported format .mov"), Skipped("notes", "unsupported format (no suffix)")]
    with pytest.raises(FileNotFoundError, match="photo folder not found"):
        list_library(tmp_path / "nope")


def test_hashes_are_reused_while_size_and_mtime_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "lib"
    a, b = _img(root / "a.png"), _img(root / "b.png", colour=(1, 2, 3))
    index = tmp_path / "out" / "hashes.json"
    first, skipped = hash_library(root, [a, b], index)
    assert skipped == [] and len({p.sha256 for p in first}) == 2
    calls: list[Path] = []
    real = library.file_digest
    monkeypatch.setattr(library, "file_digest", lambda p: calls.append(Path(p)) or real(p))
    again, _ = hash_library(root, [a, b], index)
    assert again == first and calls == []  # nothing re-read
    _img(b, colour=(9, 9, 9))  # changed content
    changed, _ = hash_library(root, [a, b], index)
    assert calls == [b] and changed[0] == first[0] and changed[1].sha256 != first[1].sha256
    assert set(json.loads(index.read_text())) == {"a.png", "b.png"}


def test_split_known_judges_each_content_once(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    photos = [LibraryPhoto("a.jpg", "aa" * 32), LibraryPhoto("copy.jpg", "aa" * 32), LibraryPhoto("b.jpg", "bb" * 32)]
    known, todo = split_known(spec, photos)
    assert known == [] and [p.rel for p in todo] == ["a.jpg", "b.jpg"]
    spec.result_path("bb" * 32).parent.mkdir(parents=True)
    spec.result_path("bb" * 32).write_text("{}")
    known, todo = split_known(spec, photos)
    assert [p.rel for p in known] == ["b.jpg"] and [p.rel for p in todo] == ["a.jpg"]


def test_chunks_progress_and_default_folder(tmp_path: Path) -> None:
    assert chunked(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="chunk size"):
        chunked([1], 0)
    assert progress_line(120, 1000, 30.0) == "120/1000 photos, 4.00 photos/s, about 3 min 40 s left"
    assert progress_line(0, 10, 0.0) == "0/10 photos, 0.00 photos/s"
    assert progress_line(6, 6, 200.0).startswith("6/6 photos, 0.03 photos/s")
    out = default_out_dir(tmp_path / "Holiday 2024", tmp_path / "artifacts")
    assert out.parent == tmp_path / "artifacts" / "find" and out.name.startswith("Holiday 2024-")
    assert default_out_dir(tmp_path / "Holiday 2024", tmp_path / "artifacts") == out


def _spec(tmp_path: Path, threshold: float = 0.5) -> FindSpec:
    from recognize_me.me.predict import PredictorConfig

    model = tmp_path / "m.keras"
    if not model.exists():
        model.write_bytes(b"weights")
    predictor = PredictorConfig(me_model=model, me_strategy="fine_tuning", threshold=threshold, me_f1=None,
                                attribute_model=model, attribute_model_name="resnet", attribute_names=("Smiling",),
                                attribute_thresholds=(0.5,), image_size=(32, 32), crop="square")
    return FindSpec(predictor=predictor, out_dir=tmp_path / "out")


def test_model_key_changes_with_the_models_and_settings(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert spec.model_key == _spec(tmp_path).model_key
    assert spec.model_key != _spec(tmp_path, threshold=0.6).model_key
    (tmp_path / "m.keras").write_bytes(b"retrained")
    assert _spec(tmp_path).model_key != spec.model_key
    assert spec.near_miss_floor == 0.25


def _result(path: str, faces: list[tuple[float | None, list[int] | None]], error: str | None = None,
            threshold: float = 0.5) -> dict:
    entries = [{"face": i, "box": box, "confidence": 0.99, "status": "ok" if p is not None else "face too small to judge",
                "me_probability": p, "is_me": None if p is None else p >= threshold, "attributes": []}
               for i, (p, box) in enumerate(faces)]
    judged = [f for f in entries if f["me_probability"] is not None]
    best = max(judged, key=lambda f: f["me_probability"]) if judged else None
    return {"path": path, "sha256": path * 2, "error": error, "faces": entries, "size": [400, 300],
            "me_probability": best and best["me_probability"], "is_me": best and best["is_me"],
            "thumbnail": f"thumbs/{path}.jpg"}


RESULTS = [
    _result("group.jpg", [(0.1, [0, 0, 100, 100]), (0.93, [200, 50, 260, 110]), (None, [300, 10, 320, 30])]),
    _result("near.jpg", [(0.4, [10, 10, 90, 90])]),
    _result("me<script>.jpg", [(0.7, [10, 10, 90, 90])]),
    _result("nobody.jpg", [], error="no face found"),
    _result("far.jpg", [(0.05, [1, 1, 80, 80])]),
]


def test_match_rows_one_row_per_face() -> None:
    rows = match_rows(RESULTS)
    assert list(rows.columns) == list(MATCH_COLUMNS)
    group = rows[rows["path"] == "group.jpg"]
    assert group["face"].tolist() == [0, 1, 2] and group["is_me"].tolist() == [False, True, None]
    assert group.iloc[1][["left", "top", "right", "bottom"]].tolist() == [200, 50, 260, 110]
    assert group.iloc[2]["status"] == "face too small to judge"
    nobody = rows[rows["path"] == "nobody.jpg"].iloc[0]
    assert nobody["face"] == -1 and nobody["status"] == "no face found"


def test_contact_sheet_sections_order_and_escaping(tmp_path: Path) -> None:
    skipped = [Skipped("clip.mov", "unsupported format .mov")]
    counts = summarize(RESULTS, skipped, 0.25)
    assert counts == {"photos": 5, "found": 2, "near_misses": 1, "faces": 6, "not_judged": 2}
    page = write_contact_sheet(RESULTS, skipped, tmp_path, threshold=0.5, near_miss=0.25, title="t").read_text()
    found, rest = page.split("<h2>Near misses (1)</h2>")
    assert "<h2>Found you (2)</h2>" in found
    assert found.index("group.jpg") < found.index("me&lt;script&gt;.jpg")  # most likely first
    assert "<script>" not in page and "face 2 of 3" in found
    near, bad = rest.split("<h2>Not judged (2)</h2>")
    assert "near.jpg" in near and "far.jpg" not in page.split("<h2>Not judged")[0]
    assert "clip.mov" in bad and "no face found" in bad
    assert "left:50.00%;top:16.67%;width:15.00%;height:20.00%" in found  # the found face boxed, in percent


# --- the flow, on tiny untrained models (plumbing, not skill) ------------------------------------

@pytest.fixture(scope="module")
def library_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from me_fixtures import fake_run, save_models

    from recognize_me.demo.data import generate_demo_data

    root = tmp_path_factory.mktemp("find")
    demo = generate_demo_data(root / "demo", n_images=6, seed=4, n_me=1, n_others=1)
    me_model, attr_model = save_models(root / "models")
    fake_run(root / "run", {"me_model": me_model, "attr_model": attr_model})
    lib = root / "library"
    frames = sorted(demo.images_dir.glob("*.jpg"))  # 178x218: taken as already aligned
    (lib / "2024").mkdir(parents=True)
    for i, frame in enumerate(frames[:4]):
        Image.open(frame).save(lib / ("2024" if i % 2 else "") / f"photo_{i}.jpg")
    register_phone_formats()
    Image.open(frames[4]).save(lib / "phone.heic")
    (lib / "broken.heic").write_bytes(b"ftypheic" + b"\0" * 40)
    (lib / "video.mov").write_bytes(b"\0" * 8)
    return {"root": root, "library": lib, "run": root / "run", "spare": frames[5]}


@pytest.mark.slow
def test_find_flow_scans_incrementally(prefect_server, library_run: dict[str, Path]) -> None:
    from recognize_me.cli import build_parser
    from recognize_me.me.library import HASH_INDEX, RESULTS_DIR

    def main(argv: list[str]) -> int:  # the CLI's command, without its stderr filter (pytest captures fd 2)
        parsed = build_parser().parse_args(argv)
        return parsed.func(parsed)
    out = library_run["root"] / "scan"
    args = ["find", str(library_run["library"]), "--run", str(library_run["run"]), "--out", str(out),
            "--workers", "1", "--chunk-size", "2"]
    assert main(args) == 0  # (no capsys: Prefect's console handler would keep its stream past the test)
    matches = pd.read_csv(out / "matches.csv")
    judged = matches[matches["status"] == "ok"]
    assert sorted(judged["path"]) == ["2024/photo_1.jpg", "2024/photo_3.jpg", "phone.heic", "photo_0.jpg",
                                      "photo_2.jpg"]
    assert judged["me_probability"].between(0, 1).all()
    broken = matches[matches["path"] == "broken.heic"].iloc[0]
    assert broken["face"] == -1 and broken["status"].startswith("cannot read image")
    sheet = (out / "contact_sheet.html").read_text()
    assert "video.mov" in sheet and "unsupported format .mov" in sheet
    stored = sorted((out / RESULTS_DIR).rglob("*.json"))
    assert len(stored) == 6 and (out / HASH_INDEX).is_file()
    before = {p: p.stat().st_mtime_ns for p in stored}

    # unchanged rerun: nothing judged again, same answers
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / RESULTS_DIR).rglob("*.json")} == before
    pd.testing.assert_frame_equal(pd.read_csv(out / "matches.csv"), matches)

    # one photo added: only it is judged
    Image.open(library_run["spare"]).save(library_run["library"] / "2024" / "new.png")
    assert main(args) == 0
    after = sorted((out / RESULTS_DIR).rglob("*.json"))
    assert len(after) == 7 and all(p.stat().st_mtime_ns == before[p] for p in stored)
    current = pd.read_csv(out / "matches.csv")
    assert "2024/new.png" in set(current["path"])

    # the user's own threshold: every judged face at or above it is "me", answers stored under a new key
    lowest = float(current.loc[current["status"] == "ok", "me_probability"].min())
    assert main([*args, "--threshold", f"{max(lowest - 1e-4, 1e-6):.6f}"]) == 0
    loose = pd.read_csv(out / "matches.csv")
    assert loose.loc[loose["status"] == "ok", "is_me"].astype(str).eq("True").all()
    assert len(list((out / RESULTS_DIR).glob("*"))) == 2  # the validation threshold's answers are kept


@pytest.mark.parametrize("command", ["find", "predict"])
def test_threshold_flag_takes_a_probability_and_names_a_bad_one(command: str, capsys) -> None:
    from recognize_me.cli import build_parser

    assert build_parser().parse_args([command, "photos", "--threshold", "0.3"]).threshold == 0.3
    assert build_parser().parse_args([command, "photos"]).threshold is None
    for bad, why in (("1.5", "between 0 and 1"), ("0", "between 0 and 1"), ("high", "not a number")):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([command, "photos", "--threshold", bad])
        assert exit_.value.code == 2 and why in capsys.readouterr().err


def test_the_plan_round_trips_through_its_file(tmp_path: Path) -> None:
    from recognize_me.me.library import PLAN_JSON, read_plan

    lib = tmp_path / "lib"
    for name in ("a.jpg", "b.png", "c.jpg"):
        _img(lib / name, colour=(len(name), ord(name[0]), 5))
    (lib / "x.txt").write_text("x")
    spec = _spec(tmp_path)
    plan = plan_scan(lib, spec, chunk_size=2)
    assert plan.to_judge == 3 and [len(c) for c in plan.chunks] == [2, 1]
    assert [len(c) for c in plan_scan(lib, spec, chunk_size=16, workers=2).chunks] == [2, 1]  # both workers busy
    assert read_plan(spec.out_dir / PLAN_JSON) == plan
    assert plan.skipped == (Skipped("x.txt", "unsupported format .txt"),)


def test_bad_files_become_listed_reasons_not_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recognize_me.me.align import FaceAligner
    from recognize_me.me.predict import detect_photo

    class NoFaces:
        def detect_faces(self, rgb):
            return []

    good = _img(tmp_path / "good.jpg", size=(300, 200))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:200])
    frames = [Image.new("RGB", (40, 40), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:])
    Image.new("CMYK", (300, 200), (10, 200, 30, 0)).save(tmp_path / "cmyk.jpg")
    _img(tmp_path / "huge.png", size=(400, 400))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # "huge" = above Pillow's bomb limit
    aligner = FaceAligner(detector=NoFaces(), trust_celeba_frame=False)
    errors = {p.name: detect_photo(p, aligner).error for p in sorted(tmp_path.iterdir())}
    assert errors["good.jpg"] == errors["cmyk.jpg"] == "no face found"  # decoded fine: just nobody in it
    for name in ("empty.jpg", "cut.jpg", "anim.webp", "huge.png"):
        assert errors[name].startswith("cannot read image:"), (name, errors[name])
    assert "animated image (3 frames)" in errors["anim.webp"]
    assert "decompression bomb" in errors["huge.png"].lower() or "exceeds limit" in errors["huge.png"]

"""recognize_me.data.inventory: manifest of listed images (synthetic files, including broken ones)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from celeba_fixtures import synthetic_image, write_images
from PIL import Image

from recognize_me.data import inventory
from recognize_me.data.inventory import (
    MANIFEST_COLUMNS,
    inspect_image,
    inventory_images,
    is_safe_id,
    summarize_manifest,
)

GOOD = ["000001.jpg", "000002.jpg", "000003.jpg"]
UNSAFE = ["../x.jpg", "a/b.jpg", ".hidden"]


def _jpeg_bytes(**kwargs: object) -> bytes:
    buf = io.BytesIO()
    synthetic_image(**kwargs).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "img_align_celeba"
    write_images(folder, GOOD)
    (folder / "empty.jpg").write_bytes(b"")
    data = _jpeg_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("this is not an image\n")
    synthetic_image().save(folder / "png_inside.jpg", format="PNG")
    synthetic_image(mode="L").save(folder / "gray.jpg", format="JPEG")
    # files an unsafe id would reach if it were opened (they are valid images on purpose)
    synthetic_image().save(tmp_path / "x.jpg", format="JPEG")
    (folder / "a").mkdir()
    synthetic_image().save(folder / "a" / "b.jpg", format="JPEG")
    synthetic_image().save(folder / ".hidden", format="JPEG")
    return folder


ALL_IDS = [*GOOD, "empty.jpg", "truncated.jpg", "text.jpg", "png_inside.jpg", "gray.jpg", "absent.jpg", *UNSAFE]


@pytest.fixture
def manifest(image_folder: Path):
    return inventory_images(image_folder, ALL_IDS, workers=2).set_index("image_id", drop=False)


def test_columns_order_and_types(manifest) -> None:
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["image_id"].tolist() == ALL_IDS  # one row per listed id, in listed order
    assert manifest["exists"].dtype == bool and manifest["decodable"].dtype == bool
    for column in ("width", "height", "bytes"):
        assert manifest[column].dtype == "int64"


def test_good_images(manifest, image_folder: Path) -> None:
    for image_id in GOOD:
        row = manifest.loc[image_id]
        assert row["exists"] and row["decodable"]
        assert (row["width"], row["height"]) == (178, 218)
        assert row["mode"] == "RGB"
        assert row["bytes"] == (image_folder / image_id).stat().st_size > 0
        assert row["error"] == ""


@pytest.mark.parametrize("image_id", ["empty.jpg", "truncated.jpg", "text.jpg"])
def test_broken_files_exist_but_do_not_decode(manifest, image_folder: Path, image_id: str) -> None:
    row = manifest.loc[image_id]
    assert row["exists"] and not row["decodable"]
    assert (row["width"], row["height"], row["mode"]) == (-1, -1, "")
    assert row["bytes"] == (image_folder / image_id).stat().st_size
    assert row["error"]  # the exception is recorded


def test_truncated_jpeg_fails_only_on_full_decode(image_folder: Path) -> None:
    path = image_folder / "truncated.jpg"
    with Image.open(path) as img:  # the header is intact: open() alone would accept it
        assert img.size == (178, 218)
    ok, *_, error = inspect_image(path)
    assert not ok
    assert error.startswith("OSError") and "truncated" in error.lower()


def test_zero_byte_file_reports_zero_bytes(manifest) -> None:
    assert manifest.loc["empty.jpg", "bytes"] == 0


def test_png_named_jpg_decodes(manifest) -> None:
    row = manifest.loc["png_inside.jpg"]
    assert row["exists"] and row["decodable"] and row["error"] == ""
    assert (row["width"], row["height"], row["mode"]) == (178, 218, "RGB")


def test_grayscale_mode_is_reported(manifest) -> None:
    row = manifest.loc["gray.jpg"]
    assert row["decodable"] and row["mode"] == "L"


def test_absent_id(manifest) -> None:
    row = manifest.loc["absent.jpg"]
    assert not row["exists"] and not row["decodable"]
    assert row["error"] == "absent"
    assert (row["width"], row["height"], row["bytes"]) == (-1, -1, -1)


@pytest.mark.parametrize("image_id", UNSAFE)
def test_unsafe_ids_are_rejected(manifest, image_id: str) -> None:
    row = manifest.loc[image_id]
    assert not row["exists"] and not row["decodable"]
    assert row["error"].startswith("unsafe id")
    assert not is_safe_id(image_id)


def test_unsafe_ids_are_never_opened(image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real = inventory.inspect_image

    def spy(path: Path):
        opened.append(Path(path))
        return real(path)

    monkeypatch.setattr(inventory, "inspect_image", spy)
    frame = inventory_images(image_folder, [GOOD[0], *UNSAFE, "..", "a\\b.jpg"], workers=1)
    assert [p.name for p in opened] == [GOOD[0]]
    assert frame["exists"].tolist() == [True, False, False, False, False, False]


@pytest.mark.parametrize("image_id", ["000001.jpg", "img-1_a.png", "abc"])
def test_safe_ids(image_id: str) -> None:
    assert is_safe_id(image_id)


def test_missing_folder_marks_everything_absent(tmp_path: Path) -> None:
    frame = inventory_images(tmp_path / "nope", GOOD)
    assert frame["error"].tolist() == ["absent"] * 3
    assert not frame["exists"].any()


def test_empty_listing(tmp_path: Path) -> None:
    frame = inventory_images(tmp_path, [])
    assert len(frame) == 0 and tuple(frame.columns) == MANIFEST_COLUMNS


def test_summary_counts_and_examples(manifest) -> None:
    s = summarize_manifest(manifest.reset_index(drop=True))
    assert s["listed"] == len(ALL_IDS) == 12
    assert s["available"] == 5  # 3 good + PNG + grayscale
    assert s["absent"] == 1 and s["absent_examples"] == ["absent.jpg"]
    assert s["undecodable"] == 3
    assert [e.split(" (")[0] for e in s["undecodable_examples"]] == ["empty.jpg", "truncated.jpg", "text.jpg"]
    assert all("(" in e and e.endswith(")") for e in s["undecodable_examples"])
    assert s["unsafe"] == 3 and s["unsafe_examples"] == UNSAFE


def test_summary_examples_are_capped(tmp_path: Path) -> None:
    frame = inventory_images(tmp_path, [f"{i}.jpg" for i in range(9)])
    s = summarize_manifest(frame, examples=2)
    assert s["absent"] == 9 and s["absent_examples"] == ["0.jpg", "1.jpg"]
    assert s["available"] == 0 and s["undecodable"] == 0 and s["unsafe"] == 0

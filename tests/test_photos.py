"""recognize_me.me.photos: scanning a photo folder and loading photos as RGB (synthetic images only)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recognize_me.me.photos import SUPPORTED_SUFFIXES, Rejected, load_rgb, scan_photos, to_rgb


def _save(path: Path, img: Image.Image, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def _rgb(size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (200, 30, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _reasons(rejected: list[Rejected]) -> dict[str, str]:
    return {item.path.name: item.reason for item in rejected}


# --- load_rgb ------------------------------------------------------------------------------------
def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(tmp_path / "rotated.jpg", img, exif=exif.tobytes(), quality=95)

    loaded = load_rgb(path)
    assert loaded.size == (20, 40)
    assert loaded.mode == "RGB"
    # after a 90-degree clockwise turn the stored left band is at the top
    top, bottom = np.asarray(loaded)[:8].mean(), np.asarray(loaded)[-8:].mean()
    assert top > 200 and bottom < 50

    photos, rejected = scan_photos(tmp_path, "me")
    assert rejected == []
    assert (photos[0].width, photos[0].height) == (20, 40)  # the displayed size


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA", "1"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    src = _rgb((16, 12)).convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = _save(tmp_path / f"img_{mode}{suffix}", src)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (16, 12)


def test_grey_is_replicated(tmp_path: Path) -> None:
    path = _save(tmp_path / "grey.png", Image.new("L", (5, 5), 100))
    assert load_rgb(path).getpixel((2, 2)) == (100, 100, 100)


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 0))  # fully transparent red
    img.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    img.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    loaded = load_rgb(_save(tmp_path / "alpha.png", img))
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 0)) == (255, 0, 0)
    assert all(abs(c - 127) <= 2 for c in loaded.getpixel((2, 0)))


def test_palette_with_transparency_uses_white(tmp_path: Path) -> None:
    img = Image.new("P", (3, 3), 0)
    img.putpalette([10, 20, 30] + [200, 100, 50] * 255)
    img.putpixel((1, 1), 1)
    path = _save(tmp_path / "pal.png", img, transparency=0)
    loaded = load_rgb(path)
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (200, 100, 50)


def test_sixteen_bit_grey_is_scaled(tmp_path: Path) -> None:
    arr = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    loaded = load_rgb(_save(tmp_path / "deep.png", img))
    assert loaded.mode == "RGB"
    assert np.asarray(loaded)[..., 0].tolist() == [[0, 255], [100, 200]]


def test_to_rgb_leaves_rgb_alone() -> None:
    img = _rgb()
    assert to_rgb(img) is img


# --- scan_photos ---------------------------------------------------------------------------------
def test_scan_is_recursive_sorted_and_hashes_bytes(tmp_path: Path) -> None:
    for rel in ["b.png", "a.jpg", "sub/z.jpeg", "sub/deeper/c.PNG", "A_upper.JPG"]:
        _save(tmp_path / rel, _rgb((24, 18)), **({"format": "JPEG"} if rel.lower().endswith(("jpg", "jpeg"))
                                                   else {"format": "PNG"}))
    photos, rejected = scan_photos(tmp_path, "me")
    assert rejected == []
    rels = [p.path.relative_to(tmp_path).as_posix() for p in photos]
    assert rels == ["A_upper.JPG", "a.jpg", "b.png", "sub/deeper/c.PNG", "sub/z.jpeg"]
    assert all(p.label == "me" and (p.width, p.height) == (24, 18) for p in photos)
    for p in photos:
        assert p.sha256 == hashlib.sha256(p.path.read_bytes()).hexdigest()
    again, _ = scan_photos(tmp_path, "me")
    assert again == photos


def test_undecodable_files_are_rejected_with_reason(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.jpg", _rgb((64, 64)), quality=90)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "text.jpg").write_text("this is not an image\n")
    png = _save(tmp_path / "full.png", _rgb((64, 64)))
    (tmp_path / "cut.png").write_bytes(png.read_bytes()[:60])

    photos, rejected = scan_photos(tmp_path, "me")
    assert sorted(p.path.name for p in photos) == ["full.png", "good.jpg"]
    reasons = _reasons(rejected)
    assert set(reasons) == {"empty.jpg", "truncated.jpg", "text.jpg", "cut.png"}
    assert "empty" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"].lower()  # Pillow's own message
    assert "cannot identify image file" in reasons["text.jpg"]
    assert str(tmp_path / "text.jpg") in reasons["text.jpg"]  # names the file, not an in-memory buffer
    assert all(r.startswith("cannot decode image:") for r in reasons.values())


@pytest.mark.parametrize("suffix", [".gif", ".bmp", ".tiff"])
def test_unsupported_suffixes_are_rejected(tmp_path: Path, suffix: str) -> None:
    assert suffix not in SUPPORTED_SUFFIXES
    path = tmp_path / f"photo{suffix}"
    _rgb().save(path)
    photos, rejected = scan_photos(tmp_path, "me")
    assert photos == []
    assert rejected == [Rejected(path, f"unsupported format {suffix}")]


def test_file_without_suffix_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("hi")
    _, rejected = scan_photos(tmp_path, "me")
    assert [r.reason for r in rejected] == ["unsupported format (no suffix)"]


@pytest.mark.parametrize("size", [(40, 40), (100, 100)])  # warning band (> limit) and error band (> 2x)
def test_decompression_bomb_is_rejected_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   size: tuple[int, int]) -> None:
    _save(tmp_path / "big.png", _rgb(size))
    _save(tmp_path / "small.png", _rgb((20, 20)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    photos, rejected = scan_photos(tmp_path, "me")
    assert [p.path.name for p in photos] == ["small.png"]
    assert [r.path.name for r in rejected] == ["big.png"]
    assert rejected[0].reason.startswith("image too large")


def test_bomb_limit_restored_after_monkeypatch(tmp_path: Path) -> None:
    # the default limit lets an ordinary photo through (the previous test's patch did not leak)
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > 1_000_000
    _save(tmp_path / "ok.png", _rgb((100, 100)))
    photos, rejected = scan_photos(tmp_path, "me")
    assert len(photos) == 1 and rejected == []


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_symlinks_outside_the_folder_are_rejected(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    _save(data / "real.png", _rgb())
    _save(outside / "secret.png", _rgb())
    _save(outside / "dir" / "inner.png", _rgb())
    (data / "link_out.png").symlink_to(outside / "secret.png")
    (data / "link_in.png").symlink_to(data / "real.png")
    (data / "dir_out").symlink_to(outside / "dir", target_is_directory=True)
    (data / "dangling.png").symlink_to(tmp_path / "missing.png")

    photos, rejected = scan_photos(data, "me")
    assert sorted(p.path.name for p in photos) == ["link_in.png", "real.png"]
    reasons = _reasons(rejected)
    assert reasons["link_out.png"] == "outside the data folder"
    assert reasons["dir_out"] == "outside the data folder"
    assert "symlink" in reasons["dangling.png"]
    assert not any("inner.png" in str(item.path) for item in [*rejected, *photos])  # not followed


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_photos(tmp_path / "nope", "me")


# --- phone formats: real files written by pillow-heif / Pillow during the test ----------------------

def _gradient(size: tuple[int, int] = (64, 48)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None, None]
    arr = np.concatenate([np.broadcast_to(x, (size[1], size[0], 1)), np.broadcast_to(y, (size[1], size[0], 1)),
                          np.full((size[1], size[0], 1), 90, np.float32)], axis=2)
    return Image.fromarray(arr.astype(np.uint8))


@pytest.mark.parametrize("suffix", [".heic", ".heif", ".avif", ".webp", ".jpg", ".png"])
def test_phone_formats_are_scanned_and_loaded(tmp_path: Path, suffix: str) -> None:
    from recognize_me.me.photos import register_phone_formats

    assert register_phone_formats()
    original = _gradient()
    path = _save(tmp_path / f"phone{suffix}", original, quality=95) if suffix != ".png" else \
        _save(tmp_path / f"phone{suffix}", original)
    photos, rejected = scan_photos(tmp_path, "me")
    assert rejected == [] and [(p.width, p.height) for p in photos] == [(64, 48)]
    loaded = np.asarray(load_rgb(path), dtype=np.float32)
    assert loaded.shape == (48, 64, 3)
    assert np.abs(loaded - np.asarray(original, dtype=np.float32)).mean() < 6  # lossy, but the same picture


def test_heic_exif_orientation_is_applied(tmp_path: Path) -> None:
    from recognize_me.me.photos import register_phone_formats

    register_phone_formats()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = _save(tmp_path / "rotated.heic", _gradient((80, 40)), exif=exif.tobytes(), quality=95)
    photos, _ = scan_photos(tmp_path, "me")
    assert (photos[0].width, photos[0].height) == (40, 80)
    assert load_rgb(path).size == (40, 80)


@pytest.mark.parametrize("suffix", [".heic", ".avif"])
def test_broken_phone_files_are_listed_not_raised(tmp_path: Path, suffix: str) -> None:
    good = _save(tmp_path / f"good{suffix}", _gradient(), quality=90)
    data = good.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    (tmp_path / f"garbage{suffix}").write_bytes(b"not an image at all" * 10)
    photos, rejected = scan_photos(tmp_path, "me")
    assert [p.path.name for p in photos] == [f"good{suffix}"]
    reasons = _reasons(rejected)
    assert set(reasons) == {f"cut{suffix}", f"garbage{suffix}"}
    assert all(r.startswith("cannot decode image:") for r in reasons.values())


def test_animated_images_are_rejected_with_the_frame_count(tmp_path: Path) -> None:
    frames = [_rgb(colour=(10 * i, 0, 0)) for i in range(3)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    _, rejected = scan_photos(tmp_path, "me")
    assert [r.reason for r in rejected] == ["animated image (3 frames): save the frame you mean as a still photo"]
    with pytest.raises(ValueError, match="animated"):
        load_rgb(path)


def test_max_side_bounds_a_large_jpeg_without_decoding_it_at_full_size(tmp_path: Path) -> None:
    path = _save(tmp_path / "big.jpg", _gradient((4000, 3000)), quality=90)
    small = load_rgb(path, max_side=1000)
    assert small.size == (1000, 750)
    with Image.open(path) as img:
        img.draft("RGB", (1000, 750))
        assert img.size == (1000, 750)  # JPEG draft: decoded at 1/4 scale, not 12 MP
    assert load_rgb(_save(tmp_path / "big.png", _gradient((1200, 600))), max_side=600).size == (600, 300)
    assert load_rgb(path).size == (4000, 3000)  # no max_side: full size


@pytest.mark.slow  # a fresh process: the condition under which it failed
def test_a_fresh_process_whose_first_photo_is_heic_reads_it(tmp_path: Path) -> None:
    """``find`` workers are fresh processes; one whose first photo was a HEIC listed it "cannot identify image
    file" (the size probe ran before the HEIC opener was registered)."""
    import subprocess
    import sys

    from recognize_me.me.photos import register_phone_formats

    register_phone_formats()
    path = _save(tmp_path / "first.heic", _gradient(), quality=90)
    script = ("import sys\nfrom pathlib import Path\nfrom recognize_me.me.predict import detect_photo\n"
              "class NoFaces:\n    def align_all(self, image):\n        return []\n"
              "print(detect_photo(Path(sys.argv[1]), NoFaces()).error)\n")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "no face found"  # read, and judged: no face in a gradient

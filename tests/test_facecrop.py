"""recognize_me.me.facecrop: Haar face detection and CelebA-style framing.

Synthetic images check the geometry, padding and choice rules (detection is stubbed where a face is
needed); the real-photo tests (marked ``real_data``) check the detector on /work/shared/data.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recognize_me.me.facecrop import (
    REASON_FOUND,
    REASON_FOUND_TIGHT,
    REASON_NO_FACE,
    Box,
    CropResult,
    FaceCropper,
)
from recognize_me.me.photos import load_rgb

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FACES = DATA / "faces"
CELEBA_IMAGES = DATA / "celeba" / "img_align_celeba"


def _stub_detect(monkeypatch: pytest.MonkeyPatch, cropper: FaceCropper, *answers: list[Box]) -> list[tuple]:
    """Make ``cropper.detect`` return ``answers`` in turn (then []); returns the recorded calls."""
    calls: list[tuple] = []
    queue = list(answers)

    def fake(gray: np.ndarray, min_face_px: int) -> list[Box]:
        calls.append((gray.shape, min_face_px))
        return queue.pop(0) if queue else []

    monkeypatch.setattr(cropper, "detect", fake)
    return calls


# --- no real faces needed ---------------------------------------------------------------------------
@pytest.mark.parametrize("colour", [(0, 0, 0), (128, 128, 128), (255, 255, 255)])
def test_blank_image_has_no_face(colour: tuple[int, int, int]) -> None:
    result = FaceCropper().crop(Image.new("RGB", (300, 200), colour))
    assert result == CropResult(image=None, box=None, n_faces=0, reason=REASON_NO_FACE)


def test_noise_and_tiny_images_have_no_face() -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    cropper = FaceCropper()
    assert cropper.crop(noise).image is None
    assert cropper.crop(Image.new("RGB", (5, 5))).reason == REASON_NO_FACE
    assert cropper.crop(Image.new("RGB", (0, 0))).reason == REASON_NO_FACE


def test_frame_region_uses_celeba_proportions() -> None:
    cropper = FaceCropper()
    # CelebA's framing at 2x: a 212-px face centred at (178, 247) fills the whole 356x436 frame
    assert cropper.frame_region((72, 141, 284, 353)) == (0, 0, 356, 436)
    # at 1x, a 106-px face centred at (89, 123) is the 178x218 frame give or take the half pixel
    left, top, right, bottom = cropper.frame_region((36, 70, 142, 176))
    assert (right - left, bottom - top) == (178, 218) and left == 0 and abs(top) <= 1
    # anywhere else, the same relative face position
    left, top, right, bottom = cropper.frame_region((1000, 1000, 1212, 1212))
    assert (right - left, bottom - top) == (356, 436)
    assert (1106 - left) / (right - left) == pytest.approx(0.5, abs=0.01)
    assert (1106 - top) / (bottom - top) == pytest.approx(123.5 / 218, abs=0.01)


def test_frame_region_follows_output_aspect() -> None:
    left, top, right, bottom = FaceCropper(size=(128, 128)).frame_region((36, 70, 142, 176))
    assert bottom - top == 218 and right - left == 218  # height from CelebA, width from the aspect


def test_crop_output_is_178x218_rgb_with_edge_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    img = Image.new("RGB", (120, 100), (10, 200, 30))
    img.paste((250, 250, 250), (0, 0, 120, 5))  # a white top row, replicated upwards by "edge" padding
    cropper = FaceCropper()
    _stub_detect(monkeypatch, cropper, [(20, 20, 100, 100)])
    result = cropper.crop(img)
    assert result.reason == REASON_FOUND and result.n_faces == 1 and result.box == (20, 20, 100, 100)
    assert result.image is not None
    assert result.image.size == (178, 218) and result.image.mode == "RGB"
    out = np.asarray(result.image)
    assert out[:5].mean() > 240  # the region starts above the photo: filled with the replicated white row


def test_mean_padding_uses_the_mean_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    img = Image.new("RGB", (100, 100), (0, 0, 0))
    img.paste((200, 100, 0), (0, 0, 50, 100))  # left half orange, right half black: mean (100, 50, 0)
    cropper = FaceCropper(pad="mean")
    _stub_detect(monkeypatch, cropper, [(0, 0, 100, 100)])
    result = cropper.crop(img)
    assert result.image is not None
    corner = np.asarray(result.image)[0, 0].astype(int)
    assert np.abs(corner - np.array([100, 50, 0])).max() <= 2


def test_any_input_mode_gives_rgb(monkeypatch: pytest.MonkeyPatch) -> None:
    cropper = FaceCropper(size=(89, 109))
    _stub_detect(monkeypatch, cropper, [(10, 10, 50, 50)])
    result = cropper.crop(Image.new("RGBA", (60, 60), (0, 0, 0, 0)))
    assert result.image is not None
    assert result.image.size == (89, 109) and result.image.mode == "RGB"
    assert np.asarray(result.image).min() == 255  # transparent -> white, as photos.load_rgb does


@pytest.mark.parametrize(("choose", "want"), [("largest", (300, 20, 380, 100)), ("center", (180, 130, 220, 170))])
def test_choose_rule(monkeypatch: pytest.MonkeyPatch, choose: str, want: Box) -> None:
    boxes = [(10, 10, 60, 60), (300, 20, 380, 100), (180, 130, 220, 170)]  # image centre (200, 150)
    cropper = FaceCropper(choose=choose)  # type: ignore[arg-type]
    _stub_detect(monkeypatch, cropper, boxes)
    result = cropper.crop(Image.new("RGB", (400, 300)))
    assert result.box == want and result.n_faces == 3


def test_tight_crop_retry_maps_the_box_back(monkeypatch: pytest.MonkeyPatch) -> None:
    cropper = FaceCropper()
    # first pass finds nothing; on the 50%-padded 224x224 image the face is at (50, 52)..(170, 172)
    calls = _stub_detect(monkeypatch, cropper, [], [(50, 52, 170, 172)])
    result = cropper.crop(Image.new("RGB", (112, 112), (90, 90, 90)))
    assert [shape for shape, _ in calls] == [(112, 112), (224, 224)]
    assert calls[1][1] >= 56  # the retry only accepts big faces (>= half the photo)
    assert result.reason == REASON_FOUND_TIGHT
    assert result.box == (-6, -4, 114, 116)
    assert result.image is not None and result.image.size == (178, 218)


def test_tight_crop_retry_ignores_faces_in_the_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    cropper = FaceCropper()
    _stub_detect(monkeypatch, cropper, [], [(0, 0, 60, 60)])  # centre (30, 30) is in the padding
    result = cropper.crop(Image.new("RGB", (112, 112)))
    assert result.image is None and result.reason == REASON_NO_FACE


def test_large_photos_are_shrunk_for_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    cropper = FaceCropper(detect_max_side=400)
    seen: list[tuple[int, ...]] = []

    class FakeCascade:
        def detectMultiScale(self, gray: np.ndarray, **kwargs: object) -> np.ndarray:  # noqa: N802
            seen.append(gray.shape)
            return np.array([[100, 50, 40, 40]])

    cropper._classifier = FakeCascade()
    result = cropper.crop(Image.new("RGB", (2000, 1000)))
    assert seen == [(200, 400)]
    assert result.box == (500, 250, 700, 450)  # scaled back to the full-size photo


def test_classifier_is_lazy_and_pickles() -> None:
    cropper = FaceCropper()
    assert cropper._classifier is None
    cropper.crop(Image.new("RGB", (64, 64)))
    assert cropper._classifier is not None
    clone = pickle.loads(pickle.dumps(cropper))
    assert clone._classifier is None and clone.size == (178, 218)


@pytest.mark.parametrize("kwargs", [{"size": (0, 10)}, {"choose": "first"}, {"min_face_fraction": 1.0},
                                    {"pad": "zero"}, {"detect_max_side": 10}])
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaceCropper(**kwargs)


# --- real photos ---------------------------------------------------------------------------------------
def _real_photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


@pytest.mark.real_data
def test_most_real_me_photos_get_a_crop() -> None:
    paths = _real_photos(FACES / "me")
    cropper = FaceCropper()
    results = [cropper.crop(load_rgb(p)) for p in paths]
    cropped = [r for r in results if r.image is not None]
    assert len(paths) >= 50
    assert len(cropped) / len(paths) >= 0.9
    assert all(r.image.size == (178, 218) and r.image.mode == "RGB" for r in cropped)  # type: ignore[union-attr]
    assert all(r.n_faces >= 1 and r.box is not None for r in cropped)


@pytest.mark.real_data
def test_largest_and_center_pick_the_right_pasted_face() -> None:
    me = _real_photos(FACES / "me")
    others = _real_photos(FACES / "others")
    cropper = FaceCropper()
    # two faces the detector finds on their own
    faces = [load_rgb(p) for p in me[:10] + others[:10]]
    faces = [f for f in faces if cropper.crop(f).reason == REASON_FOUND][:2]
    assert len(faces) == 2
    canvas = Image.new("RGB", (800, 500), (128, 128, 128))
    canvas.paste(faces[0].resize((224, 224)), (20, 20))  # big face, top-left: centre (132, 132)
    canvas.paste(faces[1], (344, 194))  # small face, centred: centre (400, 250)

    largest = FaceCropper(choose="largest").crop(canvas)
    assert largest.n_faces >= 2 and largest.box is not None
    cx, cy = (largest.box[0] + largest.box[2]) / 2, (largest.box[1] + largest.box[3]) / 2
    assert abs(cx - 132) < 40 and abs(cy - 132) < 40
    assert largest.box[2] - largest.box[0] > 112

    central = FaceCropper(choose="center").crop(canvas)
    assert central.box is not None
    cx, cy = (central.box[0] + central.box[2]) / 2, (central.box[1] + central.box[3]) / 2
    assert abs(cx - 400) < 25 and abs(cy - 250) < 25


@pytest.mark.real_data
def test_celeba_images_frame_onto_themselves() -> None:
    """The measured constants: cropping an aligned CelebA image gives back (roughly) the same frame."""
    paths = _real_photos(CELEBA_IMAGES)[:30]
    cropper = FaceCropper()
    regions = []
    for p in paths:
        result = cropper.crop(load_rgb(p))
        if result.box is not None and result.reason == REASON_FOUND:
            regions.append(cropper.frame_region(result.box))
    assert len(regions) >= 0.8 * len(paths)
    left, top, right, bottom = np.median(np.array(regions), axis=0)
    assert abs(left) <= 8 and abs(top) <= 10 and abs(right - 178) <= 8 and abs(bottom - 218) <= 10

"""recognize_me.me.predict: "is this me?" + attributes for new photos, and finding a run's best models.

Untrained tiny models (32x32) stand in for trained ones: the tests check plumbing and format, not skill.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from me_fixtures import NAMES, SIZE, fake_run, save_models
from PIL import Image

from recognize_me.demo.data import generate_demo_data
from recognize_me.me.predict import (
    ERROR_NO_FACE,
    PredictorConfig,
    load_run_models,
    predict_images,
    prepare_image,
)

KEYS = {"path", "error", "me_probability", "is_me", "threshold", "attributes", "face_box", "n_faces", "detector",
        "confidence", "faces"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    demo = generate_demo_data(root / "demo", n_images=4, seed=2, n_me=2, n_others=2)
    Image.new("RGB", (220, 260), (90, 90, 90)).save(root / "blank.png")
    me_model, attr_model = save_models(root / "models")
    return {"root": root, "me_photo": demo.me_dir / "me_0001.png", "others": demo.others_dir,
            "blank": root / "blank.png", "me_model": me_model, "attr_model": attr_model}


def _predict(env: dict[str, Path], paths: list[Path], **kw) -> list[dict]:
    args = {"threshold": 0.5, "attribute_names": NAMES, "image_size": SIZE, "crop": "square", **kw}
    return predict_images(paths, env["me_model"], env["attr_model"], **args)


@pytest.mark.parametrize("crop", ["square", "face", "none"])
def test_prepare_image_matches_the_training_pipeline(tmp_path: Path, crop: str) -> None:
    from recognize_me.data.dataset import make_dataset

    rng = np.random.default_rng(0)
    path = tmp_path / "crop.png"
    Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(path)
    batch = next(iter(make_dataset([str(path)], None, image_size=SIZE, crop=crop, batch_size=1)))
    with Image.open(path) as img:
        mine = prepare_image(img, SIZE, crop)
    assert mine.shape == (*SIZE, 3) and mine.dtype == np.float32
    np.testing.assert_array_equal(mine, batch.numpy()[0])


def test_predict_aligns_photos_exactly_like_the_training_photos(env: dict[str, Path], tmp_path: Path) -> None:
    from recognize_me.me.align import FaceAligner
    from recognize_me.me.photo_set import PhotoSources, prepare_photos

    photos = prepare_photos(PhotoSources(env["me_photo"].parent, env["others"]), tmp_path, seed=0).table
    row = photos[photos["path"] == str(env["me_photo"])].iloc[0]
    from_photo = _predict(env, [env["me_photo"]])[0]
    assert from_photo["detector"] == row["detector"] and from_photo["confidence"] == pytest.approx(row["confidence"])

    class NoFace:  # so the saved crop is taken as already framed (identity warp, same fill)
        def detect_faces(self, rgb):
            return []

    from_crop = predict_images([Path(row["crop_path"])], env["me_model"], env["attr_model"], threshold=0.5,
                               attribute_names=NAMES, image_size=SIZE, crop="square",
                               cropper=FaceAligner(detector=NoFace()))[0]
    assert from_crop["detector"] == "celeba_frame"
    assert from_photo["me_probability"] == pytest.approx(from_crop["me_probability"], abs=1e-6)


def test_output_format_and_no_face(env: dict[str, Path]) -> None:
    results = _predict(env, [env["me_photo"], env["blank"], env["others"], env["root"] / "missing.png"])
    assert [Path(r["path"]).name for r in results] == ["me_0001.png", "blank.png", "other_0001.png",
                                                       "other_0002.png", "missing.png"]
    assert all(set(r) == KEYS for r in results)
    faces = [results[0], results[2], results[3]]
    for r in faces:
        assert r["error"] is None and r["n_faces"] >= 1 and len(r["face_box"]) == 4
        assert 0.0 <= r["me_probability"] <= 1.0
        assert isinstance(r["is_me"], bool) and r["is_me"] == (r["me_probability"] >= 0.5)
        scores = [a["score"] for a in r["attributes"]]
        assert scores == sorted(scores, reverse=True) and all(s >= 0.5 for s in scores)
        assert {a["name"] for a in r["attributes"]} <= set(NAMES)
    blank = results[1]
    assert blank["error"] == ERROR_NO_FACE and blank["is_me"] is None and blank["me_probability"] is None
    assert blank["attributes"] == [] and blank["n_faces"] == 0
    assert results[4]["error"].startswith("cannot read image")
    json.dumps(results)  # plain JSON-serialisable values


def test_thresholds_decide(env: dict[str, Path]) -> None:
    everything = _predict(env, [env["me_photo"]], threshold=0.0, attribute_thresholds=[0.0] * len(NAMES))[0]
    assert everything["is_me"] is True and len(everything["attributes"]) == len(NAMES)
    nothing = _predict(env, [env["me_photo"]], threshold=1.01, attribute_thresholds=[1.01] * len(NAMES))[0]
    assert nothing["is_me"] is False and nothing["attributes"] == []
    assert nothing["me_probability"] == pytest.approx(everything["me_probability"])


def test_batching_does_not_change_scores(env: dict[str, Path]) -> None:
    alone = _predict(env, [env["others"] / "other_0002.png"])[0]
    batched = _predict(env, [env["me_photo"], env["others"]])[2]
    assert batched["path"] == alone["path"]
    assert batched["me_probability"] == pytest.approx(alone["me_probability"], abs=1e-6)


def test_bad_arguments(env: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="attribute thresholds"):
        _predict(env, [env["me_photo"]], attribute_thresholds=[0.5])
    with pytest.raises(ValueError, match="outputs"):
        _predict(env, [env["me_photo"]], attribute_names=NAMES[:3])
    with pytest.raises(ValueError, match="image_size"):
        _predict(env, [env["me_photo"]], image_size=(48, 48))
    assert _predict(env, []) == []


# --- load_run_models ---------------------------------------------------------------------------

def test_load_run_models_picks_the_best(env: dict[str, Path], tmp_path: Path) -> None:
    fake_run(tmp_path, env)
    config = load_run_models(tmp_path)
    assert isinstance(config, PredictorConfig)
    assert config.attribute_model_name == "resnet"
    assert config.attribute_model == tmp_path / "models" / "resnet" / "model.keras"
    assert config.attribute_names == tuple(NAMES)
    assert config.attribute_thresholds[:2] == pytest.approx((0.3, 0.301))
    assert config.me_strategy == "fine_tuning" and config.me_f1 == 0.8
    assert config.threshold == pytest.approx(0.4)
    assert config.me_model == tmp_path / "me" / "fine_tuning" / "model.keras"
    assert (config.image_size, config.crop) == (SIZE, "square")
    # the best model's files missing: the next completed one is used
    (tmp_path / "models" / "resnet" / "model.keras").unlink()
    (tmp_path / "me" / "fine_tuning" / "model.keras").unlink()
    fallback = load_run_models(tmp_path)
    assert (fallback.attribute_model_name, fallback.me_strategy) == ("cnn_scheduled", "feature_extraction")
    assert fallback.attribute_thresholds[0] == pytest.approx(0.6)
    result = fallback.predict([env["me_photo"]])[0]
    assert result["error"] is None and result["threshold"] == pytest.approx(0.35)


def test_a_run_serves_the_transfers_its_results_index_lists_also_an_earlier_runs(env: dict[str, Path],
                                                                                   tmp_path: Path) -> None:
    """A cached transfer lives in the earlier run's folder; ``me/results.json`` says where."""
    import shutil

    fake_run(tmp_path / "earlier", env)
    fake_run(tmp_path / "rerun", env)
    shutil.rmtree(tmp_path / "rerun" / "me" / "fine_tuning")  # cached: nothing written in the rerun's folder
    index = [{"strategy": "fine_tuning", "status": "completed", "out_dir": str(tmp_path / "earlier" / "me" / "fine_tuning")},
             {"strategy": "feature_extraction", "status": "completed",
              "out_dir": str(tmp_path / "rerun" / "me" / "feature_extraction")},
             {"strategy": "distilled", "status": "skipped", "out_dir": str(tmp_path / "nowhere")}]
    (tmp_path / "rerun" / "me" / "results.json").write_text(json.dumps(index))
    chosen = load_run_models(tmp_path / "rerun")
    assert (chosen.me_strategy, chosen.me_model) == ("fine_tuning",
                                                     tmp_path / "earlier" / "me" / "fine_tuning" / "model.keras")
    (tmp_path / "rerun" / "me" / "results.json").unlink()  # a run written before the index: its own folders
    assert load_run_models(tmp_path / "rerun").me_strategy == "feature_extraction"


def test_a_given_threshold_replaces_the_validation_one_and_is_checked(env: dict[str, Path], tmp_path: Path) -> None:
    fake_run(tmp_path, env)
    chosen = load_run_models(tmp_path)
    assert chosen.with_threshold(None) is chosen
    looser = chosen.with_threshold(0.05)
    assert looser.threshold == 0.05 and chosen.threshold == pytest.approx(0.4)
    assert looser.me_model == chosen.me_model
    p = chosen.predict([env["me_photo"]])[0]["me_probability"]
    for t in (max(p - 0.01, 0.001), min(p + 0.01, 0.999)):
        result = chosen.with_threshold(t).predict([env["me_photo"]])[0]
        assert result["threshold"] == t and result["is_me"] is (p >= t)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"between 0 and 1.*model's own is 0\.400"):
            chosen.with_threshold(bad)


def test_each_model_gets_its_own_crop(env: dict[str, Path], tmp_path: Path) -> None:
    """A "me" model on another crop than the attribute model (the distilled student reads "face_box"):
    each is fed its own view, so the attributes come out as with a same-crop run."""
    fake_run(tmp_path / "same", env)
    fake_run(tmp_path / "mixed", env, me_crop="face")
    same, mixed = load_run_models(tmp_path / "same"), load_run_models(tmp_path / "mixed")
    assert (mixed.crop, mixed.attribute_input) == ("face", (SIZE, "square")) and same.attribute_input is None
    a, b = same.predict([env["me_photo"]])[0], mixed.predict([env["me_photo"]])[0]
    assert b["error"] is None and b["attributes"] == a["attributes"]
    assert b["me_probability"] != a["me_probability"]  # the "me" model saw another crop


def test_load_run_models_errors(env: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="leaderboard"):
        load_run_models(tmp_path / "empty")
    fake_run(tmp_path / "no_me", env)
    shutil.rmtree(tmp_path / "no_me" / "me")
    with pytest.raises(FileNotFoundError, match="transfer model"):
        load_run_models(tmp_path / "no_me")


# --- group photos: every face answered --------------------------------------------------------

class _Faces:
    """MTCNN's interface, answering every call with the same faces."""

    def __init__(self, faces: list[dict]):
        self.faces = faces

    def detect_faces(self, rgb: np.ndarray) -> list[dict]:
        return self.faces


def _template_face(offset: tuple[int, int], scale: float = 1.0, width: float | None = None) -> dict:
    from recognize_me.me.align import KEYPOINT_ORDER, TEMPLATE

    points = TEMPLATE.astype(float) * scale + np.asarray(offset, dtype=float)
    box_w = width if width is not None else 106 * scale
    return {"box": [offset[0] + 36 * scale, offset[1] + 60 * scale, box_w, 108 * scale], "confidence": 0.99,
            "keypoints": {k: list(p) for k, p in zip(KEYPOINT_ORDER, points, strict=True)}}


def test_a_group_photo_answers_for_every_face(env: dict[str, Path], tmp_path: Path) -> None:
    from recognize_me.me.align import FaceAligner

    frames = sorted((env["root"] / "demo" / "img_align_celeba").glob("*.jpg"))[:2]  # 178x218, as aligned
    me, other = (Image.open(f).convert("RGB") for f in frames)
    canvas = Image.new("RGB", (720, 300), (120, 130, 140))
    canvas.paste(other, (20, 40))   # both 178x218 frames: landmarks at the template + offset
    canvas.paste(me, (300, 40))
    group = tmp_path / "group.png"
    canvas.save(group)
    faces = [_template_face((300, 40)), _template_face((20, 40), width=110), _template_face((600, 10), 0.2, 20)]
    alone = {who: _predict(env, [frame], cropper=FaceAligner(detector=_Faces([])))[0]["me_probability"]
             for who, frame in zip(("me", "other"), frames, strict=True)}
    threshold = (alone["me"] + alone["other"]) / 2
    result = _predict(env, [group], threshold=threshold, cropper=FaceAligner(detector=_Faces(faces)))[0]

    assert result["error"] is None and result["n_faces"] == 3
    other_face, me_face, tiny = result["faces"]  # largest first
    assert [f["face"] for f in result["faces"]] == [0, 1, 2]
    assert me_face["box"] == [336, 100, 442, 208] and other_face["status"] == me_face["status"] == "ok"
    assert me_face["me_probability"] == pytest.approx(alone["me"], abs=1e-5)  # the same crop as the photo alone
    assert other_face["me_probability"] == pytest.approx(alone["other"], abs=1e-5)
    assert tiny["status"] == "face too small to judge" and tiny["me_probability"] is None and tiny["is_me"] is None
    best = max(me_face, other_face, key=lambda f: f["me_probability"])
    assert result["me_probability"] == best["me_probability"] and result["face_box"] == best["box"]
    assert result["is_me"] is True and [f["is_me"] for f in (me_face, other_face)].count(True) == 1
    json.dumps(result)


def test_only_tiny_faces_are_listed_not_guessed(env: dict[str, Path], tmp_path: Path) -> None:
    from recognize_me.me.align import FaceAligner

    Image.new("RGB", (400, 300), (90, 90, 90)).save(tmp_path / "far.png")
    tiny = [_template_face((50, 50), 0.2, 18), _template_face((200, 80), 0.2, 22)]
    result = _predict(env, [tmp_path / "far.png"], cropper=FaceAligner(detector=_Faces(tiny)))[0]
    assert result["error"] == "face too small to judge" and result["n_faces"] == 2
    assert result["is_me"] is None and result["me_probability"] is None
    assert all(f["status"] == "face too small to judge" for f in result["faces"])


def test_load_run_models_follows_model_dir_to_an_earlier_run(env: dict[str, Path], tmp_path: Path) -> None:
    """A rerun whose CelebA training was cached keeps its models in the earlier run's folder."""
    fake_run(tmp_path / "first", env)
    second = tmp_path / "second"
    fake_run(second, env)
    shutil.rmtree(second / "models")
    board = json.loads((second / "leaderboard.json").read_text())
    for row in board:
        row["model_dir"] = str(tmp_path / "first" / "models" / row["model"])
    (second / "leaderboard.json").write_text(json.dumps(board))
    config = load_run_models(second)
    assert config.attribute_model == tmp_path / "first" / "models" / "resnet" / "model.keras"

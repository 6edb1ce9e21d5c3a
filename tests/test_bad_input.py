"""Bad-input corpus: every malformed file, image, photo folder or config value ends with a clear message.

Each dataset case starts from a valid tiny CelebA folder (``celeba_fixtures.write_tiny_celeba``) and breaks
one thing on disk; it then goes through the real path (files -> ``validation.validate``: parse, image
inventory, Great Expectations checks). A case either fails parsing with a ``CelebaFormatError`` naming the
file and line, or parses and yields a failed ``CheckReport`` whose critical failure names the expectation,
the column and the offending image ids / observed values.

Related cases covered elsewhere (not repeated here): unsafe ids are never opened
(``test_inventory.test_unsafe_ids_are_never_opened``); the parser's line numbers in every layout
(``test_celeba_files``); ``scan_photos`` decompression bombs (``test_photos``).

The last test runs three representative cases through the whole ``train-all`` flow (slow).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from celeba_fixtures import (
    BROKEN_IMAGE_KINDS,
    write_broken_image,
    write_image,
    write_official_attr_file,
    write_partition_file,
    write_tiny_celeba,
)
from PIL import Image
from pydantic import ValidationError

from recognize_me.config import PipelineConfig
from recognize_me.data.attributes import CELEBA_ATTRIBUTES
from recognize_me.data.celeba_files import CelebaFormatError
from recognize_me.data.check_report import CRITICAL, CheckReport, FailedExpectation
from recognize_me.data.inventory import inventory_images
from recognize_me.data.validation import Validation, validate

N = 12  # rows (and images) per tiny dataset
NAMES = ("Male", "Smiling")  # selected attributes: small suites, fast checks
ATTR = "list_attr_celeba.txt"
PART = "list_eval_partition.txt"
BAD = 3  # the row a case breaks: image 000004.jpg, line 6 of the official file (count + header + 3 rows)
BAD_ID = "000004.jpg"


def _config(root: Path, **kw) -> PipelineConfig:
    return PipelineConfig(celeba_dir=root, attributes=list(NAMES), **kw)


def _rewrite_attr(root: Path, rows, **kw) -> None:
    write_official_attr_file(root / ATTR, rows, **kw)


def _set_value(rows, image: int, attribute: str, value) -> list:
    rows = [(i, list(v)) for i, v in rows]
    rows[image][1][CELEBA_ATTRIBUTES.index(attribute)] = value
    return rows


# --- cases that stop at parsing ------------------------------------------------------------------

@dataclass(frozen=True)
class ParseCase:
    build: Callable[[Path, list], None]  # (dataset root, the valid rows written there)
    message: tuple[str, ...]  # fragments of the CelebaFormatError message (besides the file name)
    file: str = ATTR


def _missing_selected(root: Path, rows) -> None:
    keep = [a for a in CELEBA_ATTRIBUTES if a != "Smiling"]
    idx = [CELEBA_ATTRIBUTES.index(a) for a in keep]
    _rewrite_attr(root, [(i, [v[k] for k in idx]) for i, v in rows], attributes=keep)


def _unknown_attribute(root: Path, rows) -> None:
    _rewrite_attr(root, rows, attributes=[*CELEBA_ATTRIBUTES[:-1], "Wears_Cape"])


def _too_few(root: Path, rows) -> None:
    rows = list(rows)
    rows[BAD] = (rows[BAD][0], list(rows[BAD][1])[:-1])
    _rewrite_attr(root, rows)


def _too_many(root: Path, rows) -> None:
    rows = list(rows)
    rows[BAD] = (rows[BAD][0], [*rows[BAD][1], 1])
    _rewrite_attr(root, rows)


def _minus_one_in_01_file(root: Path, rows) -> None:
    _rewrite_attr(root, _set_value(rows, BAD, "Smiling", "-1"), encoding="01")


def _partition_not_a_number(root: Path, rows) -> None:
    partition = {i: 0 for i, _ in rows} | {BAD_ID: "x"}
    write_partition_file(root / PART, partition)


PARSE_CASES = {
    "header_lacks_selected_attribute": ParseCase(_missing_selected, ("header lacks selected attribute(s) ['Smiling']",)),
    "header_names_unknown_attribute": ParseCase(_unknown_attribute, ("unknown attribute(s) ['Wears_Cape']",)),
    "row_with_too_few_values": ParseCase(_too_few, ("line 6 has 40 values, expected 41",)),
    "row_with_too_many_values": ParseCase(_too_many, ("line 6 has 42 values, expected 41",)),
    "minus_one_in_a_0_1_file": ParseCase(_minus_one_in_01_file, ("mixes the -1/1 and 0/1 encodings",)),
    "partition_value_not_a_number": ParseCase(_partition_not_a_number, ("line 4", "partition value 'x'"), file=PART),
}


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list]:
    """A valid tiny CelebA folder (official layout, N rows and 178x218 JPEGs) and its rows."""
    root = tmp_path / "celeba"
    rows = write_tiny_celeba(root, n=N)
    return root, rows


def test_the_valid_dataset_passes(dataset) -> None:
    """The baseline every case breaks: no failure at all, so each case's failure is its own."""
    root, _ = dataset
    result = validate(_config(root))
    assert result.report.success and result.report.failures == [], result.report.to_markdown()


@pytest.mark.parametrize("case", sorted(PARSE_CASES))
def test_unreadable_file_is_named_with_its_line(dataset, case: str) -> None:
    root, rows = dataset
    spec = PARSE_CASES[case]
    spec.build(root, rows)
    with pytest.raises(CelebaFormatError) as info:
        validate(_config(root))
    message = str(info.value)
    assert str(root / spec.file) in message
    for fragment in spec.message:
        assert fragment in message


# --- cases that parse and fail a check ---------------------------------------------------------------

@dataclass(frozen=True)
class CheckCase:
    build: Callable[[Path, list], None]
    suite: str
    expectation: str
    column: str | None
    observed: str = ""  # fragment of FailedExpectation.observed
    examples: tuple[str, ...] = ()  # each must be among FailedExpectation.examples
    config: dict = field(default_factory=dict)


def _truncated(root: Path, rows) -> None:
    _rewrite_attr(root, rows, count=N + 3)  # the count line promises 3 more rows than the file holds


def _value_2(root: Path, rows) -> None:
    _rewrite_attr(root, _set_value(rows, BAD, "Smiling", 2))


def _value_3_in_01_file(root: Path, rows) -> None:
    _rewrite_attr(root, _set_value(rows, BAD, "Male", 3), encoding="01")


def _duplicated_id(root: Path, rows) -> None:
    rows = list(rows)
    rows[BAD + 1] = (BAD_ID, rows[BAD + 1][1])
    _rewrite_attr(root, rows)


def _unsafe_id(bad: str) -> Callable[[Path, list], None]:
    def build(root: Path, rows) -> None:
        rows = list(rows)
        rows[BAD] = (bad, rows[BAD][1])
        _rewrite_attr(root, rows)
        write_partition_file(root / PART, {i: 0 for i, _ in rows})
    return build


def _partition_value_3(root: Path, rows) -> None:
    write_partition_file(root / PART, {i: 0 for i, _ in rows} | {BAD_ID: 3})


def _absent_images(root: Path, rows) -> None:
    for image_id, _ in rows[: N - 4]:  # 8 of 12 images gone
        (root / "img_align_celeba" / image_id).unlink()


def _broken_image(kind: str) -> Callable[[Path, list], None]:
    def build(root: Path, rows) -> None:
        write_broken_image(root / "img_align_celeba" / BAD_ID, kind)
    return build


CHECK_CASES = {
    "truncated_attribute_file": CheckCase(_truncated, "celeba_attributes", "expect_table_row_count_to_equal", None,
                                          observed=f"observed {N}, expected {N + 3}"),
    "value_2_in_a_pm1_file": CheckCase(_value_2, "celeba_attributes", "expect_column_values_to_be_in_set", "Smiling",
                                       observed=f"1 of {N} rows", examples=(f"{BAD_ID}: 2",)),
    "value_3_in_a_0_1_file": CheckCase(_value_3_in_01_file, "celeba_attributes", "expect_column_values_to_be_in_set",
                                       "Male", observed=f"1 of {N} rows", examples=(f"{BAD_ID}: 3",)),
    "duplicated_image_id": CheckCase(_duplicated_id, "celeba_attributes", "expect_column_values_to_be_unique",
                                     "image_id", observed=f"2 of {N} rows", examples=(BAD_ID,)),
    "id_with_dot_dot": CheckCase(_unsafe_id("../000004.jpg"), "celeba_attributes",
                                 "expect_column_values_to_match_regex", "image_id", examples=("../000004.jpg",)),
    "id_with_separator": CheckCase(_unsafe_id("sub/000004.jpg"), "celeba_attributes",
                                   "expect_column_values_to_match_regex", "image_id", examples=("sub/000004.jpg",)),
    "partition_value_3": CheckCase(_partition_value_3, "celeba_partition", "expect_column_values_to_be_in_set",
                                   "partition", examples=(f"{BAD_ID}: 3",)),
    "absent_images_beyond_bound": CheckCase(_absent_images, "image_manifest", "expect_column_values_to_be_in_set",
                                            "exists", observed=f"8 of {N} rows", examples=("000001.jpg",),
                                            config={"max_absent_fraction": 0.5}),
    **{f"{kind}_image_beyond_bound": CheckCase(_broken_image(kind), "image_manifest",
                                               "expect_column_values_to_be_in_set", "decodable",
                                               observed=f"1 of {N} rows", examples=(BAD_ID,))
       for kind in BROKEN_IMAGE_KINDS},
}


def _critical(report: CheckReport, suite: str, expectation: str, column: str | None) -> FailedExpectation:
    found = [f for f in report.critical if (f.suite, f.expectation, f.column) == (suite, expectation, column)]
    assert len(found) == 1, report.to_markdown()
    return found[0]


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_bad_data_fails_a_critical_check(dataset, case: str) -> None:
    root, rows = dataset
    spec = CHECK_CASES[case]
    spec.build(root, rows)
    report = validate(_config(root, **spec.config)).report
    assert not report.success
    failure = _critical(report, spec.suite, spec.expectation, spec.column)
    assert failure.severity == CRITICAL and failure.description
    assert spec.observed in failure.observed
    for example in spec.examples:
        assert example in failure.examples, failure
    markdown = report.to_markdown(critical_only=True)  # what DataCheckError and the UI artifact show
    assert spec.expectation in markdown and spec.observed in markdown


def test_unsafe_id_is_never_opened_and_counts_as_absent(dataset) -> None:
    root, rows = dataset
    _unsafe_id("../000004.jpg")(root, rows)
    shutil.copy(root / "img_align_celeba" / BAD_ID, root / BAD_ID)  # what "../000004.jpg" would reach
    manifest = validate(_config(root)).manifest.set_index("image_id")
    assert not manifest.at["../000004.jpg", "exists"]
    assert manifest.at["../000004.jpg", "error"].startswith("unsafe id")


def test_absent_images_under_the_bound_are_reported_and_pass(dataset) -> None:
    root, rows = dataset
    _absent_images(root, rows)
    report = validate(_config(root, max_absent_fraction=0.95)).report
    assert report.success and report.stats["absent"] == N - 4 and report.stats["existing"] == 4


def _split_data(config: PipelineConfig, result: Validation, run_dir: Path, monkeypatch) -> pd.DataFrame:
    """The flow's split-data task body, run without a Prefect run context (its logger replaced)."""
    import tasks.data

    monkeypatch.setattr(tasks.data, "get_run_logger", lambda: logging.getLogger("test_bad_input"))
    return pd.read_csv(tasks.data.split_data.fn(config, result.tables, result.manifest, run_dir))


@pytest.mark.parametrize("kind", BROKEN_IMAGE_KINDS)
def test_broken_image_under_the_bound_is_excluded_and_reported(dataset, kind: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root, rows = dataset
    _broken_image(kind)(root, rows)
    config = _config(root, max_undecodable_fraction=0.2)  # 1 of 12 is under the bound
    result = validate(config)
    assert result.report.success, result.report.to_markdown()
    assert result.report.stats["undecodable"] == 1
    row = result.manifest.set_index("image_id").loc[BAD_ID]
    assert row["exists"] and not row["decodable"] and row["error"]  # reported with the decoder's error
    splits = _split_data(config, result, tmp_path, monkeypatch)
    assert BAD_ID not in set(splits["image_id"]) and len(splits) == N - 1  # excluded, the run goes on


# --- unusual but readable images: a documented choice, not an error -----------------------------------

UNUSUAL = {  # case -> (Pillow mode, (width, height), the manifest warning it raises)
    "grayscale": ("L", (178, 218), "mode"),
    "cmyk": ("CMYK", (178, 218), "mode"),
    "rgba": ("RGBA", (178, 218), "mode"),
    "wrong_size": ("RGB", (100, 120), "width"),
}


@pytest.mark.parametrize("case", sorted(UNUSUAL))
def test_unusual_images_are_warnings_and_still_load_as_rgb(dataset, case: str) -> None:
    """The rule as implemented: the image_manifest suite flags a mode other than RGB and a size other
    than 178x218 as *warnings* (the run goes on); ``dataset.decode_and_resize`` decodes any of them to 3
    channels (grey replicated, CMYK converted, alpha dropped) and crops/resizes to the model's size."""
    from recognize_me.data.dataset import make_dataset

    root, _ = dataset
    mode, size, column = UNUSUAL[case]
    path = root / "img_align_celeba" / BAD_ID
    write_image(path, size=size, mode=mode)  # ".jpg" name; RGBA is written as PNG bytes
    report = validate(_config(root)).report
    assert report.success and report.critical == []
    warning = [f for f in report.warnings if f.column == column]
    assert len(warning) == 1, report.to_markdown()
    expected = f"{BAD_ID}: {mode}" if column == "mode" else f"{BAD_ID}: {size[0]}"
    assert warning[0].examples == [expected]
    if column == "width":
        assert report.stats["wrong_size"] == 1
    images = next(iter(make_dataset([str(path)], None, image_size=(32, 32), batch_size=1))).numpy()
    assert images.shape == (1, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    """CelebA images with alpha keep the colour under a transparent pixel (TF drops the channel); the
    user's photos are composited on white instead (``photos.load_rgb``, tested in ``test_photos``)."""
    from recognize_me.data.dataset import make_dataset

    path = tmp_path / "transparent.png"
    Image.new("RGBA", (16, 16), (200, 10, 10, 0)).save(path)
    images = next(iter(make_dataset([str(path)], None, image_size=(8, 8), crop="none", batch_size=1))).numpy()
    np.testing.assert_allclose(images[0, 0, 0], np.array([200, 10, 10]) / 255.0, atol=1e-6)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(40, 40), (100, 100)])  # Pillow's warning band (> limit) and error band (> 2x)
def test_decompression_bomb_is_undecodable_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       size: tuple[int, int]) -> None:
    folder = tmp_path / "img"
    write_image(folder / "000001.jpg", size=(20, 20))
    write_image(folder / "000002.jpg", size=size)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    manifest = inventory_images(folder, ["000001.jpg", "000002.jpg"], workers=2).set_index("image_id")
    assert manifest.at["000001.jpg", "decodable"]
    assert manifest.at["000002.jpg", "exists"] and not manifest.at["000002.jpg", "decodable"]
    error = manifest.at["000002.jpg", "error"]
    assert error.startswith("DecompressionBombError") and f"{size[0] * size[1]} pixels" in error


# --- the user's photos ---------------------------------------------------------------------------

class _EveryImageIsAFace:
    """A stand-in face cropper that frames every photo, so folder-size cases need no detectable face."""

    def crop(self, img: Image.Image):
        from recognize_me.me.align import REASON_FOUND, AlignResult

        return AlignResult(image=img.convert("RGB").resize((178, 218)), box=(0, 0, 10, 10), n_faces=1,
                           reason=REASON_FOUND, detector="stub", confidence=1.0)


def _photo_folder(folder: Path, n: int, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + n):
        write_image(folder / f"p{k:02d}.png", size=(60, 60), seed=k)
    return folder


@pytest.mark.parametrize("n_me", [0, 2])
def test_empty_or_too_small_me_folder_fails_the_photo_check(tmp_path: Path, n_me: int) -> None:
    from recognize_me.data.checks import check_photos
    from recognize_me.me.photo_set import PhotoSources, prepare_photos

    me = _photo_folder(tmp_path / "me", n_me)
    others = _photo_folder(tmp_path / "others", 4, start=50)
    photos = prepare_photos(PhotoSources(me, others), tmp_path / "out", seed=0, cropper=_EveryImageIsAFace())
    report = check_photos(photos.to_manifest(), min_me=3)
    assert not report.success
    failure = _critical(report, "photos", "expect_column_sum_to_be_between", "is_me")
    assert failure.observed == f"observed {n_me}, expected >= 3"
    assert "expect_column_sum_to_be_between" in report.to_markdown(critical_only=True)


def test_missing_me_folder_is_named(tmp_path: Path) -> None:
    from recognize_me.me.photo_set import PhotoSources, prepare_photos

    others = _photo_folder(tmp_path / "others", 2)
    with pytest.raises(FileNotFoundError, match="photo folder not found: .*nowhere"):
        prepare_photos(PhotoSources(tmp_path / "nowhere", others), tmp_path / "out", seed=0,
                       cropper=_EveryImageIsAFace())


def test_me_photo_without_a_face_is_rejected_with_a_reason(tmp_path: Path) -> None:
    from recognize_me.me.photo_set import REJECTED_CSV, PhotoSources, prepare_photos

    me = tmp_path / "me"
    me.mkdir()
    Image.new("RGB", (200, 200), "white").save(me / "blank.png")
    write_broken_image(me / "broken.jpg", "truncated")
    others = _photo_folder(tmp_path / "others", 1)
    photos = prepare_photos(PhotoSources(me, others), tmp_path / "out", seed=0)  # the real MTCNN aligner
    reasons = {r.path.name: r.reason for r in photos.rejected}
    assert reasons["blank.png"] == "no face found"
    assert reasons["broken.jpg"].startswith("cannot decode image")
    assert "blank.png" not in set(photos.table["path"].map(lambda p: Path(p).name))
    written = pd.read_csv(tmp_path / "out" / REJECTED_CSV)
    assert {"blank.png", "broken.jpg"} <= set(written["path"].map(lambda p: Path(p).name))


# --- the config -----------------------------------------------------------------------------------

def test_mistyped_config_value_is_rejected_by_field_name(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        PipelineConfig(celeba_dir=tmp_path, epochs="five")
    assert [e["loc"] for e in info.value.errors()] == [("epochs",)]


@pytest.mark.slow  # starts the console script in a fresh process
def test_cli_train_with_mistyped_epochs_exits_2_naming_the_field(tmp_path: Path) -> None:
    """The installed console script, as a user runs it (no flow starts: the config is checked first)."""
    script = Path(sys.executable).with_name("recognize-me")
    done = subprocess.run([str(script), "train", "--celeba-dir", str(tmp_path), "--epochs", "five"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "invalid configuration" in done.stderr and "epochs" in done.stderr
    assert not (tmp_path / "artifacts").exists()  # no run folder was created


# --- through the whole flow (slow) -----------------------------------------------------------------

def _copy_demo(demo: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in (ATTR, PART, "identity_CelebA.txt"):
        shutil.copy(demo / name, dest / name)
    return dest


def _flow_truncated(demo: Path, dest: Path) -> dict:
    data = _copy_demo(demo, dest)
    lines = (data / ATTR).read_bytes().split(b"\r\n")
    lines[0] = str(int(lines[0]) + 5).encode()
    (data / ATTR).write_bytes(b"\r\n".join(lines))
    return {"celeba_dir": data, "images_dir": demo / "img_align_celeba"}


def _flow_value_2(demo: Path, dest: Path) -> dict:
    data = _copy_demo(demo, dest)
    lines = (data / ATTR).read_bytes().split(b"\r\n")
    lines[5] = lines[5][:-2] + b" 2"  # last attribute of the 4th image becomes 2
    (data / ATTR).write_bytes(b"\r\n".join(lines))
    return {"celeba_dir": data, "images_dir": demo / "img_align_celeba"}


def _flow_corrupt_images(demo: Path, dest: Path) -> dict:
    data = _copy_demo(demo, dest)
    shutil.copytree(demo / "img_align_celeba", data / "img_align_celeba")
    for image_id, kind in zip(["000001.jpg", "000002.jpg", "000003.jpg"], BROKEN_IMAGE_KINDS, strict=True):
        write_broken_image(data / "img_align_celeba" / image_id, kind)  # 3 of 240 > 0.1%
    return {"celeba_dir": data}


FLOW_CASES = {
    "truncated_attribute_file": (_flow_truncated, "expect_table_row_count_to_equal"),
    "value_2": (_flow_value_2, "000004.jpg"),
    "corrupt_images_beyond_bound": (_flow_corrupt_images, "000001.jpg"),
}


@pytest.mark.flow
@pytest.mark.parametrize("case", sorted(FLOW_CASES))
def test_flow_stops_before_any_model_and_keeps_the_champion(prefect_server, demo_data, tmp_path: Path,
                                                            case: str) -> None:
    from flows.train_all import train_all
    from recognize_me.data.check_report import DataCheckError
    from recognize_me.registry import POINTER, Candidate, ModelRegistry

    out = tmp_path / "out"
    registry = ModelRegistry(out / "registry")
    fake = tmp_path / "fake_model"
    fake.mkdir()
    (fake / "model.keras").write_bytes(b"not really a model")
    (fake / "metrics.json").write_text('{"mean_accuracy": 0.5}')
    registry.consider(Candidate(task="celeba", model_dir=fake, metric="mean_accuracy", value=0.5,
                                test_set="seeded-test-set", lineage={"run_id": "seed"}))
    pointer = registry.task_dir("celeba") / POINTER
    before = pointer.read_bytes()
    build, expected = FLOW_CASES[case]
    config = PipelineConfig(output_root=out, image_size=(32, 32), epochs=1, batch_size=32, seed=7,
                            models=["baseline_cnn"], n_workers=1, **build(demo_data, tmp_path / "data"))

    with pytest.raises(DataCheckError) as info:
        train_all(config=config)
    assert expected in str(info.value)
    assert info.value.report.critical
    run_dirs = [p for p in out.iterdir() if p.name not in {"registry", "cache"}]  # cache: the inventory's rows
    assert len(run_dirs) == 1 and not (run_dirs[0] / "models").exists()
    assert pointer.read_bytes() == before
    assert [v["version"] for v in registry.versions("celeba")] == [1]
    assert len(registry.decisions("celeba")) == 1

"""Data checks (Great Expectations 1.x) on small frames built here."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from recognize_me.data.checks import (
    CheckReport,
    DataCheckError,
    FailedExpectation,
    check_celeba,
    check_photos,
    load_suite,
    raise_on_critical,
)

NAMES = ("Bald", "Smiling")
# attribute suite: 5 static + 2 per attribute; partition suite: 6; manifest suite: 5
ALL_EXPECTATIONS = 5 + 2 * len(NAMES) + 6 + 5


def ids(n: int) -> list[str]:
    return [f"{i:06d}.jpg" for i in range(1, n + 1)]


def attributes(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"image_id": ids(n), **{a: rng.integers(0, 2, n).astype("int8") for a in NAMES}})


def partition(image_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": image_ids, "partition": [i % 3 for i in range(len(image_ids))]})


def manifest(image_ids: list[str], *, absent: int = 0, undecodable: int = 0) -> pd.DataFrame:
    n = len(image_ids)
    exists = np.array([i >= absent for i in range(n)])
    decodable = exists & np.array([i >= absent + undecodable for i in range(n)])
    return pd.DataFrame({
        "image_id": image_ids, "exists": exists, "decodable": decodable,
        "width": np.where(decodable, 178, -1), "height": np.where(decodable, 218, -1),
        "mode": np.where(decodable, "RGB", ""), "bytes": np.where(exists, 9000, 0),
        "error": np.where(exists & ~decodable, "cannot identify image file", ""),
    })


def run(attrs: pd.DataFrame | None = None, part: pd.DataFrame | None | str = "auto",
        man: pd.DataFrame | None = None, **kwargs) -> CheckReport:
    attrs = attributes() if attrs is None else attrs
    if isinstance(part, str):
        part = partition(list(attrs["image_id"]))
    man = manifest(list(attrs["image_id"])) if man is None else man
    kwargs.setdefault("declared_rows", len(attrs))
    kwargs.setdefault("attribute_names", NAMES)
    return check_celeba(attrs, part, man, **kwargs)


def only(report: CheckReport, expectation: str, column: str | None) -> FailedExpectation:
    found = [f for f in report.failures if f.expectation == expectation and f.column == column]
    assert len(found) == 1, report.to_markdown()
    return found[0]


def test_valid_frames_pass():
    report = run()
    assert report.success and report.failures == [], report.to_markdown()
    assert report.stats["attribute_rows"] == 6 and report.stats["unpartitioned"] == 0
    assert report.stats["expectations"] == ALL_EXPECTATIONS
    assert report.to_markdown() == f"All {report.stats['expectations']} expectations passed."
    assert report.data_docs_index is None
    raise_on_critical(report)  # does not raise


def test_invalid_attribute_value_names_column_and_image():
    attrs = attributes()
    attrs.loc[1, "Smiling"] = 2
    report = run(attrs)
    assert not report.success
    failure = only(report, "expect_column_values_to_be_in_set", "Smiling")
    assert failure.severity == "critical" and failure.suite == "celeba_attributes"
    assert failure.examples == ["000002.jpg: 2"]
    assert failure.observed.startswith("1 of 6 rows")


def test_duplicated_image_id():
    attrs = attributes()
    attrs.loc[3, "image_id"] = "000002.jpg"
    report = run(attrs, part=partition(ids(6)))
    failure = only(report, "expect_column_values_to_be_unique", "image_id")
    assert not report.success and failure.examples == ["000002.jpg"]


@pytest.mark.parametrize("bad", ["../x.jpg", "a/b.jpg", "a\\b.jpg", "x..jpg", "", "x.jpg\n"])
def test_unsafe_image_id(bad):
    attrs = attributes()
    attrs.loc[2, "image_id"] = bad
    report = run(attrs)
    failure = only(report, "expect_column_values_to_match_regex", "image_id")
    assert not report.success and failure.examples == [bad]


def test_safe_image_ids_pass():
    attrs = attributes(3)
    attrs["image_id"] = ["000001.jpg", "my-photo_2.png", "IMG_0003"]
    assert run(attrs).success


def test_null_attribute_value():
    attrs = attributes()
    attrs["Bald"] = attrs["Bald"].astype("Int8")
    attrs.loc[4, "Bald"] = pd.NA
    report = run(attrs)
    failure = only(report, "expect_column_values_to_not_be_null", "Bald")
    assert not report.success and failure.examples == ["000005.jpg"]


def test_truncated_file_fails_row_count():
    report = run(declared_rows=202599)
    failure = only(report, "expect_table_row_count_to_equal", None)
    assert not report.success and failure.observed == "observed 6, expected 202599"


def test_no_declared_count_leaves_row_count_out():
    report = run(declared_rows=None)
    assert report.success
    assert report.stats["expectations"] == ALL_EXPECTATIONS - 1
    assert "declared_rows" not in report.stats


def test_missing_attribute_column_is_a_schema_failure():
    report = run(attribute_names=(*NAMES, "Young"))
    failure = only(report, "expect_table_columns_to_match_set", None)
    assert not report.success and failure.examples == ["missing Young"]
    assert not any(f.column == "Young" for f in report.failures)  # no per-column errors on top


def test_partition_value_out_of_range():
    part = partition(ids(6))
    part.loc[4, "partition"] = 3
    report = run(part=part)
    failure = only(report, "expect_column_values_to_be_in_set", "partition")
    assert not report.success and failure.suite == "celeba_partition"
    assert failure.examples == ["000005.jpg: 3"]


def test_attribute_id_missing_from_partition():
    report = run(part=partition(ids(5)))
    failure = only(report, "expect_column_values_to_be_in_set", "in_partition")
    assert not report.success and failure.examples == ["000006.jpg"]
    assert report.stats["unpartitioned"] == 1


def test_partition_with_unknown_id_is_a_warning():
    report = run(part=partition([*ids(6), "999999.jpg"]))
    failure = only(report, "expect_column_values_to_be_in_set", "in_attributes")
    assert report.success and failure in report.warnings and failure.examples == ["999999.jpg"]


def test_no_partition_file_skips_the_partition_suite():
    report = run(part=None)
    assert report.success and "partition_rows" not in report.stats
    assert report.stats["expectations"] == ALL_EXPECTATIONS - 6


def test_undecodable_over_the_bound_is_critical():
    report = run(man=manifest(ids(6), undecodable=1), max_undecodable_fraction=0.1)
    failure = only(report, "expect_column_values_to_be_in_set", "decodable")
    assert not report.success and failure.severity == "critical"
    assert failure.examples == ["000001.jpg"]
    assert report.stats["undecodable"] == 1


def test_undecodable_under_the_bound_passes():
    report = run(man=manifest(ids(6), undecodable=1), max_undecodable_fraction=0.2)
    assert report.success and report.failures == []


def test_absent_fraction_over_the_bound_is_critical():
    report = run(man=manifest(ids(6), absent=4), max_absent_fraction=0.5)
    failure = only(report, "expect_column_values_to_be_in_set", "exists")
    assert not report.success and "4 of 6 rows" in failure.observed
    # absent images are not reported as undecodable
    assert not any(f.column == "decodable" for f in report.failures)


def test_absent_fraction_under_the_bound_passes():
    report = run(man=manifest(ids(6), absent=4))  # default bound 0.95
    assert report.success and report.stats["absent"] == 4


def test_wrong_size_is_only_a_warning():
    man = manifest(ids(6))
    man.loc[2, "width"] = 100
    report = run(man=man)
    assert report.success and report.critical == []
    failure = only(report, "expect_column_values_to_be_in_set", "width")
    assert report.warnings == [failure] and failure.examples == ["000003.jpg: 100"]
    raise_on_critical(report)  # warnings never raise


def test_expected_size_is_a_parameter():
    report = run(expected_size=(100, 218))
    assert {f.column for f in report.warnings} == {"width"}


def test_data_docs_written(tmp_path):
    report = run(docs_dir=tmp_path / "docs")
    assert report.data_docs_index == (tmp_path / "docs" / "index.html").resolve()
    html = report.data_docs_index.read_text()
    assert "celeba_attributes" in html and "image_manifest" in html


def test_markdown_dict_and_error():
    attrs = attributes()
    attrs.loc[1, "Bald"] = -5
    report = run(attrs)
    markdown = report.to_markdown()
    assert "expect_column_values_to_be_in_set" in markdown and "000002.jpg: -5" in markdown
    assert json.loads(json.dumps(report.to_dict()))["failures"][0]["column"] == "Bald"
    with pytest.raises(DataCheckError) as caught:
        raise_on_critical(report)
    assert caught.value.report is report and "000002.jpg: -5" in str(caught.value)
    assert pickle.loads(pickle.dumps(caught.value)).report == report


def test_missing_suite_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="celeba_attributes.json"):
        run(suites_dir=tmp_path)


def test_load_suite_expands_templates_and_drops_unset_parameters():
    suite = load_suite("celeba_attributes", {"declared_rows": None, "expected_columns": ["image_id", "A"]},
                       attributes=["A", "B"])
    types = [e["type"] for e in suite["expectations"]]
    assert "expect_table_row_count_to_equal" not in types
    assert [e["kwargs"]["column"] for e in suite["expectations"][-4:]] == ["A", "A", "B", "B"]
    assert "per_attribute_column" not in suite


# --- photos -----------------------------------------------------------------------------------

def photos(me: int = 3, other: int = 3) -> pd.DataFrame:
    n = me + other
    return pd.DataFrame({
        "path": [f"photos/{i}.jpg" for i in range(n)], "label": ["me"] * me + ["other"] * other,
        "sha256": [f"{i:064x}" for i in range(n)], "split": ["train", "test"] * (n // 2) + ["train"] * (n % 2),
        "decodable": True, "width": 640, "height": 480,
    })


def test_photos_pass():
    report = check_photos(photos(), min_me=3)
    assert report.success and report.failures == [] and report.stats["me"] == 3


def test_too_few_photos_of_me_is_critical():
    report = check_photos(photos(me=2), min_me=5)
    failure = only(report, "expect_column_sum_to_be_between", "is_me")
    assert not report.success and failure.observed == "observed 2, expected >= 5"


def test_same_image_in_train_and_test_is_critical():
    frame = photos()
    frame.loc[1, "sha256"] = frame.loc[0, "sha256"]  # rows 0 (train) and 1 (test)
    report = check_photos(frame, min_me=3)
    failure = only(report, "expect_column_values_to_be_in_set", "splits_per_sha256")
    assert not report.success and failure.examples == ["photos/0.jpg: 2", "photos/1.jpg: 2"]


def test_duplicate_within_one_split_is_not_a_leak():
    frame = photos()
    frame.loc[2, "sha256"] = frame.loc[0, "sha256"]  # both train
    assert check_photos(frame, min_me=3).success

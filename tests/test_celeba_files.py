"""recognize_me.data.celeba_files: every accepted annotation layout, and every rejected one (synthetic files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from celeba_fixtures import (
    make_rows,
    rows_frame,
    write_csv_attr_file,
    write_identity_file,
    write_official_attr_file,
    write_partition_file,
)

from recognize_me.data.attributes import CELEBA_ATTRIBUTES
from recognize_me.data.celeba_files import (
    CelebaFormatError,
    CelebaPaths,
    load_celeba_tables,
    locate_celeba_files,
    read_attribute_file,
    read_identity_file,
    read_partition_file,
)

ROWS = make_rows(6)
EXPECTED = rows_frame(ROWS)


def _with_row(k: int, values: list) -> list:
    rows = list(ROWS)
    rows[k] = (ROWS[k][0], values)
    return rows


def _with_value(k: int, attribute: str, value: int | str) -> list:
    values = list(ROWS[k][1])
    values[CELEBA_ATTRIBUTES.index(attribute)] = value
    return _with_row(k, values)


# --- accepted layouts ---------------------------------------------------------------------------

LAYOUTS = {
    "official": lambda p: write_official_attr_file(p / "list_attr_celeba.txt", ROWS),
    "official_lf": lambda p: write_official_attr_file(p / "list_attr_celeba.txt", ROWS, crlf=False),
    "no_count_line": lambda p: write_official_attr_file(p / "list_attr_celeba.txt", ROWS, count_line=False),
    "csv": lambda p: write_csv_attr_file(p / "list_attr_celeba.csv", ROWS),
    "pandas_export": lambda p: write_csv_attr_file(p / "list_attr_celeba.csv", ROWS, index_column=True),
    "values_01": lambda p: write_official_attr_file(p / "list_attr_celeba.txt", ROWS, encoding="01"),
    "csv_01": lambda p: write_csv_attr_file(p / "list_attr_celeba.csv", ROWS, encoding="01"),
    "header_image_id": lambda p: write_official_attr_file(p / "a.txt", ROWS, count_line=False,
                                                          header_image_id=True),
    "header_image_id_count": lambda p: write_official_attr_file(p / "a.txt", ROWS, header_image_id=True),
}
ENCODING = {"values_01": "01", "csv_01": "01"}
DECLARED = {"official": 6, "official_lf": 6, "values_01": 6, "header_image_id_count": 6}


def test_official_fixture_looks_like_the_distributed_file(tmp_path: Path) -> None:
    raw = LAYOUTS["official"](tmp_path).read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[0] == b"6"
    assert lines[1].endswith(b"Young ") and lines[1].startswith(b"5_o_Clock_Shadow Arched_Eyebrows")
    assert lines[2].startswith(b"000001.jpg -1 -1") and b"  1" in lines[3]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_gives_the_same_binary_frame(tmp_path: Path, layout: str) -> None:
    path = LAYOUTS[layout](tmp_path)
    table = read_attribute_file(path)
    pd.testing.assert_frame_equal(table.frame, EXPECTED, check_dtype=False)
    assert list(table.frame.columns) == ["image_id", *CELEBA_ATTRIBUTES]
    assert all(table.frame[a].dtype == np.int8 for a in CELEBA_ATTRIBUTES)
    assert table.frame["image_id"].tolist() == [i for i, _ in ROWS]
    assert set(np.unique(table.frame[list(CELEBA_ATTRIBUTES)].to_numpy())) == {0, 1}
    assert table.encoding == ENCODING.get(layout, "pm1")
    assert table.declared_rows == DECLARED.get(layout)
    assert table.source == path


def test_all_layouts_are_equal_to_each_other(tmp_path: Path) -> None:
    frames = []
    for name, write in LAYOUTS.items():
        folder = tmp_path / name
        folder.mkdir()
        frames.append(read_attribute_file(write(folder)).frame)
    for frame in frames[1:]:
        assert frame.equals(frames[0])


def test_attribute_subset_header_is_read_in_file_order(tmp_path: Path) -> None:
    names = ["Smiling", "Male", "Young"]
    rows = [(i, [1, 0, 1]) for i in ("a.jpg", "b.jpg")] + [("c.jpg", [0, 1, 0])]
    table = read_attribute_file(write_official_attr_file(tmp_path / "a.txt", rows, attributes=names))
    assert list(table.frame.columns) == ["image_id", *names]
    assert table.frame["Male"].tolist() == [0, 0, 1]


def test_value_2_is_kept_for_the_data_checks(tmp_path: Path) -> None:
    table = read_attribute_file(write_official_attr_file(tmp_path / "a.txt", _with_value(4, "Male", 2)))
    assert table.frame.loc[4, "Male"] == 2
    assert table.frame.loc[4, "image_id"] == "000005.jpg"
    assert table.encoding == "pm1"
    # every other cell is untouched
    expected = EXPECTED.copy()
    expected.loc[4, "Male"] = 2
    pd.testing.assert_frame_equal(table.frame, expected, check_dtype=False)


def test_count_line_larger_than_rows_is_kept(tmp_path: Path) -> None:
    table = read_attribute_file(write_official_attr_file(tmp_path / "a.txt", ROWS, count=202599))
    assert table.declared_rows == 202599
    assert len(table.frame) == 6


# --- rejected files -----------------------------------------------------------------------------

def _error(path: Path) -> str:
    with pytest.raises(CelebaFormatError) as info:
        read_attribute_file(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_row_with_too_few_values(tmp_path: Path) -> None:
    path = write_official_attr_file(tmp_path / "a.txt", _with_row(2, list(ROWS[2][1])[:-1]))
    message = _error(path)
    assert "line 5 " in message  # count line, header, rows 0 and 1, then the short row
    assert "40 values" in message and "expected 41" in message


@pytest.mark.parametrize(("row", "count_line", "line"), [(3, True, 6), (5, True, 8), (3, False, 5), (0, True, 3),
                                                         (0, False, 2)])
def test_row_with_too_many_values(tmp_path: Path, row: int, count_line: bool, line: int) -> None:
    path = write_official_attr_file(tmp_path / "a.txt", _with_row(row, [*ROWS[row][1], 1]), count_line=count_line)
    message = _error(path)
    assert f"line {line} " in message
    assert "42 values" in message and "expected 41" in message


@pytest.mark.parametrize(("row", "line"), [(0, 2), (3, 5)])
def test_csv_row_with_too_many_or_too_few_values(tmp_path: Path, row: int, line: int) -> None:
    path = write_csv_attr_file(tmp_path / "many.csv", ROWS)
    lines = path.read_text().splitlines()
    lines[1 + row] += ",1"
    path.write_text("\n".join(lines) + "\n")
    message = _error(path)
    assert f"line {line} " in message and "42 values" in message

    lines[1 + row] = lines[1 + row].rsplit(",", 2)[0]
    path.write_text("\n".join(lines) + "\n")
    message = _error(path)
    assert f"line {line} " in message and "40 values" in message


def test_unknown_attribute_in_header(tmp_path: Path) -> None:
    names = list(CELEBA_ATTRIBUTES)
    names[5] = "Sunglasses"
    message = _error(write_official_attr_file(tmp_path / "a.txt", ROWS, attributes=names))
    assert "Sunglasses" in message and "unknown" in message


def test_unknown_attribute_in_csv_header(tmp_path: Path) -> None:
    names = list(CELEBA_ATTRIBUTES)
    names[0] = "Five_O_Clock"
    message = _error(write_csv_attr_file(tmp_path / "a.csv", ROWS, attributes=names))
    assert "Five_O_Clock" in message


@pytest.mark.parametrize("csv", [False, True])
def test_repeated_attribute(tmp_path: Path, csv: bool) -> None:
    names = list(CELEBA_ATTRIBUTES)
    names[5] = "Male"
    if csv:
        path = write_csv_attr_file(tmp_path / "a.csv", ROWS, attributes=names)
    else:
        path = write_official_attr_file(tmp_path / "a.txt", ROWS, attributes=names)
    message = _error(path)
    assert "repeats" in message and "'Male'" in message
    assert "Male.1" not in message


@pytest.mark.parametrize("value", ["x", "1.5", "yes"])
def test_non_integer_value(tmp_path: Path, value: str) -> None:
    message = _error(write_official_attr_file(tmp_path / "a.txt", _with_value(4, "Big_Nose", value)))
    assert "line 7" in message and "Big_Nose" in message and "not an integer" in message


def test_non_integer_value_in_csv(tmp_path: Path) -> None:
    message = _error(write_csv_attr_file(tmp_path / "a.csv", _with_value(4, "Young", "x")))
    assert "line 6" in message and "Young" in message


def test_mixing_minus_one_and_zero(tmp_path: Path) -> None:
    message = _error(write_official_attr_file(tmp_path / "a.txt", _with_value(4, "Male", "0")))
    assert "-1" in message and "0" in message and "mixes" in message


@pytest.mark.parametrize("content", [b"", b"\r\n", b"   \n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "list_attr_celeba.txt"
    path.write_bytes(content)
    assert "empty" in _error(path)


def test_count_line_without_header(tmp_path: Path) -> None:
    path = tmp_path / "list_attr_celeba.txt"
    path.write_bytes(b"6\r\n")
    assert "header" in _error(path)


def test_csv_without_image_id(tmp_path: Path) -> None:
    path = write_csv_attr_file(tmp_path / "a.csv", ROWS)
    path.write_text(path.read_text().replace("image_id,", "filename,", 1))
    message = _error(path)
    assert "image_id" in message


def _pandas_index_csv(path: Path, ids: list[str]) -> Path:
    """Exactly what ``DataFrame.to_csv`` writes with the image ids as its unnamed index."""
    lines = ["," + ",".join(CELEBA_ATTRIBUTES)]
    for image_id, (_, values) in zip(ids, ROWS, strict=False):
        lines.append(image_id + "," + ",".join(str(v) for v in values))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pandas_index_csv_is_read(tmp_path: Path) -> None:
    ids = [i for i, _ in ROWS]
    path = _pandas_index_csv(tmp_path / "list_attr_celeba.csv", ids)
    assert path.read_text().startswith(",5_o_Clock_Shadow,Arched_Eyebrows,")
    assert path.read_text().splitlines()[1].startswith("000001.jpg,")
    table = read_attribute_file(path)
    assert table.frame["image_id"].tolist() == ids
    assert list(table.frame.columns) == ["image_id", *CELEBA_ATTRIBUTES]
    assert table.frame.iloc[:, 1:].isin([0, 1]).all().all()


def test_pandas_index_csv_with_row_numbers_is_refused(tmp_path: Path) -> None:
    path = _pandas_index_csv(tmp_path / "a.csv", [str(n) for n in range(len(ROWS))])
    assert "no 'image_id' column" in _error(path)


def test_missing_attribute_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.txt")


# --- partition and identity files ---------------------------------------------------------------

PARTITION = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 1, "000004.jpg": 2}


@pytest.mark.parametrize("csv", [False, True])
def test_partition_file(tmp_path: Path, csv: bool) -> None:
    path = write_partition_file(tmp_path / ("p.csv" if csv else "list_eval_partition.txt"), PARTITION, csv=csv)
    frame = read_partition_file(path)
    assert list(frame.columns) == ["image_id", "partition"]
    assert dict(zip(frame["image_id"], frame["partition"], strict=True)) == PARTITION
    assert frame["partition"].dtype == np.int64


def test_partition_value_outside_0_2_is_kept(tmp_path: Path) -> None:
    frame = read_partition_file(write_partition_file(tmp_path / "p.txt", {**PARTITION, "000005.jpg": 7}))
    assert frame["partition"].tolist()[-1] == 7


@pytest.mark.parametrize(("csv", "line"), [(False, 3), (True, 4)])
def test_partition_non_integer_names_line(tmp_path: Path, csv: bool, line: int) -> None:
    path = write_partition_file(tmp_path / "p.txt", {"a.jpg": 0, "b.jpg": 1, "c.jpg": "val"}, csv=csv)
    with pytest.raises(CelebaFormatError, match=rf"p\.txt: line {line}: partition value 'val'"):
        read_partition_file(path)


def test_partition_csv_with_extra_column(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("image_id,partition,note\na.jpg,0,x\n")
    with pytest.raises(CelebaFormatError, match="image_id,<value>"):
        read_partition_file(path)


def test_partition_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(CelebaFormatError, match="not found"):
        read_partition_file(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(CelebaFormatError, match="empty"):
        read_partition_file(tmp_path / "empty.txt")


@pytest.mark.parametrize("csv", [False, True])
def test_identity_file(tmp_path: Path, csv: bool) -> None:
    identity = {"000001.jpg": 2880, "000002.jpg": 2937, "000003.jpg": 2880}
    frame = read_identity_file(write_identity_file(tmp_path / "identity_CelebA.txt", identity, csv=csv))
    assert list(frame.columns) == ["image_id", "identity"]
    assert frame["identity"].tolist() == [2880, 2937, 2880]
    assert frame["image_id"].tolist() == list(identity)


# --- locating and loading -----------------------------------------------------------------------

def test_locate_official_names(tmp_path: Path) -> None:
    write_official_attr_file(tmp_path / "list_attr_celeba.txt", ROWS)
    write_partition_file(tmp_path / "list_eval_partition.txt", PARTITION)
    write_identity_file(tmp_path / "identity_CelebA.txt", {"000001.jpg": 1})
    (tmp_path / "img_align_celeba").mkdir()
    paths = locate_celeba_files(tmp_path)
    assert paths == CelebaPaths(attr_file=tmp_path / "list_attr_celeba.txt",
                                partition_file=tmp_path / "list_eval_partition.txt",
                                identity_file=tmp_path / "identity_CelebA.txt",
                                images_dir=tmp_path / "img_align_celeba")


def test_locate_kaggle_names_and_nested_folder(tmp_path: Path) -> None:
    write_csv_attr_file(tmp_path / "list_attr_celeba.csv", ROWS)
    write_partition_file(tmp_path / "list_eval_partition.csv", PARTITION, csv=True)
    (tmp_path / "img_align_celeba" / "img_align_celeba").mkdir(parents=True)
    paths = locate_celeba_files(tmp_path)
    assert paths.attr_file == tmp_path / "list_attr_celeba.csv"
    assert paths.partition_file == tmp_path / "list_eval_partition.csv"
    assert paths.identity_file is None
    assert paths.images_dir == tmp_path / "img_align_celeba" / "img_align_celeba"


def test_locate_prefers_txt_and_explicit_paths(tmp_path: Path) -> None:
    write_official_attr_file(tmp_path / "list_attr_celeba.txt", ROWS)
    write_csv_attr_file(tmp_path / "list_attr_celeba.csv", ROWS)
    assert locate_celeba_files(tmp_path).attr_file.name == "list_attr_celeba.txt"
    other = write_csv_attr_file(tmp_path / "elsewhere" / "labels.csv", ROWS)
    paths = locate_celeba_files(None, attr_file=other)
    assert paths.attr_file == other
    assert paths.partition_file is None
    assert paths.images_dir == other.parent / "img_align_celeba"
    explicit = locate_celeba_files(tmp_path, images_dir=tmp_path / "pics")
    assert explicit.images_dir == tmp_path / "pics"


def test_locate_without_attribute_file(tmp_path: Path) -> None:
    with pytest.raises(CelebaFormatError, match="list_attr_celeba"):
        locate_celeba_files(tmp_path)


def test_load_tables_selects_attributes(tmp_path: Path) -> None:
    write_official_attr_file(tmp_path / "list_attr_celeba.txt", ROWS, count=9)
    write_partition_file(tmp_path / "list_eval_partition.txt", PARTITION)
    write_identity_file(tmp_path / "identity_CelebA.txt", {"000001.jpg": 4})
    tables = load_celeba_tables(locate_celeba_files(tmp_path), ("Smiling", "Male"))
    frame = tables.attributes.frame
    assert list(frame.columns) == ["image_id", "Smiling", "Male"]
    pd.testing.assert_frame_equal(frame, EXPECTED[["image_id", "Smiling", "Male"]])
    assert tables.attributes.declared_rows == 9
    assert tables.attributes.encoding == "pm1"
    assert tables.partition is not None and len(tables.partition) == 4
    assert tables.identity is not None and tables.identity["identity"].tolist() == [4]


def test_load_tables_without_partition_or_identity(tmp_path: Path) -> None:
    write_csv_attr_file(tmp_path / "list_attr_celeba.csv", ROWS)
    tables = load_celeba_tables(locate_celeba_files(tmp_path), CELEBA_ATTRIBUTES)
    assert tables.partition is None and tables.identity is None
    assert tables.attributes.frame.equals(EXPECTED)


def test_load_tables_rejects_attribute_absent_from_header(tmp_path: Path) -> None:
    names = ["Male", "Smiling"]
    path = write_official_attr_file(tmp_path / "list_attr_celeba.txt", [("a.jpg", [1, 0])], attributes=names)
    with pytest.raises(CelebaFormatError) as info:
        load_celeba_tables(locate_celeba_files(tmp_path), ("Male", "Young", "Bald"))
    message = str(info.value)
    assert str(path) in message and "Young" in message and "Bald" in message
    assert "'Male'" not in message

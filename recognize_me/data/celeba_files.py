"""Parse the CelebA annotation files in every layout seen in the wild.

Accepted attribute layouts: the official ``list_attr_celeba.txt`` (count line, a header of names with a
trailing space, runs of spaces, CRLF, values -1/1); the same without the count line; CSV with an
``image_id`` column (Kaggle and pandas exports); values as -1/1 or 0/1. Labels become 0/1. A value that
is neither is kept as it was read (e.g. 2) so the data checks can report the row and image id.

Partition: ``list_eval_partition.txt`` (``id 0|1|2``) or its CSV form (``image_id,partition``).
Identity: ``identity_CelebA.txt`` (``id identity``) or CSV (``image_id,identity_id``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recognize_me.data.attributes import CELEBA_ATTRIBUTES


class CelebaFormatError(ValueError):
    """A CelebA file that cannot be read as any accepted layout; the message names file and line."""


@dataclass(frozen=True)
class AttributeTable:
    frame: pd.DataFrame  # image_id + one int8 column per attribute (0/1; invalid values as read)
    declared_rows: int | None  # the count line, when the file has one
    encoding: Literal["pm1", "01"]
    source: Path


_NUMBER = re.compile(r"^\s*\d+\s*$")


def _head_lines(path: Path, n: int = 2) -> list[str]:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = []
        for _ in range(n):
            line = f.readline()
            if not line:
                break
            lines.append(line.rstrip("\r\n"))
    return lines


def _is_csv(first_line: str) -> bool:
    return "," in first_line


def _tokenizer_error(path: Path, err: Exception, header_lines: int) -> CelebaFormatError:
    """Turn pandas' "Expected 41 fields in line 7, saw 42" into a message naming the file's real line."""
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
    if m:
        expected, line, saw = (int(g) for g in m.groups())
        return CelebaFormatError(
            f"{path}: line {line + header_lines} has {saw} values, expected {expected} "
            f"(an image id and one value per attribute)")
    return CelebaFormatError(f"{path}: cannot be parsed: {err}")


def read_attribute_file(path: Path | str) -> AttributeTable:
    """Read an attribute file in any accepted layout; raise CelebaFormatError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise CelebaFormatError(f"{path}: attribute file not found")
    head = _head_lines(path)
    if not head or not head[0].strip():
        raise CelebaFormatError(f"{path}: file is empty")
    declared: int | None = None
    if _is_csv(head[0]):
        frame, header_lines = _read_attr_csv(path), 1
    else:
        skip = 0
        if _NUMBER.match(head[0]):
            declared, skip = int(head[0]), 1
            if len(head) < 2:
                raise CelebaFormatError(f"{path}: has a count line but no header line")
        names = head[skip].split()
        if names and names[0].lower() == "image_id":
            names = names[1:]
        _check_header(path, names)
        header_lines = skip + 1
        try:
            frame = pd.read_csv(path, sep=r"\s+", header=None, skiprows=header_lines,
                                names=["image_id", *names], dtype={"image_id": str}, engine="c")
        except pd.errors.ParserError as err:
            # pandas' line number already counts the skipped count and header lines
            raise _tokenizer_error(path, err, 0) from err
    _check_no_implicit_index(path, frame, header_lines)
    names = [c for c in frame.columns if c != "image_id"]
    _check_complete_rows(path, frame, names, header_lines)
    values, encoding = _to_binary(path, frame[names], header_lines)
    out = pd.concat([frame[["image_id"]].astype({"image_id": str}), values], axis=1)
    return AttributeTable(frame=out, declared_rows=declared, encoding=encoding, source=path)


def _read_attr_csv(path: Path) -> pd.DataFrame:
    raw = [c.strip() for c in _head_lines(path, 1)[0].split(",")]
    dupes = sorted({c for c in raw if c and raw.count(c) > 1})
    if dupes:  # checked before pandas renames repeats to "Male.1"
        raise CelebaFormatError(f"{path}: header repeats attribute(s) {dupes}")
    try:
        frame = pd.read_csv(path, dtype={"image_id": str}, skipinitialspace=True)
    except pd.errors.ParserError as err:
        raise _tokenizer_error(path, err, 0) from err
    _check_no_implicit_index(path, frame, 1)
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = _index_column_as_image_id(frame)
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed:")])
    if "image_id" not in frame.columns:
        raise CelebaFormatError(f"{path}: CSV attribute file has no 'image_id' column "
                                f"(columns: {list(frame.columns)[:5]}...)")
    _check_header(path, [c for c in frame.columns if c != "image_id"])
    return frame


_IMAGE_NAME = re.compile(r"^[^,\s]+\.(jpe?g|png|bmp|webp)$", re.IGNORECASE)


def _index_column_as_image_id(frame: pd.DataFrame) -> pd.DataFrame:
    """``DataFrame.to_csv`` with its index writes an empty first header cell (read back as ``Unnamed: 0``):
    that column is the image id when it has no ``image_id`` column and every value is an image file name."""
    first = frame.columns[0] if len(frame.columns) else None
    if "image_id" in frame.columns or first not in ("", "Unnamed: 0"):
        return frame
    values = frame[first].astype(str)
    if len(values) and values.str.match(_IMAGE_NAME).all():
        return frame.rename(columns={first: "image_id"}).astype({"image_id": str})
    return frame


def _check_no_implicit_index(path: Path, frame: pd.DataFrame, header_lines: int) -> None:
    """pandas silently turns the leading value(s) into the index when the first data row has more values
    than the header names (the other rows then look one value short): report that row instead."""
    if not isinstance(frame.index, pd.RangeIndex):
        line = _head_lines(path, header_lines + 1)[-1]
        saw = len(line.split(",") if _is_csv(line) else line.split())
        raise CelebaFormatError(
            f"{path}: line {header_lines + 1} has {saw} values, expected {len(frame.columns)} "
            f"(an image id and one value per attribute)")


def _check_header(path: Path, names: list[str]) -> None:
    unknown = [n for n in names if n not in CELEBA_ATTRIBUTES]
    if unknown:
        raise CelebaFormatError(f"{path}: header names unknown attribute(s) {unknown}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CelebaFormatError(f"{path}: header repeats attribute(s) {dupes}")
    if not names:
        raise CelebaFormatError(f"{path}: header lists no attributes")


def _check_complete_rows(path: Path, frame: pd.DataFrame, names: list[str], header_lines: int) -> None:
    """Rows with too few values come back with NaN in the last columns: name the first such line."""
    short = frame[names].isna().any(axis=1) | frame["image_id"].isna()
    if short.any():
        i = int(np.flatnonzero(short.to_numpy())[0])
        have = int(frame.iloc[i].notna().sum())
        raise CelebaFormatError(
            f"{path}: line {i + header_lines + 1} has {have} values, expected {len(names) + 1} "
            f"(an image id and one value per attribute); {int(short.sum())} such row(s)")


def _to_binary(path: Path, values: pd.DataFrame, header_lines: int) -> tuple[pd.DataFrame, Literal["pm1", "01"]]:
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() | (numeric != numeric.round())
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise CelebaFormatError(
            f"{path}: line {row + header_lines + 1}, attribute {values.columns[col]}: "
            f"value {values.iat[row, col]!r} is not an integer")
    arr = numeric.to_numpy(dtype=np.int64)
    has_neg1, has_zero = bool((arr == -1).any()), bool((arr == 0).any())
    if has_neg1 and has_zero:
        raise CelebaFormatError(f"{path}: mixes the -1/1 and 0/1 encodings (both -1 and 0 appear)")
    encoding: Literal["pm1", "01"] = "pm1" if has_neg1 else "01"
    out = np.where(arr == -1, 0, arr) if encoding == "pm1" else arr
    out = np.clip(out, -128, 127).astype(np.int8)
    return pd.DataFrame(out, columns=values.columns, index=values.index), encoding


def _read_two_columns(path: Path, names: tuple[str, str], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise CelebaFormatError(f"{path}: {what} file not found")
    head = _head_lines(path, 1)
    if not head:
        raise CelebaFormatError(f"{path}: file is empty")
    try:
        if _is_csv(head[0]):
            frame = pd.read_csv(path, dtype={"image_id": str})
            frame.columns = [str(c).strip() for c in frame.columns]
            if "image_id" not in frame.columns or len(frame.columns) != 2:
                raise CelebaFormatError(f"{path}: CSV {what} file needs columns image_id,<value>, "
                                        f"has {list(frame.columns)}")
            frame.columns = list(names)
            lines_before = 1
        else:
            frame = pd.read_csv(path, sep=r"\s+", header=None, names=list(names),
                                dtype={names[0]: str}, engine="c")
            lines_before = 0
    except pd.errors.ParserError as err:
        raise _tokenizer_error(path, err, 0) from err
    value = pd.to_numeric(frame[names[1]], errors="coerce")
    if value.isna().any():
        i = int(np.flatnonzero(value.isna().to_numpy())[0])
        raise CelebaFormatError(f"{path}: line {i + lines_before + 1}: {what} value "
                                f"{frame[names[1]].iloc[i]!r} is missing or not an integer")
    frame[names[1]] = value.astype(np.int64)
    return frame


def read_partition_file(path: Path | str) -> pd.DataFrame:
    """``image_id, partition`` (0 train, 1 val, 2 test; other values are kept for the checks)."""
    return _read_two_columns(Path(path), ("image_id", "partition"), "partition")


def read_identity_file(path: Path | str) -> pd.DataFrame:
    """``image_id, identity``."""
    return _read_two_columns(Path(path), ("image_id", "identity"), "identity")


@dataclass(frozen=True)
class CelebaPaths:
    attr_file: Path
    partition_file: Path | None
    identity_file: Path | None
    images_dir: Path


def _first_existing(folder: Path | None, names: tuple[str, ...]) -> Path | None:
    if folder is None:
        return None
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def locate_celeba_files(celeba_dir: Path | None, attr_file: Path | None = None,
                        partition_file: Path | None = None, identity_file: Path | None = None,
                        images_dir: Path | None = None) -> CelebaPaths:
    """Resolve explicit paths, else find the official or Kaggle names inside ``celeba_dir``."""
    attr = attr_file or _first_existing(celeba_dir, ("list_attr_celeba.txt", "list_attr_celeba.csv"))
    if attr is None:
        raise CelebaFormatError(f"{celeba_dir}: no list_attr_celeba.txt or list_attr_celeba.csv found")
    part = partition_file or _first_existing(celeba_dir, ("list_eval_partition.txt", "list_eval_partition.csv"))
    ident = identity_file or _first_existing(celeba_dir, ("identity_CelebA.txt", "identity_CelebA.csv"))
    if images_dir is None:
        base = celeba_dir if celeba_dir is not None else attr.parent
        images_dir = base / "img_align_celeba"
        if (images_dir / "img_align_celeba").is_dir():  # the Kaggle zip nests the folder
            images_dir = images_dir / "img_align_celeba"
    return CelebaPaths(attr_file=attr, partition_file=part, identity_file=ident, images_dir=images_dir)


@dataclass(frozen=True)
class CelebaTables:
    attributes: AttributeTable  # restricted to the selected attributes
    partition: pd.DataFrame | None
    identity: pd.DataFrame | None
    paths: CelebaPaths


def load_celeba_tables(paths: CelebaPaths, attribute_names: tuple[str, ...]) -> CelebaTables:
    """Read all annotation files and keep the selected attributes (each must be in the file's header)."""
    table = read_attribute_file(paths.attr_file)
    missing = [a for a in attribute_names if a not in table.frame.columns]
    if missing:
        raise CelebaFormatError(f"{paths.attr_file}: header lacks selected attribute(s) {missing}")
    selected = AttributeTable(frame=table.frame[["image_id", *attribute_names]], declared_rows=table.declared_rows,
                              encoding=table.encoding, source=table.source)
    partition = read_partition_file(paths.partition_file) if paths.partition_file else None
    identity = read_identity_file(paths.identity_file) if paths.identity_file else None
    return CelebaTables(attributes=selected, partition=partition, identity=identity, paths=paths)

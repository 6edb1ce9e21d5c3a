"""recognize_me.me.splits: content-hash splits that stay put when photos are added."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pandas as pd
import pytest

from recognize_me.me.photos import Photo
from recognize_me.me.splits import SPLIT_COLUMNS, assign_splits, split_score, stable_split

FRACTIONS = (0.8, 0.1, 0.1)


def _hash(i: int | str) -> str:
    return hashlib.sha256(f"photo-{i}".encode()).hexdigest()


def _photo(sha: str, label: str = "me", name: str | None = None) -> Photo:
    return Photo(path=Path(f"/photos/{label}/{name or sha[:12]}.jpg"), label=label, sha256=sha, width=112,
                 height=112)


def _hashes_in(split: str, n: int, seed: int = 42, fractions: tuple[float, float, float] = FRACTIONS) -> list[str]:
    """The first ``n`` synthetic hashes that the hash rule puts in ``split``."""
    found: list[str] = []
    i = 0
    while len(found) < n:
        if stable_split(_hash(i), seed, fractions) == split:
            found.append(_hash(i))
        i += 1
    return found


def test_formula_matches_the_documented_rule() -> None:
    sha = _hash(1)
    expected_u = int(hashlib.sha256(f"7:{sha}".encode()).hexdigest()[:16], 16) / 16**16
    assert split_score(sha, 7) == expected_u
    for fractions in [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]:
        want = "train" if expected_u < fractions[0] else "val" if expected_u < sum(fractions[:2]) else "test"
        assert stable_split(sha, 7, fractions) == want


def test_deterministic_and_stable_when_photos_are_added() -> None:
    first = [_hash(i) for i in range(100)]
    before = [stable_split(h, 42, FRACTIONS) for h in first]
    assert before == [stable_split(h, 42, FRACTIONS) for h in first]

    photos = [_photo(h, "others") for h in first]
    grown = photos + [_photo(_hash(f"new-{i}"), "others") for i in range(50)]
    small_frame, big_frame = assign_splits(photos, 42, FRACTIONS), assign_splits(grown, 42, FRACTIONS)
    assert small_frame["split"].tolist() == before
    assert big_frame["split"].tolist()[:100] == before


def test_proportions_follow_fractions() -> None:
    rng = random.Random(0)
    hashes = [f"{rng.getrandbits(256):064x}" for _ in range(5000)]
    for fractions in [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2)]:
        splits = [stable_split(h, 3, fractions) for h in hashes]
        for name, want in zip(("train", "val", "test"), fractions, strict=True):
            assert abs(splits.count(name) / len(splits) - want) <= 0.05, (name, fractions)


def test_seed_changes_assignments() -> None:
    hashes = [_hash(i) for i in range(1000)]
    a = [stable_split(h, 1, (0.5, 0.25, 0.25)) for h in hashes]
    b = [stable_split(h, 2, (0.5, 0.25, 0.25)) for h in hashes]
    assert sum(x != y for x, y in zip(a, b, strict=True)) > 300  # ~62% expected for independent draws


def test_case_of_the_digest_does_not_matter() -> None:
    sha = _hash(5)
    assert split_score(sha.upper(), 42) == split_score(sha, 42)


def test_duplicates_share_a_split() -> None:
    photos = []
    for i in range(200):
        sha = _hash(i)
        photos += [_photo(sha, "others", f"{i}-a"), _photo(sha, "others", f"{i}-copy")]
    frame = assign_splits(photos, 11, (0.4, 0.3, 0.3))
    assert frame.groupby("sha256")["split"].nunique().max() == 1
    assert frame["split"].nunique() == 3  # not trivially all in one split


def test_frame_columns_and_types() -> None:
    frame = assign_splits([_photo(_hash(1)), _photo(_hash(2), "others")], 42, FRACTIONS)
    assert tuple(frame.columns) == SPLIT_COLUMNS
    assert frame["path"].tolist() == [f"/photos/me/{_hash(1)[:12]}.jpg", f"/photos/others/{_hash(2)[:12]}.jpg"]
    assert frame["width"].dtype == "int64" and frame["height"].dtype == "int64"
    assert set(frame["split"]) <= {"train", "val", "test"}
    empty = assign_splits([], 42, FRACTIONS)
    assert tuple(empty.columns) == SPLIT_COLUMNS and len(empty) == 0


@pytest.mark.parametrize("bad", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_refused(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        stable_split(_hash(1), 42, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        assign_splits([_photo(_hash(1))], 42, bad)  # type: ignore[arg-type]


# --- small-set guarantee -----------------------------------------------------------------------------
def _me_splits(frame: pd.DataFrame) -> dict[str, str]:
    mine = frame[frame["label"] == "me"]
    return dict(zip(mine["sha256"], mine["split"], strict=True))


def test_all_me_in_val_get_one_train_and_one_test() -> None:
    hashes = _hashes_in("val", 4)
    by_u = sorted(hashes, key=lambda h: split_score(h, 42))
    frame = assign_splits([_photo(h) for h in hashes] + [_photo(_hash(9), "others")], 42, FRACTIONS)
    got = _me_splits(frame)
    assert got[by_u[0]] == "train"  # smallest u -> train
    assert got[by_u[-1]] == "test"  # largest u -> test
    assert [got[h] for h in by_u[1:-1]] == ["val", "val"]  # the rest stay
    others = frame[frame["label"] == "others"]["split"].tolist()
    assert others == [stable_split(_hash(9), 42, FRACTIONS)]  # other labels never move


def test_all_me_in_train_moves_the_largest_to_test() -> None:
    hashes = _hashes_in("train", 3)
    by_u = sorted(hashes, key=lambda h: split_score(h, 42))
    got = _me_splits(assign_splits([_photo(h) for h in hashes], 42, FRACTIONS))
    assert got == {by_u[0]: "train", by_u[1]: "train", by_u[2]: "test"}


def test_all_me_in_test_moves_the_smallest_to_train() -> None:
    hashes = _hashes_in("test", 3)
    by_u = sorted(hashes, key=lambda h: split_score(h, 42))
    got = _me_splits(assign_splits([_photo(h) for h in hashes], 42, FRACTIONS))
    assert got == {by_u[0]: "train", by_u[1]: "test", by_u[2]: "test"}


def test_guarantee_moves_copies_together() -> None:
    a, b = _hashes_in("val", 2)
    photos = [_photo(a, name="a1"), _photo(a, name="a2"), _photo(b, name="b1")]
    frame = assign_splits(photos, 42, FRACTIONS)
    assert set(frame["split"]) == {"train", "test"}
    assert frame.groupby("sha256")["split"].nunique().max() == 1


def test_no_move_in_the_normal_case() -> None:
    hashes = _hashes_in("train", 5) + _hashes_in("val", 1) + _hashes_in("test", 2)
    frame = assign_splits([_photo(h) for h in hashes], 42, FRACTIONS)
    assert frame["split"].tolist() == [stable_split(h, 42, FRACTIONS) for h in hashes]


def test_fewer_than_three_me_photos_are_left_alone() -> None:
    hashes = _hashes_in("val", 2)
    frame = assign_splits([_photo(h) for h in hashes], 42, FRACTIONS)
    assert frame["split"].tolist() == ["val", "val"]

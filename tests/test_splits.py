"""recognize_me.data.splits: official, seeded and identity-disjoint splits, and the seeded limit."""

from __future__ import annotations

import pandas as pd
import pytest
from celeba_fixtures import image_ids

from recognize_me.data.splits import SPLITS, make_splits, split_counts

IDS = image_ids(1000)


def _identity(n_people: int = 200, ids: list[str] = IDS) -> pd.DataFrame:
    # uneven group sizes: person k has 1..9 images
    people, k = [], 0
    while len(people) < len(ids):
        people += [k] * (1 + k % 9)
        k += 1
    return pd.DataFrame({"image_id": ids, "identity": people[: len(ids)]})


def test_official_partition_restricted_to_available_ids() -> None:
    partition = pd.DataFrame({"image_id": image_ids(9), "partition": [0, 0, 0, 1, 1, 2, 2, 0, 2]})
    available = ["000009.jpg", "000001.jpg", "000004.jpg", "000006.jpg", "000002.jpg", "extra.jpg"]
    out = make_splits(available, seed=1, partition=partition)
    assert list(out.columns) == ["image_id", "split"]
    assert out["image_id"].tolist() == ["000001.jpg", "000002.jpg", "000004.jpg", "000006.jpg", "000009.jpg"]
    assert out["split"].tolist() == ["train", "train", "val", "test", "test"]
    # an id without a partition row ("extra.jpg") is left out, not guessed


def test_official_partition_ignores_seed_and_fractions() -> None:
    partition = pd.DataFrame({"image_id": image_ids(6), "partition": [0, 1, 2, 0, 1, 2]})
    a = make_splits(image_ids(6), seed=1, partition=partition)
    b = make_splits(image_ids(6), seed=99, fractions=(0.2, 0.4, 0.4), partition=partition)
    pd.testing.assert_frame_equal(a, b)


def test_use_official_false_falls_back_to_seeded_split() -> None:
    partition = pd.DataFrame({"image_id": IDS, "partition": [2] * len(IDS)})
    out = make_splits(IDS, seed=3, partition=partition, use_official=False)
    assert split_counts(out) == {"train": 800, "val": 100, "test": 100}


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.6, 0.3, 0.1), (0.5, 0.0, 0.5)])
def test_seeded_image_split_fractions(fractions: tuple[float, float, float]) -> None:
    out = make_splits(IDS, seed=7, fractions=fractions)
    assert len(out) == len(IDS) and out["image_id"].is_unique
    assert out["image_id"].tolist() == sorted(IDS)
    counts = split_counts(out)
    assert counts == {name: round(f * len(IDS)) for name, f in zip(SPLITS, fractions, strict=True)}


def test_image_split_is_shuffled_not_contiguous() -> None:
    out = make_splits(IDS, seed=7)
    first = out["split"].iloc[:100]
    assert first.nunique() > 1  # the first 100 sorted ids are not all train


def test_identity_split_is_disjoint_and_roughly_proportional() -> None:
    identity = _identity()
    out = make_splits(IDS, seed=5, identity=identity).merge(identity, on="image_id")
    assert len(out) == len(IDS)
    assert (out.groupby("identity")["split"].nunique() == 1).all()
    share = out["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["val"] == pytest.approx(0.1, abs=0.03)
    assert share["test"] == pytest.approx(0.1, abs=0.03)


def test_identity_split_differs_from_image_split_and_handles_unknown_identities() -> None:
    identity = _identity().iloc[:900]  # the last 100 images have no identity row: each its own person
    out = make_splits(IDS, seed=5, identity=identity)
    assert len(out) == len(IDS) and out["split"].notna().all()
    merged = out.merge(identity, on="image_id")
    assert (merged.groupby("identity")["split"].nunique() == 1).all()


@pytest.mark.parametrize("kwargs", [{}, {"identity": _identity()}])
def test_same_seed_same_frame_different_seed_different(kwargs: dict) -> None:
    a = make_splits(IDS, seed=11, **kwargs)
    b = make_splits(list(reversed(IDS)), seed=11, **kwargs)  # input order does not matter
    pd.testing.assert_frame_equal(a, b)
    c = make_splits(IDS, seed=12, **kwargs)
    assert not a["split"].equals(c["split"])


@pytest.mark.parametrize("kwargs", [{}, {"identity": _identity()}])
def test_limit_keeps_at_most_limit_all_splits_deterministic(kwargs: dict) -> None:
    out = make_splits(IDS, seed=4, limit=50, **kwargs)
    assert 0 < len(out) <= 50
    counts = split_counts(out)
    assert all(counts[name] >= 1 for name in SPLITS)
    assert counts["train"] > counts["val"] and counts["train"] > counts["test"]
    assert set(out["image_id"]) <= set(IDS)
    assert out["image_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(out, make_splits(IDS, seed=4, limit=50, **kwargs))
    # the sample keeps each image's split from the unlimited split
    full = make_splits(IDS, seed=4, **kwargs).set_index("image_id")["split"]
    assert (out["split"].to_numpy() == full.loc[out["image_id"]].to_numpy()).all()


def test_tiny_limit_keeps_one_image_per_split() -> None:
    out = make_splits(IDS, seed=4, limit=3)
    assert split_counts(out) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(make_splits(IDS, seed=4, limit=2)) == {"train": 1, "val": 1, "test": 0}
    assert split_counts(make_splits(IDS, seed=4, limit=1)) == {"train": 1, "val": 0, "test": 0}


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (1 / 3, 1 / 3, 1 / 3), (0.45, 0.45, 0.1)])
@pytest.mark.parametrize("limit", [3, 4, 5, 7, 10, 11, 33])
def test_limit_is_never_exceeded(fractions: tuple[float, float, float], limit: int) -> None:
    counts = split_counts(make_splits(IDS, seed=9, fractions=fractions, limit=limit))
    assert sum(counts.values()) <= limit
    assert all(counts[name] >= 1 for name in SPLITS)


def test_limit_larger_than_available_keeps_everything() -> None:
    out = make_splits(IDS[:20], seed=4, limit=500)
    assert len(out) == 20


def test_limit_with_official_partition() -> None:
    partition = pd.DataFrame({"image_id": IDS, "partition": [0] * 800 + [1] * 100 + [2] * 100})
    out = make_splits(IDS, seed=2, partition=partition, limit=100)
    assert split_counts(out) == {"train": 80, "val": 10, "test": 10}


def test_split_counts_reports_empty_splits() -> None:
    out = pd.DataFrame({"image_id": ["a", "b"], "split": ["train", "train"]})
    assert split_counts(out) == {"train": 2, "val": 0, "test": 0}

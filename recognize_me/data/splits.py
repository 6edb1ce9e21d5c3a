"""Seeded, reproducible train/val/test splits of the available images."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
_OFFICIAL = {0: "train", 1: "val", 2: "test"}


def make_splits(available_ids: pd.Series | list[str], *, seed: int,
                fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                partition: pd.DataFrame | None = None, identity: pd.DataFrame | None = None,
                use_official: bool = True, limit: int | None = None) -> pd.DataFrame:
    """``image_id, split`` for the available images, sorted by image id.

    The official partition is used when given (restricted to the available images); otherwise a seeded
    split by ``fractions``, identity-disjoint when an identity table is given. ``limit`` keeps a seeded
    sample of at most that many images, each split shrunk in proportion. Same inputs => same frame.
    """
    ids = pd.Series(sorted(set(map(str, available_ids))), name="image_id")
    if partition is not None and use_official:
        part = partition.set_index("image_id")["partition"]
        split = ids.map(part).map(_OFFICIAL)
        out = pd.DataFrame({"image_id": ids, "split": split}).dropna(subset=["split"])
    elif identity is not None:
        out = _identity_split(ids, identity, seed, fractions)
    else:
        out = _image_split(ids, seed, fractions)
    if limit is not None and limit < len(out):
        out = _sample(out, limit, seed)
    return out.sort_values("image_id").reset_index(drop=True)


def _assign_by_cumulative(n: int, fractions: tuple[float, float, float]) -> np.ndarray:
    edges = np.round(np.cumsum(fractions) * n).astype(int)
    labels = np.empty(n, dtype=object)
    start = 0
    for name, end in zip(SPLITS, edges, strict=True):
        labels[start:end] = name
        start = end
    return labels


def _image_split(ids: pd.Series, seed: int, fractions: tuple[float, float, float]) -> pd.DataFrame:
    order = np.random.default_rng(seed).permutation(len(ids))
    labels = np.empty(len(ids), dtype=object)
    labels[order] = _assign_by_cumulative(len(ids), fractions)
    return pd.DataFrame({"image_id": ids, "split": labels})


def _identity_split(ids: pd.Series, identity: pd.DataFrame, seed: int,
                    fractions: tuple[float, float, float]) -> pd.DataFrame:
    """Whole identities go to one split; identities are shuffled, then cut by cumulative image share."""
    who = ids.map(identity.set_index("image_id")["identity"])
    # images without an identity row are their own identity
    who = who.astype("Float64").fillna(pd.Series(-(np.arange(len(ids)) + 1), index=ids.index)).astype(np.int64)
    people = np.sort(who.unique())
    people = people[np.random.default_rng(seed).permutation(len(people))]
    counts = who.value_counts().reindex(people).to_numpy()
    share = np.cumsum(counts) / counts.sum()
    cut1, cut2 = fractions[0], fractions[0] + fractions[1]
    person_split = np.where(share <= cut1 + 1e-9, "train", np.where(share <= cut2 + 1e-9, "val", "test"))
    mapping = dict(zip(people, person_split, strict=True))
    return pd.DataFrame({"image_id": ids, "split": who.map(mapping).to_numpy()})


def _sample(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 1)
    share = frame["split"].value_counts(normalize=True)
    sizes = {name: int((frame["split"] == name).sum()) for name in SPLITS}
    ks = {name: min(n, max(1, int(round(limit * share.get(name, 0.0))))) if n else 0 for name, n in sizes.items()}
    while sum(ks.values()) > limit:  # rounding and the one-per-split minimum can overshoot a small limit
        ks[max(reversed(SPLITS), key=ks.__getitem__)] -= 1  # shrink the largest split (test first on ties)
    parts = []
    for name in SPLITS:
        rows = frame[frame["split"] == name]
        parts.append(rows.iloc[np.sort(rng.choice(len(rows), size=ks[name], replace=False))])
    return pd.concat(parts)


def split_counts(splits: pd.DataFrame) -> dict[str, int]:
    counts = splits["split"].value_counts()
    return {name: int(counts.get(name, 0)) for name in SPLITS}


def with_identity(splits: pd.DataFrame, identity: pd.DataFrame | None) -> pd.DataFrame:
    """``splits`` plus an ``identity`` column (nullable int; empty where an image has no identity row) when
    an identity table is given; unchanged otherwise. Identity-aware models read it (train split only)."""
    if identity is None:
        return splits
    who = identity.drop_duplicates("image_id").set_index("image_id")["identity"]
    return splits.assign(identity=splits["image_id"].map(who).astype("Int64"))

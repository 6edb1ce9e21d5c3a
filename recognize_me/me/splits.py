"""Train/val/test splits of the user's photos that depend only on (seed, file content).

Adding photos never moves the ones already placed, renaming or moving a file does not move it, and
copies of the same picture (same bytes) always share a split, so nothing leaks between train and test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import pandas as pd

from recognize_me.me.photos import Photo

Split = Literal["train", "val", "test"]
SPLIT_COLUMNS: tuple[str, ...] = ("path", "label", "sha256", "split", "width", "height")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
POSITIVE_LABEL = "me"
MIN_POSITIVE_FOR_GUARANTEE = 3


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")


def split_score(sha256: str, seed: int) -> float:
    """u in [0, 1): the first 16 hex digits of sha256(f"{seed}:{sha256}") divided by 16**16.

    The content hash is lower-cased first, so upper- and lower-case spellings of a digest agree.
    """
    digest = hashlib.sha256(f"{int(seed)}:{sha256.lower()}".encode("ascii")).hexdigest()
    return int(digest[:16], 16) / 16**16


def stable_split(sha256: str, seed: int, fractions: tuple[float, float, float]) -> Split:
    """"train" if u < f0, "val" if u < f0 + f1, else "test", with u = :func:`split_score`.

    A pure function of (seed, content hash): adding photos never moves the ones already placed.
    """
    _check_fractions(fractions)
    u = split_score(sha256, seed)
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def assign_splits(photos: Sequence[Photo], seed: int = 42,
                  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                  positive_label: str = POSITIVE_LABEL) -> pd.DataFrame:
    """One row per photo (input order): path (str), label, sha256, split, width, height.

    Each distinct content (sha256) gets :func:`stable_split`; all copies share that split.

    Small-set guarantee, applied only when there are >= 3 photos labelled ``positive_label`` ("me")
    and >= 2 distinct "me" contents, and only when the hash rule left train or test without a "me"
    photo (so in the normal case nothing moves and the split stays stable). The distinct "me"
    contents are ranked by their score u (:func:`split_score`, ties by sha256):

    1. if no "me" content is in train, the one with the smallest u moves to train;
    2. then, if no "me" content is in test, the one with the largest u moves to test (if that is the
       only "me" content in train, the largest-u content not in train moves instead).

    Each move takes every copy of the content with it. Only "me" contents are ever moved; other labels
    keep their hash split. With 1 distinct "me" content no guarantee is possible and nothing moves.
    """
    _check_fractions(fractions)
    split_of: dict[str, Split] = {}
    for p in photos:
        key = p.sha256.lower()
        if key not in split_of:
            split_of[key] = stable_split(key, seed, fractions)

    positives = [p for p in photos if p.label == positive_label]
    me_hashes = sorted({p.sha256.lower() for p in positives}, key=lambda h: (split_score(h, seed), h))
    if len(positives) >= MIN_POSITIVE_FOR_GUARANTEE and len(me_hashes) >= 2:
        # a content labelled "me" once and something else elsewhere is still moved as a whole
        if not any(split_of[h] == "train" for h in me_hashes):
            split_of[me_hashes[0]] = "train"
        if not any(split_of[h] == "test" for h in me_hashes):
            in_train = [h for h in me_hashes if split_of[h] == "train"]
            donors = [h for h in reversed(me_hashes) if not (len(in_train) == 1 and h == in_train[0])]
            split_of[donors[0]] = "test"

    rows = [{"path": str(p.path), "label": p.label, "sha256": p.sha256, "split": split_of[p.sha256.lower()],
             "width": int(p.width), "height": int(p.height)} for p in photos]
    frame = pd.DataFrame(rows, columns=list(SPLIT_COLUMNS))
    return frame.astype({"width": "int64", "height": "int64"})

"""Which face of a multi-face "me" photo is the user: chosen by agreement with the single-face photos.

``photo_set.prepare_photos`` writes every face of a multi-face "me" photo as a ``candidate`` row; the
photos are prepared before the CelebA base model exists, so the choice is made here, once the base is
picked (``flows/me.py``, before the transfer jobs are planned).

The rule (:func:`choose_faces`), in a base model's L2-normalised, flip-averaged features
(``transfer.flip_averaged_extractor``): the face-recognition network's ``embedding`` when the run has one
(``dlib_resnet``'s base: an identity embedding is made for "is this the same person"), else the CelebA
model's ``gap``:

1. Reference: the single-face "me" photos of the train and val splits (the test split and the strangers
   never shape the training data), one per distinct crop (copies count once). Their centroid ``c`` is the
   normalised mean of their features.
2. Floor: what the single-face photos themselves reach. Each one's cosine similarity to the centroid of
   the *others* (leave one out); the floor is the ``FLOOR_QUANTILE`` (10%) quantile of those.
3. A face *agrees* when its cosine similarity to ``c`` is at least the floor. A multi-face photo is taken
   when exactly one of its faces agrees: that face (``choice`` "agreed", ``similarity`` its cosine). No
   face agreeing, or two or more, rejects the photo with that reason (it is not in the training data).
4. Fewer than ``MIN_REFERENCE`` (2) reference photos: no floor can be measured; every multi-face photo
   gives its largest face (``choice`` "largest") and the choice table says so.

Outputs (:func:`resolve_photo_faces`, every file atomic): ``photos.csv`` (candidates replaced by the
chosen face) and ``face_choice.csv`` (one row per candidate face: box, similarity, taken or not, the
photo's decision and reason). Pure core: no Prefect; TensorFlow only inside :func:`base_features`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recognize_me.fileio import write_with
from recognize_me.me.photo_set import (
    CHOICE_AGREED,
    CHOICE_CANDIDATE,
    CHOICE_LARGEST,
    CHOICE_ONLY,
    ME_LABEL,
    PHOTO_COLUMNS,
    PHOTOS_CSV,
    load_photo_table,
)

FeatureFn = Callable[[Sequence[str]], np.ndarray]  # crop paths -> (n, d) features
REFERENCE_SPLITS: tuple[str, ...] = ("train", "val")
MIN_REFERENCE = 2
FLOOR_QUANTILE = 0.1
CHOICE_FEATURES = ("embedding", "gap")  # the first the base has
CHOSEN_DIR = "photos_chosen"  # under the run folder: the resolved photos.csv and face_choice.csv
FACE_CHOICE_CSV = "face_choice.csv"
CHOICE_TABLE_COLUMNS: tuple[str, ...] = ("path", "split", "n_faces", "face", "box", "crop_path", "similarity",
                                         "taken", "decision", "reason")
DECISION_AGREED = "taken: the one face that agrees"
DECISION_LARGEST = "taken: largest face (nothing to compare with)"
DECISION_REJECTED = "rejected"


@dataclass(frozen=True)
class FaceChoice:
    """``table``: the photo table with every candidate row replaced by its chosen face (rejected photos
    left out). ``choices``: one row per candidate face (``CHOICE_TABLE_COLUMNS``). ``floor``: the
    agreement floor (None without enough reference photos); ``n_reference``: reference photos used."""

    table: pd.DataFrame
    choices: pd.DataFrame
    floor: float | None
    n_reference: int

    @property
    def rejected(self) -> pd.DataFrame:
        """One row per rejected photo: path, reason."""
        rows = self.choices[self.choices["decision"] == DECISION_REJECTED]
        return rows.drop_duplicates("path").loc[:, ["path", "reason"]].reset_index(drop=True)

    def summary(self) -> str:
        """One sentence: how many multi-face "me" photos, taken and rejected, against what."""
        photos = self.choices.drop_duplicates("path")
        taken = int((photos["decision"] != DECISION_REJECTED).sum())
        basis = (f"{self.n_reference} single-face 'me' photos (train/val), agreement floor "
                 f"{self.floor:.3f}" if self.floor is not None else
                 f"only {self.n_reference} single-face 'me' photo(s) in train/val (need {MIN_REFERENCE}): "
                 f"the largest face was taken")
        return f"{len(photos)} multi-face 'me' photos: {taken} taken, {len(photos) - taken} rejected; {basis}"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def agreement_floor(reference: np.ndarray, quantile: float = FLOOR_QUANTILE) -> tuple[np.ndarray, float]:
    """(centroid, floor) of ``reference`` features (n >= 2 rows): the normalised mean, and the
    ``quantile`` of each row's cosine similarity to the normalised mean of the other rows."""
    ref = _unit(reference)
    if len(ref) < 2:
        raise ValueError(f"need >= 2 reference photos to measure agreement, got {len(ref)}")
    total = ref.sum(axis=0)
    leave_one_out = np.einsum("ij,ij->i", ref, _unit(total[None, :] - ref))
    return _unit(total), float(np.quantile(leave_one_out, quantile))


def _decide(similarities: np.ndarray, floor: float) -> tuple[int | None, str]:
    """(index of the face taken or None, reason) for one photo's faces."""
    agreeing = np.flatnonzero(similarities >= floor)
    best = int(np.argmax(similarities))
    if len(agreeing) == 1:
        return best, f"face {best} agrees (similarity {similarities[best]:.3f} >= floor {floor:.3f})"
    if not len(agreeing):
        return None, (f"no face agrees with the single-face 'me' photos: best similarity "
                      f"{similarities[best]:.3f} < floor {floor:.3f}")
    shown = ", ".join(f"face {i}: {similarities[i]:.3f}" for i in agreeing)
    return None, f"{len(agreeing)} faces agree ({shown}; floor {floor:.3f}): cannot tell which is you"


def choose_faces(table: pd.DataFrame, features: FeatureFn, *, quantile: float = FLOOR_QUANTILE,
                 min_reference: int = MIN_REFERENCE) -> FaceChoice:
    """Resolve the ``candidate`` rows of ``table`` (a photo table, ``photo_set.PHOTO_COLUMNS``) by the rule
    in the module docstring. ``features`` is called once, on the reference and candidate crops together,
    and not at all when there is no candidate or too few reference photos."""
    table = table.reset_index(drop=True)
    candidates = table[table["choice"] == CHOICE_CANDIDATE]
    if candidates.empty:
        return FaceChoice(table=table, choices=pd.DataFrame(columns=list(CHOICE_TABLE_COLUMNS)), floor=None,
                          n_reference=0)
    reference = table[(table["label"] == ME_LABEL) & (table["choice"] == CHOICE_ONLY)
                      & table["split"].isin(REFERENCE_SPLITS)].drop_duplicates("crop_path")
    floor, similarity = _similarities(reference, candidates, features, quantile, min_reference)
    taken_rows: dict[int, float] = {}
    records = []
    for _, faces in candidates.groupby("path", sort=False):
        faces = faces.sort_values("face")
        pick, decision, reason = _pick(faces, similarity, floor, min_reference)
        if pick is not None:
            taken_rows[pick] = similarity[pick]
        records += [{"path": row.path, "split": row.split, "n_faces": row.n_faces, "face": row.face,
                     "box": row.box, "crop_path": row.crop_path, "similarity": _rounded(similarity[i]),
                     "taken": i == pick, "decision": decision, "reason": reason}
                    for i, row in faces.iterrows()]
    kept = table.drop(index=[i for i in candidates.index if i not in taken_rows])
    for i, sim in taken_rows.items():
        kept.loc[i, "choice"] = CHOICE_LARGEST if floor is None else CHOICE_AGREED
        kept.loc[i, "similarity"] = _rounded(sim)
    return FaceChoice(table=kept.loc[:, list(PHOTO_COLUMNS)].reset_index(drop=True),
                      choices=pd.DataFrame(records, columns=list(CHOICE_TABLE_COLUMNS)), floor=floor,
                      n_reference=len(reference))


def _rounded(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def _similarities(reference: pd.DataFrame, candidates: pd.DataFrame, features: FeatureFn, quantile: float,
                  min_reference: int) -> tuple[float | None, pd.Series]:
    """(the agreement floor, each candidate's cosine to the reference centroid); (None, NaN) with fewer
    than ``min_reference`` reference photos."""
    if len(reference) < min_reference:
        return None, pd.Series(np.nan, index=candidates.index)
    crops = reference["crop_path"].tolist() + candidates["crop_path"].tolist()
    feats = np.asarray(features(crops))
    if feats.shape[0] != len(crops):
        raise ValueError(f"the feature function returned {feats.shape[0]} rows for {len(crops)} crops")
    centroid, floor = agreement_floor(feats[:len(reference)], quantile)
    return floor, pd.Series(_unit(feats[len(reference):]) @ centroid, index=candidates.index)


def _pick(faces: pd.DataFrame, similarity: pd.Series, floor: float | None,
          min_reference: int) -> tuple[int | None, str, str]:
    """(the row taken from one photo's faces or None, the decision, its reason)."""
    if floor is None:
        return faces.index[0], DECISION_LARGEST, (f"fewer than {min_reference} single-face 'me' photos in "
                                                  "train/val to compare with: the largest face was taken")
    best, reason = _decide(similarity[faces.index].to_numpy(), floor)
    pick = None if best is None else faces.index[best]
    return pick, DECISION_REJECTED if pick is None else DECISION_AGREED, reason


def choice_rows(choices: pd.DataFrame) -> list[dict[str, object]]:
    """One row per multi-face photo for people: photo, split, faces, face taken, its box and similarity,
    the best similarity of the faces not taken, decision, reason."""
    rows = []
    for path, faces in choices.groupby("path", sort=False):
        taken = faces[faces["taken"].astype(bool)]
        rest = faces.loc[~faces["taken"].astype(bool), "similarity"].dropna()
        rows.append({"photo": Path(str(path)).name, "split": faces["split"].iloc[0],
                     "faces": int(faces["n_faces"].iloc[0]),
                     "face_taken": int(taken["face"].iloc[0]) if len(taken) else None,
                     "box": taken["box"].iloc[0] if len(taken) else None,
                     "similarity": _rounded(taken["similarity"].iloc[0]) if len(taken) else None,
                     "best_other": _rounded(rest.max()) if len(rest) else None,
                     "decision": faces["decision"].iloc[0], "reason": faces["reason"].iloc[0]})
    return rows


def _rounded(value: object) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 3)


def choice_markdown(choice: FaceChoice, max_rows: int = 30) -> str:
    """The "Multi-face 'me' photos" section of the photo-checks artifact."""
    if choice.choices.empty:
        return "## Multi-face 'me' photos\n\nnone\n"
    rows = choice_rows(choice.choices)
    head = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
    body = "".join("| " + " | ".join("" if v is None else str(v).replace("|", "/") for v in r.values()) + " |\n"
                   for r in rows[:max_rows])
    more = f"\n({len(rows) - max_rows} more in {FACE_CHOICE_CSV})\n" if len(rows) > max_rows else ""
    return (f"## Multi-face 'me' photos\n\n{choice.summary()}. Box: left,top,right,bottom in the photo's pixels; "
            f"similarity: cosine to the single-face photos' centroid.\n\n{head}{body}{more}")


def resolve_photo_faces(photos_csv: Path, out_dir: Path, features: FeatureFn, **rule) -> tuple[Path, FaceChoice]:
    """Read ``photos_csv``, :func:`choose_faces` (``rule``: its keyword arguments) and write
    ``out_dir/photos.csv`` and ``out_dir/face_choice.csv`` atomically. Returns (the new photos.csv, the
    choice). ``photos_csv`` itself is never changed (it may be a cached result shared by several runs)."""
    choice = choose_faces(load_photo_table(photos_csv), features, **rule)
    out = Path(out_dir) / PHOTOS_CSV
    write_with(Path(out_dir) / FACE_CHOICE_CSV, lambda p: choice.choices.to_csv(p, index=False))
    write_with(out, lambda p: choice.table.to_csv(p, index=False))
    return out, choice


def base_features(base_model_path: Path, batch_size: int = 16) -> FeatureFn:
    """The feature function of the base at ``base_model_path``: crop paths -> its flip-averaged,
    L2-normalised ``embedding`` features, or ``gap`` without such a layer (``CHOICE_FEATURES``;
    ``transfer.flip_averaged_extractor``, at the image size and crop saved beside the base,
    ``transfer.base_input_settings``). Nothing is read before the first call."""
    loaded: list = []

    def features(paths: Sequence[str]) -> np.ndarray:
        import keras

        import recognize_me.models  # noqa: F401 - registers the custom layers the base may use
        from recognize_me.data.dataset import make_dataset
        from recognize_me.me.surgery import flip_averaged_extractor
        from recognize_me.me.transfer import base_input_settings

        if not loaded:
            image_size, crop = base_input_settings(Path(base_model_path))
            base = keras.models.load_model(base_model_path, safe_mode=True, compile=False)
            names = {layer.name for layer in base.layers}
            which = next((f for f in CHOICE_FEATURES if f in names), CHOICE_FEATURES[-1])
            loaded.append((flip_averaged_extractor(base, image_size, which), image_size, crop))
        extractor, image_size, crop = loaded[0]
        data = make_dataset(list(paths), None, image_size=image_size, crop=crop, batch_size=batch_size)
        return np.asarray(extractor.predict(data, verbose=0))

    return features

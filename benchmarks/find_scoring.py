"""Score ``recognize-me find``'s matches.csv and face_recognition's CLI output against the photos' truth (pure).

Photo level: a photo "is me" when any of its faces is judged "me". Group-photo accuracy is that photo-level
accuracy on the ``group_me`` + ``group_none`` photos only. A photo a tool did not answer for counts as
"not me" (and as ``unanswered``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GROUP_KINDS = ("group_me", "group_none")
REFERENCE_NO_MATCH = ("unknown_person", "no_persons_found")


def truth_by_photo(truth_rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, bool]]:
    """path -> (kind, has me) from per-face truth rows (``is_me`` as bool or "True"/"False")."""
    out: dict[str, tuple[str, bool]] = {}
    for row in truth_rows:
        kind, has_me = out.get(str(row["path"]), (str(row["kind"]), False))
        out[str(row["path"])] = (kind, has_me or _true(row["is_me"]))
    return out


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def find_by_photo(match_rows: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    """path -> any face with is_me True, from matches.csv rows (every listed photo gets an answer)."""
    out: dict[str, bool] = {}
    for row in match_rows:
        path = str(row["path"])
        out[path] = out.get(path, False) or _true(row.get("is_me"))
    return out


def reference_by_photo(lines: Iterable[str], name_of: Mapping[str, str]) -> dict[str, bool]:
    """path -> any face matched a known person, from face_recognition CLI lines ``path,name[,distance]``.

    ``name_of`` maps the file name the CLI saw (its basename) to the photo's name in the truth (e.g. a JPEG
    copy of a HEIC photo back to the HEIC's name). Lines that are not ``path,name`` of a listed file
    (warnings) are skipped.
    """
    out: dict[str, bool] = {}
    for line in lines:
        parts = line.strip().split(",")
        if len(parts) < 2:
            continue
        base = parts[0].replace("\\", "/").rsplit("/", 1)[-1]
        if base not in name_of:
            continue
        photo = name_of[base]
        out[photo] = out.get(photo, False) or parts[1] not in REFERENCE_NO_MATCH
    return out


def score(predicted: Mapping[str, bool], truth: Mapping[str, tuple[str, bool]],
          kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Counts and accuracy of ``predicted`` on the truth's photos (restricted to ``kinds`` when given)."""
    tp = fp = fn = tn = unanswered = 0
    for path, (kind, has_me) in truth.items():
        if kinds is not None and kind not in kinds:
            continue
        unanswered += path not in predicted
        said = predicted.get(path, False)
        tp += said and has_me
        fn += (not said) and has_me
        fp += said and not has_me
        tn += (not said) and not has_me
    n = tp + fp + fn + tn
    return {"photos": n, "with_me": tp + fn, "found": tp, "missed": fn, "without_me": fp + tn,
            "false_alarms": fp, "accuracy": (tp + tn) / n if n else float("nan"), "unanswered": unanswered}


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def face_diagnostics(match_rows: Sequence[Mapping[str, Any]], truth_rows: Sequence[Mapping[str, Any]],
                     min_iou: float = 0.3) -> dict[str, Any]:
    """Per truth face: was it detected (a detection with IoU >= ``min_iou`` or its centre inside the truth box:
    a detector's box is tighter than a pasted crop's bounds), and judged "me"?

    Returns counts for "me" faces and stranger faces (detected, judged me, too small) and detections
    matching no truth face (``spurious``, and how many of those were judged "me"), per person (the truth's
    ``person`` up to a ":") [faces, detected, judged me] under ``by_person``, plus the matched faces'
    ``me_probability`` lists (``me_probs``, ``stranger_probs``) for a threshold-free look.
    """
    boxes: dict[str, list[tuple[tuple[float, ...], Mapping[str, Any]]]] = {}
    for row in match_rows:
        if str(row.get("face", "-1")) in ("-1", "") or str(row.get("left", "")) in ("", "nan"):
            continue
        box = tuple(float(row[k]) for k in ("left", "top", "right", "bottom"))
        boxes.setdefault(str(row["path"]), []).append((box, row))
    used: set[int] = set()
    counts = {f"{who}_{what}": 0 for who in ("me", "stranger") for what in ("faces", "detected", "judged_me",
                                                                             "too_small")}
    probs: dict[str, list[float]] = {"me_probs": [], "stranger_probs": []}
    by_person: dict[str, list[int]] = {}
    for face in truth_rows:
        who = "me" if _true(face["is_me"]) else "stranger"
        counts[f"{who}_faces"] += 1
        person = by_person.setdefault(str(face.get("person", who)).split(":")[0], [0, 0, 0])
        person[0] += 1
        truth_box = tuple(float(face[k]) for k in ("left", "top", "right", "bottom"))
        best = max(((iou(truth_box, box), row) for box, row in boxes.get(str(face["path"]), [])
                    if id(row) not in used and (iou(truth_box, box) >= min_iou or _centre_in(box, truth_box))),
                   key=lambda t: t[0], default=(0.0, None))
        if best[1] is None:
            continue
        row = best[1]
        used.add(id(row))
        counts[f"{who}_detected"] += 1
        counts[f"{who}_judged_me"] += _true(row.get("is_me"))
        person[1] += 1
        person[2] += _true(row.get("is_me"))
        counts[f"{who}_too_small"] += str(row.get("status", "")) == "too small"
        if str(row.get("me_probability", "")) not in ("", "nan"):
            probs[f"{who}_probs"].append(float(row["me_probability"]))
    spurious = [row for rows in boxes.values() for _, row in rows if id(row) not in used]
    return {**counts, "spurious": len(spurious), "spurious_judged_me": sum(_true(r.get("is_me")) for r in spurious),
            "by_person": by_person, **probs}


def _centre_in(box: Sequence[float], outer: Sequence[float]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))

"""What a library scan shows: ``matches.csv`` (one row per face) and ``contact_sheet.html``.

The contact sheet lists the photos in which the user was found (most likely first, the face boxed),
then the near misses (most likely face below the threshold but at least the scan's near-miss floor) in
their own section, then every file that was not judged, with its reason. It reads well at 1280 px.

Pure core: no Prefect; plain HTML with relative links to the scan's thumbnails.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recognize_me.fileio import write_text, write_with
from recognize_me.me.library import Skipped

MATCH_COLUMNS: tuple[str, ...] = ("path", "sha256", "face", "left", "top", "right", "bottom", "confidence",
                                  "me_probability", "is_me", "status")
MATCHES_CSV = "matches.csv"
CONTACT_SHEET = "contact_sheet.html"

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 1em auto; padding: 0 12px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
.card { width: 278px; background: #f6f6f6; border-radius: 6px; padding: 6px; font-size: 0.85em; }
.photo { position: relative; width: 100%; line-height: 0; }
.photo img { width: 100%; height: auto; border-radius: 4px; }
.box { position: absolute; border: 3px solid #1a9c3a; box-sizing: border-box; }
.box.near { border-color: #e39b17; } .box.other { border: 1px dashed rgba(255,255,255,0.8); }
.name { word-break: break-all; margin-top: 4px; } .p { font-weight: 600; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 2px 8px; text-align: left; }
td { word-break: break-all; max-width: 900px; }
"""


def match_rows(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per face (``face`` -1 for a photo without a usable face, ``status`` its reason)."""
    rows = []
    for r in results:
        faces = r.get("faces") or []
        for f in faces:
            box = f.get("box") or [None] * 4
            rows.append({"path": r["path"], "sha256": r.get("sha256"), "face": f["face"],
                         **dict(zip(("left", "top", "right", "bottom"), box, strict=True)),
                         "confidence": f.get("confidence"), "me_probability": _round(f.get("me_probability")),
                         "is_me": f.get("is_me"), "status": f.get("status")})
        if not faces:
            rows.append({"path": r["path"], "sha256": r.get("sha256"), "face": -1, "status": r.get("error")})
    frame = pd.DataFrame(rows, columns=list(MATCH_COLUMNS))
    return frame.sort_values(["path", "face"], kind="stable").reset_index(drop=True)


def _round(p: float | None) -> float | None:
    return None if p is None else round(float(p), 4)


def write_matches(results: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    frame = match_rows(results)
    return write_with(Path(out_dir) / MATCHES_CSV, lambda tmp: frame.to_csv(tmp, index=False))


def summarize(results: Sequence[dict[str, Any]], skipped: Sequence[Skipped], near_miss: float) -> dict[str, int]:
    """Counts people read: photos, found, near misses, faces, photos not judged (errors + skipped)."""
    found = sum(bool(r.get("is_me")) for r in results)
    near = sum(not r.get("is_me") and (r.get("me_probability") or 0.0) >= near_miss for r in results)
    return {"photos": len(results), "found": found, "near_misses": near,
            "faces": sum(len(r.get("faces") or []) for r in results),
            "not_judged": sum(r.get("error") is not None for r in results) + len(skipped)}


def _card(r: dict[str, Any]) -> str:
    w, h = r.get("size") or (1, 1)
    boxes = []
    for f in r.get("faces") or []:
        if not f.get("box"):
            continue
        left, top, right, bottom = f["box"]
        kind = "" if f.get("is_me") else ("near" if f is _best_face(r) else "other")
        boxes.append(f'<div class="box {kind}" style="left:{100 * left / w:.2f}%;top:{100 * top / h:.2f}%;'
                     f'width:{100 * (right - left) / w:.2f}%;height:{100 * (bottom - top) / h:.2f}%"></div>')
    img = f'<img src="{html.escape(r["thumbnail"])}" alt="">' if r.get("thumbnail") else ""
    n = len(r.get("faces") or [])
    best = _best_face(r)
    which = f" · face {best['face'] + 1} of {n}" if best is not None and n > 1 else ""
    return (f'<div class="card"><div class="photo">{img}{"".join(boxes)}</div>'
            f'<div class="name">{html.escape(r["path"])}</div>'
            f'<div><span class="p">p = {r["me_probability"]:.3f}</span>{which}</div></div>')


def _best_face(r: dict[str, Any]) -> dict[str, Any] | None:
    judged = [f for f in r.get("faces") or [] if f.get("me_probability") is not None]
    return max(judged, key=lambda f: f["me_probability"]) if judged else None


def write_contact_sheet(results: Sequence[dict[str, Any]], skipped: Sequence[Skipped], out_dir: Path, *,
                        threshold: float, near_miss: float, title: str) -> Path:
    """``contact_sheet.html`` in ``out_dir`` (thumbnails are the scan's own, linked relatively)."""
    def by_p(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: (-(r.get("me_probability") or 0.0), r["path"]))

    found = by_p([r for r in results if r.get("is_me")])
    near = by_p([r for r in results if not r.get("is_me") and (r.get("me_probability") or 0.0) >= near_miss])
    bad = [(r["path"], r["error"]) for r in results if r.get("error")] + [(s.rel, s.reason) for s in skipped]
    counts = summarize(results, skipped, near_miss)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{counts['photos']} photos, {counts['faces']} faces: <b>you in {counts['found']}</b>, "
             f"{counts['near_misses']} near misses (most likely face between {near_miss:.2f} and the threshold "
             f"{threshold:.2f}), {counts['not_judged']} file(s) not judged. Every face is judged; a photo is "
             "yours when any face is. Boxes: green you, orange the closest face of a near miss.</p>",
             f"<h2>Found you ({len(found)})</h2>",
             '<div class="grid">' + "".join(_card(r) for r in found) + "</div>",
             f"<h2>Near misses ({len(near)})</h2>",
             '<div class="grid">' + "".join(_card(r) for r in near) + "</div>",
             f"<h2>Not judged ({len(bad)})</h2>",
             "<details><summary>files and reasons</summary><table><tr><th>file</th><th>reason</th></tr>"
             + "".join(f"<tr><td>{html.escape(p)}</td><td>{html.escape(str(why))}</td></tr>" for p, why in bad)
             + "</table></details>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    return write_text(Path(out_dir) / CONTACT_SHEET, page)

"""The "is this me?" report of one run: every strategy side by side, ``me_report.html``.

Reads what ``transfer.train_transfer`` wrote (``metrics.json`` values, passed in as ``results``, and each
model's ``predictions_test.csv``); styled like ``report.py``'s ``report.html``. Pure core (no Prefect).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recognize_me.evaluation import plots
from recognize_me.evaluation.metrics import roc_auc, roc_curve
from recognize_me.evaluation.report import REPORT_STYLE, table_html
from recognize_me.fileio import write_json, write_text

ROW_COLUMNS: tuple[str, ...] = ("strategy", "status", "champion", "val_roc_auc", "val_f1", "threshold", "accuracy",
                                "precision", "recall", "f1", "roc_auc", "recall_at_1pct_far", "strangers_roc_auc",
                                "strangers_accuracy", "strangers_false_accept", "strangers_recall_at_1pct_far",
                                "test_photos", "strangers_photos", "train_time_s")
MAX_MISCLASSIFIED = 16
MAX_CHOICE_FACES = 24
CM_LABELS_DEFAULT = ["other", "me"]
TABLE_NOTE = (
    "Ranked and the champion chosen on the validation split (ROC AUC, then F1), never on test; thresholds "
    "maximise F1 on validation. The logistic-regression strategies (feature extraction, distilled, "
    "reference) are refit on train+val, so their validation is every train+val photo's out-of-fold score "
    "(5 folds). accuracy .. recall_at_1pct_far: test split. strangers_*: the test 'me' photos "
    "against photos of people in no training split (CelebA test partition), at the same threshold; "
    "false_accept = share of strangers taken for 'me'. recall_at_1pct_far: the highest recall of 'me' while "
    "accepting at most 1% of the others. The reference strategy (dlib face-recognition embeddings) is shown for "
    "comparison and never promoted. Confusion matrices: rows true class, columns predicted class.")


#: ``<run>/me/results.json``: every strategy of the run with its status and model folder, which is an earlier
#: run's when the transfer was cached (``predict.load_run_models`` reads it)
RESULTS_INDEX = "results.json"


@dataclass(frozen=True)
class MeReport:
    html_path: Path
    rows: list[dict[str, Any]]  # one per strategy, ranked by selection_key (validation); failed ones last
    figures: dict[str, Path]  # title -> PNG under run_dir


def _out_dir(run_dir: Path, result: dict[str, Any]) -> Path:
    return Path(result["out_dir"]) if result.get("out_dir") else run_dir / "me" / str(result["strategy"])


def selection_key(result: dict[str, Any]) -> tuple[float, float]:
    """How strategies are ranked: validation ROC AUC, then validation F1 (never a test metric)."""
    return (result.get("val_roc_auc") if result.get("val_roc_auc") is not None else -1.0,
            result.get("val_f1") if result.get("val_f1") is not None else -1.0)


def _row(result: dict[str, Any], champion: Path | None) -> dict[str, Any]:
    row = {c: round(v, 4) if isinstance(v := result.get(c), float) else v for c in ROW_COLUMNS}
    row["status"] = row["status"] or "completed"
    row["champion"] = "yes" if champion is not None and result.get("out_dir") and \
        Path(result["out_dir"]) == champion else ""
    if row["status"] != "completed" and result.get("error"):
        row["status"] = f"{row['status']}: {result['error']}"
    elif result.get("promotable") is False:
        row["status"] = "completed (reference, not promoted)"
    return row


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return path.relative_to(run_dir).as_posix()
    except ValueError:
        return path.as_posix()


def build_me_report(run_dir: Path, results: list[dict[str, Any]]) -> MeReport:
    """Write figures and ``run_dir/me_report.html``: metrics table, counts per split, the face taken from
    each multi-face "me" photo, a confusion matrix and a grid of misclassified test photos per strategy,
    and one ROC plot with every strategy."""
    run_dir = Path(run_dir)
    champion = best_transfer_dir(results)
    done = sorted((r for r in results if (r.get("status") or "completed") == "completed"),
                  key=lambda r: selection_key(r), reverse=True)
    rows = [_row(r, champion) for r in done] + [_row(r, champion) for r in results if r not in done]
    figures: dict[str, Path] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    stranger_curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    columns = [_strategy_section(run_dir, result, figures, curves, stranger_curves) for result in done]
    if curves:
        figures["ROC curves (test)"] = plots.roc_plot(curves, run_dir / "me_roc.png")
    if stranger_curves:
        figures["ROC curves (strangers)"] = plots.roc_plot(stranger_curves, run_dir / "me_roc_strangers.png")
    html_path = write_text(run_dir / "me_report.html", _page(run_dir, rows, done, figures, columns))
    write_json(run_dir / "me" / RESULTS_INDEX, [{"strategy": r["strategy"], "status": r.get("status") or "completed",
                                                 "out_dir": str(_out_dir(run_dir, r))} for r in results])
    return MeReport(html_path=html_path, rows=rows, figures=figures)


def _strategy_section(run_dir: Path, result: dict[str, Any], figures: dict[str, Path], curves: dict,
                      stranger_curves: dict) -> str:
    """One strategy's column (confusion matrix, misclassified photos); adds its ROC curves and figures."""
    strategy = str(result["strategy"])
    preds = pd.read_csv(_out_dir(run_dir, result) / "predictions_test.csv",
                        dtype={"path": str, "crop_path": str, "label": str, "predicted": str})
    y = (preds["label"] == "me").to_numpy()
    scores = preds["score"].to_numpy(np.float64)
    fpr, tpr, _ = roc_curve(y, scores)
    curves[strategy] = (fpr, tpr, roc_auc(y, scores))
    strangers_csv = _out_dir(run_dir, result) / "predictions_strangers.csv"
    if strangers_csv.is_file():
        others = pd.read_csv(strangers_csv)["score"].to_numpy(np.float64)
        ys = np.r_[np.ones(int(y.sum())), np.zeros(len(others))]
        ss = np.r_[scores[y], others]
        fpr_s, tpr_s, _ = roc_curve(ys, ss)
        stranger_curves[strategy] = (fpr_s, tpr_s, roc_auc(ys, ss))
    cm_title = f"{strategy}: confusion matrix (test, threshold {result.get('threshold', 0.5):.2f})"
    figures[cm_title] = plots.confusion_matrix_plot(
        np.asarray(result["confusion_matrix"]), result.get("confusion_matrix_labels", CM_LABELS_DEFAULT),
        run_dir / f"me_confusion_{strategy}.png", cm_title)
    parts = [f"<h3>{html.escape(strategy)}</h3>", _img(figures[cm_title], cm_title, run_dir)]
    wrong = preds[preds["label"] != preds["predicted"]].head(MAX_MISCLASSIFIED)
    if len(wrong):
        grid_title = f"{strategy}: misclassified test photos"
        captions = [f"true {r.label}, predicted {r.predicted}\nscore {r.score:.3f}" for r in wrong.itertuples()]
        figures[grid_title] = plots.face_grid([Path(p) for p in wrong["crop_path"]], captions,
                                              run_dir / f"me_misclassified_{strategy}.png")
        parts.append(f"<h4>Misclassified test photos ({int((preds['label'] != preds['predicted']).sum())})</h4>"
                     + _img(figures[grid_title], grid_title, run_dir))
    else:
        parts.append("<p>No misclassified test photos.</p>")
    return "<div class='col'>" + "".join(parts) + "</div>"


def _page(run_dir: Path, rows: list[dict[str, Any]], done: list[dict[str, Any]], figures: dict[str, Path],
          columns: list[str]) -> str:
    page = ["<!doctype html><meta charset='utf-8'><title>recognize-me: is this me?</title>", REPORT_STYLE,
            "<style>.cols{display:flex;gap:2em;flex-wrap:wrap}.col{flex:1;min-width:320px}</style>",
            f"<h1>recognize-me: is this me? (run {html.escape(run_dir.name)})</h1>",
            "<h2>Strategies side by side</h2>", table_html(by_metric(rows)), f"<p>{TABLE_NOTE}</p>"]
    if done and done[0].get("counts"):
        counts = done[0]["counts"]
        page += ["<h2>Photos per split</h2>",
                 table_html([{"split": s, **{k: int(v) for k, v in c.items()}} for s, c in counts.items()])]
    page += _face_choice_section(run_dir, figures)
    for title in ("ROC curves (test)", "ROC curves (strangers)"):
        if title in figures:
            page += [f"<h2>{title}</h2>", _img(figures[title], title.replace(" (test)", ""), run_dir)]
    if columns:
        page += ["<h2>Per strategy</h2>", "<div class='cols'>" + "".join(columns) + "</div>"]
    return "\n".join(page)


def by_metric(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` turned sideways: one row per metric, one column per strategy (in rank order), so the table
    stays narrow however many metrics there are."""
    if not rows:
        return []
    return [{"metric": column, **{str(r["strategy"]): r.get(column) for r in rows}}
            for column in rows[0] if column != "strategy"]


def _face_choice_section(run_dir: Path, figures: dict[str, Path]) -> list[str]:
    """Which face was taken from each multi-face "me" photo (``face_choice``'s ``face_choice.csv``): a table
    and a grid of the candidate faces; nothing when the run has no such file."""
    from recognize_me.me.face_choice import CHOSEN_DIR, FACE_CHOICE_CSV, choice_rows

    csv = run_dir / CHOSEN_DIR / FACE_CHOICE_CSV
    if not csv.is_file():
        return []
    choices = pd.read_csv(csv, dtype={"path": str, "split": str, "box": str, "crop_path": str, "decision": str,
                                      "reason": str})
    part = ["<h2>Multi-face 'me' photos</h2>"]
    if choices.empty:
        return part + ["<p>None: every 'me' photo has one face.</p>"]
    part += ["<p>The face taken from each 'me' photo with several faces: the one face whose base-model features "
             "agree with the single-face 'me' photos (cosine similarity to their centroid at least what they "
             "reach among themselves); a photo where no face or several faces agree is left out. Box: "
             "left,top,right,bottom in the photo's pixels.</p>", table_html(choice_rows(choices))]
    shown = choices.head(MAX_CHOICE_FACES)
    if all(Path(c).is_file() for c in shown["crop_path"]):
        title = "Multi-face 'me' photos: the candidate faces"
        captions = [f"{Path(r.path).name[:22]} face {r.face}\n{'TAKEN' if r.taken else 'not taken'}"
                    + ("" if pd.isna(r.similarity) else f", similarity {r.similarity:.3f}")
                    for r in shown.itertuples()]
        figures[title] = plots.face_grid([Path(c) for c in shown["crop_path"]], captions,
                                         run_dir / "me_face_choice.png", cols=6)
        part.append(_img(figures[title], title, run_dir))
    return part


def _img(path: Path, title: str, run_dir: Path) -> str:
    return f"<img src='{html.escape(_relative(path, run_dir))}' alt='{html.escape(title)}'>"


def best_transfer_dir(results: list[dict[str, Any]]) -> Path | None:
    """The output folder of the promotable completed strategy ranked first by :func:`selection_key`
    (validation only; the first of equals in ``results`` order wins). None if there is none."""
    done = [r for r in results if r.get("status") == "completed" and r.get("promotable", True)
            and r.get("out_dir")]
    return Path(max(done, key=selection_key)["out_dir"]) if done else None

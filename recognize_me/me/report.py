"""The "is this me?" report of one run: feature extraction and fine tuning side by side, ``me_report.html``.

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
from recognize_me.fileio import write_text

ROW_COLUMNS: tuple[str, ...] = ("strategy", "status", "threshold", "accuracy", "balanced_accuracy", "precision",
                                "recall", "f1", "roc_auc", "test_photos", "epochs_run", "train_time_s")
MAX_MISCLASSIFIED = 16
CM_LABELS_DEFAULT = ["other", "me"]


@dataclass(frozen=True)
class MeReport:
    html_path: Path
    rows: list[dict[str, Any]]  # one per strategy, best F1 first; failed strategies last
    figures: dict[str, Path]  # title -> PNG under run_dir


def _out_dir(run_dir: Path, result: dict[str, Any]) -> Path:
    return Path(result["out_dir"]) if result.get("out_dir") else run_dir / "me" / str(result["strategy"])


def _row(result: dict[str, Any]) -> dict[str, Any]:
    row = {c: result.get(c) for c in ROW_COLUMNS}
    row["status"] = row["status"] or "completed"
    if row["status"] != "completed" and result.get("error"):
        row["status"] = f"{row['status']}: {result['error']}"
    return row


def _sort_key(row: dict[str, Any]) -> tuple[int, float]:
    completed = str(row["status"]) == "completed"
    return (0 if completed else 1, -(row["f1"] if completed and row["f1"] is not None else -1.0))


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return path.relative_to(run_dir).as_posix()
    except ValueError:
        return path.as_posix()


def build_me_report(run_dir: Path, results: list[dict[str, Any]]) -> MeReport:
    """Write figures and ``run_dir/me_report.html``: metrics table, counts per split, a confusion matrix
    and a grid of misclassified test photos per strategy, and one ROC plot with every strategy."""
    run_dir = Path(run_dir)
    rows = sorted((_row(r) for r in results), key=_sort_key)
    done = [r for r in results if (r.get("status") or "completed") == "completed"]
    figures: dict[str, Path] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    columns: list[str] = []
    for result in done:
        strategy = str(result["strategy"])
        preds = pd.read_csv(_out_dir(run_dir, result) / "predictions_test.csv",
                            dtype={"path": str, "crop_path": str, "label": str, "predicted": str})
        y = (preds["label"] == "me").to_numpy()
        scores = preds["score"].to_numpy(np.float64)
        fpr, tpr, _ = roc_curve(y, scores)
        curves[strategy] = (fpr, tpr, roc_auc(y, scores))
        cm_title = f"{strategy}: confusion matrix (test, threshold {result.get('threshold', 0.5):.2f})"
        cm = np.asarray(result["confusion_matrix"])
        figures[cm_title] = plots.confusion_matrix_plot(
            cm, result.get("confusion_matrix_labels", CM_LABELS_DEFAULT), run_dir / f"me_confusion_{strategy}.png",
            cm_title)
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
        columns.append("<div class='col'>" + "".join(parts) + "</div>")
    if curves:
        figures["ROC curves (test)"] = plots.roc_plot(curves, run_dir / "me_roc.png")

    page = ["<!doctype html><meta charset='utf-8'><title>recognize-me: is this me?</title>", REPORT_STYLE,
            "<style>.cols{display:flex;gap:2em;flex-wrap:wrap}.col{flex:1;min-width:320px}</style>",
            f"<h1>recognize-me: is this me? (run {html.escape(run_dir.name)})</h1>",
            "<h2>Test metrics</h2>", table_html(rows),
            "<p>Thresholds maximise F1 on the validation split; metrics are on the test split. "
            "Confusion matrices: rows true class, columns predicted class.</p>"]
    if done and done[0].get("counts"):
        counts = done[0]["counts"]
        page += ["<h2>Photos per split</h2>",
                 table_html([{"split": s, **{k: int(v) for k, v in c.items()}} for s, c in counts.items()])]
    if "ROC curves (test)" in figures:
        page += ["<h2>ROC curves (test)</h2>", _img(figures["ROC curves (test)"], "ROC curves", run_dir)]
    if columns:
        page += ["<h2>Per strategy</h2>", "<div class='cols'>" + "".join(columns) + "</div>"]
    html_path = write_text(run_dir / "me_report.html", "\n".join(page))
    return MeReport(html_path=html_path, rows=rows, figures=figures)


def _img(path: Path, title: str, run_dir: Path) -> str:
    return f"<img src='{html.escape(_relative(path, run_dir))}' alt='{html.escape(title)}'>"


def best_transfer_dir(results: list[dict[str, Any]], metric: str = "f1") -> Path | None:
    """The output folder of the completed transfer model with the highest ``metric`` (None if none)."""
    done = [r for r in results if r.get("status") == "completed" and r.get(metric) is not None]
    return Path(max(done, key=lambda r: r[metric])["out_dir"]) if done else None

"""The comparative evaluation report of one ``train-all`` run: tables, figures and ``report.html``."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recognize_me.evaluation import plots
from recognize_me.evaluation.metrics import majority_predictions, per_attribute_metrics, summarize
from recognize_me.fileio import write_json, write_text

LEADERBOARD_COLUMNS = ("model", "status", "mean_accuracy", "mean_balanced_accuracy", "mean_f1", "params",
                       "train_time_s", "epochs_run", "epochs_planned", "stopped_by_budget", "precision")


@dataclass(frozen=True)
class Report:
    html_path: Path
    leaderboard: list[dict[str, Any]]  # sorted best first; the majority baseline is a row
    per_attribute: pd.DataFrame  # attribute x model accuracy
    best_model: str | None


def majority_baseline(splits_csv: Path, attributes: tuple[str, ...]) -> tuple[dict[str, Any], pd.DataFrame]:
    table = pd.read_csv(splits_csv, dtype={"image_id": str})
    y_train = table.loc[table["split"] == "train", list(attributes)].to_numpy()
    y_test = table.loc[table["split"] == "test", list(attributes)].to_numpy()
    metrics = per_attribute_metrics(y_test, majority_predictions(y_train, len(y_test)), attributes)
    return {"model": "majority_baseline", "status": "baseline", **summarize(metrics), "params": 0,
            "train_time_s": 0.0}, metrics


def leaderboard(outcomes: list[dict[str, Any]], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{c: round(v, 4) if isinstance(v := o.get(c), float) else v for c in LEADERBOARD_COLUMNS}
            for o in [*outcomes, baseline]]
    return sorted(rows, key=lambda r: -(r["mean_accuracy"] if r["mean_accuracy"] is not None else -1))


def best_model_dir(run_dir: Path, outcomes: list[dict[str, Any]], metric: str = "mean_accuracy") -> Path | None:
    done = [o for o in outcomes if o.get("status") == "completed"]
    return model_folder(run_dir, max(done, key=lambda o: o[metric])) if done else None


def model_folder(run_dir: Path, outcome: dict[str, Any]) -> Path:
    """Where a model's files are: this run's folder, or an earlier run's when training was cached."""
    return Path(outcome.get("model_dir") or Path(run_dir) / "models" / outcome["model"])


def _load_model_outputs(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    per_attr = pd.DataFrame(json.loads((folder / "metrics.json").read_text())["per_attribute"])
    return per_attr, pd.read_csv(folder / "history.csv")


def build_report(run_dir: Path, splits_csv: Path, images_dir: Path, attributes: tuple[str, ...],
                 outcomes: list[dict[str, Any]], notes: list[str] | None = None) -> Report:
    """Write figures and ``report.html`` into ``run_dir``; failed models appear as failed rows."""
    baseline, base_attr = majority_baseline(splits_csv, attributes)
    board = leaderboard(outcomes, baseline)
    folders = {o["model"]: model_folder(run_dir, o) for o in outcomes if o.get("status") == "completed"}
    per_attr = {m: _load_model_outputs(f) for m, f in folders.items()}
    done = list(folders)
    acc = pd.DataFrame({m: t.set_index("attribute")["accuracy"] for m, (t, _) in per_attr.items()}
                       | {"majority_baseline": base_attr.set_index("attribute")["accuracy"]})
    figures = {}
    if done:
        figures["Training curves"] = plots.training_curves({m: h for m, (_, h) in per_attr.items()},
                                                           run_dir / "training_curves.png")
        figures["Per-attribute test accuracy"] = plots.per_attribute_chart(acc, run_dir / "per_attribute.png")
    best = next((r["model"] for r in board if r["status"] == "completed"), None)
    if best is not None:
        figures[f"Test faces, {best}: predicted vs true"] = _best_model_grid(run_dir, folders[best], splits_csv,
                                                                            images_dir, attributes)
    notes = [*(notes or []), *training_notes(outcomes)]
    # leaderboard.json also says where each model's files are (an earlier run's folder when cached)
    write_json(run_dir / "leaderboard.json",
               [r | ({"model_dir": str(folders[r["model"]])} if r["model"] in folders else {}) for r in board])
    write_json(run_dir / "metrics.json", {"leaderboard": board, "test_accuracy_per_attribute": acc.round(5).to_dict()})
    html_path = write_text(run_dir / "report.html",
                           render_html(board, per_attr, base_attr, figures, run_dir, notes))
    return Report(html_path=html_path, leaderboard=board, per_attribute=acc, best_model=best)


def training_notes(outcomes: list[dict[str, Any]]) -> list[str]:
    """What the leaderboard's numbers alone do not say: time budgets that ended training, VGG16 from scratch."""
    notes = []
    for o in outcomes:
        if o.get("stopped_by_budget"):
            notes.append(f"{o['model']}: stopped by the time budget ({o.get('budget_s')} s) after "
                         f"{o.get('epochs_run')} of at most {o.get('max_epochs')} epochs; its best epoch by "
                         f"val_loss is kept.")
            if (o.get("train_time_s") or 0) > (o.get("budget_s") or float("inf")):
                notes.append(f"{o['model']}: its training ({o['train_time_s']} s) overran its budget: one epoch "
                             f"is the minimum; give more time_budget_min, a smaller image_size or fewer models.")
        if o.get("trained_from_scratch"):
            notes.append(f"{o['model']}: trained from scratch (no ImageNet weights: vgg_weights=none); it "
                         f"had a smaller share of the time budget. Supply the weights with --vgg-weights.")
    return notes


def _best_model_grid(run_dir: Path, folder: Path, splits_csv: Path, images_dir: Path,
                     attributes: tuple[str, ...], n: int = 8) -> Path:
    preds = pd.read_csv(folder / "predictions_test.csv", dtype={"image_id": str}).head(n)
    truth = pd.read_csv(splits_csv, dtype={"image_id": str}).set_index("image_id")
    metrics = json.loads((folder / "metrics.json").read_text())
    thresholds = np.array([r.get("threshold", 0.5) for r in metrics["per_attribute"]])
    captions = []
    for _, row in preds.iterrows():
        scores = row[list(attributes)].to_numpy(float)
        predicted = {a for a, s, t in zip(attributes, scores, thresholds, strict=True) if s >= t}
        true = {a for a in attributes if truth.at[row["image_id"], a] == 1}
        lines = [f"{'+' if a in true else ' '}{'P' if a in predicted else ' '} {a}" for a in attributes
                 if a in true | predicted][:12]
        captions.append(row["image_id"] + "  (+ true, P predicted)\n" + "\n".join(lines))
    return plots.face_grid([images_dir / i for i in preds["image_id"]], captions, run_dir / "faces_grid.png")


REPORT_STYLE = ("<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
                "font-size:13px;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
                "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style>")


def table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    # long column names (strangers_recall_at_1pct_far) may wrap at their underscores: tables fit 1280 px
    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape("" if v is None else str(v))


def render_html(board, per_attr, base_attr, figures: dict[str, Path], run_dir: Path, notes: list[str]) -> str:
    parts = ["<!doctype html><meta charset='utf-8'><title>recognize-me report</title>",
             REPORT_STYLE,
             f"<h1>recognize-me: run {html.escape(run_dir.name)}</h1>", "<h2>Leaderboard (test split)</h2>",
             table_html(board)]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    for title, path in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(path.name)}' alt='{html.escape(title)}'>")
    parts.append("<h2>Per-attribute metrics</h2>")
    for model, (table, _) in per_attr.items():
        parts.append(f"<h3>{html.escape(model)}</h3>" + table_html(table.to_dict(orient="records")))
    parts.append("<h3>majority_baseline</h3>" + table_html(base_attr.to_dict(orient="records")))
    return "\n".join(parts)


def test_set_digest(splits_csv: Path, attributes: tuple[str, ...]) -> str:
    """sha256 of the test rows (ids and labels): champions are only compared on the same test data."""
    import hashlib

    table = pd.read_csv(splits_csv, dtype={"image_id": str})
    test = table.loc[table["split"] == "test", ["image_id", *attributes]].sort_values("image_id")
    return hashlib.sha256(test.to_csv(index=False).encode()).hexdigest()

"""Matplotlib figures for the reports (Agg backend, written atomically as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from recognize_me.fileio import write_with


def _subplots(*grid: int, figsize: tuple[float, float], **kw):
    """A standalone Figure (no pyplot, no global backend or figure registry) and its axes."""
    fig = Figure(figsize=figsize, layout=kw.pop("layout", None))
    return fig, fig.subplots(*grid, **kw)


def _save(fig, path: Path) -> Path:
    write_with(path, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"), suffix=".png")
    return path


def training_curves(histories: dict[str, pd.DataFrame], path: Path) -> Path:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), one colour per model."""
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    for i, (name, h) in enumerate(sorted(histories.items())):
        color = f"C{i}"
        x = np.arange(1, len(h) + 1)
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            if metric in h:
                ax.plot(x, h[metric], color=color, label=f"{name} train")
            if f"val_{metric}" in h:
                ax.plot(x, h[f"val_{metric}"], color=color, linestyle="--", label=f"{name} val")
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def per_attribute_chart(table: pd.DataFrame, path: Path, metric: str = "accuracy") -> Path:
    """``table``: one row per attribute, one column per model (values of ``metric``)."""
    fig, ax = _subplots(figsize=(max(8, 0.35 * len(table)), 4.5))
    x = np.arange(len(table))
    for i, col in enumerate(table.columns):
        ax.plot(x, table[col], marker="o", markersize=3, linewidth=1, label=col, color=f"C{i}")
    ax.set_xticks(x, table.index, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def face_grid(images: Sequence[Path], captions: Sequence[str], path: Path, cols: int = 4) -> Path:
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = _subplots(rows, cols, figsize=(3.2 * cols, 5.2 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img_path, caption in zip(axes.ravel(), images, captions, strict=False):
        with Image.open(img_path) as img:
            ax.imshow(img.convert("RGB"))
        ax.set_title(caption, fontsize=7, loc="left", family="monospace")
    return _save(fig, path)


def confusion_matrix_plot(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """Counts of a square confusion matrix (rows true class, columns predicted), darker = more."""
    cm = np.asarray(cm)
    n = len(labels)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix {cm.shape} does not match {n} labels")
    fig, ax = _subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, int(cm.max())))
    for i in range(n):
        for j in range(n):
            dark = cm[i, j] > cm.max() / 2
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> Path:
    """One ROC curve per model (``name: (fpr, tpr, auc)``) over the chance diagonal."""
    fig, ax = _subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        label = f"{name} (AUC {auc:.3f})" if np.isfinite(auc) else f"{name} (AUC undefined)"
        ax.plot(fpr, tpr, color=f"C{i}", drawstyle="default", marker=".", label=label)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)

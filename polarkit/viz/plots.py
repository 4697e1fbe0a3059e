"""Small plotting helpers shared by the notebooks; each returns a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot, so a helper's figure shows
exactly once when it is a cell's last expression (pyplot figures would also be flushed by
the inline backend, i.e. shown twice). `save(fig, name)` writes the PNG into the current
run's figures/ folder and returns the figure, so `viz.save(viz.curves(h), "curves")` both
records and shows the plot.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from polarkit.viz import fonts

fonts.setup()  # Hangul in every plot; warns once if no font exists
# pyplot loads its backend at the first figure; do it now, because in Jupyter loading the inline
# backend is what registers the PNG display of the (pyplot-free) Figures returned below.
plt.close(plt.figure())

SPLITS = ("train", "eval", "val", "validation", "test")  # column prefixes `curves` looks for


def figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None, **kw):
    """A pyplot-free Figure and its axes: `fig, ax = figure()`; axes squeezed like plt.subplots."""
    fig = Figure(figsize=size or (4.8 * ncols, 3.6 * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, **{"squeeze": True, **kw})


def save(fig: Figure, name: str, *, out_dir: str | Path | None = None, dpi: int = 120) -> Figure:
    """Write `fig` to `<run>/figures/<name>.png` (or `out_dir`) when there is somewhere to write; return fig."""
    write_png(fig, name, out_dir=out_dir, dpi=dpi)
    return fig


def write_png(fig: Figure, name: str, *, out_dir: str | Path | None = None, dpi: int = 120,
              tight: bool | None = None) -> Path | None:
    """Like `save` but returns the PNG path (None when no run is active and no out_dir is given).

    tight: crop to the drawn content (one extra layout pass); default: unless a layout engine
    (constrained layout, as `figure()` uses) already keeps every label inside the figure.
    """
    folder = Path(out_dir) if out_dir is not None else _run_dir("figures_dir")
    plt.close(fig)  # a pyplot-made figure would otherwise be shown again by the inline backend
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_name(name)}.png"
    tight = fig.get_layout_engine() is None if tight is None else tight
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None, facecolor="white")
    return path


def safe_name(name: str) -> str:
    """A file-name-safe version of `name` (keeps Hangul and other letters)."""
    return re.sub(r"[^\w.-]+", "_", str(name)).strip("._") or "figure"


def _run_dir(attr: str) -> Path | None:
    try:
        from polarkit import runs
    except ImportError:  # polarkit.runs not importable (e.g. partial checkout): nowhere to record
        return None
    run = runs.current()
    return getattr(run, attr) if run is not None else None


def curves(history, metrics: Sequence[str] = ("loss",), *, x: str | None = None, title: str | None = None) -> Figure:
    """Train/validation curves, one panel per metric.

    history: DataFrame (e.g. `pd.DataFrame(trainer.state.log_history)`) with an `epoch` or `step`
    column and metric columns `loss`/`train_loss`, `eval_loss`, `eval_accuracy`, ...; NaN rows skipped.
    """
    x = x or next((c for c in ("epoch", "step") if c in history.columns), None)
    fig, axes = figure(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        cols = [c for c in history.columns if c == metric or c in {f"{s}_{metric}" for s in SPLITS}]
        for col in cols:
            part = history[[col] + ([x] if x else [])].dropna()
            xs = part[x] if x else part.index
            label = "train" if col == metric else col[: -len(metric) - 1]
            ax.plot(xs, part[col], marker="o" if len(part) <= 30 else None, ms=3, label=label)
        ax.set(xlabel=x or "index", ylabel=metric, title=metric if title is None else title)
        ax.grid(alpha=0.3)
        if cols:
            ax.legend()
    return fig


def confusion(y_true, y_pred, labels: Sequence | None = None, *, normalize: str | None = None,
              title: str | None = None) -> Figure:
    """Confusion matrix (rows true, columns predicted) of two (N,) label arrays.

    labels: the class values, or display names for integer classes 0..K-1 (e.g. ["부정", "긍정"]).
    normalize: None, "true", "pred" or "all" as in sklearn.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    values, names = labels, labels
    if labels is not None and not set(np.asarray(y_true).tolist()) <= set(labels):
        values = list(range(len(labels)))  # labels are names for integer classes
    k = len(values) if values is not None else len(np.unique(np.concatenate([y_true, y_pred])))
    fig, ax = figure(size=(max(4.0, 0.45 * k + 2.5),) * 2)
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=values, display_labels=names, normalize=normalize, ax=ax,
        colorbar=False, cmap="Blues", xticks_rotation=45 if k > 6 else "horizontal",
        values_format=".2f" if normalize else "d")
    ax.set_title(title or "confusion matrix")
    return fig


def image_grid(images, titles: Sequence[str] | None = None, ncols: int = 8, *, cmap: str = "gray") -> Figure:
    """Grid of images, e.g. MNIST digits: images (N,H,W), (N,1,H,W) or (N,H,W,3); titles (N,)."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] in (1, 3):  # channels-first (torch) -> channels-last
        images = images.transpose(0, 2, 3, 1)
    images = images.squeeze(-1) if images.ndim == 4 and images.shape[-1] == 1 else images
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = figure(nrows, ncols, size=(1.3 * ncols, 1.45 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    return fig


def scatter_pred(gold, pred, *, title: str | None = None, xlabel: str = "gold", ylabel: str = "predicted") -> Figure:
    """Predicted vs gold scores (two (N,) arrays) with the y = x line and Pearson r."""
    gold, pred = np.asarray(gold, float), np.asarray(pred, float)
    fig, ax = figure(size=(4.5, 4.5))
    ax.scatter(gold, pred, s=8, alpha=0.5)
    lo, hi = np.nanmin([gold.min(), pred.min()]), np.nanmax([gold.max(), pred.max()])
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--")
    r = np.corrcoef(gold, pred)[0, 1] if len(gold) > 1 else float("nan")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title or 'prediction vs gold'}  (r = {r:.3f})")
    return fig


def hist(values, bins: int = 30, title: str | None = None, *, xlabel: str | None = None) -> Figure:
    """Histogram of a (N,) array, or overlaid histograms of a {name: (N,) array} mapping."""
    groups = values if isinstance(values, Mapping) else {None: values}
    fig, ax = figure()
    for label, vals in groups.items():
        ax.hist(np.asarray(vals), bins=bins, alpha=0.6 if len(groups) > 1 else 0.9, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    if len(groups) > 1:
        ax.legend()
    return fig


def heatmap(matrix, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None, *,
            title: str | None = None, cmap: str = "viridis", annotate: bool | None = None) -> Figure:
    """Heatmap of a (R,C) matrix with optional labels; cells annotated when small (R*C <= 100)."""
    matrix = np.asarray(matrix, float)
    r, c = matrix.shape
    fig, ax = figure(size=(min(14, 1.5 + 0.4 * c), min(14, 1.2 + 0.4 * r)))
    short = col_labels is None or max(len(str(t)) for t in col_labels) <= 4
    image = draw_heatmap(ax, matrix, row_labels, col_labels, cmap=cmap, rotation=0 if short else 90)
    fig.colorbar(image, ax=ax, shrink=0.8)
    if annotate or (annotate is None and r * c <= 100):
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7,
                    color="white" if v < np.nanmean(matrix) else "black")
    ax.set_title(title)
    return fig


def draw_heatmap(ax, matrix, row_labels=None, col_labels=None, *, cmap="viridis", fontsize=None, rotation=90, **kw):
    """Draw a (R,C) matrix on `ax` with every row/column labelled; returns the AxesImage."""
    image = ax.imshow(matrix, cmap=cmap, aspect="auto", interpolation="nearest", **kw)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), [str(t) for t in col_labels], rotation=rotation, fontsize=fontsize)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), [str(t) for t in row_labels], fontsize=fontsize)
    return image

"""Small plotting helpers shared by the notebooks and task modules; each returns a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot, so a helper's figure shows
exactly once when it is a cell's last expression (pyplot figures would also be flushed by
the inline backend, i.e. shown twice). Seaborn draws what it is the kept library for
(confusion matrices, heatmaps, histograms, scatter and bar charts) onto those figures' axes.
`save(fig, name)` writes the PNG into the current run's figures/ folder and returns the figure,
so `viz.save(viz.curves(h), "curves")` both records and shows the plot.

Importing this applies `theme()`: seaborn's whitegrid theme with the Hangul font on top. Restyle
with `viz.theme(...)`, not `sns.set_theme(...)`: seaborn's theme resets the font family, and
Korean text would then show as empty boxes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from polarkit.viz import fonts


def theme(style: str = "whitegrid", context: str = "notebook", **kw) -> str | None:
    """Apply a seaborn theme (`sns.set_theme` arguments), then the Hangul font; return its family (None: none found).

    The font goes last because `sns.set_theme` sets font.family to "sans-serif", which has no Hangul.
    """
    sns.set_theme(context=context, style=style, **kw)
    return fonts.setup()  # Hangul in every plot; warns once if no font exists


theme()
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


def write_png(
    fig: Figure, name: str, *, out_dir: str | Path | None = None, dpi: int = 120, tight: bool | None = None
) -> Path | None:
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


def confusion(
    y_true, y_pred, labels: Sequence | None = None, *, normalize: str | None = None, title: str | None = None
) -> Figure:
    """Confusion matrix (rows true, columns predicted) of two (N,) label arrays, each cell annotated.

    labels: the class values, or display names for integer classes 0..K-1 (e.g. ["부정", "긍정"]).
    normalize: None (counts), "true", "pred" or "all" as in sklearn.
    """
    from sklearn.metrics import confusion_matrix
    from sklearn.utils.multiclass import unique_labels

    values, names = labels, labels
    if labels is not None and not set(np.asarray(y_true).tolist()) <= set(labels):
        values = list(range(len(labels)))  # labels are names for integer classes
    if values is None:
        values = names = unique_labels(y_true, y_pred).tolist()
    matrix = confusion_matrix(y_true, y_pred, labels=values, normalize=normalize)
    k = len(values)
    fig, ax = figure(size=(max(4.0, 0.45 * k + 2.5),) * 2)
    slanted = k > 6 and max(len(str(n)) for n in names) > 3  # e.g. digits 0..9 stay upright
    draw_heatmap(
        ax,
        matrix,
        names,
        names,
        cmap="Blues",
        rotation=45 if slanted else 0,
        annotate=True,
        fmt=".2f" if normalize else "d",
        annot_kws={"fontsize": 10 if k <= 12 else 8},
        square=True,
        vmin=0,
        linewidths=0.5,
        linecolor="white",
    )
    ax.set(xlabel="Predicted label", ylabel="True label", title=title or "confusion matrix")
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
    sns.scatterplot(x=gold, y=pred, ax=ax, s=10, alpha=0.5, linewidth=0)
    lo, hi = np.nanmin([gold.min(), pred.min()]), np.nanmax([gold.max(), pred.max()])
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--")
    r = np.corrcoef(gold, pred)[0, 1] if len(gold) > 1 else float("nan")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title or 'prediction vs gold'}  (r = {r:.3f})")
    return fig


def hist(values, bins: int = 30, title: str | None = None, *, xlabel: str | None = None) -> Figure:
    """Histogram of a (N,) array, or overlaid histograms of a {name: (N,) array} mapping on common bins."""
    groups = values if isinstance(values, Mapping) else {None: values}
    names = [str(k) for k in groups]
    arrays = [np.asarray(v, float).ravel() for v in groups.values()]
    fig, ax = figure()
    if len(groups) > 1:
        data = pd.DataFrame({"value": np.concatenate(arrays), "group": np.repeat(names, [len(a) for a in arrays])})
        sns.histplot(data, x="value", hue="group", hue_order=names, bins=bins, common_bins=True, alpha=0.5, ax=ax)
        if ax.get_legend() is not None:
            ax.get_legend().set_title(None)
    else:
        sns.histplot(x=arrays[0], bins=bins, alpha=0.9, ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    return fig


def heatmap(
    matrix,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    cmap: str = "viridis",
    annotate: bool | None = None,
) -> Figure:
    """Heatmap of a (R,C) matrix (e.g. cosine similarities) with optional labels and a colour bar;
    cells annotated when small (R*C <= 100). NaN cells are left blank."""
    matrix = np.asarray(matrix, float)
    r, c = matrix.shape
    fig, ax = figure(size=(min(14, 1.5 + 0.4 * c), min(14, 1.2 + 0.4 * r)))
    short = col_labels is None or max((len(str(t)) for t in col_labels), default=0) <= 4
    draw_heatmap(
        ax,
        matrix,
        row_labels,
        col_labels,
        cmap=cmap,
        rotation=0 if short else 90,
        annotate=annotate if annotate is not None else r * c <= 100,
        annot_kws={"fontsize": 7},
        cbar=True,
        cbar_kws={"shrink": 0.8},
    )
    ax.set_title(title)
    return fig


def draw_heatmap(
    ax,
    matrix,
    row_labels=None,
    col_labels=None,
    *,
    cmap="viridis",
    fontsize=None,
    rotation=90,
    annotate: bool = False,
    fmt: str = ".2g",
    cbar: bool = False,
    **kw,
):
    """Draw a (R,C) matrix on `ax` with seaborn, row 0 at the top, every row/column labelled.

    Cell (i, j) spans x in [j, j+1] and y in [i, i+1]; NaN cells stay blank. Without labels the axis
    shows (thinned) indices. annotate: write each value in its cell with format `fmt`. kw go to
    `sns.heatmap` (vmin, vmax, square, annot_kws, cbar_kws, linewidths, ...).
    Returns the QuadMesh: `.get_array()` is the drawn matrix; pass it to `fig.colorbar`.
    """
    n_before = len(ax.collections)
    # explicit labels are set below, so seaborn's tick-overlap check (which measures every label) is skipped
    sns.heatmap(
        np.asarray(matrix),
        ax=ax,
        cmap=cmap,
        annot=annotate,
        fmt=fmt,
        cbar=cbar,
        xticklabels="auto" if col_labels is None else False,
        yticklabels="auto" if row_labels is None else False,
        **kw,
    )
    ax.grid(False)
    size = {} if fontsize is None else {"fontsize": fontsize}
    if col_labels is not None:
        slanted = 0 < rotation % 180 < 90
        ax.set_xticks(
            np.arange(len(col_labels)) + 0.5,
            [str(t) for t in col_labels],
            rotation=rotation,
            ha="right" if slanted else "center",
            rotation_mode="anchor" if slanted else "default",
            **size,
        )
    if row_labels is not None:
        ax.set_yticks(np.arange(len(row_labels)) + 0.5, [str(t) for t in row_labels], rotation=0, va="center", **size)
    return ax.collections[n_before]


def bars(
    values, *, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None, horizontal: bool = False
) -> Figure:
    """Bar chart: one bar per entry of a Series / {name: value} mapping / (N,) array, or grouped bars of a
    DataFrame (one group per row, one coloured bar per column, with a legend).

    Names may repeat (e.g. the words of a sentence with their weights): every entry gets its own bar,
    in the given order. horizontal: names down the y axis (first at the top), values along x.
    """
    frame = (
        values
        if isinstance(values, pd.DataFrame)
        else pd.Series(dict(values) if isinstance(values, Mapping) else values).to_frame()
    )
    names, series = [str(i) for i in frame.index], [str(c) for c in frame.columns]
    n, grouped = len(names), frame.shape[1] > 1
    data = pd.DataFrame(
        {
            "position": np.tile(np.arange(n), len(series)),
            "series": np.repeat(series, n),
            "value": frame.to_numpy(float).T.ravel(),
        }
    )
    span = 0.3 * n * (1 + 0.4 * (len(series) - 1))  # inches of bars
    if horizontal:
        fig, ax = figure(size=(6.0, max(2.5, span + 1.2)))
        sns.barplot(data, y="position", x="value", hue="series" if grouped else None, orient="h", errorbar=None, ax=ax)
        ax.set_yticks(range(n), names)
        ax.axvline(0, color=".3", lw=0.8)
    else:
        width = max(4.0, 1.5 * span + 2)
        fig, ax = figure(size=(width, 3.6))
        sns.barplot(data, x="position", y="value", hue="series" if grouped else None, errorbar=None, ax=ax)
        slanted = sum(map(len, names)) * 0.12 > 0.8 * width  # about 0.12 inch a character
        ax.set_xticks(
            range(n),
            names,
            rotation=60 if slanted else 0,
            ha="right" if slanted else "center",
            rotation_mode="anchor" if slanted else "default",
        )
        ax.axhline(0, color=".3", lw=0.8)
    if grouped and ax.get_legend() is not None:
        ax.get_legend().set_title(None)
    labels = {"xlabel": xlabel, "ylabel": ylabel}
    value_axis = "xlabel" if horizontal else "ylabel"
    if labels[value_axis] is None and isinstance(values, pd.Series) and values.name is not None:
        labels[value_axis] = str(values.name)  # a named Series labels the value axis
    ax.set(title=title, xlabel=labels["xlabel"] or "", ylabel=labels["ylabel"] or "")
    return fig


def signed_colour(weight: float, scale: float) -> tuple[float, float, float, float]:
    """RGBA for a signed weight: red when >= 0, blue when < 0; opacity |weight| / scale (at most 0.85)."""
    a = min(1.0, abs(weight) / scale) * 0.85 if scale > 0 else 0.0
    return (0.86, 0.15, 0.15, a) if weight >= 0 else (0.15, 0.35, 0.86, a)


def shaded_words(
    rows, headers: Sequence[str | None] | None = None, *, width: float = 9.0, fontsize: int = 11, wrap: int = 48
) -> Figure:
    """Texts drawn word after word in boxes shaded by a signed weight per word (`signed_colour`):
    red for positive, blue for negative, darker for larger |weight| relative to the text's largest.

    rows: [(words (W,), weights (W,))], one per text; headers: a grey line above each text (or None);
    a text wraps after about `wrap` characters. E.g. how much masking each word lowers a prediction.
    """
    lines = [_wrap(words, weights, wrap) for words, weights in rows]
    headers = list(headers) if headers is not None else [None] * len(lines)
    n_rows = sum(len(ls) + 1 for ls in lines)
    fig = Figure(figsize=(width, 0.32 * n_rows + 0.4))
    FigureCanvasAgg(fig)  # a canvas that can measure text (word boxes are placed one after another)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(n_rows + 0.5, 0))
    row = 0.5
    for (_words, weights), wrapped, header in zip(rows, lines, headers):
        if header:
            ax.text(0.01, row, str(header), fontsize=fontsize - 2, color="#555", va="center")
        scale = max(float(np.abs(np.asarray(weights, float)).max()) if len(weights) else 0.0, 1e-6)
        for chunk in wrapped:
            row += 1
            _draw_words(fig, ax, chunk, row, scale, fontsize)
        row += 1
    return fig


def _wrap(words, weights, chars: int) -> list[list[tuple[str, float]]]:
    """Split (word, weight) pairs into lines of about `chars` characters."""
    lines, cur, n = [], [], 0
    for w, d in zip(words, weights):
        if cur and n + len(w) > chars:
            lines, cur, n = lines + [cur], [], 0
        cur.append((str(w), float(d)))
        n += len(w) + 1
    return lines + [cur] if cur else lines


def _draw_words(fig: Figure, ax, words, row: float, scale: float, fontsize: int) -> None:
    """Draw one line of words at `row`, measuring each box to place the next."""
    renderer, x = fig.canvas.get_renderer(), 0.01
    for w, d in words:
        t = ax.text(
            x,
            row,
            w,
            fontsize=fontsize,
            va="center",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": signed_colour(d, scale), "edgecolor": "none"},
        )
        box = t.get_window_extent(renderer).transformed(ax.transData.inverted())
        x = box.x1 + 0.012

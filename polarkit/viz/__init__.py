"""Plots and attention views for notebooks and task modules; importing this applies a seaborn theme
with a Hangul font for matplotlib (restyle with `viz.theme(...)`, which keeps the font).

    from polarkit import viz
    viz.save(viz.curves(history, metrics=("loss", "accuracy")), "curves")
    viz.attention_views(model, tokenizer, "문장 하나", name="example")  # files in the run; shows the PNG grid
"""

from polarkit.viz.attention import attention_views, heatmap_grid, save_views
from polarkit.viz.fonts import hangul_font
from polarkit.viz.plots import (
    bars,
    confusion,
    curves,
    draw_heatmap,
    figure,
    heatmap,
    hist,
    image_grid,
    save,
    scatter_pred,
    shaded_words,
    signed_colour,
    theme,
    write_png,
)

__all__ = [
    "attention_views",
    "bars",
    "confusion",
    "curves",
    "draw_heatmap",
    "figure",
    "hangul_font",
    "heatmap",
    "heatmap_grid",
    "hist",
    "image_grid",
    "save",
    "save_views",
    "scatter_pred",
    "shaded_words",
    "signed_colour",
    "theme",
    "write_png",
]

"""Plots and attention views for the notebooks; importing this sets up a Hangul font for matplotlib.

    from polarkit import viz
    viz.save(viz.curves(history, metrics=("loss", "accuracy")), "curves")
    viz.attention_views(model, tokenizer, "문장 하나", name="example")  # files in the run; shows the PNG grid
"""
from polarkit.viz.attention import attention_views, heatmap_grid, save_views
from polarkit.viz.fonts import hangul_font
from polarkit.viz.plots import confusion, curves, figure, heatmap, hist, image_grid, save, scatter_pred, write_png

__all__ = ["attention_views", "confusion", "curves", "figure", "hangul_font", "heatmap", "heatmap_grid",
           "hist", "image_grid", "save", "save_views", "scatter_pred", "write_png"]

"""The saved bertviz views really render in a browser with no network (headless Chromium)."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
from browser import dump_dom, find_chromium, screenshot

from polarkit.viz import attention

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install -y chromium)"),
]

TOKENS = ["[CLS]", "영화", "##가", "정말", "좋았다", "[SEP]", "the", "acting", "was", "great", "[SEP]"]
L, H, T = 2, 3, len(TOKENS)


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    rng = np.random.default_rng(0)
    attn = rng.dirichlet(np.full(T, 0.3), size=(L, H, T))  # (L,H,T,T), rows sum to 1
    out = tmp_path_factory.mktemp("views")
    return attention.save_views(attn, TOKENS, sentence_b_start=6, n_total=40, name="리뷰", out_dir=out)


def drawn_pixels(png_path) -> tuple[float, float]:
    """(share of non-white pixels, share of coloured ones) of a screenshot.

    The page's own text is black/grey; only the attention lines and head swatches that
    bertviz's d3 code draws are coloured, so coloured pixels prove the script ran.
    """
    rgb = matplotlib.image.imread(png_path)[..., :3].astype(float)
    ink = (rgb < 0.96).any(-1).mean()
    coloured = (rgb.max(-1) - rgb.min(-1) > 0.15).mean()
    return ink, coloured


@pytest.mark.parametrize("kind", ["head_view", "model_view"])
def test_view_renders_offline(views, kind, tmp_path):
    dom = dump_dom(views[kind])
    assert "<svg" in dom, "bertviz script did not run: no SVG in the DOM"
    lines = L * H * T * T if kind == "model_view" else H * T * T  # one line per token pair (and head)
    assert dom.count("<line") == lines
    assert "showing 11 of 40 tokens" in dom
    if kind == "head_view":
        assert ">영화</text>" in dom and ">acting</text>" in dom  # tokens drawn as SVG text
    png = screenshot(views[kind], tmp_path / f"{kind}.png", width=1280, height=1000)
    ink, coloured = drawn_pixels(png)
    assert ink > 0.005 and coloured > 0.0005, f"screenshot looks blank: {ink:.2%} ink, {coloured:.2%} coloured"

"""A run's notebook.html opens offline in headless Chromium with its images embedded; index.html links runs."""

import base64

import pytest
from browser import dump_dom, find_chromium, screenshot
from conftest import make_notebook

from polarkit import executor

PNG_CELL = (
    "from polarkit.viz import plots\n"
    'fig, ax = plots.figure()\nax.plot([1, 2, 3])\nax.set_title("손실 곡선")\nplots.save(fig, "loss")'
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import os

    tmp = tmp_path_factory.mktemp("report")
    os.environ["POLARKIT_OUTPUTS"] = str(tmp / "outputs")
    try:
        nb = make_notebook(tmp / "97_plot.ipynb", "seed: int = 0  # seed", PNG_CELL, 'run.finish({"test_x": 1.0})')
        yield executor.execute(nb, {})
    finally:
        del os.environ["POLARKIT_OUTPUTS"]


def test_html_embeds_images_and_summary(run_dir):
    html = (run_dir / "notebook.html").read_text()
    assert "data:image/png;base64," in html and (run_dir / "figures" / "loss.png").is_file()
    assert run_dir.name in html  # the summary table at the top names the run
    assert "test_x" in html  # the metrics table at the end
    index = (run_dir.parents[1] / "index.html").read_text()
    assert "97_plot" in index and "notebook.html" in index and "loss.png" in index


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install -y chromium)")
def test_notebook_html_renders_offline(run_dir, tmp_path):
    dom = dump_dom(run_dir / "notebook.html")
    assert "<img" in dom and "data:image/png;base64," in dom
    png = tmp_path / "notebook.png"
    screenshot(run_dir / "notebook.html", png)
    assert png.stat().st_size > 10_000
    assert base64.b64encode(png.read_bytes()[:8]).startswith(b"iVBORw0KGgo")  # a PNG file

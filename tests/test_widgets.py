"""Progress in a notebook: one display updated in place per loop, never a stream of text progress lines.

A real polarkit kernel executes a small notebook (nbclient, as papermill does): `train.fit` trains a
tiny CNN for 16 steps with 4 evaluations, and `embed.encode` embeds 40 texts in 10 batches.
transformers' notebook callback draws training as one HTML progress bar plus the metrics table,
re-drawn in place (update_display_data); `embed.encode` uses a tqdm.auto widget, whose final state is
saved in the notebook metadata. tests/test_lab_browser.py opens the same notebook in JupyterLab.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

TRAIN_CELL = """\
import numpy as np, torch
from polarkit import train
from polarkit.tasks import mnist
torch.set_num_threads(1)
rng = np.random.default_rng(0)
ds = mnist.MnistDataset(rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64))
trainer, hist = train.fit(mnist.SmallCNN(), ds, ds, out_dir="progress-ckpt", epochs=2, lr=1e-3, batch_size=8,
                          group_by_length=False, evals_per_epoch=2)
print("evaluations:", len(hist))"""
TRAIN_STEPS = 16  # 64 images / batch 8 * 2 epochs

ENCODE_CELL = """\
from polarkit import embed, models
texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(40)]
tok = models.load_tokenizer("scratch:tiny", texts)
vectors = embed.encode(models.load_model("scratch:tiny", tokenizer=tok), tok, texts, batch_size=4)
print("encoded:", vectors.shape)"""
ENCODED = 40

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# what a text progress bar leaves in a stream: tqdm's "40%|####" / "12/40 [", or a "[train] step 3/16" line
TEXT_PROGRESS = re.compile(r"\d+%\||\d+/\d+ \[|step \d+/\d+")


def progress_notebook(path: Path) -> Path:
    """The training + encoding notebook, with the kernelspec the committed notebooks carry (python3)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(TRAIN_CELL), nbformat.v4.new_code_cell(ENCODE_CELL)]
    nbformat.write(nb, path)
    return path


def _html(out) -> str:
    html = out.get("data", {}).get("text/html", "")
    return "".join(html) if isinstance(html, list) else html


def _text_progress_lines(cell) -> list[str]:
    return [
        line
        for out in cell.outputs
        if out.output_type == "stream"
        for line in re.split(r"[\r\n]", out.text)
        if TEXT_PROGRESS.search(line)
    ]


def test_fit_and_encode_show_one_progress_display_each(tmp_path):
    from nbclient import NotebookClient

    from polarkit import executor

    nb = nbformat.read(progress_notebook(tmp_path / "progress.ipynb"), as_version=4)
    NotebookClient(
        nb, kernel_name=executor.ensure_kernel(), timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    train_cell, encode_cell = nb.cells
    for cell in nb.cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
        assert _text_progress_lines(cell) == [], "progress printed as text lines"

    # training: exactly one progress display (transformers' HTML bar, or a widget should it become one),
    # re-drawn in place to its final state: the last step of the last epoch, with the metrics table
    bars = [o for o in train_cell.outputs if "<progress" in _html(o) or WIDGET_VIEW in o.get("data", {})]
    assert len(bars) == 1, [o.get("data", {}).keys() for o in train_cell.outputs]
    if WIDGET_VIEW not in bars[0].data:
        html = _html(bars[0])
        assert html.count("<progress") == 1, html  # the evaluation's inner bar is gone once it finished
        assert f"<progress value='{TRAIN_STEPS}' max='{TRAIN_STEPS}'" in html and "Epoch 2/2" in html, html
        rows = [int(step) for step in re.findall(r"<tr>\s*<td>(\d+)</td>", html)]
        assert "Validation Loss" in html and rows == [4, 8, 12, 16], rows  # one table row per evaluation
    assert any("evaluations: 4" in o.get("text", "") for o in train_cell.outputs)

    # encoding: exactly one tqdm widget, its final state (40 of 40) saved in the notebook metadata
    views = [o for o in encode_cell.outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(views) == 1, [o.get("data", {}).keys() for o in encode_cell.outputs]
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert len(bars) == 1 and bars[0]["value"] == bars[0]["max"] == ENCODED, bars
    assert bars[0]["bar_style"] == "success"
    labels = [m["state"]["value"] for m in state.values() if m["model_name"] == "HTMLModel"]
    assert any(f"{ENCODED}/{ENCODED}" in v for v in labels), labels  # tqdm's counter, right of the bar

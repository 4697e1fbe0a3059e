"""Every numbered notebook, found by glob, runs end to end at `smoke` size and leaves a full record."""

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from polarkit import executor, params

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # 08_compare_runs sorts last
TRAINING = {"01_mnist_cnn", "02_mnist_vit", "03_nlp_cola", "04_bert_embedding", "06_sts", "07_review_classifier"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One outputs folder for the whole module, so 08_compare_runs sees the earlier smoke runs."""
    return tmp_path_factory.mktemp("outputs")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_committed_notebook_is_stripped_and_parameterised(nb):
    cells = nbformat.read(nb, as_version=4).cells
    assert not any(c.get("outputs") for c in cells if c.cell_type == "code"), "commit notebooks without outputs"
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert all(p.help for p in params.declared(nb).values()), "every parameter has a comment"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_at_smoke_size(nb, outputs, monkeypatch):
    monkeypatch.setenv("POLARKIT_OUTPUTS", str(outputs))
    yml = ROOT / "params" / "smoke" / f"{nb.stem}.yaml"
    run_dir = executor.execute(nb, params.check_file(yml, nb), profile="smoke")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "succeeded", f"{status.get('cell')}: {status.get('error')}: {status.get('message')}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    for name in ("notebook.ipynb", "notebook.html", "params.yaml", "env.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "figures").glob("*.png")), "every notebook shows at least one plot"
    empty = [d.name for d in run_dir.rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert not empty, f"a run folder keeps no empty folders (e.g. a Trainer output_dir): {empty}"
    if nb.stem in TRAINING:  # the loss curve's numbers, for compare
        history = pd.read_csv(run_dir / "history.csv")
        assert len(history) and {"step", "train_loss"} <= set(history.columns)

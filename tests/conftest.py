"""Shared test set-up: offline, shared data, run folders under a temp dir, tiny notebook factory."""

import os
from pathlib import Path

import nbformat
import pytest

from polarkit import environment

os.environ.setdefault("POLARKIT_TRACKING", "off")  # tests that mirror to MLflow switch it on themselves
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline even without local data
environment.default_to_shared_data()  # $POLARKIT_DATA, else ../shared/data beside the repo when it exists


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """Run folders go to a temp dir (the kernel inherits the variable)."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("POLARKIT_OUTPUTS", str(out))
    return out


def make_notebook(path: Path, params: str, *cells: str, name: str | None = None) -> Path:
    """Write a notebook: a `parameters` cell, start_run, then `cells`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    start = f'import polarkit as pk\nrun = pk.start_run("{name or path.stem}", globals())'
    nb.cells = [p, nbformat.v4.new_code_cell(start), *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny_notebook(tmp_path):
    """A notebook that reports lr and fails on request."""
    return make_notebook(
        tmp_path / "98_tiny.ipynb",
        'lr: float = 3e-5  # learning rate\nname: str = "x"  # a name\n'
        "fail: bool = False  # raise?\nseed: int = 0  # seed",
        'assert not fail, "asked to fail"',
        'run.finish({"test_lr": lr, "test_len": len(name)})',
    )

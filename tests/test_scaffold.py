"""`polarkit new`: the scaffold is a valid, parameterised notebook whose YAMLs pass the checks; bad names refused."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from polarkit import cli, executor, params, scaffold

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path):
    """A repository layout with one real notebook (03) and its smoke + variant YAMLs."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "03_nlp_cola.ipynb", tmp_path / "notebooks")
    for profile in ("smoke", "full-gpu", "learn"):
        (tmp_path / "params" / profile).mkdir(parents=True)
        shutil.copy(ROOT / "params" / profile / "03_nlp_cola.yaml", tmp_path / "params" / profile)
    (tmp_path / "params" / "sweeps").mkdir()  # a sweep file of the same stem is no parameter file
    (tmp_path / "params" / "sweeps" / "03_nlp_cola.yaml").write_text("notebook: 03_nlp_cola\nmetric: val_mcc\n")
    return tmp_path


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def test_new_notebook_has_the_standard_shape(repo):
    written = scaffold.new("09_demo", repo)
    nb_path = repo / "notebooks" / "09_demo.ipynb"
    assert written == [nb_path, *(repo / "params" / p / "09_demo.yaml" for p in ("smoke", "quick", "full"))]
    nb = nbformat.read(nb_path, as_version=4)
    nbformat.validate(nb)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# 09 demo")
    tags = [c.metadata.get("tags", []) for c in cells]
    assert sum("parameters" in t for t in tags) == 1 and "parameters" in tags[1]
    assert 'run = pk.start_run("09_demo", globals())' in cells[2].source and "train.setup(seed)" in cells[2].source
    headings = [c.source.splitlines()[0] for c in cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert headings == ["## 1 Data", "## 2 Model", "## 3 Train", "## 4 Evaluate", "## 5 Report"]
    assert cells[-1].source.startswith("run.finish({")
    assert not any(c.get("outputs") for c in cells if c.cell_type == "code")
    assert max(len(c.source.splitlines()) for c in cells if c.cell_type == "code") <= 15


def test_parameters_are_typed_commented_and_labelled(repo):
    scaffold.new("09_demo", repo)
    declared = params.declared(repo / "notebooks" / "09_demo.ipynb")  # also refuses a default outside its rule
    assert {"seed", "n_train", "epochs", "lr", "batch_size"} <= set(declared)
    for p in declared.values():
        assert p.type != "None" and p.help.split(":")[0] in ("scientific", "nuisance", "fixed"), p
    assert declared["lr"].rule.problem(0.0) and declared["channels"].rule.problem([8, 16])  # range rules declared
    assert declared["scheduler"].rule.choices == ("linear", "cosine", "constant_with_warmup")


def test_every_new_yaml_passes_the_check_and_labels_each_line(repo):
    scaffold.new("09_demo", repo)
    for profile in ("smoke", "quick", "full"):
        path = repo / "params" / profile / "09_demo.yaml"
        assert params.check_file(path), profile  # found through notebook_for, like `polarkit check`
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        assert all(ln.split("# ")[1].split()[0] in ("scientific", "nuisance", "fixed") for ln in lines), lines


def test_from_copies_cells_and_every_yaml_under_the_new_name(repo):
    written = scaffold.new("10_cola_again", repo, source="03_nlp_cola")
    assert {p.parent.name for p in written[1:]} == {"smoke", "full-gpu"}  # not sweeps/ nor learn/
    new, old = _cells(written[0]), _cells(repo / "notebooks" / "03_nlp_cola.ipynb")
    assert [c.cell_type for c in new] == [c.cell_type for c in old]
    assert new[1].source == old[1].source  # the parameters cell as it was
    assert 'pk.start_run("10_cola_again", globals())' in "".join(c.source for c in new)
    assert '03_nlp_cola"' not in "".join(c.source for c in new if c.cell_type == "code")
    assert new[0].source.startswith("# 10 cola again\nStarted from `03_nlp_cola`.")
    for path in written[1:]:
        assert params.check_file(path) == params.load_yaml(repo / "params" / path.parent.name / "03_nlp_cola.yaml")


def test_from_strips_outputs_and_papermill_traces(repo, tmp_path):
    src = repo / "notebooks" / "03_nlp_cola.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.metadata["papermill"] = {"parameters": {"lr": 1.0}}
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="noise\n")]
    nb.cells[2].execution_count = 3
    injected = nbformat.v4.new_code_cell("# Parameters\nlr = 1.0", metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(2, injected)
    nbformat.write(nb, src)
    cells = _cells(scaffold.new("10_copy", repo, source="03")[0])
    assert not any(c.get("outputs") or c.get("execution_count") for c in cells if c.cell_type == "code")
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in cells)
    assert "papermill" not in nbformat.read(repo / "notebooks" / "10_copy.ipynb", as_version=4).metadata


@pytest.mark.parametrize(
    "name, source, message",
    [
        ("9_demo", None, "two digits, an underscore and snake_case"),
        ("09-demo", None, "e.g. '09_demo'"),
        ("09_Demo", None, "snake_case"),
        ("09_demo.ipynb", None, "snake_case"),
        ("09_", None, "snake_case"),
        ("03_nlp_cola", None, "already exists"),
        ("03_other", None, "number 03 is taken by 03_nlp_cola"),
        ("09_copy", "07_review_classifier", "no such notebook"),
        ("09_copy", "nope", "have: 03_nlp_cola"),
    ],
)
def test_refusals_name_the_problem_and_write_nothing(repo, name, source, message):
    before = sorted(repo.rglob("*"))
    with pytest.raises(scaffold.ScaffoldError, match=message.replace(".", r"\.").replace("(", r"\(")):
        scaffold.new(name, repo, source=source)
    assert sorted(repo.rglob("*")) == before


def test_existing_yaml_alone_is_refused(repo):
    (repo / "params" / "quick").mkdir()
    (repo / "params" / "quick" / "09_demo.yaml").write_text("seed: 1\n")
    with pytest.raises(scaffold.ScaffoldError, match=r"parameter files already exist: .*quick/09_demo.yaml"):
        scaffold.new("09_demo", repo)
    assert not (repo / "notebooks" / "09_demo.ipynb").exists()


def test_cli_new_exits_2_with_a_message(capsys, monkeypatch, repo):
    monkeypatch.setattr(cli.runs, "ROOT", repo)  # not the real repo: a scaffolded 09_* there must not matter
    assert cli.main(["new", "9_bad"]) == 2
    assert "polarkit new: '9_bad': a notebook name is two digits" in capsys.readouterr().err
    assert cli.main(["new", "09_x", "--from", "99_missing"]) == 2
    assert "polarkit new: --from 99_missing: no such notebook" in capsys.readouterr().err


def test_cli_new_writes_under_the_repo_root(capsys, monkeypatch, repo):
    monkeypatch.setattr(cli.runs, "ROOT", repo)
    assert cli.main(["new", "09_demo"]) == 0
    out = capsys.readouterr().out
    assert "created notebooks/09_demo.ipynb" in out and "created params/smoke/09_demo.yaml" in out
    assert (repo / "notebooks" / "09_demo.ipynb").is_file()


def test_the_template_runs_at_smoke_size_and_records_a_full_run(repo, outputs):
    """What `make test` does with a fresh scaffold (tests/test_notebooks.py finds it by glob), here in a temp repo."""
    scaffold.new("09_demo", repo)
    nb = repo / "notebooks" / "09_demo.ipynb"
    run_dir = executor.execute(nb, params.check_file(repo / "params" / "smoke" / "09_demo.yaml"), profile="smoke")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "succeeded", f"{status.get('cell')}: {status.get('error')}: {status.get('message')}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test_accuracy", "val_accuracy", "train_seconds"} <= set(metrics)
    assert {p.name for p in (run_dir / "figures").glob("*.png")} == {"samples.png", "curves.png", "confusion.png"}
    assert (run_dir / "history.csv").is_file() and (run_dir / "predictions.csv").is_file()

"""polarkit.registry: register above a threshold, candidate/champion aliases, promotion rules and refusals,
loading by alias in another process through polarkit and through MLflow's pyfunc, and a real tracking server."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mlflow_store import (  # the fixtures are used as test arguments
    make_run,
    mlflow_template,  # noqa: F401
    start_server,
    stop_server,
    store,  # noqa: F401
    tiny_classifier,  # noqa: F401
    tiny_parts,  # noqa: F401
    tracking_on,  # noqa: F401
)

from polarkit import predictors, registry, runs, tracking

TEXTS = ["The cat sat on the mat.", "Cat the on sat.", "A much longer sentence, with many more words, comes here."]


def _registered_run(outputs, tiny_classifier, value, seed=0, metric="val_mcc", **kw):
    run_dir = make_run(outputs, metrics={metric: value}, **kw)
    model_dir = tiny_classifier(run_dir / "models" / "best", seed=seed)
    return run_dir, model_dir


@pytest.fixture(autouse=True)
def _tracking_on(tracking_on):
    """Every test here tracks, even where the suite turns tracking off."""


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(uri)


def test_registers_only_above_the_threshold_as_candidate(store, outputs, tiny_classifier, capsys):
    low, low_model = _registered_run(outputs, tiny_classifier, 0.10)
    assert registry.register(low, "cola", low_model, "val_mcc", threshold=0.2) is None
    assert "not registered: val_mcc 0.1 does not clear the threshold 0.2" in capsys.readouterr().err
    assert registry.list_models().empty
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.30)
    got = registry.register(run_dir, "cola", model_dir, "val_mcc", threshold=0.2)
    assert got["version"] == 1 and got["alias"] == "candidate" and got["value"] == 0.3
    c = _client(store)
    mv = c.get_model_version_by_alias("cola", "candidate")
    assert str(mv.version) == "1" and mv.tags["polarkit.run_id"] == run_dir.name
    assert (mv.tags["polarkit.metric"], float(mv.tags["polarkit.value"]), mv.tags["polarkit.greater_is_better"]) == (
        "val_mcc",
        0.3,
        "true",
    )
    assert mv.run_id == runs.read_json(run_dir / "status.json")["mlflow_run_id"]  # logged to the run's own MLflow run
    assert c.get_run(mv.run_id).info.status == "FINISHED"
    card = predictors.read_card(model_dir)
    assert (card["metric"], card["value"], card["run_id"]) == ("val_mcc", 0.3, run_dir.name)


def test_the_logged_model_is_code_and_safetensors_never_a_pickle(store, outputs, tiny_classifier):
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.4)
    registry.register(run_dir, "cola", model_dir, "val_mcc", 0.2)
    local = predictors.resolve("cola/1").parents[1]  # <mlflow model>/artifacts/best
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "MLmodel" in files and "pyfunc_model.py" in files and "artifacts/best/model.safetensors" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle", ".bin", ".pt"))], files
    mlmodel = (local / "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel and "python_model.pkl" not in files


def test_a_notebook_registers_its_own_running_run_and_finalize_settles_it(store, outputs, tiny_classifier, monkeypatch):
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.3, state="running", kernel_pid=os.getpid())
    monkeypatch.setattr(runs, "_CURRENT", runs.Run(run_dir))  # as inside the notebook's kernel
    got = registry.register(run_dir, "cola", model_dir, "val_mcc", 0.2)
    c = _client(store)
    assert c.get_run(got["mlflow_run_id"]).info.status == "RUNNING"
    with pytest.raises(ValueError, match="still running"):  # promotion waits for the run to end
        registry.promote("cola")
    runs.Run(run_dir).set_status("succeeded", end=runs.now())  # what executor.finalize records, then mirrors
    assert tracking.mirror(run_dir) == got["mlflow_run_id"]
    assert c.get_run(got["mlflow_run_id"]).info.status == "FINISHED"
    assert registry.promote("cola")["version"] == 1


def test_a_loss_metric_must_fall_below_the_threshold(store, outputs, tiny_classifier):
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 2.5, metric="heldout_adapted_loss")
    assert registry.register(run_dir, "cola", model_dir, "heldout_adapted_loss", threshold=2.0) is None
    got = registry.register(run_dir, "cola", model_dir, "heldout_adapted_loss", threshold=3.0)
    assert got["version"] == 1
    assert registry.list_models().loc[0, "value"] == 2.5


def test_register_refusals(store, outputs, tiny_classifier):
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.3)
    with pytest.raises(ValueError, match="unknown task 'cloa'; did you mean 'cola'"):
        registry.register(run_dir, "cloa", model_dir, "val_mcc", 0.2)
    with pytest.raises(ValueError, match="no metric 'val_mc'; did you mean 'val_mcc'"):
        registry.register(run_dir, "cola", model_dir, "val_mc", 0.2)
    with pytest.raises(ValueError, match="holds a 'cola' model, not 'sentiment'"):
        registry.register(run_dir, "sentiment", model_dir, "val_mcc", 0.2)
    empty = run_dir / "models" / "other"
    empty.mkdir()
    with pytest.raises(ValueError, match="no saved model here"):
        registry.register(run_dir, "cola", empty, "val_mcc", 0.2)
    failed, failed_model = _registered_run(
        outputs, tiny_classifier, 0.9, state="failed", error="ValueError", message="boom"
    )
    with pytest.raises(ValueError, match=r"failed \(ValueError: boom\): only a succeeded run"):
        registry.register(failed, "cola", failed_model, "val_mcc", 0.2)
    other = make_run(outputs, state="running", kernel_pid=os.getpid())  # someone else's live run
    with pytest.raises(ValueError, match="still running"):
        registry.register(other, "cola", model_dir, "val_mcc", 0.2)
    assert registry.list_models().empty


def test_promote_moves_champion_only_to_a_better_model(store, outputs, tiny_classifier):
    first, m1 = _registered_run(outputs, tiny_classifier, 0.30)
    registry.register(first, "cola", m1, "val_mcc", 0.2)
    out = registry.promote("cola")
    assert out["version"] == 1 and out["replaced"] is None and "there was no champion" in out["message"]
    assert "already is the champion" in registry.promote("cola")["message"]
    worse, m2 = _registered_run(outputs, tiny_classifier, 0.25, seed=1)
    registry.register(worse, "cola", m2, "val_mcc", 0.2)
    with pytest.raises(ValueError, match=r"v2 does not beat the champion \(v2 val_mcc 0.25 vs champion v1 val_mcc 0.3"):
        registry.promote("cola")
    forced = registry.promote("cola", force=True)
    assert forced["version"] == 2 and forced["replaced"] == 1
    assert "replaced v1; forced: v2 val_mcc 0.25 vs champion v1 val_mcc 0.3" in forced["message"]
    better, m3 = _registered_run(outputs, tiny_classifier, 0.5, seed=2)
    registry.register(better, "cola", m3, "val_mcc", 0.2)
    assert registry.promote("cola", run=str(better))["replaced"] == 2
    assert registry.promote("cola", version=1, force=True)["version"] == 1
    table = registry.list_models().set_index("version")
    assert table.loc[1, "aliases"] == "champion" and table.loc[3, "aliases"] == "candidate"
    assert list(table.columns) == [
        "task",
        "aliases",
        "metric",
        "value",
        "run_id",
        "run_dir",
        "created",
        "mlflow_run_id",
    ]
    assert table.loc[3, "run_id"] == better.name and table.loc[3, "value"] == 0.5


def test_promote_refusals(store, outputs, tiny_classifier):
    with pytest.raises(ValueError, match="unknown task 'stss'; did you mean 'sts'"):
        registry.promote("stss")
    with pytest.raises(ValueError, match="no model registered under 'sts' yet"):
        registry.promote("sts")
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.3)
    registry.register(run_dir, "cola", model_dir, "val_mcc", 0.2)
    with pytest.raises(ValueError, match="cola has no version 7"):
        registry.promote("cola", version=7)
    bare = make_run(outputs)
    with pytest.raises(ValueError, match=f"run {bare.name} has no saved model"):
        registry.promote("cola", run=str(bare))
    runs.Run(run_dir).set_status("failed", error="NotebookIncomplete", message="the notebook stopped")
    with pytest.raises(ValueError, match="failed .*only a succeeded run"):
        registry.promote("cola")
    runs.Run(run_dir).set_status("running", kernel_pid=os.getpid())
    with pytest.raises(ValueError, match="still running"):
        registry.promote("cola", run=run_dir.name)


def _json_from_another_process(script: str, env: dict) -> object:
    """Run `script` (argv[1] = TEXTS as JSON) in a fresh Python with `env` added; its last stdout line, parsed."""
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_load_by_alias_from_another_process_and_through_mlflow_pyfunc(store, outputs, tiny_classifier):
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.3)
    registry.register(run_dir, "cola", model_dir, "val_mcc", 0.2)
    registry.promote("cola")
    expected = predictors.load(model_dir).predict(TEXTS)
    script = (
        "import json, sys, mlflow, polarkit.predictors as P\n"
        "texts = json.loads(sys.argv[1])\n"
        "ours = P.load('cola@champion').predict(texts)\n"
        "df = mlflow.pyfunc.load_model('models:/cola@champion').predict(texts)\n"
        "print(json.dumps({'ours': ours, 'pyfunc': df.to_dict(orient='records')}))\n"
    )
    got = _json_from_another_process(script, {"MLFLOW_TRACKING_URI": store})
    for name in ("ours", "pyfunc"):
        assert [r["label"] for r in got[name]] == [r["label"] for r in expected]
        np.testing.assert_allclose(
            [r["probs"]["acceptable"] for r in got[name]], [r["probs"]["acceptable"] for r in expected], atol=1e-5
        )
    assert set(expected[0]) == {"label", "confidence", "probs"}


def test_registry_spec_errors_are_clear(store, outputs, tiny_classifier):
    with pytest.raises(ValueError, match="no model registered under 'cola' yet"):
        predictors.load("cola@champion")
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.3)
    registry.register(run_dir, "cola", model_dir, "val_mcc", 0.2)
    with pytest.raises(ValueError, match=r"cola has no alias 'champion' \(versions: 1; aliases: candidate -> v1\)"):
        predictors.load("cola@champion")
    with pytest.raises(ValueError, match="not a registry spec"):
        predictors.load("no such thing")


def test_an_unreachable_tracker_during_register_is_one_warning(outputs, tiny_classifier, monkeypatch, capfd):
    run_dir, model_dir = _registered_run(outputs, tiny_classifier, 0.3)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert registry.register(run_dir, "cola", model_dir, "val_mcc", 0.2) is None
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polarkit: warning: cola not registered"), err


@pytest.fixture
def server(tmp_path, request):
    """A real `mlflow server` on 127.0.0.1 over the PostgreSQL test cluster when PostgreSQL is installed
    (tests/pg.py), else over SQLite; stopped at teardown."""
    import pg

    backend = f"sqlite:///{tmp_path / 'server.db'}"
    if pg.server_bin() is not None:
        backend = request.getfixturevalue("postgres_url")
    proc, url = start_server(backend, tmp_path)
    print(f"mlflow server {url} over {backend.split(':', 1)[0]}")
    yield url
    stop_server(proc)


from pg import postgres_url  # noqa: E402,F401  (fixture, used by `server` when PostgreSQL is here)


def test_real_tracking_server_two_runs_one_registered_promoted_and_loaded_elsewhere(
    server, outputs, tiny_classifier, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("POLARKIT_MODELS", str(tmp_path / "cache"))
    low, low_model = _registered_run(outputs, tiny_classifier, 0.1, sweep="s", trial=0)
    high, high_model = _registered_run(outputs, tiny_classifier, 0.4, seed=3, sweep="s", trial=1)
    ids = [tracking.mirror(low), tracking.mirror(high)]
    assert all(ids) and ids[0] != ids[1]
    assert registry.register(low, "cola", low_model, "val_mcc", 0.2) is None
    assert registry.register(high, "cola", high_model, "val_mcc", 0.2)["version"] == 1
    assert registry.promote("cola")["version"] == 1
    c = _client(server)
    assert {r.info.run_id for r in c.search_runs([c.get_experiment_by_name("03_nlp_cola").experiment_id])} == set(ids)
    assert c.get_run(ids[1]).data.tags["polarkit.trial"] == "1"
    expected = predictors.load(high_model).predict(TEXTS)
    script = (
        "import json, sys, polarkit.predictors as P\n"
        "print(json.dumps(P.load('cola@champion').predict(json.loads(sys.argv[1]))))\n"
    )
    got = _json_from_another_process(
        script, {"MLFLOW_TRACKING_URI": server, "POLARKIT_MODELS": str(tmp_path / "cache-elsewhere")}
    )
    np.testing.assert_allclose(
        [r["probs"]["acceptable"] for r in got], [r["probs"]["acceptable"] for r in expected], atol=1e-5
    )

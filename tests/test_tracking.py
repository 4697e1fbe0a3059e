"""polarkit.tracking: run folders mirrored into a real MLflow store (SQLite in tmp)."""

import json
import time

import pytest
from mlflow_store import make_run, mlflow_template, store, tracking_on  # noqa: F401  (fixtures)

from polarkit import executor, runs, tracking


@pytest.fixture(autouse=True)
def _tracking_on(tracking_on):
    """Every test here tracks, even where the suite turns tracking off."""


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(uri)


def test_default_store_is_sqlite_under_outputs_and_the_env_wins(outputs, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{outputs / 'mlflow.db'}"
    assert tracking.artifact_root(tracking.tracking_uri()) == outputs / "mlartifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:secret@tracker:5000")
    assert tracking.tracking_uri() == "http://user:secret@tracker:5000"
    assert tracking.redact(tracking.tracking_uri()) == "http://user:***@tracker:5000"
    assert tracking.artifact_root(tracking.tracking_uri()) is None
    cmd = tracking.mlflow_ui(outputs, port=5123)
    assert cmd[1:] == [
        "ui",
        "--backend-store-uri",
        f"sqlite:///{outputs / 'mlflow.db'}",
        "--artifacts-destination",
        str(outputs / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        "5123",
    ]


def test_mirror_copies_params_metrics_history_tags_artifacts_and_state(store, outputs):
    run_dir = make_run(outputs, sweep="lr-search", study="lr-search", trial=4)
    (run_dir / "history_keywords.csv").write_text("step,eval_micro_f1,stage\n5,0.4,kw\n10,0.5,kw\n")
    (run_dir / "models" / "best").mkdir(parents=True)
    (run_dir / "models" / "best" / "model.safetensors").write_bytes(bytes(100))
    run_id = tracking.mirror(run_dir)
    assert run_id and runs.read_json(run_dir / "status.json")["mlflow_run_id"] == run_id
    c = _client(store)
    run = c.get_run(run_id)
    assert c.get_experiment(run.info.experiment_id).name == "03_nlp_cola"
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.params == {"model": "scratch:tiny", "lr": "0.0001", "sections": "[a, b]"}
    assert run.data.metrics["val_mcc"] == 0.3 and "broken" not in run.data.metrics  # null skipped
    assert [(m.step, m.value) for m in c.get_metric_history(run_id, "eval_loss")] == [(10, 0.65), (20, 0.6)]
    assert [(m.step, m.value) for m in c.get_metric_history(run_id, "keywords/eval_micro_f1")] == [(5, 0.4), (10, 0.5)]
    tags = run.data.tags
    assert tags["polarkit.notebook"] == "03_nlp_cola" and tags["polarkit.profile"] == "smoke"
    assert tags["polarkit.run_id"] == run_dir.name and tags["polarkit.status"] == "succeeded"
    assert tags["mlflow.source.git.commit"] == "0123abcd" and tags["polarkit.git_dirty"] == "true"
    assert (tags["polarkit.sweep"], tags["polarkit.study"], tags["polarkit.trial"]) == ("lr-search", "lr-search", "4")
    top = {f.path for f in c.list_artifacts(run_id)}
    assert top == {"notebook.html", "params.yaml", "env.json", "figures"}  # no models/, no checkpoints
    assert [f.path for f in c.list_artifacts(run_id, "figures")] == ["figures/curves.png"]


def test_a_second_mirror_updates_the_same_run_without_duplicates(store, outputs):
    run_dir = make_run(outputs, state="running", kernel_pid=None)
    run_id = tracking.mirror(run_dir)
    c = _client(store)
    assert c.get_run(run_id).info.status == "RUNNING"
    metrics = runs.read_json(run_dir / "metrics.json")
    runs.write_json(run_dir / "metrics.json", {**metrics, "val_mcc": 0.35, "val_f1": 0.8})
    runs.Run(run_dir).set_status("succeeded", end=runs.now())
    time.sleep(0.01)
    assert tracking.mirror(run_dir) == run_id
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["polarkit.status"] == "succeeded"
    assert run.data.metrics["val_mcc"] == 0.35 and run.data.metrics["val_f1"] == 0.8
    assert len(c.get_metric_history(run_id, "eval_loss")) == 2  # history points stored once
    assert len(c.get_metric_history(run_id, "val_accuracy")) == 1  # unchanged value not logged again
    assert len(c.search_runs([run.info.experiment_id])) == 1


@pytest.mark.parametrize(
    "state,expected", [("succeeded", "FINISHED"), ("failed", "FAILED"), ("interrupted", "FAILED"), ("pruned", "KILLED")]
)
def test_mlflow_state_follows_status(store, outputs, state, expected):
    run_dir = make_run(outputs, state=state, error="ValueError" if state == "failed" else None)
    run = _client(store).get_run(tracking.mirror(run_dir))
    assert run.info.status == expected and run.data.tags["polarkit.status"] == state
    assert run.info.end_time is not None


def test_a_run_whose_process_died_shows_failed(store, outputs):
    run_dir = make_run(outputs, state="running", kernel_pid=2**22 + 12345)  # above pid_max: never alive
    run = _client(store).get_run(tracking.mirror(run_dir))
    assert run.info.status == "FAILED" and run.data.tags["polarkit.status"] == "died"


def test_a_failed_notebook_run_is_mirrored_as_failed(store, outputs, tiny_notebook):
    run_dir = executor.execute(tiny_notebook, {"fail": True})
    assert runs.read_json(run_dir / "status.json")["state"] == "failed"
    run = _client(store).get_run(tracking.mirror(run_dir))
    assert run.info.status == "FAILED"
    assert run.data.tags["polarkit.error"] == "AssertionError" and run.data.params["fail"] == "true"
    assert "notebook.html" in {f.path for f in _client(store).list_artifacts(run.info.run_id)}


def test_an_unreachable_server_costs_one_warning_line_and_little_time(outputs, monkeypatch, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    run_dir = make_run(outputs)
    t0 = time.monotonic()
    assert tracking.mirror(run_dir) is None
    took = time.monotonic() - t0
    err = capfd.readouterr().err.strip().splitlines()
    assert took < 5, took
    assert len(err) == 1 and err[0].startswith("polarkit: warning: MLflow tracking skipped"), err
    assert "127.0.0.1:9" in err[0]
    assert "mlflow_run_id" not in runs.read_json(run_dir / "status.json")


def test_a_server_that_never_answers_costs_one_timeout(outputs, monkeypatch, capfd):
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []  # accepted connections, never answered
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(8)], daemon=True).start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{srv.getsockname()[1]}")
    monkeypatch.setenv("POLARKIT_TRACKING_TIMEOUT", "1")
    t0 = time.monotonic()
    assert tracking.mirror(make_run(outputs)) is None
    assert time.monotonic() - t0 < 4
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polarkit: warning: MLflow tracking skipped"), err
    srv.close()


def test_a_broken_store_is_one_warning(outputs, monkeypatch, capfd, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}")
    assert tracking.mirror(make_run(outputs)) is None
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polarkit: warning:"), err


def test_tracking_off_does_nothing(outputs, monkeypatch):
    monkeypatch.setenv("POLARKIT_TRACKING", "off")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.mirror(make_run(outputs)) is None
    assert not (outputs / "mlflow.db").exists()


def test_backfill_mirrors_only_runs_not_yet_in_this_store(store, outputs):
    first = make_run(outputs)
    tracking.mirror(first)
    others = [make_run(outputs, stem="06_sts", metrics={"val_pearson": 0.8}), make_run(outputs, state="failed")]
    done = tracking.backfill(outputs, progress=False)
    assert sorted(d for d, _ in done) == sorted(others) and all(rid for _, rid in done)
    assert tracking.backfill(outputs, progress=False) == []
    c = _client(store)
    assert {e.name for e in c.search_experiments()} >= {"03_nlp_cola", "06_sts"}


def test_mirror_is_quick_once_mlflow_is_loaded(store, outputs):
    tracking.mirror(make_run(outputs))  # imports and store opened once per process
    run_dir = make_run(
        outputs, history="step,train_loss,eval_loss\n" + "".join(f"{s},{1 / s},{1.1 / s}\n" for s in range(1, 51))
    )
    t0 = time.perf_counter()
    assert tracking.mirror(run_dir)
    took = time.perf_counter() - t0
    print(f"mirror of a run folder (50 history rows, 3 artifacts + 1 figure): {took * 1000:.0f} ms")
    assert took < 3.0  # ~0.15 s on an idle 2-core machine; generous for a loaded one


def test_mirror_result_is_json_safe_in_status(store, outputs):
    run_dir = make_run(outputs)
    tracking.mirror(run_dir)
    st = json.loads((run_dir / "status.json").read_text())
    assert st["mlflow_tracking_uri"] == store and st["state"] == "succeeded"


def test_a_run_id_from_a_store_that_is_gone_starts_a_new_mlflow_run(store, outputs):
    run_dir = make_run(outputs, mlflow_run_id="0" * 32, mlflow_tracking_uri=store)  # e.g. mlflow.db was deleted
    run_id = tracking.mirror(run_dir)
    assert run_id and run_id != "0" * 32 and runs.read_json(run_dir / "status.json")["mlflow_run_id"] == run_id

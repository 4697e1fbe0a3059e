"""Fixtures for MLflow tests: a fresh SQLite store per test (copied from one made per session, because
creating a store runs MLflow's schema migrations: seconds), run folders written directly, a tiny classifier,
and a real `mlflow server` on 127.0.0.1.

    from mlflow_store import mlflow_template, store, tiny_classifier, make_run  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polarkit import runs

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    """A migrated, empty MLflow SQLite database file."""
    from polarkit import tracking

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    tracking._create_local_store(f"sqlite:///{db}")  # migrations; experiment 0's artifacts beside the file
    return db


@pytest.fixture(autouse=False)
def tracking_on(monkeypatch):
    """Tracking on for this test, whatever the suite's default (POLARKIT_TRACKING)."""
    monkeypatch.setenv("POLARKIT_TRACKING", "on")


@pytest.fixture
def store(mlflow_template, outputs, tmp_path, monkeypatch, tracking_on):
    """MLFLOW_TRACKING_URI -> a fresh copy of the template store; models cache and outputs in tmp."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("POLARKIT_MODELS", str(tmp_path / "models-cache"))
    return uri


def make_run(
    outputs: Path,
    stem: str = "03_nlp_cola",
    state: str = "succeeded",
    metrics: dict | None = None,
    history: str | None = None,
    **status,
) -> Path:
    """A run folder as the executor leaves it (params, env, status, metrics, history, figures, notebook.html)."""
    d = runs.new_run_dir(stem, outputs)
    (d / "params.yaml").write_text("model: scratch:tiny\nlr: 0.0001\nsections: [a, b]\n", encoding="utf-8")
    runs.write_json(d / "env.json", {"commit": "0123abcd", "dirty": True, "seed": 0})
    runs.write_json(
        d / "status.json",
        {"state": state, "notebook": stem, "profile": "smoke", "start": runs.now(), "end": runs.now(), **status},
    )
    metrics = {"val_mcc": 0.3, "val_accuracy": 0.7, "broken": None} if metrics is None else metrics
    runs.write_json(d / "metrics.json", metrics)
    (d / "history.csv").write_text(
        history or "epoch,step,train_loss,eval_loss,eval_mcc\n0.5,10,0.7,0.65,0.1\n1.0,20,0.6,0.6,0.2\n",
        encoding="utf-8",
    )
    (d / "figures").mkdir()
    (d / "figures" / "curves.png").write_bytes(b"\x89PNG\r\n" + bytes(2000))
    (d / "notebook.html").write_text("<html><body>" + "x" * 50_000 + "</body></html>", encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tiny_parts():
    """(tokenizer, encoder factory): MiniLM's vocabulary under a randomly initialised tiny BERT."""
    import torch

    from polarkit import models

    tok = models.load_tokenizer("minilm-l6")

    def encoder(seed: int = 0):
        torch.manual_seed(seed)
        return models.load_model("scratch:tiny", head="encoder", tokenizer=tok)

    return tok, encoder


@pytest.fixture
def tiny_classifier(tiny_parts):
    """save(model_dir, task="cola", seed=0) -> a saved tiny 2-class classifier folder with its model card."""
    from polarkit.tasks import classifier, predict

    tok, encoder = tiny_parts

    def save(model_dir: Path, task: str = "cola", seed: int = 0) -> Path:
        clf = classifier.EncoderClassifier(encoder(seed), 2)
        return predict.save_classifier_model(model_dir, clf, tok, ["unacceptable", "acceptable"], task, max_length=32)

    return save


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(backend_uri: str, workdir: Path, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on 127.0.0.1:<free port> over `backend_uri`; waits for /health -> (process, url)."""
    import urllib.request

    port = free_port()
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_text = (workdir / "server.log").read_text()[-3000:]
            raise RuntimeError(f"mlflow server exited {proc.returncode}:\n{log_text}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"mlflow server not up after {timeout:.0f} s:\n{(workdir / 'server.log').read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and its workers (its own process group)."""
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

"""Helpers for the `polarkit serve` tests: tiny real Korean models, a registry holding them, a real server.

    paths = build_models(tmp)            # {"sentiment": folder, "sts": folder}: tiny BERTs on a WordPiece
                                         # vocabulary trained on NSMC + KLUE-STS text, trained a few steps
    proc, url = start_server([str(paths["sentiment"])], tmp)   # `python -m polarkit.serve` on 127.0.0.1:<free port>
    stop_server(proc)

Fixtures: `serve_models` (session: the folders, built once) and `env` (per module: a temp MLflow store with
sentiment v1 champion + v2 candidate, sts v1 and a broken cola v1 champion; the variables set).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

LABELS = ["negative", "positive"]


def _train(model, batches, steps: int, lr: float = 1e-3) -> float:
    """A few AdamW steps over `batches()` (a callable giving (inputs dict, labels)); returns the last loss."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss, threads = float("nan"), torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast, and 5x faster on a machine others share
    try:
        for _ in range(steps):
            inputs, labels = batches()
            out = model(**inputs, labels=labels)
            out["loss"].backward()
            opt.step()
            opt.zero_grad()
            loss = out["loss"].item()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return loss


def build_models(root: Path, n: int = 512, steps: int = 40, seed: int = 0, kinds=("sentiment", "sts")) -> dict:
    """Tiny sentiment classifier and STS cross-encoder folders (saved the way polarkit.load reads them)."""
    import torch

    from polarkit import data, models
    from polarkit.tasks import classifier, predict, sts

    reviews = data.load_nsmc("train", n=n, seed=seed)
    pairs = data.load_klue_sts("train", n=n, seed=seed)
    tok = models.load_tokenizer(
        "scratch:tiny", texts=[*reviews.text, *pairs.sentence1, *pairs.sentence2], vocab_size=4000
    )
    rng = np.random.default_rng(seed)
    out = {}

    def encoder(s):
        torch.manual_seed(s)
        return models.load_model("scratch:tiny", head="encoder", tokenizer=tok)

    if "sentiment" in kinds:
        clf = classifier.EncoderClassifier(encoder(seed), 2)
        texts, y = reviews.text.tolist(), reviews.label.to_numpy()

        def review_batch():
            i = rng.choice(len(texts), 32)
            enc = tok([texts[k] for k in i], truncation=True, max_length=64, padding=True, return_tensors="pt")
            return dict(enc), torch.as_tensor(y[i])

        _train(clf, review_batch, steps)
        out["sentiment"] = predict.save_classifier_model(
            root / f"sentiment-{seed}", clf, tok, LABELS, "sentiment", max_length=64
        )
    if "sts" in kinds:
        cross = sts.build("cross", encoder(seed + 100))
        s1, s2, score = pairs.sentence1.tolist(), pairs.sentence2.tolist(), pairs.score.to_numpy(np.float32)

        def pair_batch():
            i = rng.choice(len(s1), 32)
            enc = tok(
                [s1[k] for k in i],
                [s2[k] for k in i],
                truncation=True,
                max_length=64,
                padding=True,
                return_tensors="pt",
            )
            return dict(enc), torch.as_tensor(score[i] / 5)

        _train(cross, pair_batch, steps)
        out["sts"] = predict.save_sts_model(root / f"sts-{seed}", sts.Similarity(cross, tok, "cross", max_length=64))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    args: list[str], workdir: Path, env: dict | None = None, timeout: float = 240.0, name: str = "serve"
) -> tuple[subprocess.Popen, str]:
    """`python -m polarkit.serve ARGS --port <free>` in its own session; waits until /health answers."""
    import httpx

    port = free_port()
    log_path = workdir / f"{name}-{port}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "polarkit.serve", *args, "--port", str(port)],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    proc.log_path = log_path
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"polarkit serve exited {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"polarkit serve not up after {timeout:.0f} s:\n{log_path.read_text()[-4000:]}")


def stop_server(proc: subprocess.Popen, timeout: float = 20) -> int:
    """SIGTERM (graceful: uvicorn finishes open requests), then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=timeout)


def register(
    outputs: Path,
    uri: str,
    task: str,
    folder: Path,
    value: float,
    metric: str = "val_accuracy",
    stem: str = "07_review_classifier",
) -> int:
    """Register a copy of model `folder` under `task` from a succeeded run folder with metric `value` -> version."""
    import shutil

    from mlflow_store import make_run

    from polarkit import registry

    run_dir = make_run(outputs, stem=stem, metrics={metric: value})
    model_dir = shutil.copytree(folder, run_dir / "models" / "best")
    got = registry.register(run_dir, task, model_dir, metric, threshold=0.0, uri=uri)
    assert got is not None, f"{task} from {folder} was not registered"
    return got["version"]


def broken_classifier(root: Path, like: Path) -> Path:
    """A copy of classifier folder `like` whose card says max_length 2048 while the model has 512 positions:
    short texts work, a text of more than 512 tokens makes the model raise (a predictor failing on one input)."""
    import json
    import shutil

    from polarkit import predictors

    d = shutil.copytree(like, root / "broken-cola")
    meta = json.loads((d / "classifier.json").read_text(encoding="utf-8"))
    (d / "classifier.json").write_text(json.dumps({**meta, "max_length": 2048}), encoding="utf-8")
    predictors.update_card(d, task="cola", max_length=2048)
    return d


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory) -> dict:
    """Built once per session: {"first": {"sentiment", "sts"}, "second": {"sentiment"}, "broken": cola folder}."""
    root = tmp_path_factory.mktemp("serve-models")
    first = build_models(root, seed=0)
    return {
        "first": first,
        "second": build_models(root, seed=1, kinds=("sentiment",)),
        "broken": broken_classifier(root, first["sentiment"]),
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory, mlflow_template, serve_models):
    """A temp MLflow store for this test module: sentiment v1 (champion) and v2 (candidate, better), sts v1
    and cola v1 (a broken model) champions. The variables point this process and the server at it."""
    import shutil

    from polarkit import registry

    root = tmp_path_factory.mktemp("serve")
    db = root / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"
    variables = {
        "MLFLOW_TRACKING_URI": uri,
        "POLARKIT_OUTPUTS": str(root / "outputs"),
        "POLARKIT_MODELS": str(root / "cache"),
        "POLARKIT_TRACKING": "on",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    first, second = serve_models["first"], serve_models["second"]
    with pytest.MonkeyPatch.context() as mp:
        for k, v in variables.items():
            mp.setenv(k, v)
        outputs = root / "outputs"
        assert register(outputs, uri, "sentiment", first["sentiment"], 0.70) == 1
        assert register(outputs, uri, "sentiment", second["sentiment"], 0.75) == 2
        assert register(outputs, uri, "sts", first["sts"], 0.80, metric="val_pearson", stem="06_sts") == 1
        broken = serve_models["broken"]
        assert register(outputs, uri, "cola", broken, 0.3, metric="heldout_mcc", stem="03_nlp_cola") == 1
        registry.promote("sentiment", version=1, uri=uri)
        registry.promote("sts", uri=uri)
        registry.promote("cola", uri=uri)
        yield {"root": root, "uri": uri, "vars": variables}

"""`polarkit serve` for real: the server runs as its own process (uvicorn on 127.0.0.1, a free port) and is
spoken to over HTTP (httpx). Models: tiny Korean BERTs trained a few steps (tests/serve_helpers.py),
registered in a temp MLflow SQLite store, so the server starts the way `polarkit serve` does by default:
every registered task's champion.

Checks: answers equal `polarkit.predictors.load` in this process (alone and under concurrent, merged
requests); every bad request gets a 4xx that says what was expected; a predictor failing on one input
is a 500 for that request only; /promote + /reload (and SIGHUP) swap in the new champion while requests
keep flowing; --read-only; no champion -> a clear start-up error.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from mlflow_store import mlflow_template  # noqa: E402,F401  (session fixture)
from serve_helpers import env, serve_models, start_server, stop_server  # noqa: E402,F401  (fixtures)

from polarkit import data, predictors, registry  # noqa: E402

REVIEWS = [
    "배송이 빠르고 품질도 좋아요 또 살게요",
    "최악이에요 돈 아까움",
    "그냥 그래요",
    "정말 재밌게 봤어요 감동",
    "지루하고 별로였다 시간 낭비",
]
PAIRS = [["오늘 날씨가 정말 좋네요", "날씨가 맑아서 기분이 좋아요"], ["숙소 위치가 좋아요", "비행기 표를 샀다"]]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(env):
    # no specs: every champion; two model threads, so concurrent batches (and /explain beside them) are exercised
    proc, url = start_server(
        ["--log-level", "warning", "--workers", "2", "--micro-batch", "8"], env["root"], env["vars"]
    )
    proc.url = url
    yield proc
    status = stop_server(proc)  # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal
    assert status in (0, -signal.SIGTERM), proc.log_path.read_text()[-4000:]


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def predict(client, task, inputs):
    r = client.post(f"/predict/{task}", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    return r.json()


def local(spec: str):
    """The same model loaded in this process, as a user would."""
    return predictors.load(spec)


def close(got: list[dict], want: list[dict], atol: float = 1e-4) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w)
        if "label" in w:
            assert g["label"] == w["label"]
            np.testing.assert_allclose(list(g["probs"].values()), list(w["probs"].values()), atol=atol)
        if "score" in w:
            assert g["score"] == pytest.approx(w["score"], abs=atol * 5)


def test_health_and_models_list_the_champions_and_the_registry(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["tasks"] == {"cola": 1, "sentiment": 1, "sts": 1} and h["batching"] is True
    m = client.get("/models").json()
    served = {s["task"]: s for s in m["served"]}
    assert served["sentiment"]["spec"] == "sentiment@champion" and served["sentiment"]["version"] == 1
    assert served["sts"]["pair"] is True and served["sentiment"]["labels"] == ["negative", "positive"]
    assert served["sentiment"]["metric"] == "val_accuracy" and served["sentiment"]["value"] == 0.7
    rows = {(r["task"], r["version"]): r for r in m["registry"]}
    assert rows[("sentiment", 1)]["aliases"] == ["champion"] and rows[("sentiment", 2)]["aliases"] == ["candidate"]
    assert rows[("sentiment", 2)]["value"] == 0.75 and m["admin"] is True and m["registry_error"] is None


def test_answers_equal_polarkit_load_in_process(client):
    got = predict(client, "sentiment", REVIEWS)
    assert (got["task"], got["version"], got["spec"]) == ("sentiment", 1, "sentiment@champion")
    close(got["outputs"], local("sentiment/1").predict(REVIEWS))
    texts = data.load_nsmc("test", n=32, seed=3).text.tolist()  # real reviews, a full batch
    close(predict(client, "sentiment", texts)["outputs"], local("sentiment/1").predict(texts))
    sts = predict(client, "sts", PAIRS)
    assert sts["version"] == 1 and all(0 <= o["score"] <= 5 for o in sts["outputs"])
    close(sts["outputs"], local("sts@champion").predict([tuple(p) for p in PAIRS]))


def test_concurrent_requests_are_merged_and_each_gets_its_own_answer(server):
    texts = data.load_nsmc("test", n=48, seed=5).text.tolist()
    want = local("sentiment/1").predict(texts)

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:
            return await asyncio.gather(*(c.post("/predict/sentiment", json={"inputs": [t]}) for t in texts))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * len(texts)
    got = [r.json() for r in responses]
    close([g["outputs"][0] for g in got], want)  # merged into batches, every answer still its own text's
    assert max(g["batch"] for g in got) > 1, "no two requests were merged"
    assert all(g["batch"] <= 32 for g in got)


def test_explain_beside_concurrent_predictions(server):
    """/explain tokenizes with other settings than the predictor, in the other model thread: no interference."""
    texts = data.load_nsmc("test", n=24, seed=9).text.tolist()
    want = local("sentiment/1").predict(texts)

    async def both():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:
            return await asyncio.gather(
                *(
                    c.post(f"/{'predict' if i % 6 else 'explain'}/sentiment", json={"inputs": [t]})
                    for i, t in enumerate(texts)
                )
            )

    responses = asyncio.run(both())
    assert [r.status_code for r in responses] == [200] * len(texts), [r.text for r in responses if r.status_code != 200]
    for i, r in enumerate(responses):
        if i % 6:
            close(r.json()["outputs"], [want[i]])
        else:
            assert r.json()["views"][0]["tokens"][0] == "[CLS]"


TOO_MANY = {"inputs": ["좋아요"] * 33}
BAD = [  # (path, headers, body bytes, status, message)
    ("/predict/sentimnt", JSON, b'{"inputs": ["x"]}', 404, r"unknown task 'sentimnt': did you mean 'sentiment'\?"),
    ("/predict/nothing", JSON, b'{"inputs": ["x"]}', 404, r"this server serves cola, sentiment, sts"),
    ("/predict/sentiment", {"Content-Type": "text/plain"}, b'{"inputs": ["x"]}', 415, r"Content-Type: applicat"),
    ("/predict/sentiment", {}, b'{"inputs": ["x"]}', 415, r"Content-Type: application/json"),
    ("/predict/sentiment", JSON, b"", 400, r"the request body is empty: expected JSON such as \{\"inputs\""),
    ("/predict/sentiment", JSON, b'{"inputs": ["x"', 400, r"not valid JSON \(Expecting .* at line 1 column \d+\)"),
    ("/predict/sentiment", JSON, b"{'inputs': ['x']}", 400, r"not valid JSON"),
    ("/predict/sentiment", JSON, '{"inputs": ["좋아요"]}'.encode("euc-kr"), 400, r"not UTF-8 text \(byte 0x"),
    ("/predict/sentiment", JSON, b"[" * 100_000 + b"]" * 100_000, 400, r"nests too deeply|not valid JSON"),
    ("/predict/sentiment", JSON, b'["x"]', 422, r"a JSON object \{\"inputs\": \[\"text\", ...\]\}, got a JSON array"),
    ("/predict/sentiment", JSON, b'{"input": ["x"]}', 422, r"no 'inputs' field \(found 'input': did you mean 'inputs'"),
    ("/predict/sentiment", JSON, b'{"inputs": ["x"], "top_k": 3}', 422, r"unknown field\(s\) 'top_k'"),
    ("/predict/sentiment", JSON, b'{"inputs": "x"}', 422, r"'inputs' must be a list, got a JSON string"),
    ("/predict/sentiment", JSON, b'{"inputs": []}', 422, r"'inputs' is empty: send at least one text"),
    ("/predict/sentiment", JSON, b'{"inputs": [""]}', 422, r"inputs\[0\] is empty: send some text"),
    ("/predict/sentiment", JSON, b'{"inputs": ["ok", " \\n\\t "]}', 422, r"inputs\[1\] is empty \(only spaces\)"),
    ("/predict/sentiment", JSON, b'{"inputs": ["ok", 7]}', 422, r"inputs\[1\]: expected a string, got a JSON number 7"),
    ("/predict/sentiment", JSON, b'{"inputs": [null]}', 422, r"expected a string, got a JSON null"),
    ("/predict/sentiment", JSON, b'{"inputs": [["a", "b"]]}', 422, r"takes single texts, not pairs"),
    ("/predict/sts", JSON, b'{"inputs": ["a"]}', 422, r"sentence pairs; expected \[\"sentence 1\", \"sentence 2\"\]"),
    ("/predict/sts", JSON, b'{"inputs": [["a", "b", "c"]]}', 422, r"inputs\[0\]: this task scores sentence pairs"),
    ("/predict/sts", JSON, b'{"inputs": [["a", ""]]}', 422, r"inputs\[0\]\[1\] is empty"),
    (
        "/predict/sentiment",
        JSON,
        json.dumps({"inputs": ["가" * 2001]}).encode(),
        422,
        r"inputs\[0\] has 2,001 characters; the limit is 2,000 per text",
    ),
    ("/predict/sentiment", JSON, json.dumps(TOO_MANY).encode(), 422, r"33 inputs in one request: at most 32"),
    ("/predict/sentiment", JSON, b'{"inputs": ["\\ud800"]}', 422, r"unpaired surrogate \(\\ud800"),
    ("/predict/sentiment", JSON, b'{"inputs": ["' + b"a" * 3_000_000 + b'"]}', 413, r"the limit is [\d,]+"),
    ("/explain/sentiment", JSON, b'{"inputs": ["a", "b"]}', 422, r"send exactly one input here \(2 given\)"),
    ("/promote", JSON, b'{"version": 2}', 422, r"a 'task' string"),
    ("/promote", JSON, b'{"task": "sentiment", "version": "two"}', 422, r"'version' a number"),
    ("/promote", JSON, b'{"task": "sentimnt"}', 409, r"unknown task 'sentimnt'; did you mean 'sentiment'"),
    ("/promote", JSON, b'{"task": "sts", "version": 9}', 409, r"sts has no version 9"),
]


@pytest.mark.parametrize("path,headers,body,status,message", BAD, ids=[f"{b[0]}:{b[3]}:{i}" for i, b in enumerate(BAD)])
def test_bad_requests_get_a_4xx_that_says_what_was_expected(client, path, headers, body, status, message):
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    import re

    assert re.search(message, r.json()["detail"]), r.json()["detail"]


def test_wrong_method_host_and_route_are_4xx_and_the_server_keeps_serving(client, server):
    assert client.get("/predict/sentiment").status_code == 405
    assert client.post("/predict", json={"inputs": ["x"]}).status_code == 404
    rebound = client.post("/predict/sentiment", json={"inputs": ["x"]}, headers={"Host": "evil.example"})
    assert rebound.status_code == 400
    assert client.get("/docs").status_code == 404  # swagger UI would load from a CDN: off
    assert server.poll() is None
    assert predict(client, "sentiment", ["여전히 잘 돼요"])["version"] in (1, 2)


def test_a_predictor_failing_on_one_input_is_a_500_for_that_request_only(server):
    long_text = " ".join(["좋"] * 600)  # 1,199 characters, 602 tokens: the broken model has 512 positions
    assert len(long_text) <= 2000

    async def mixed():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:
            bodies = [["짧은 문장"]] * 6 + [[long_text]] + [["또 짧은 문장"]] * 6
            return await asyncio.gather(*(c.post("/predict/cola", json={"inputs": b}) for b in bodies))

    responses = asyncio.run(mixed())
    codes = [r.status_code for r in responses]
    assert codes == [200] * 6 + [500] + [200] * 6, codes
    detail = responses[6].json()["detail"]
    assert detail.startswith("the cola model (cola@champion) failed on this input: ") and "Error" in detail
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/predict/cola", json={"inputs": ["다시 짧게"]}).status_code == 200
        assert c.get("/health").json()["status"] == "ok"


def test_explain_returns_the_attention_heatmap_of_the_input(client):
    r = client.post("/explain/sentiment", json={"inputs": ["배송이 빠르고 좋아요"]})
    assert r.status_code == 200, r.text
    (view,) = r.json()["views"]
    assert view["tokens"][0] == "[CLS]" and view["tokens"][-1] == "[SEP]"
    assert view["png"].startswith("data:image/png;base64,")
    pair = client.post("/explain/sts", json={"inputs": [PAIRS[0]]}).json()["views"]
    assert len(pair) == 1 and pair[0]["title"] == "sentence 1 + sentence 2" and pair[0]["tokens"].count("[SEP]") == 2


def test_page_and_its_assets_are_served_without_a_cdn(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("static/app.js", "static/app.css"):
        text = client.get(f"/{asset}").text
        assert asset in page.text and "http://" not in text and "https://" not in text
    font = client.get("/fonts/hangul.woff")
    assert font.status_code == 200 and font.headers["content-type"] == "font/woff" and font.content[:4] == b"wOFF"
    from fontTools.ttLib import TTFont  # Chromium's font sanitizer refuses NanumGothic's empty VTT tables

    assert not [t for t in TTFont(io.BytesIO(font.content)).keys() if t.startswith("TSI")]


def test_promote_then_reload_serves_the_new_champion_without_dropping_requests(server, client):
    texts = data.load_nsmc("test", n=16, seed=7).text.tolist()
    v1, v2 = local("sentiment/1").predict(texts), local("sentiment/2").predict(texts)
    assert [a["probs"] for a in v1] != [b["probs"] for b in v2]
    out = client.post("/promote", json={"task": "sentiment"})  # the candidate, v2: better than v1 (0.75 > 0.70)
    assert out.status_code == 200, out.text
    assert out.json()["version"] == 2 and out.json()["replaced"] == 1
    assert predict(client, "sentiment", texts[:2])["version"] == 1  # promoted, not yet reloaded

    async def traffic_during_reload():
        seen, stop = [], asyncio.Event()
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:

            async def clientloop(i):
                while not stop.is_set():
                    r = await c.post("/predict/sentiment", json={"inputs": [texts[i]]})
                    seen.append((time.monotonic(), i, r.status_code, r.json()))

            workers = [asyncio.create_task(clientloop(i)) for i in range(4)]
            await asyncio.sleep(0.5)
            reload = await c.post("/reload")
            reloaded_at = time.monotonic()
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*workers)
        return reload, reloaded_at, seen

    reload, reloaded_at, seen = asyncio.run(traffic_during_reload())
    assert reload.status_code == 200, reload.text
    body = reload.json()
    assert {"task": "sentiment", "from": 1, "to": 2, "spec": "sentiment@champion"} in body["changed"]
    assert {c["task"] for c in body["unchanged"]} == {"sts", "cola"} and body["errors"] == []
    assert all(code == 200 for _, _, code, _ in seen), [s for s in seen if s[2] != 200][:3]
    versions = [r["version"] for _, _, _, r in seen]
    assert 1 in versions and 2 in versions, versions
    for _t, i, _, r in seen:  # every answer is the answer of the version it names
        close(r["outputs"], [(v1 if r["version"] == 1 else v2)[i]])
    assert all(r["version"] == 2 for t, _, _, r in seen if t > reloaded_at + 0.25)  # long after the swap
    close(predict(client, "sentiment", texts)["outputs"], v2)


def test_sighup_reloads_too(server, client, env):
    registry.promote("sentiment", version=1, force=True, uri=env["uri"])
    os.kill(server.pid, signal.SIGHUP)
    deadline = time.monotonic() + 120
    while client.get("/health").json()["tasks"]["sentiment"] != 1:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.3)
    assert predict(client, "sentiment", ["다시 v1"])["version"] == 1


def test_promote_refusal_says_why(client):
    r = client.post("/promote", json={"task": "sentiment", "version": 2})  # back to v2 is allowed (0.75 > 0.70) ...
    assert r.status_code == 200, r.text
    r = client.post("/promote", json={"task": "sentiment", "version": 1})  # ... but v1 does not beat v2
    assert r.status_code == 409 and "does not beat the champion" in r.json()["detail"]
    assert client.post("/promote", json={"task": "sentiment", "version": 1, "force": True}).status_code == 200


def test_read_only_server_without_batching_in_process(env):
    """create_app as a library: a model folder, --read-only, --no-batching, --micro-batch (FastAPI's TestClient)."""
    from fastapi.testclient import TestClient

    from polarkit import serve

    folder = predictors.resolve("sts@champion")
    app = serve.create_app([str(folder)], admin=False, batching=False, micro_batch=1)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.post("/reload").status_code == 403
        r = c.post("/promote", json={"task": "sts"})
        assert r.status_code == 403 and "read-only" in r.json()["detail"]
        got = c.post("/predict/sts", json={"inputs": PAIRS}).json()
        assert got["batch"] == 2 and got["version"] is None and got["spec"] == str(folder)
        close(got["outputs"], local(str(folder)).predict([tuple(p) for p in PAIRS]))
        assert c.get("/models").json()["admin"] is False and c.get("/health").json()["batching"] is False


def test_no_champion_is_a_clear_start_up_error(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none.db'}", "POLARKIT_OUTPUTS": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "polarkit.serve", "--port", "9"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2 and "no model registry at sqlite:///" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "none.db").exists()  # looking did not create a store
    out = subprocess.run(
        [sys.executable, "-m", "polarkit.serve", str(tmp_path), "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "holds no saved model" in out.stderr, out.stderr[-2000:]

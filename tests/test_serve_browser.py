"""The page of `polarkit serve`, in headless Chromium: loads offline, a typed review gets a label, two
sentences get a score, the attention heatmap shows, Hangul renders in the served web font, and a
candidate is promoted through the page (after a confirmation) and then served.

The server is the real one (tests/serve_helpers.py: tiny Korean models in a temp MLflow registry);
Playwright drives the Debian Chromium (`executable_path`; it never downloads a browser) with the
network cut off as in tests/browser.py; every request the page makes is recorded, and any request off
the server is aborted and fails the test. The screenshot's path is printed (`pytest -s` shows it).
"""

from __future__ import annotations

import re
import signal

import pytest
from browser import PLAYWRIGHT_MARKS, playwright_chromium

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from mlflow_store import mlflow_template  # noqa: E402,F401  (session fixture)
from serve_helpers import env, serve_models, start_server, stop_server  # noqa: E402,F401  (fixtures)

pytestmark = PLAYWRIGHT_MARKS

REVIEW = "배송이 빠르고 품질도 좋아요. 또 살게요!"
PAIR = ("오늘 날씨가 정말 좋네요.", "날씨가 맑아서 기분이 좋아요.")


@pytest.fixture(scope="module")
def server(env):
    proc, url = start_server(["--log-level", "warning"], env["root"], env["vars"], name="serve-browser")
    proc.url = url
    yield proc
    assert stop_server(proc) in (0, -signal.SIGTERM), proc.log_path.read_text()[-4000:]


@pytest.fixture(scope="module")
def browser():
    with playwright_chromium() as b:
        yield b


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1400}, locale="ko-KR")
    pg = context.new_page()
    pg.requests, pg.foreign, pg.dialogs, pg.errors = [], [], [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))

    def guard(route):
        if route.request.url.startswith(server.url + "/") or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        pg.foreign.append(route.request.url)
        return route.abort()

    def accept(dialog):
        pg.dialogs.append(dialog.message)
        dialog.accept()

    pg.route("**/*", guard)
    pg.on("dialog", accept)
    try:
        yield pg
    finally:
        context.close()


def api(server, path, body):
    return httpx.post(f"{server.url}{path}", json=body, timeout=120).json()


def test_page_predicts_shows_attention_and_promotes_offline(page, server, tmp_path):
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    assert page.title() == "polarkit serve"
    options = page.eval_on_selector_all("#task option", "os => os.map(o => o.value)")
    assert {"sentiment", "sts"} <= set(options)

    # a review -> its label (the API's answer for the same text) and its attention heatmap
    page.select_option("#task", "sentiment")
    page.fill("#text", REVIEW)
    page.click("#predict")
    page.wait_for_selector("#answer", timeout=60_000)
    want = api(server, "/predict/sentiment", {"inputs": [REVIEW]})["outputs"][0]
    assert page.inner_text("#answer").split()[0] == want["label"]
    assert f"{100 * want['confidence']:.1f}%" in page.inner_text("#answer")
    page.wait_for_selector("#attention img", timeout=120_000)
    assert page.eval_on_selector("#attention img", "img => img.complete && img.naturalWidth > 100")

    # two sentences -> a 0-5 score
    page.select_option("#task", "sts")
    assert page.is_visible("#text1") and not page.is_visible("#text")
    page.fill("#text1", PAIR[0])
    page.fill("#text2", PAIR[1])
    page.click("#predict")
    page.wait_for_selector("#answer", timeout=60_000)
    score = api(server, "/predict/sts", {"inputs": [list(PAIR)]})["outputs"][0]["score"]
    assert re.fullmatch(r"\d\.\d\d / 5 similarity", page.inner_text("#answer").strip())
    assert page.inner_text("#answer").startswith(f"{score:.2f}")
    page.wait_for_selector("#attention img", timeout=120_000)

    # Hangul in the page's own web font, served by the server (no system font needed)
    assert page.evaluate(
        "async () => { await document.fonts.ready; return document.fonts.check('16px \"Polarkit Hangul\"', '한글'); }"
    )
    assert any(u.endswith("/fonts/hangul.woff") for u in page.requests)

    # an empty text: the server's message shows, nothing crashes
    page.fill("#text1", " ")
    page.click("#predict")
    page.wait_for_selector("#error:not([hidden])")
    assert "is empty" in page.inner_text("#error")
    page.fill("#text1", PAIR[0])

    # the registry: sentiment v1 is champion and served; promote v2 (confirmed), the server reloads
    row = "#registry tr[data-task='sentiment'][data-version='2']"
    page.wait_for_selector(f"{row} button.promote")
    assert "champion" in page.inner_text("#registry tr[data-task='sentiment'][data-version='1']")
    page.click(f"{row} button.promote")
    page.wait_for_function(
        "document.querySelector('#promote-message').textContent.includes('now serving')", timeout=120_000
    )
    assert pg_dialog(page).startswith("Promote sentiment v2 (val_accuracy 0.75) to champion?")
    assert "sentiment: champion is now v2" in page.inner_text("#promote-message")
    assert "✓ serving" in page.inner_text(row) and "champion" in page.inner_text(row)
    assert httpx.get(f"{server.url}/health").json()["tasks"]["sentiment"] == 2

    page.select_option("#task", "sentiment")
    page.fill("#text", REVIEW)
    page.click("#predict")
    page.wait_for_selector("#answer")
    page.wait_for_selector("#attention img", timeout=120_000)
    shot = tmp_path / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 20_000
    assert not page.foreign, f"requests off the server: {page.foreign}"
    assert not page.errors, page.errors


def pg_dialog(page) -> str:
    assert page.dialogs, "no confirmation was asked"
    return page.dialogs[0]

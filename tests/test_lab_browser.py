"""`make lab` for real: JupyterLab started by bin/lab (the same settings), driven in headless Chromium.

The server runs on 127.0.0.1 on a free port with a token, with runtime, config, settings and
workspace folders in a temp dir, and serves a temp folder holding a copy of 01_mnist_cnn.ipynb and
the progress notebook of tests/test_widgets.py (so autosave never touches notebooks/). An audit hook
(a sitecustomize on the server's PYTHONPATH) records every host name the server and its kernels
look up and every address they connect to: nothing may leave 127.0.0.1. Playwright drives the
Debian Chromium (`executable_path`; it never downloads a browser) with the network cut off as in
tests/browser.py, and records every request the page makes. The server is shut down at the end and
its kernels must be gone. Screenshots: the paths are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import PLAYWRIGHT_MARKS, playwright_chromium
from test_widgets import ENCODED, TEXT_PROGRESS, TRAIN_STEPS, progress_notebook

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "bin" / "lab"
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"

pytestmark = PLAYWRIGHT_MARKS

# Records non-loopback name look-ups and connections of every Python process that imports `site`
# (the server and its kernels). Unix-socket addresses are strings, not tuples: ignored.
AUDIT = r"""
import os, sys
_LOG = os.environ.get("POLARKIT_NET_AUDIT")
_LOCAL = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "", None)

def _host(event, args):
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        return args[0]
    if event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        return args[1][0]
    return None

def _audit(event, args):
    if not _LOG or not event.startswith("socket."):
        return
    host = _host(event, args)
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in _LOCAL or str(host).startswith("127.") or (isinstance(host, str) and host == os.uname().nodename):
        return
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {sys.argv[:3]} {event} {host!r}\n")

sys.addaudithook(_audit)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Lab:
    def __init__(self, tmp: Path, *extra: str):
        self.tmp, self.port, self.token = tmp, free_port(), secrets.token_hex(16)
        self.root = tmp / "notebooks"
        self.root.mkdir()
        shutil.copy(ROOT / "notebooks" / "01_mnist_cnn.ipynb", self.root)
        progress_notebook(self.root / "progress.ipynb")
        site = tmp / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(AUDIT, encoding="utf-8")
        self.audit, self.log = tmp / "net-audit.log", tmp / "lab.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
        env |= {
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_DATA_DIR": str(tmp / "data"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
            "POLARKIT_OUTPUTS": str(tmp / "outputs"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p),
            "POLARKIT_NET_AUDIT": str(self.audit),
            "HF_HUB_OFFLINE": "1",
        }
        cmd = [
            sys.executable,
            str(LAB),
            "--port",
            str(self.port),
            "--token",
            self.token,
            "--no-browser",
            "--root",
            str(self.root),
            "--",
            *extra,
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True
            )
        self.url = f"http://127.0.0.1:{self.port}"
        self.kernels: set[int] = set()

    def api(self, path: str, method: str = "GET", timeout: float = 30):
        req = urllib.request.Request(self.url + path, method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def page_html(self, path: str = "/lab") -> str:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def wait_ready(self, deadline_s: float = 120) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bin/lab exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                self.api("/api/status", timeout=5)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab not answering after {deadline_s}s:\n{self.log.read_text()[-4000:]}")

    def note_kernels(self) -> None:
        self.kernels.update(children(self.proc.pid))

    def outgoing(self) -> list[str]:
        return self.audit.read_text().splitlines() if self.audit.exists() else []

    def stop(self, deadline_s: float = 60) -> None:
        self.note_kernels()
        try:
            self.api("/api/shutdown", method="POST")  # shuts the kernels down, then the server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            self.proc.wait(deadline_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"JupyterLab ignored /api/shutdown:\n{self.log.read_text()[-4000:]}") from None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    end = time.monotonic() + 30
    while any(map(alive, server.kernels)) and time.monotonic() < end:
        time.sleep(0.2)
    left = [pid for pid in server.kernels if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left after the server stopped: {left}"
    assert server.proc.returncode == 0, server.log.read_text()[-4000:]


@pytest.fixture(scope="module")
def browser():
    with playwright_chromium() as b:
        yield b


@pytest.fixture
def page(browser, lab):
    """A page whose every request is recorded; any request off 127.0.0.1 is aborted (and fails the test)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.requests, pg.foreign = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))

    def guard(route):
        if route.request.url.startswith(lab.url + "/") or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        pg.foreign.append(route.request.url)
        return route.abort()

    pg.route("**/*", guard)
    try:
        yield pg
    finally:
        context.close()


def page_config(html: str) -> dict:
    m = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no page config in /lab"
    return json.loads(m.group(1))


def wait_for_session(lab: Lab, pg, path: str, deadline_s: float = 120) -> dict:
    """The session of `path`, once its kernel is idle (started and answering).

    Waits through the page (`wait_for_timeout`): playwright's sync API serves the page's routed
    requests only while the test is inside one of its calls, never during a time.sleep."""
    end, seen = time.monotonic() + deadline_s, []
    while time.monotonic() < end:
        seen = [s for s in lab.api("/api/sessions") if s["path"] == path]
        if seen and seen[0]["kernel"]["execution_state"] == "idle":
            lab.note_kernels()
            return seen[0]
        pg.wait_for_timeout(500)
    png = lab.tmp / f"timeout-{Path(path).stem}.png"
    pg.screenshot(path=str(png))
    raise TimeoutError(f"no idle kernel for {path} after {deadline_s}s: {seen} (page: {png})")


def shot(pg, path: Path) -> Path:
    pg.screenshot(path=str(path))
    print(f"\nscreenshot: {path}")
    return path


def test_server_settings_keep_lab_offline(lab):
    specs = lab.api("/api/kernelspecs")
    assert specs["default"] == "polarkit" and set(specs["kernelspecs"]) == {"polarkit"}
    assert "polarkit" in specs["kernelspecs"]["polarkit"]["spec"]["display_name"]
    config = page_config(lab.page_html())
    assert ANNOUNCEMENTS in config["disabledExtensions"]  # the plugin that asks about and fetches news
    assert config["news"] == {"disabled": True}  # server: news_url None
    assert config["extensionManager"]["name"] == "read-only" and not config["extensionManager"]["can_install"]
    assert config["serverRoot"] == str(lab.root)
    schema = lab.api("/lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]["properties"]
    assert schema["fetchNews"]["default"] == "false" and schema["checkForUpdates"]["default"] is False
    tracker = lab.api("/lab/api/settings/@jupyterlab/notebook-extension:tracker")["schema"]["properties"]
    assert tracker["autoStartDefaultKernel"]["default"] is True  # no "Select Kernel" question
    # the endpoints a re-enabled plugin would call answer from the server itself
    assert lab.api("/lab/api/news") == {"news": []}
    assert lab.api("/lab/api/update") == {"notification": None}
    assert lab.api("/lab/api/extensions?query=numpy&page=1&per_page=10") == []  # no PyPI search
    assert lab.outgoing() == [], "the server looked up or connected to a host off this machine"


def test_notebook_opens_with_the_polarkit_kernel(lab, page, tmp_path):
    page.goto(f"{lab.url}/lab/tree/01_mnist_cnn.ipynb?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
    session = wait_for_session(lab, page, "01_mnist_cnn.ipynb")
    assert session["kernel"]["name"] == "polarkit"  # the file says python3: only polarkit is offered
    assert lab.kernels, "no kernel process under the server"  # what the fixture checks is gone at the end
    kernel_name = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar .jp-KernelName")
    kernel_name.filter(has_text="polarkit").wait_for(timeout=60_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=60_000)
    assert "parameters" in page.locator(".jp-Notebook").inner_text() or page.locator(".jp-CodeCell").count() > 5
    assert page.get_by_text("official Jupyter news").count() == 0  # the news question never pops up
    png = shot(page, tmp_path / "lab-01_mnist_cnn.png")
    assert png.stat().st_size > 10_000
    assert page.foreign == [], f"the page asked for resources off this machine: {page.foreign}"
    assert page.requests and all(u.startswith(lab.url) for u in page.requests if u.startswith("http"))
    assert lab.outgoing() == []


def test_training_and_encoding_progress_render_once_each_in_lab(lab, page, tmp_path):
    page.goto(f"{lab.url}/lab/tree/progress.ipynb?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell", timeout=120_000)
    assert wait_for_session(lab, page, "progress.ipynb")["kernel"]["name"] == "polarkit"
    # the workspace may restore the first test's notebook in a hidden tab: only the visible panel counts
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    assert cells.count() == 2
    cells.nth(0).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")  # run the training cell, select the next one
    page.keyboard.press("Shift+Enter")  # run the encoding cell (queued)
    cells.nth(1).locator(".jp-InputArea-prompt", has_text="[2]").wait_for(timeout=300_000)
    train_out, encode_out = (cells.nth(i).locator(".jp-OutputArea") for i in (0, 1))
    encode_out.get_by_text(f"{ENCODED}/{ENCODED}").first.wait_for(timeout=60_000)

    assert train_out.locator(".jp-RenderedText[data-mime-type*='error']").count() == 0, train_out.inner_text()
    assert encode_out.locator(".jp-RenderedText[data-mime-type*='error']").count() == 0, encode_out.inner_text()
    # training: one progress bar, re-drawn in place to the last step, with the evaluations' table
    bars = train_out.locator("progress")
    assert bars.count() == 1
    assert bars.first.get_attribute("value") == str(TRAIN_STEPS) == bars.first.get_attribute("max")
    assert "Epoch 2/2" in train_out.inner_text() and train_out.locator("tbody tr").count() == 4
    # encoding: one tqdm widget, rendered by the widget manager (not its text fallback), finished
    widgets = encode_out.locator(".widget-hprogress")
    assert widgets.count() == 1 and encode_out.locator(".jp-OutputArea-output .widget-hbox").count() == 1
    assert widgets.first.locator(".progress-bar-success").count() == 1
    streams = "\n".join(
        train_out.locator(".jp-RenderedText").all_inner_texts()
        + encode_out.locator(".jp-RenderedText").all_inner_texts()
    )
    assert "evaluations: 4" in streams and "encoded: (40," in streams
    assert not TEXT_PROGRESS.search(streams), streams  # no text progress lines beside the bars
    shot(page, tmp_path / "lab-progress.png")
    assert page.foreign == [] and lab.outgoing() == []

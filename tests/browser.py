"""Open a local HTML file in headless Chromium with the network cut off: dump its DOM or screenshot it.

Used by tests that check a page renders offline (bertviz views, a run's notebook.html).
CI installs the browser with `apt-get install -y chromium`; `POLARKIT_CHROMIUM` overrides the path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    # no network: every host name fails to resolve and any connection goes to a closed local port
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    override = os.environ.get("POLARKIT_CHROMIUM")
    if override:
        return override if Path(override).exists() else shutil.which(override)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _run(html_path: str | Path, *extra: str, budget_ms: int, timeout: float) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary found (apt-get install -y chromium, or set POLARKIT_CHROMIUM)")
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="polarkit-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def dump_dom(html_path: str | Path, *, budget_ms: int = 5000, timeout: float = 60) -> str:
    """The page's DOM serialised after its scripts ran (virtual time lets timers/animations finish)."""
    return _run(html_path, "--dump-dom", budget_ms=budget_ms, timeout=timeout).stdout


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    *,
    width: int = 1280,
    height: int = 1000,
    budget_ms: int = 5000,
    timeout: float = 60,
) -> Path:
    """Screenshot of the page's first `width` x `height` pixels as a PNG at png_path."""
    png_path = Path(png_path).resolve()
    _run(html_path, f"--screenshot={png_path}", f"--window-size={width},{height}", budget_ms=budget_ms, timeout=timeout)
    if not png_path.exists():
        raise RuntimeError(f"chromium wrote no screenshot to {png_path}")
    return png_path


# Loopback must stay reachable for pages served on 127.0.0.1: no `<-loopback>` bypass rule, and the
# resolver rule excludes 127.0.0.1 (it otherwise maps IP literals too).
LOOPBACK_FLAGS = (
    *(f for f in FLAGS if f != "--headless" and not f.startswith(("--proxy-bypass-list", "--host-resolver"))),
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


@contextlib.contextmanager
def playwright_chromium():
    """The system Chromium under playwright, offline except loopback; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=find_chromium(), headless=True, args=list(LOOPBACK_FLAGS))
        try:
            yield b
        finally:
            b.close()


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:  # pragma: no cover - the dev extra installs it
        return False
    return True


# `pytestmark = PLAYWRIGHT_MARKS` in a test module that drives a page under playwright
PLAYWRIGHT_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install -y chromium)"),
    pytest.mark.skipif(not _has_playwright(), reason="playwright not installed (pip install -e '.[dev]')"),
]

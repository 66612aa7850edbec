"""Shared by the browser tests that start their own app: the server, and waiting for Streamlit.

Not a test module (no ``test_`` prefix). The server is ``python -m streamlit run app.py`` on a
free port; its ``Popen.pid`` is the server process itself (no shell in between), so its
threads and memory can be read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM, IDLE, free_port, streamlit_command, wait_healthy

ROOT = Path(__file__).resolve().parents[1]


def require_browser() -> None:
    """Skip (like test_browser_e2e.py) when Debian's Chromium or Playwright is missing."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"browser end-to-end tests need Chromium at {CHROMIUM} (apt-get install chromium); CI installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@contextlib.contextmanager
def streamlit_app(log: Path, env: dict[str, str] | None = None, timeout_s: float = 90) -> Iterator[tuple[int, str]]:
    """Run the app; yields (server pid, url). On exit the server is stopped and its log must
    hold no traceback."""
    port = free_port()
    full_env = {**os.environ, "CAUSAL_EXPLORER_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(streamlit_command(port), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        problem = wait_healthy(url, proc, timeout_s)
        if problem is not None:
            pytest.fail(f"{problem}:\n{log.read_text()[-3000:]}")
        yield proc.pid, url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, f"the server logged a traceback:\n{text[-4000:]}"


def wait_idle(pg, settle_ms: int = 400) -> None:
    """Connected, and no script run in progress (the way Streamlit's own e2e tests wait)."""
    pg.wait_for_timeout(settle_ms)
    pg.wait_for_selector(IDLE, timeout=90_000)
    pg.wait_for_timeout(settle_ms)
    pg.wait_for_selector(IDLE, timeout=90_000)


def no_exception(pg) -> None:
    n = pg.locator('[data-testid="stException"]').count()
    assert n == 0, pg.locator('[data-testid="stException"]').first.inner_text()


def goto(pg, title: str) -> None:
    """Navigate with the sidebar (keeps the browser session and its engine)."""
    pg.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    pg.wait_for_selector(f'h1:has-text("{title}")' if title != "Home" else "h1", timeout=90_000)
    wait_idle(pg)
    no_exception(pg)


def main_button(pg, name: str):
    return pg.locator('[data-testid="stMain"]').get_by_role("button", name=name, exact=True)


def full_page_screenshot(pg, path: Path, width: int) -> Path:
    """The whole page (Streamlit scrolls inside its main block, so grow the viewport to fit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = pg.evaluate(
        """() => { const m = document.querySelector('[data-testid="stMain"]');
                   const c = m && m.firstElementChild;
                   return Math.max(m ? m.scrollHeight : 0, c ? c.scrollHeight : 0); }"""
    )
    pg.set_viewport_size({"width": width, "height": max(900, min(int(height) + 40, 5000))})
    pg.wait_for_timeout(700)
    wait_idle(pg, 200)
    pg.screenshot(path=str(path))
    pg.set_viewport_size({"width": width, "height": 1000})
    return path

"""A real browser (headless Chromium driven by Playwright) visits every master page of the dashboard."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from refactorbot_api.testing import RunningServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: URL path -> heading. The default page (Overview) is served at the root.
PAGES = {
    "": "Overview",
    "analytics": "Analytics",
    "control": "Control",
    "logs": "Logs",
    "settings": "Settings",
    "sample-dashboard": "Sample notes",
}

#: The script finished and every lazily loaded element is drawn.
SETTLED = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-testid="stSkeleton"]')
    && document.querySelectorAll('[data-stale="true"]').length === 0"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dashboard(server: RunningServer, tmp_path: Path) -> Iterator[str]:
    """Run `refactorbot dashboard` (the real command) against ``server``; yield its URL."""
    port = _free_port()
    home = Path(server.host.home)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        "RB_LOAD_PLUGINS": "refactorbot-dashboard",
        "RB_DASHBOARD_PLUGINS": "dashboard_sample",
    }
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("refactorbot")), "--home", str(home), "dashboard", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the dashboard did not start:\n" + (tmp_path / "dashboard.log").read_text())
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def test_every_master_page_loads_without_exception(dashboard: str, server: RunningServer, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    for i in range(5):  # something to chart and list
        httpx.post(f"{server.url}/slices/sample/operations/add", json={"title": f"n{i}"}, headers=server.headers)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for path, title in PAGES.items():
                page.goto(f"{dashboard}/{path}", wait_until="domcontentloaded")
                page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
                page.wait_for_load_state("networkidle")
                page.wait_for_function(SETTLED, timeout=30_000)
                page.wait_for_timeout(300)
                exceptions = page.locator('[data-testid="stException"]')
                assert exceptions.count() == 0, f"{path}: {exceptions.first.inner_text()}"
                shot = tmp_path / f"{path or 'overview'}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
        finally:
            browser.close()

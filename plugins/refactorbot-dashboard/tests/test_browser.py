"""A real browser (headless Chromium driven by Playwright) against the real `refactorbot dashboard`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dashboard_sample
import httpx
import pytest
from conftest import ServedDashboard, start_dashboard, stop_dashboard
from refactorbot_api.testing import RunningServer, running_server

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
#: The built-in slices whose pages the full dashboard shows: URL path -> heading.
SLICE_PAGES = {
    "session-sessions": "Sessions",
    "memory-memories": "Memories",
    "agent-executions": "Agent executions",
    "agent-prompts": "Prompts",
    "tools-tools": "Tools",
    "providers-spend": "Models and spend",
    "scheduling-jobs": "Scheduled jobs",
    "scheduling-alerts": "Alerts",
    "scheduling-history": "Run history",
    "scheduling-timeline": "Timeline",
    "communication-channels": "Channels",
    "communication-messages": "Messages",
    "communication-pairing": "Pairing",
    "communication-templates": "Templates",
    "eventbus": "Event bus",
    "eventbus-dead-letters": "Dead letters",
    "skills": "Skills",
    "skills-detail": "Skill",
    "skills-upload": "Add a skill",
    "refactory-board": "Refactory — plan board",
    "refactory-task": "Refactory — task",
    "refactory-queue": "Refactory — merge queue",
    "improve": "Self-improvement",
}
BUILT_IN = [
    "session",
    "memory",
    "agent",
    "tools",
    "providers",
    "scheduling",
    "communication",
    "eventbus",
    "skills",
    "refactory",
    "improve",
]
LOGIN_HEADING = "Log in to the refactorbot dashboard"

#: The script finished and every lazily loaded element is drawn.
SETTLED = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-testid="stSkeleton"]')
    && document.querySelectorAll('[data-stale="true"]').length === 0"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "the dashboard's browser tests need Debian's chromium at /usr/bin/chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _settle(page: Any, title: str) -> None:
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_function(SETTLED, timeout=30_000)


def test_an_unauthenticated_browser_gets_only_the_login_page(browser: Any, served: ServedDashboard) -> None:
    context = browser.new_context()
    sockets: list[str] = []
    page = context.new_page()
    page.on("websocket", lambda ws: sockets.append(ws.url))
    for path in ("", "control", "settings"):
        response = page.goto(f"{served.url}/{path}", wait_until="networkidle")
        assert response is not None and response.status == 401
        assert page.get_by_role("heading", name=LOGIN_HEADING).is_visible()
        assert page.locator('[data-testid="stApp"]').count() == 0  # Streamlit's app never loaded
        assert "Overview" not in page.content() and served.token not in page.content()
    assert sockets == []  # no Streamlit session was even attempted
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("That token is not valid.").wait_for(timeout=10_000)
    assert page.get_by_role("heading", name=LOGIN_HEADING).is_visible()
    assert context.cookies() == []
    context.close()


def test_the_printed_link_logs_in_and_every_page_works(
    browser: Any, served: ServedDashboard, server: RunningServer, tmp_path: Path
) -> None:
    for i in range(5):  # something to chart and list
        httpx.post(f"{server.url}/slices/sample/operations/add", json={"title": f"n{i}"}, headers=server.headers)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{served.url}/?token={served.token}", wait_until="domcontentloaded")
    _settle(page, "Overview")
    assert page.url == f"{served.url}/"  # the token left the address bar
    cookies = {c["name"]: c for c in context.cookies()}
    cookie = cookies["rb_dashboard_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert served.token not in str(cookies)
    assert "_streamlit_xsrf" in cookies  # Streamlit's XSRF protection is on
    for path, title in PAGES.items():
        page.goto(f"{served.url}/{path}", wait_until="domcontentloaded")
        _settle(page, title)
        page.wait_for_timeout(300)
        exceptions = page.locator('[data-testid="stException"]')
        assert exceptions.count() == 0, f"{path}: {exceptions.first.inner_text()}"
        assert served.token not in page.content()
        shot = tmp_path / f"{path or 'overview'}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    context.close()


def test_the_login_form_accepts_the_api_token(browser: Any, served: ServedDashboard, server: RunningServer) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{served.url}/logs", wait_until="networkidle")
    page.get_by_label("Token").fill(server.token)
    page.get_by_role("button", name="Log in").click()
    _settle(page, "Logs")  # back on the page that asked for the login
    assert page.url == f"{served.url}/logs"
    context.close()


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ServedDashboard]]:
    """A host running every built-in slice with a page, and the real `refactorbot dashboard` showing their pages."""
    plugins = [f"refactorbot_slice_{name}.plugin" for name in BUILT_IN]
    with running_server(tmp_path_factory.mktemp("full-home"), [*plugins, dashboard_sample.SAMPLE]) as server:
        load = ",".join(["refactorbot-dashboard", *(f"refactorbot-slice-{name}" for name in BUILT_IN)])
        log = tmp_path_factory.mktemp("full-served") / "dashboard.log"
        dashboard = start_dashboard(Path(server.host.home), log, load=load)
        try:
            yield server, dashboard
        finally:
            stop_dashboard(dashboard.proc)


def _call(server: RunningServer, operation_name: str, **payload: Any) -> None:
    slice_id, operation = operation_name.split(".")
    response = httpx.post(
        f"{server.url}/slices/{slice_id}/operations/{operation}", json=payload, headers=server.headers, timeout=30
    )
    assert response.status_code == 200 and response.json()["success"], response.text


def test_every_page_renders_in_chromium_and_is_screenshotted(
    browser: Any,
    full: tuple[RunningServer, ServedDashboard],
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, served = full
    # something on each page: a conversation, a memory, a prompt version, a job that ran
    _call(server, "session.begin_turn", channel="cli", chat_id="demo", user_id="alice", content="Plan the trip")
    _call(server, "memory.remember", user_id="alice", content="Alice prefers trains", tags=["travel"])
    _call(server, "agent.set_prompt", name="system", content="You are brief. {date}", note="shorter")
    _call(
        server,
        "scheduling.add",
        name="digest",
        cron="0 8 * * *",
        target={"type": "operation", "operation": "sample.add", "payload": {"title": "digest"}},
    )
    _call(server, "scheduling.run_now", name="digest")
    shots = tmp_path_factory.mktemp("screenshots")
    with capsys.disabled():
        print(f"\ndashboard screenshots: {shots}")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{served.url}/?token={served.token}", wait_until="domcontentloaded")
    _settle(page, "Overview")
    every = {**PAGES, "search": "Search", **SLICE_PAGES}
    for path, title in every.items():
        page.goto(f"{served.url}/{path}", wait_until="domcontentloaded")
        _settle(page, title)
        page.wait_for_timeout(300)
        exceptions = page.locator('[data-testid="stException"]')
        assert exceptions.count() == 0, f"{path}: {exceptions.first.inner_text()}"
        assert served.token not in page.content() and server.token not in page.content()
        shot = shots / f"{path or 'overview'}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    assert sorted(p.name for p in shots.iterdir()) == sorted(f"{p or 'overview'}.png" for p in every)
    context.close()

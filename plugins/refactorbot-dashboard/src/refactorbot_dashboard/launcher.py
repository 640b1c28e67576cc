"""Start Streamlit on loopback, behind the login gate, pointed at the running server found in the home directory."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from refactorbot_dashboard.client import TOKEN_ENV, URL_ENV
from refactorbot_dashboard.gate import LOGIN_TOKEN_ENV

APP = Path(__file__).with_name("app.py")
#: What ``streamlit run`` serves: ``app.py`` wrapped in the gate (``st.App`` with middleware).
ENTRY = Path(__file__).with_name("streamlit_entry.py")
START_PAGE_ENV = "RB_DASHBOARD_START_PAGE"
#: Seconds Streamlit gets to stop after SIGTERM/SIGINT is passed on before it is killed.
STOP_TIMEOUT = 10.0
#: Seconds to wait for Streamlit to answer its health check before the login link is printed anyway.
READY_TIMEOUT = 60.0
#: Host names Streamlit's own WebSocket check accepts (the gate checks host and port before it).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
NO_SERVER = (
    "No refactorbot server is running for {home}.\n"
    "Start one first (in another terminal):  refactorbot serve\n"
    "then run:                               refactorbot dashboard"
)


def streamlit_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """Return the command line that serves the dashboard (``streamlit_entry.app``) on ``address``:``port``."""
    allowed_hosts = [arg for name in (*LOOPBACK_NAMES, address) for arg in ("--server.allowedHosts", name)]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ENTRY),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",  # an operator's console: no "Deploy" or developer menu
        "--server.enableXsrfProtection",
        "true",
        "--server.enableCORS",
        "true",
        "--logger.hideWelcomeMessage",
        "true",  # its URL has no token; ours is printed when it is ready
        *allowed_hosts,
    ]


def dashboard_env(
    url: str, token: str, home: Path, start_page: str | None = None, login_token: str | None = None
) -> dict[str, str]:
    """Return the environment of the Streamlit process: the API's URL and token, the login token, the home."""
    env = dict(os.environ)
    env.update({URL_ENV: url, TOKEN_ENV: token, "RB_HOME": str(home)})
    if login_token:
        env[LOGIN_TOKEN_ENV] = login_token
    if start_page:
        env[START_PAGE_ENV] = start_page
    return env


def supervise(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    stop_timeout: float = STOP_TIMEOUT,
    ready: Callable[[], bool] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run ``command`` until it exits; pass SIGTERM, SIGINT and SIGHUP on to it; return its exit code.

    The child runs in its own process group, so a terminal's Ctrl+C reaches it once (through us).
    After a signal it gets ``stop_timeout`` seconds to stop before its group is killed; a second
    signal kills it at once. Stopped by a signal, the result is 0. ``on_ready`` is called once
    ``ready()`` is true (polled while the child runs).
    """
    # argv list, no shell; the command is streamlit_command() (this interpreter, fixed arguments) or a test's
    proc = subprocess.Popen(list(command), env=env, stdin=subprocess.DEVNULL, process_group=0)  # noqa: S603
    stopping = threading.Event()

    def kill() -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            kill()
            return
        stopping.set()
        print("Stopping (a second signal, e.g. Ctrl+C, kills it at once) ...", file=sys.stderr, flush=True)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        timer = threading.Timer(stop_timeout, kill)
        timer.daemon = True
        timer.start()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for forwarded in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[forwarded] = signal.signal(forwarded, on_signal)
    try:
        if ready is not None and on_ready is not None:
            deadline = time.monotonic() + READY_TIMEOUT
            while proc.poll() is None and not stopping.is_set() and not ready() and time.monotonic() < deadline:
                time.sleep(0.2)
            if proc.poll() is None and not stopping.is_set():
                on_ready()
        code = proc.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if proc.returncode is None:  # we are leaving on an exception: take the child along
            kill()
            proc.wait()
    return 0 if stopping.is_set() else code


def _healthy(url: str) -> Callable[[], bool]:
    def check() -> bool:
        import httpx

        try:
            return httpx.get(f"{url}/_stcore/health", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def launch(home: Path, port: int = 8501, start_page: str | None = None) -> int:
    """Run the dashboard until interrupted; return the exit code (1 when no server is running)."""
    import click
    from refactorbot import ServerClient

    client = ServerClient.discover(home)
    if client is None:
        click.secho(NO_SERVER.format(home=home), fg="red", err=True)
        return 1
    login_token = secrets.token_urlsafe(32)
    env = dashboard_env(client.url, client.token, home, start_page, login_token)
    url = f"http://127.0.0.1:{port}"

    def announce() -> None:
        click.echo(
            f"Dashboard of the server at {client.url}. Open this link to log in (it holds the login token):\n"
            f"    {url}/?token={login_token}\n"
            "Ctrl+C stops it."
        )

    click.echo(f"Starting the dashboard on {url} ...")
    return supervise(streamlit_command(port), env, ready=_healthy(url), on_ready=announce)

"""Start Streamlit on loopback, pointed at the running server found in the home directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from refactorbot_dashboard.client import TOKEN_ENV, URL_ENV

APP = Path(__file__).with_name("app.py")
START_PAGE_ENV = "RB_DASHBOARD_START_PAGE"
NO_SERVER = (
    "No refactorbot server is running for {home}.\n"
    "Start one first (in another terminal):  refactorbot serve\n"
    "then run:                               refactorbot dashboard"
)


def streamlit_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """Return the command line that serves the dashboard app."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
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
    ]


def dashboard_env(url: str, token: str, home: Path, start_page: str | None = None) -> dict[str, str]:
    """Return the environment of the Streamlit process: the API's URL and token, the home directory."""
    env = dict(os.environ)
    env.update({URL_ENV: url, TOKEN_ENV: token, "RB_HOME": str(home)})
    if start_page:
        env[START_PAGE_ENV] = start_page
    return env


def launch(home: Path, port: int = 8501, start_page: str | None = None) -> int:
    """Run the dashboard until interrupted; return the exit code (1 when no server is running)."""
    import click
    from refactorbot.client import ServerClient

    client = ServerClient.discover(home)
    if client is None:
        click.secho(NO_SERVER.format(home=home), fg="red", err=True)
        return 1
    click.echo(f"Dashboard on http://127.0.0.1:{port} (API {client.url}); Ctrl+C stops it.")
    env = dashboard_env(client.url, client.token, home, start_page)
    try:
        return subprocess.call(streamlit_command(port), env=env)
    except KeyboardInterrupt:
        return 0

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dashboard_sample
import pytest
from refactorbot_api.testing import RunningServer, running_server

#: The login token the in-process (AppTest) dashboard accepts in these tests.
LOGIN_TOKEN = secrets.token_urlsafe(24)
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A host with the sample slice and the API, served from a background thread."""
    home: Path = tmp_path_factory.mktemp("dash-home")
    with running_server(home, [dashboard_sample.SAMPLE]) as srv:
        yield srv


@pytest.fixture
def dashboard_env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    """Point the dashboard (run in-process by AppTest) at ``server``; load only the sample plugin."""
    monkeypatch.setenv("RB_DASHBOARD_API_URL", server.url)
    monkeypatch.setenv("RB_DASHBOARD_API_TOKEN", server.token)
    monkeypatch.setenv("RB_DASHBOARD_LOGIN_TOKEN", LOGIN_TOKEN)
    monkeypatch.setenv("RB_DASHBOARD_PLUGINS", "dashboard_sample:SAMPLE")
    monkeypatch.setenv("RB_LOAD_PLUGINS", "")
    monkeypatch.delenv("RB_DASHBOARD_START_PAGE", raising=False)
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedDashboard:
    """`refactorbot dashboard` running as a real process: its URL, the login token it printed, its output."""

    proc: subprocess.Popen[bytes]
    port: int
    token: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()


def start_dashboard(home: Path, log: Path, load: str = "refactorbot-dashboard") -> ServedDashboard:
    """Run the real `refactorbot dashboard` for ``home`` in a new session; wait for the login link it prints.

    ``load`` is its ``RB_LOAD_PLUGINS``: the installed distributions whose pages it shows.
    """
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "RB_LOAD_PLUGINS": load,
        "RB_DASHBOARD_PLUGINS": "dashboard_sample:SAMPLE",
    }
    env.pop("RB_DASHBOARD_LOGIN_TOKEN", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("refactorbot")), "--home", str(home), "dashboard", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pattern = re.compile(rf"http://127\.0\.0\.1:{port}/\?token=([A-Za-z0-9_-]+)")
    deadline = time.monotonic() + 60
    while not (found := pattern.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_dashboard(proc)
            raise AssertionError("the dashboard did not print its login link:\n" + log.read_text())
        time.sleep(0.1)
    return ServedDashboard(proc, port, found.group(1), log)


def stop_dashboard(proc: subprocess.Popen[bytes]) -> None:
    """Stop the launcher and every process it started, whatever state they are in."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    for child in children:  # left behind only if the launcher failed to stop them
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def served(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedDashboard]:
    """The real `refactorbot dashboard` command against ``server``."""
    dashboard = start_dashboard(Path(server.host.home), tmp_path_factory.mktemp("served") / "dashboard.log")
    try:
        yield dashboard
    finally:
        stop_dashboard(dashboard.proc)

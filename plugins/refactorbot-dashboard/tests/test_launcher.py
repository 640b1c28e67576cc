"""`refactorbot dashboard` stops Streamlit with it: signals are passed on, a stubborn child is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import start_dashboard, stop_dashboard
from refactorbot_api.testing import RunningServer
from refactorbot_dashboard.launcher import supervise

#: A child that ignores SIGTERM and SIGINT, then says its pid and waits forever.
STUBBORN = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "print(os.getpid(), flush=True)\n"
    "while True:\n"
    "    time.sleep(3600)\n"
)
#: A child that reports the signal it gets, then exits.
REPORTING = (
    "import os, signal, sys, time\n"
    "def report(signum, frame):\n"
    "    print(signal.Signals(signum).name, flush=True)\n"
    "    sys.exit(0)\n"
    "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
    "    signal.signal(s, report)\n"
    "print(os.getpid(), flush=True)\n"
    "while True:\n"
    "    time.sleep(3600)\n"
)
SUPERVISOR = (
    "import sys\n"
    "from refactorbot_dashboard.launcher import supervise\n"
    "sys.exit(supervise([sys.executable, '-c', sys.argv[2]], stop_timeout=float(sys.argv[1])))\n"
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_command_stops_streamlit_too(
    server: RunningServer, tmp_path: Path, signum: signal.Signals
) -> None:
    dashboard = start_dashboard(Path(server.host.home), tmp_path / "dashboard.log")
    try:
        children = psutil.Process(dashboard.proc.pid).children(recursive=True)
        assert any("streamlit" in " ".join(c.cmdline()) for c in children)
        os.kill(dashboard.proc.pid, signum)  # the launcher alone, as a service manager or `kill` would
        assert dashboard.proc.wait(30) == 0
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [c.cmdline() for c in alive]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", dashboard.port), timeout=5).close()
    finally:
        stop_dashboard(dashboard.proc)


def _start_supervisor(stop_timeout: float, child: str = STUBBORN) -> tuple[subprocess.Popen[str], psutil.Process]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(stop_timeout), child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    child = psutil.Process(int(proc.stdout.readline()))  # its handlers are installed once it prints
    return proc, child


def _cleanup(proc: subprocess.Popen[str], child: psutil.Process) -> None:
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), child.kill):
        try:
            kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    proc.wait(10)


@pytest.mark.parametrize(("sent", "received"), [("SIGTERM", "SIGTERM"), ("SIGINT", "SIGINT"), ("SIGHUP", "SIGTERM")])
def test_signals_are_passed_on(sent: str, received: str) -> None:
    proc, child = _start_supervisor(stop_timeout=600, child=REPORTING)
    try:
        proc.send_signal(getattr(signal, sent))
        assert proc.wait(30) == 0
        assert proc.stdout is not None and proc.stdout.read().split() == [received]
    finally:
        _cleanup(proc, child)


def test_a_child_that_ignores_the_signal_is_killed_after_the_stop_timeout() -> None:
    proc, child = _start_supervisor(stop_timeout=1.0)
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - started >= 1.0  # it was given its time first
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        _cleanup(proc, child)


def test_a_second_signal_kills_at_once() -> None:
    proc, child = _start_supervisor(stop_timeout=600)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None and proc.stderr.readline().startswith("Stopping")  # the first one is handled
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0  # long before the 600 s stop timeout
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        _cleanup(proc, child)


def test_the_child_exit_code_is_passed_through() -> None:
    assert supervise([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back

"""`refactorbot serve` with the API installed, run as a user runs it: a real process, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def test_serve_says_in_one_line_that_the_api_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:  # another program holds the port
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
        env.update(
            {
                "RB_HOME": str(tmp_path / "home"),
                "RB_CACHE_DIR": str(tmp_path / "cache"),
                "RB_LOAD_PLUGINS": "refactorbot-api",
                "RB_API_PORT": str(port),
            }
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            first = proc.stdout.readline() if proc.stdout else ""
            assert first.startswith("refactorbot serving"), first
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    reason = f"API: port {port} on 127.0.0.1 is already in use (set [plugins.api] port or RB_API_PORT)"
    lines = [line for line in err.splitlines() if "startup hook" in line]
    assert len(lines) == 1, err
    assert lines[0].endswith(f"ERROR refactorbot.master: startup hook of refactorbot-api failed: {reason}"), err
    assert "Traceback" not in err
    assert not (tmp_path / "home" / "server.json").exists()


def _serve_and_stop(tmp_path: Path, extra: dict[str, str]) -> tuple[int, str, str]:
    """Run ``refactorbot serve`` with the API until it is ready, SIGTERM it; return code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update(
        {
            "RB_HOME": str(tmp_path / "home"),
            "RB_CACHE_DIR": str(tmp_path / "cache"),
            "RB_LOAD_PLUGINS": "refactorbot-api",
            "RB_API_PORT": "0",
            **extra,
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "refactorbot", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first.startswith("refactorbot serving"), first + (proc.stderr.read() if proc.stderr else "")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, first + out, err


def test_serve_runs_on_uvloop_unless_told_otherwise_and_stops_on_sigterm(tmp_path: Path) -> None:
    code, out, err = _serve_and_stop(tmp_path / "auto", {})
    assert code == 0 and "refactorbot stopped." in out, err
    assert "(uvloop event loop)" in err and "SIGTERM received: stopping" in err, err
    code, out, err = _serve_and_stop(tmp_path / "asyncio", {"RB_EVENT_LOOP": "asyncio"})
    assert code == 0 and "(asyncio event loop)" in err, err
    code, out, err = _serve_and_stop(tmp_path / "uvloop", {"RB_EVENT_LOOP": "uvloop"})
    assert code == 0 and "(uvloop event loop)" in err, err


def test_a_wrong_event_loop_setting_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"RB_HOME": str(tmp_path), "RB_LOAD_PLUGINS": "refactorbot-api", "RB_EVENT_LOOP": "trio"})
    done = subprocess.run(
        [sys.executable, "-m", "refactorbot", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: ") and "core.event_loop" in done.stderr
    assert "Traceback" not in done.stderr

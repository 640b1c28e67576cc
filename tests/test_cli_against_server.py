"""The CLI against a real `refactorbot serve`: `call`, `slices` and a streamed `chat` use the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("refactorbot_api")
pytest.importorskip("refactorbot_slice_agent")
pytest.importorskip("refactorbot_gateway_litellm")

from refactorbot.testing.model_server import ModelServer, Reply  # noqa: E402

KEY_ENV = "RB_TEST_CLI_KEY"


def cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_uses_the_running_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env[KEY_ENV] = "sk-loopback"
    with ModelServer() as model:
        model.script(Reply.text("streamed from the server", chunks=4), Reply.error(500), Reply.error(500))
        (home / "refactorbot.toml").write_text(
            f'[llm]\nmodel = "openai/scripted"\n[plugins.api]\nport = 0\n'
            f'[gateways.litellm]\napi_base = "{model.base_url}"\napi_key_env = "{KEY_ENV}"\n'
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "--home", str(home), "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while not (home / "server.json").exists():
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
            pid = json.loads((home / "server.json").read_text())["pid"]
            assert pid == server.pid

            slices = cli(home, "slices", "--json", env=env)
            assert slices.returncode == 0, slices.stderr
            assert {row["slice_id"] for row in json.loads(slices.stdout)} >= {"agent", "session", "memory", "tools"}

            chat = cli(home, "chat", "--user", "erin", "hello", env=env)
            assert chat.returncode == 0, chat.stderr
            assert chat.stdout.strip() == "streamed from the server"
            # the turn ran in the server process: its session is there, and the model saw one request
            history = cli(home, "call", "session.list", env=env)
            assert history.returncode == 0, history.stderr
            assert "api" in history.stdout  # the API channel owns the session

            failing = cli(home, "chat", "--user", "erin", "and now?", env=env)
            assert failing.returncode == 1
            assert "Sorry, I could not answer" in failing.stdout
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert not (home / "server.json").exists()

"""The CLI against a real `refactorbot serve`: `call`, `slices` and a streamed `chat` use the server."""

from __future__ import annotations

import json
from pathlib import Path

from refactorbot.testing.model_server import ModelServer, Reply
from serving import cli, serve, write_config


def test_cli_uses_the_running_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ModelServer() as model:
        model.script(Reply.text("streamed from the server", chunks=4), Reply.error(500), Reply.error(500))
        write_config(home, model=model)
        with serve(home) as served:
            pid = json.loads((home / "server.json").read_text())["pid"]
            assert pid == served.proc.pid

            slices = cli(home, "slices", "--json")
            assert slices.returncode == 0, slices.stderr
            assert {row["slice_id"] for row in json.loads(slices.stdout)} >= {"agent", "session", "memory", "tools"}

            chat = cli(home, "chat", "--user", "erin", "hello")
            assert chat.returncode == 0, chat.stderr
            assert chat.stdout.strip() == "streamed from the server"
            # the turn ran in the server process: its session is there, and the model saw one request
            history = cli(home, "call", "session.list")
            assert history.returncode == 0, history.stderr
            assert "api" in history.stdout  # the API channel owns the session

            failing = cli(home, "chat", "--user", "erin", "and now?")
            assert failing.returncode == 1
            assert "Sorry, I could not answer" in failing.stdout
    assert not (home / "server.json").exists()

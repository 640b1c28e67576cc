"""Against a real `refactorbot serve`: `slices show` and `call SLICE.OP --help` read the server's
capabilities, and `chat` loads only its own plugin and imports nothing heavy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("refactorbot_api")
pytest.importorskip("refactorbot_slice_agent")
pytest.importorskip("refactorbot_gateway_litellm")
pytest.importorskip("refactorbot_example_notes")

from refactorbot.testing.model_server import ModelServer  # noqa: E402

KEY_ENV = "RB_TEST_CLI_KEY"


class Served:
    def __init__(self, home: Path, env: dict[str, str], cwd: Path) -> None:
        self.home, self.env, self.cwd = home, env, cwd

    def __call__(self, *args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
        python = [sys.executable, "-X", "importtime"] if importtime else [sys.executable]
        return subprocess.run(
            [*python, "-m", "refactorbot", "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=120,
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"  # sys.path[0] of `python -m`: a folder nothing writes to during the test
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({KEY_ENV: "sk-loopback", "RB_CACHE_DIR": str(tmp_path / "cache")})
    with ModelServer() as model:
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
            cwd=cwd,
        )
        try:
            deadline = time.monotonic() + 60
            while not (home / "server.json").exists():
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
            yield Served(home, env, cwd)
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_operations_are_described_from_the_running_server(served: Served) -> None:
    # the server's capabilities are read: a slice it does not run is unknown, with the server's wording
    shown = served("slices", "show", "notes")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("notes ")
    assert "    title      string (min length 1, max length 200)  required" in shown.stdout
    as_json = json.loads(served("slices", "show", "agent", "--json").stdout)
    assert {op["name"] for op in as_json["operations"]} >= {"run", "stream_run"}
    ghost = served("slices", "show", "ghost")
    assert ghost.returncode == 1 and ghost.stderr.startswith("Error: unknown slice 'ghost' (installed and enabled:")

    helped = served("call", "memory.search", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.splitlines()[0] == "Usage: refactorbot call memory.search [KEY=VALUE]... [--json '{...}']"
    assert "  user_id " in helped.stdout and "  limit " in helped.stdout
    missing = served("call", "memory.nope", "--help")
    assert missing.returncode == 1 and "has no operation 'nope'" in missing.stderr


def test_chat_against_the_server_loads_only_its_plugin_and_nothing_heavy(served: Served) -> None:
    first = served("chat", "hello")  # no command cache yet: every plugin is scanned, the cache written
    assert (first.returncode, first.stdout) == (0, "echo: hello\n"), first.stderr
    assert list((served.home.parent / "cache").glob("commands-*.json"))
    cached = served("chat", "again", importtime=True)
    assert (cached.returncode, cached.stdout) == (0, "echo: again\n")
    imported = {line.rsplit("|", 1)[-1].strip() for line in cached.stderr.splitlines() if "|" in line}
    assert {"refactorbot_slice_agent.cli", "urllib.request"} <= imported
    heavy = {"pydantic", "asyncio", "litellm", "importlib.metadata", "refactorbot.slice", "refactorbot_slice_memory"}
    assert not imported & heavy, imported & heavy
